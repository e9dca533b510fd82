"""Throughput of the firmware outbox (firmware/lib/outbox.py) in the MicroPython VM and on CPython.

Run: .venv/bin/python bench/firmware_outbox.py [--records N] [--runs R]

Measures, with 60-byte payloads, in a fresh directory under /tmp:
  append+flush   records/s written, batch=1 (one write + sync per record) and batch=8;
  reopen         ms to open an outbox holding N records (every record's CRC is checked);
  pending+ack    records/s removed by the runtime's loop: pending(8), then ack the last one;
  full append    records/s appended to a full outbox (evictions included), batch=8.
Each figure is the median of R runs. The same kernel runs in three places: the MicroPython
VM (the unix port has no os.fsync, but its file flush() calls fsync(2), checked with strace),
CPython with the outbox's flush + fsync (the same syscalls), and CPython with flush only
(what the sync costs on this disk). These are host-filesystem
figures; an ESP32's flash (littlefs, about 4 KB erase blocks) is far slower, so read them
as relative costs (batching, scan, ack), not as a board's rates.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "firmware" / "lib"

# Runs in both runtimes: MicroPython stdlib only. Prints one JSON line of figures.
KERNEL = r"""
import json, os, sys, time

try:
    now_us = time.ticks_us
    diff = time.ticks_diff
except AttributeError:  # CPython
    def now_us():
        return int(time.perf_counter() * 1e6)

    def diff(a, b):
        return a - b

from outbox import Outbox


def rmtree(d):
    for nm in os.listdir(d):
        os.remove(d + "/" + nm)
    os.rmdir(d)


def fresh(base, tag):
    d = "%s/%s_%d" % (base, tag, now_us())
    os.mkdir(d)
    return d


def rate(n, t0):
    return n * 1e6 / max(1, diff(now_us(), t0))


def bench(base, n):
    out = {}
    payload = bytes(range(60))
    for batch in (1, 8):
        d = fresh(base, "append%d" % batch)
        ob = Outbox(d, 4 * 1024 * 1024, batch=batch, seg_bytes=64 * 1024)
        t0 = now_us()
        for s in range(1, n + 1):
            ob.append(1, s, payload)
        ob.flush()
        out["append_b%d" % batch] = rate(n, t0)
        if batch == 8:
            t0 = now_us()
            ob = Outbox(d, 4 * 1024 * 1024, batch=8, seg_bytes=64 * 1024)
            out["reopen_ms"] = diff(now_us(), t0) / 1000
            t0 = now_us()
            removed = 0
            while True:
                recs = ob.pending(8)
                if not recs:
                    break
                removed += ob.ack(1, recs[-1][1])
            out["ack"] = rate(removed, t0)
            assert removed == n and ob.depth() == 0
        rmtree(d)
    d = fresh(base, "full")
    ob = Outbox(d, 16 * 1024, batch=8, seg_bytes=4 * 1024)
    for s in range(1, 400):
        ob.append(1, s, payload)
    t0 = now_us()
    for s in range(400, 400 + n):
        ob.append(1, s, payload)
    ob.flush()
    out["full_append"] = rate(n, t0)
    out["dropped"] = ob.dropped
    rmtree(d)
    return out


print(json.dumps(bench(sys.argv[1], int(sys.argv[2]))))
"""

FIGURES = [
    ("append_b1", "append+flush, batch 1", "rec/s"),
    ("append_b8", "append+flush, batch 8", "rec/s"),
    ("reopen_ms", "reopen (CRC scan)", "ms"),
    ("ack", "pending(8)+ack", "rec/s"),
    ("full_append", "append when full, batch 8", "rec/s"),
]


def run_vm(vm: str, kernel: Path, base: str, n: int) -> dict[str, float]:
    out = subprocess.run([vm, str(kernel), base, str(n)], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "MICROPYPATH": str(LIB)}, check=False)
    if out.returncode:
        raise SystemExit(f"firmware_outbox: the VM failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cpython(kernel: Path, base: str, n: int, fsync: bool) -> dict[str, float]:
    # A child process per run, so module state (and the fsync switch) starts clean.
    code = ("import sys; sys.path.insert(0, sys.argv[3]); import bootcount\n"
            f"bootcount._fsync = bootcount._fsync if {fsync} else None\n"
            "sys.argv = sys.argv[:1] + sys.argv[1:3]\n"
            f"exec(open({str(kernel)!r}).read())")
    out = subprocess.run([sys.executable, "-c", code, base, str(n), str(LIB)],
                         capture_output=True, text=True, timeout=600, check=False)
    if out.returncode:
        raise SystemExit(f"firmware_outbox: CPython run failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(runs: list[dict[str, float]], key: str) -> float:
    vals = sorted(r[key] for r in runs)
    return vals[len(vals) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    vm = ROOT / ".venv" / "bin" / "micropython"
    with tempfile.TemporaryDirectory(prefix="bench_outbox_", dir="/tmp") as base:
        kernel = Path(base) / "kernel.py"
        kernel.write_text(KERNEL)
        cols: list[tuple[str, list[dict[str, float]]]] = []
        if vm.exists():
            cols.append(("MicroPython VM (flush = fsync)",
                         [run_vm(str(vm), kernel, base, args.records) for _ in range(args.runs)]))
        else:
            print(f"firmware_outbox: no VM at {vm}; CPython only", file=sys.stderr)
        for fsync in (True, False):
            name = "CPython (flush+fsync)" if fsync else "CPython (flush)"
            cols.append((name, [run_cpython(kernel, base, args.records, fsync)
                                for _ in range(args.runs)]))
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    print(f"outbox, {args.records} records of 60 B, median of {args.runs} runs; "
          f"{platform.node()}, {platform.processor() or platform.machine()}, "
          f"{platform.system()} {platform.release()}, CPython {platform.python_version()}, "
          f"{when}; files in /tmp")
    print()
    print("| figure | " + " | ".join(name for name, _ in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for key, label, unit in FIGURES:
        cells = []
        for _, runs in cols:
            v = median(runs, key)
            cells.append(f"{v:,.1f} {unit}" if unit == "ms" else f"{v:,.0f} {unit}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
