"""Figures for a virtual board: cold start to first exec, exec round trip, 20 KiB fs cp.

    .venv/bin/python bench/vboard_figures.py [--runs 5]

Prints medians (and min-max) with the machine and date, for hil_tests/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpremote.transport_serial import SerialTransport

from hil_tests.vboard import VirtualBoard

MPREMOTE = str(Path(sys.executable).parent / "mpremote")


def mpremote(port: str, *args: str) -> None:
    subprocess.run([MPREMOTE, "connect", port, *args], check=True, capture_output=True,
                   timeout=60)


def cold_start(root: Path) -> float:
    """`vboard run` launched -> first `mpremote exec` returned."""
    t0 = time.perf_counter()
    with VirtualBoard(root) as vb:
        mpremote(vb.port, "exec", "print(1)")
        return time.perf_counter() - t0


def exec_round_trip(port: str, n: int = 200) -> float:
    t = SerialTransport(port, timeout=10)
    try:
        t.enter_raw_repl()
        t0 = time.perf_counter()
        for _ in range(n):
            t.exec("pass")
        return (time.perf_counter() - t0) / n
    finally:
        t.exit_raw_repl()
        t.close()


def fs_cp(port: str, src: Path) -> float:
    t0 = time.perf_counter()
    mpremote(port, "fs", "cp", "-f", str(src), ":blob.bin")
    return time.perf_counter() - t0


def _fmt(values: list[float], unit: float, label: str) -> str:
    med = statistics.median(values) / unit
    return f"{med:8.2f} (min {min(values) / unit:.2f}, max {max(values) / unit:.2f})  {label}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        starts = [cold_start(root / f"cold{i}") for i in range(args.runs)]
        blob = root / "blob.bin"
        blob.write_bytes(os.urandom(20 * 1024))
        with VirtualBoard(root / "warm") as vb:
            trips = [exec_round_trip(vb.port) for _ in range(args.runs)]
            cps = [fs_cp(vb.port, blob) for _ in range(args.runs)]
            mem = vb.control.state()["mem_free_at_boot"]
    print(f"# vboard figures, {platform.node()} {platform.machine()} "
          f"{os.cpu_count()} cpu, Python {platform.python_version()}, "
          f"{datetime.date.today().isoformat()}, medians of {args.runs}")
    print(_fmt(starts, 1e-3, "ms  cold start: vboard run -> first mpremote exec returned"))
    print(_fmt(trips, 1e-3, "ms  exec round trip (SerialTransport.exec('pass'))"))
    print(_fmt(cps, 1e-3, "ms  mpremote fs cp -f of 20 KiB (process start included)"))
    print(f"{mem:8d}  bytes gc.mem_free() at boot (default heap, 64-bit VM)")


if __name__ == "__main__":
    main()
