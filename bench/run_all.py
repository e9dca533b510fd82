"""Run every bench script in bench/, firmware ones first, and let them write their figures.

Run: .venv/bin/python bench/run_all.py [--all] [--list] [--only NAME ...] [--timeout S]

Order: the firmware benches first (wire_sizes writes docs/wire-format.md; firmware_outbox;
firmware_heap writes firmware/README.md and is handed firmware_outbox's output, so the outbox
runs once), then every other bench/*.py in name order. Benches of the edge agent (file names
with "agent" in them) run only with --all: they take minutes and need a quiet machine. Each
bench is its own process with a time limit, its output passed through as it comes; a bench
that fails does not stop the others. The summary at the end names each bench, its time and
its result; the exit status is 1 when any bench failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# Firmware benches in the order they must run; the others follow in name order.
FIRST = ("wire_sizes", "firmware_outbox", "firmware_heap")
SELF = Path(__file__).stem


@dataclass
class Outcome:
    name: str
    seconds: float
    result: str


def benches(run_agent: bool) -> tuple[list[str], list[str]]:
    """(names to run in order, names skipped) of the bench scripts in bench/."""
    names = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != SELF
                   and not p.stem.startswith("_"))
    order = [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]
    skipped = [n for n in order if "agent" in n and not run_agent]
    return [n for n in order if n not in skipped], skipped


def run_one(name: str, args: list[str], timeout: float, keep: Path | None) -> Outcome:
    """Run bench/<name>.py, echo its output; with `keep`, also save its stdout there."""
    print(f"\n=== bench/{name}.py {' '.join(args)}".rstrip(), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    t0 = time.monotonic()
    with subprocess.Popen([sys.executable, str(BENCH / f"{name}.py"), *args], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None
        killer = threading.Timer(timeout, p.kill)  # the output loop below blocks
        killer.start()
        lines = []
        try:
            for line in p.stdout:
                print(line, end="", flush=True)
                lines.append(line)
            rc = p.wait()
        finally:
            killer.cancel()
    took = time.monotonic() - t0
    if took >= timeout:
        return Outcome(name, took, f"FAILED: killed after {timeout:.0f} s")
    if keep is not None:
        keep.write_text("".join(lines))
    return Outcome(name, took, "ok" if rc == 0 else f"FAILED: exit status {rc}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="also run the edge agent's benches")
    ap.add_argument("--list", action="store_true", help="print what would run, then stop")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these benches")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per bench")
    args = ap.parse_args()
    todo, skipped = benches(args.all)
    if args.only:
        unknown = sorted(set(args.only) - set(todo) - set(skipped))
        if unknown:
            print(f"run_all: no such bench: {', '.join(unknown)}", file=sys.stderr)
            return 2
        todo = [n for n in todo + skipped if n in args.only]
        skipped = []
    if args.list:
        print("\n".join(todo + [f"{n} (skipped: --all runs it)" for n in skipped]))
        return 0
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="bench_all_") as tmp:
        outbox_out = Path(tmp) / "firmware_outbox.txt"
        for name in todo:
            extra: list[str] = []
            keep = None
            if name == "firmware_outbox":
                keep = outbox_out
            elif name == "firmware_heap" and outbox_out.exists():
                extra = ["--outbox-table", str(outbox_out)]
            outcomes.append(run_one(name, extra, args.timeout, keep))
    print("\n=== summary")
    for o in outcomes:
        print(f"{o.name:24} {o.seconds:7.1f} s  {o.result}")
    for n in skipped:
        print(f"{n:24} {'':>9}  skipped (--all runs it)")
    return 1 if any(o.result != "ok" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
