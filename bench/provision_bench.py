"""Figures for nodectl on virtual boards: provision time per board, and a re-deploy.

    .venv/bin/python bench/provision_bench.py [--runs 3] [--no-write]

Each run is the real `nodectl` console script against virtual boards running
the real firmware and a real mosquitto (tests/provisioning/provision_env.py
sets the bench up). Measured, medians of --runs:
- one water-level board, every step (flash .. verify), from a fresh registry;
- three boards (one per role) in one command, every step;
- deploy onto a freshly flashed board (every file sent) and a re-deploy with
  nothing changed (every file hashed on the board, none sent).
Wall time includes nodectl's own start-up (about 0.3 s of imports); the step
times are nodectl's own (`--json` step_seconds). Writes the table into
provisioning/README.md between the figures markers unless --no-write.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "provisioning"))

from provision_env import ProvisionEnv  # noqa: E402

from provisioning.firmware_build import build_firmware  # noqa: E402

README = ROOT / "provisioning" / "README.md"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"
KINDS = ("water-level-devkitc", "boat-gps-cell", "truck-gps-cell")


def nodectl_json(env: ProvisionEnv, *args: str, **extra: str) -> tuple[float, Any]:
    t0 = time.perf_counter()
    r = env.nodectl("--json", *args, **extra)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"nodectl {' '.join(args)} failed: {r.stdout}{r.stderr}")
    return wall, json.loads(r.stdout)


def fresh(env: ProvisionEnv, n: int) -> dict[str, str]:
    """A registry and secrets nobody has used: every board is new to it."""
    return {"NODECTL_REGISTRY": str(env.root / f"run{n}" / "agent.db"),
            "NODECTL_SECRETS": str(env.root / f"run{n}" / "secrets")}


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def measure(runs: int) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="nodectl-bench-") as tmp, \
            ProvisionEnv(Path(tmp)) as env:
        boards = [env.board(k) for k in KINDS]
        wl = boards[0]
        one = ["provision", "--link", "wifi", "--port", f"vboard:{wl.dir}", "--board", KINDS[0]]
        walls, own, steps = [], [], {}
        for i in range(runs):
            wall, res = nodectl_json(env, *one, **fresh(env, i))
            walls.append(wall)
            own.append(res[0]["seconds"])
            for k, v in res[0]["step_seconds"].items():
                steps.setdefault(k, []).append(v)
        rows.append(("1 water-level board, flash .. verify (wall)", med(walls),
                     "verify waits for the node's first reading on the broker"))
        rows.append(("  nodectl's own time for it", med(own),
                     ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in steps.items())))

        three = ["provision", "--link", "wifi"]
        for vb, kind in zip(boards, KINDS, strict=True):
            three += ["--port", f"vboard:{vb.dir}", "--board", kind]
        walls, per = [], []
        for i in range(runs):
            wall, res = nodectl_json(env, *three, **fresh(env, 100 + i))
            walls.append(wall)
            per += [r["seconds"] for r in res]
        rows.append(("3 boards (one per role) in one command, flash .. verify (wall)",
                     med(walls), f"per board {med(per)}; boards run in parallel threads; "
                     "boat and truck verify wait for a GPS fix fed at 1 Hz"))

        port = ("--port", f"vboard:{wl.dir}")
        first, first_own, again, again_own, sent = [], [], [], [], []
        for i in range(runs):
            extra = fresh(env, 200 + i)
            nodectl_json(env, *port, "--board", KINDS[0], "flash", **extra)
            wall, res = nodectl_json(env, *port, "deploy", **extra)
            first.append(wall)
            first_own.append(res["step_seconds"]["deploy"])
            sent.append(res["notes"]["deploy"].split(":")[1].split(",")[0].strip())
            wall, res = nodectl_json(env, *port, "deploy", **extra)
            again.append(wall)
            again_own.append(res["step_seconds"]["deploy"])
            assert "0 copied" in res["notes"]["deploy"], res["notes"]["deploy"]
        build = build_firmware(env.firmware)
        size = sum(len(f.data) for f in build.files)
        rows.append(("deploy onto a freshly flashed board (wall)", med(first),
                     f"deploy step {med(first_own)}; {sent[0]}, {size // 1024} KiB"))
        rows.append(("re-deploy, nothing changed (wall)", med(again),
                     f"deploy step {med(again_own)}; 0 sent: {len(build.files)} files hashed "
                     "on the board in one exec, soft reset, version read back; includes "
                     "stopping the running node (reset, Ctrl-C while it boots)"))
    return rows


def render(rows: list[tuple[str, str, str]], runs: int) -> str:
    lines = ["| what | median (min-max) | notes |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    when = datetime.date.today().isoformat()
    lines += ["", f"Measured {when} by `bench/provision_bench.py` (medians of {runs} runs) on "
              f"CPython {platform.python_version()} ({platform.system()} {platform.machine()}), "
              "virtual boards (MicroPython 1.29 unix VM behind a pty, real mpremote library) "
              "and mosquitto 2.0 on the same 2-core machine. Not measured on a real ESP32: "
              "there the UART sets the pace (the 50 KiB of .mpy, base64-encoded, are about "
              "6 s of line time at 115200 baud; a re-deploy sends none of it)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args()
    text = render(measure(a.runs), a.runs)
    print(text)
    if not a.no_write:
        readme = README.read_text()
        if BEGIN in readme and END in readme:
            head, rest = readme.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            README.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
            print(f"written to {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
