"""Helpers for the resilience tests: sizes scaled by $EDGE_SCALE, a fleet and its stream of
readings, the `edge-agent` process, and what the database says."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cbor2
from edge_helpers import kill9, reading_bytes, start_agent_process, wait_until, write_toml
from fleet_sim import FleetSim

SCALE = float(os.environ.get("EDGE_SCALE", "0.1"))
ROLES = ("water_level", "boat", "truck")


def scaled(full: int, least: int) -> int:
    return max(least, int(full * SCALE))


def fleet(n: int) -> dict[str, str]:
    """n devices, roles in turn: wl-0000 (water level), bt-0001 (boat), tr-0002 (truck)..."""
    return {f"{r[:2] if r != 'water_level' else 'wl'}-{i:04d}": r
            for i, r in ((i, ROLES[i % 3]) for i in range(n))}


def is_alarm(role: str, seq: int) -> bool:
    return role != "truck" and seq % 41 == 0


Reading = tuple[str, int, int, bool]  # (device, boot, seq, alarm)


def last_seqs(readings: list[Reading]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for dev, boot, seq, _ in readings:
        out[(dev, boot)] = max(out.get((dev, boot), 0), seq)
    return out


def all_acked(sim: FleetSim, readings: list[Reading]) -> Callable[[], bool]:
    last = last_seqs(readings)
    return lambda: all(sim.acked(d, b) == s for (d, b), s in last.items())


def acked_keys(sim: FleetSim, readings: list[Reading]) -> set[tuple[str, int, int]]:
    """Every (device, boot, seq) the agent has acked end to end so far."""
    return {(d, b, s) for (d, b) in last_seqs(readings) for s in range(1, sim.acked(d, b) + 1)}


def stream(devices: dict[str, str], n: int, boots: int = 1) -> list[Reading]:
    """n readings interleaved over the devices, each device in (boot, seq) order; with
    boots=2 every device reboots halfway (its seq starts again at 1)."""
    names = list(devices)
    per_boot = -(-n // len(names) // boots) or 1
    out = []
    for i in range(n):
        dev = names[i % len(names)]
        j = i // len(names)
        boot, seq = 1 + j // per_boot, j % per_boot + 1
        out.append((dev, boot, seq, is_alarm(devices[dev], seq)))
    return out


class AckedOnDisk:
    """A FleetSim check: when an ack arrives, the agent's database must already hold that
    seq as committed (rows and ack state share a transaction), i.e. it was on disk first.
    One connection, opened on the simulator's thread."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.conn: sqlite3.Connection | None = None

    def __call__(self, dev: str, boot: int, seq: int) -> str | None:
        if self.conn is None:
            self.conn = sqlite3.connect(self.db, timeout=10)
        row = self.conn.execute("SELECT hw FROM ack_state WHERE device = ? AND boot = ?",
                                (dev, boot)).fetchone()
        if row is None or row[0] < seq:
            return f"{dev}: ack {boot}:{seq} arrived before its commit (db: {row})"
        return None


class AgentProcess:
    """`edge-agent run` with a config of the test's own; restartable; killed at teardown."""

    def __init__(self, tmp_path: Path, data: Path, local: str, upstream: str,
                 extra: str = "") -> None:
        self.conf = write_toml(tmp_path / "agent.toml", data, local, upstream, extra)
        self.log = tmp_path / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> None:
        before = self.log.read_text().count("subscribed to") if self.log.exists() else 0
        self.proc = start_agent_process(self.conf, self.log)
        if wait:
            wait_until(lambda: self.log.read_text().count("subscribed to") > before, 20,
                       "the agent subscribing")

    def kill9(self) -> None:
        assert self.proc is not None
        kill9(self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(30)

    def close(self) -> None:
        if self.alive():
            assert self.proc is not None
            kill9(self.proc)


def status_bytes(dev: str, boot: int, n: int) -> bytes:
    """A device's n-th status (the contract's status map): uptime and outbox count up,
    the battery runs down, so every one differs from the last."""
    return cbor2.dumps({"v": 1, "dev": dev, "online": True, "fw": "0.4.0", "boot": boot,
                        "batt": round(4.2 - n * 0.001, 3), "rssi": -60 - n % 20,
                        "link": "wifi", "uptime": 10 * n, "outbox": n % 7, "interval": 60},
                       canonical=True)


Statuses = dict[int, list[tuple[str, bytes]]]  # reading index -> statuses published after it


def status_changes(readings: list[Reading], every: int, rng: random.Random) -> Statuses:
    """About one status change per `every` readings, each from a random device that has
    published by then, with the boot of its latest reading."""
    out: Statuses = {}
    counts: dict[str, int] = {}
    boots: dict[str, int] = {}
    for i, (dev, boot, _, _) in enumerate(readings):
        boots[dev] = boot
        if rng.randrange(every) == 0:
            d = rng.choice(list(boots))
            counts[d] = counts.get(d, 0) + 1
            out.setdefault(i, []).append((d, status_bytes(d, boots[d], counts[d])))
    return out


def per_device(statuses: Statuses) -> dict[str, list[bytes]]:
    """device -> its statuses in publish order."""
    out: dict[str, list[bytes]] = {}
    for i in sorted(statuses):
        for dev, payload in statuses[i]:
            out.setdefault(dev, []).append(payload)
    return out


def publish_paced(sim: FleetSim, readings: list[Reading], devices: dict[str, str],
                  rate: float, statuses: Statuses | None = None) -> threading.Thread:
    """Publish in a thread at about `rate` readings/s; statuses[i] (retained) right after
    reading i."""
    def run() -> None:
        t0 = time.monotonic()
        for i, (dev, boot, seq, alarm) in enumerate(readings):
            sim.publish(dev, boot, seq, reading_bytes(dev, boot, seq, devices[dev], alarm))
            for d, payload in (statuses or {}).get(i, ()):
                sim.status(d, payload)
            ahead = (i + 1) / rate - (time.monotonic() - t0)
            if ahead > 0.005:
                time.sleep(ahead)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def db_state(db: Path) -> tuple[set[tuple[str, int, int]], str, dict[str, int]]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        keys = set(conn.execute("SELECT device, boot, seq FROM readings").fetchall())
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        return keys, check, counters
    finally:
        conn.close()
