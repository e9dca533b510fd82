"""Resilience, with real brokers and the real `edge-agent` process: (b) a long upstream
outage, (d) a full disk, (e) a flood of hostile payloads. (The kill -9 tests are in
test_agent_durability.py.)

Sizes scale with $EDGE_SCALE (default 0.1); EDGE_SCALE=1 runs the full sizes (50,000
readings queued; 40,000 readings into a 3 MB disk; 10,000 hostile payloads). Run with -s
for the figures.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cbor2
import pytest
from edge_helpers import (
    Upstream,
    first_occurrences,
    reading_bytes,
    register,
    wait_until,
)
from fleet_sim import FleetSim
from stream_helpers import (
    AgentProcess,
    all_acked,
    db_state,
    fleet,
    publish_paced,
    scaled,
    stream,
)

from hil_tests.mosquitto import Mosquitto


def test_upstream_down_for_a_long_backlog_then_drains_in_order(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        subscribers: list[Upstream], procs: list[AgentProcess], sims: list[FleetSim]) -> None:
    devices = fleet(50)
    n = scaled(50_000, 5_000)
    data = tmp_path / "data"
    db = data / "agent.db"
    register(db, devices)
    up = Upstream(upstream_broker.url)  # persistent session: kept by the broker's restart
    subscribers.append(up)
    agent = AgentProcess(tmp_path, data, mosquitto.url, upstream_broker.url)
    procs.append(agent)
    agent.start()
    upstream_broker.stop()
    sim = FleetSim(mosquitto.url, devices, outbox=False)
    sims.append(sim)
    readings = stream(devices, n)
    t0 = time.monotonic()
    for dev, boot, seq, alarm in readings:
        sim.publish(dev, boot, seq, reading_bytes(dev, boot, seq, devices[dev], alarm))
    wait_until(all_acked(sim, readings), 60 + n / 500, "every reading acked during the outage")
    ingest = time.monotonic() - t0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT rows FROM queue_stats").fetchone()[0] == n
    conn.close()

    upstream_broker.start()
    t1 = time.monotonic()
    wait_until(lambda: len(up.keys()) >= n, 120 + n / 500, "the backlog upstream")
    drain = time.monotonic() - t1
    assert agent.stop() == 0
    got = up.snapshot()
    firsts = first_occurrences(got)
    assert len(firsts) == n and {(d, b, s) for d, b, s, _ in firsts} == \
        {(d, b, s) for d, b, s, _ in readings}
    # Alarms first (oldest first), then every normal reading in the order it arrived.
    alarms = [r for r in readings if r[3]]
    assert firsts[:len(alarms)] == alarms
    assert firsts[len(alarms):] == [r for r in readings if not r[3]]
    in_db, check, _ = db_state(db)
    assert in_db == set() and check == "ok"
    print(f"\n(b) upstream down: {n} readings acked and queued in {ingest:.1f} s "
          f"({n / ingest:.0f}/s); after the upstream came back, drained in {drain:.1f} s "
          f"(reconnect backoff included), {len(alarms)} alarms first, "
          f"{len(got) - n} duplicates")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 3 MB of the test's own; skips when this machine cannot mount one."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): the page-cap variant "
                    "covers the policy")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.parametrize("disk", ["tmpfs", "page_cap"])
def test_full_disk_drops_oldest_normal_readings_and_keeps_running(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto, disk: str,
        subscribers: list[Upstream], procs: list[AgentProcess], sims: list[FleetSim],
        request: pytest.FixtureRequest) -> None:
    devices = fleet(30)
    if disk == "tmpfs":
        data = request.getfixturevalue("small_disk") / "data"
        extra = "[queue]\nreserve_bytes = 262144\n"
        n = scaled(40_000, 16_000)
    else:
        data = tmp_path / "data"
        extra = "[queue]\nmax_db_bytes = 1048576\nreserve_bytes = 131072\n"
        n = scaled(20_000, 8_000)
    db = data / "agent.db"
    register(db, devices)
    up = Upstream(upstream_broker.url)
    subscribers.append(up)
    agent = AgentProcess(tmp_path, data, mosquitto.url, upstream_broker.url, extra)
    procs.append(agent)
    agent.start()
    upstream_broker.stop()  # nothing leaves: the store must fill
    sim = FleetSim(mosquitto.url, devices, outbox=False)
    sims.append(sim)
    readings = stream(devices, n)
    publisher = publish_paced(sim, readings, devices, rate=4000)
    publisher.join(120)
    wait_until(all_acked(sim, readings), 60 + n / 300,
               "every reading acked although the disk is full")
    assert agent.alive()
    _, check, counters = db_state(db)
    assert check == "ok"
    assert counters["stored"] == n and counters.get("dropped_disk", 0) > 0, counters
    conn = sqlite3.connect(db)
    queued = conn.execute("SELECT rows FROM queue_stats").fetchone()[0]
    conn.close()
    upstream_broker.start()
    wait_until(lambda: len(up.keys()) >= queued, 60, "what was kept, upstream")
    assert agent.stop() == 0
    _, check, counters = db_state(db)
    assert check == "ok"
    got = {(d, b, s) for d, b, s, _ in first_occurrences(up.snapshot())}
    alarms = [r[:3] for r in readings if r[3]]
    normal = [r[:3] for r in readings if not r[3]]
    assert set(alarms) <= got, "an alarm was dropped"
    kept = [k for k in normal if k in got]
    # Oldest first: what survived is exactly the newest normal readings.
    assert kept == normal[len(normal) - len(kept):]
    dropped = counters.get("dropped_disk", 0) + counters.get("dropped_overflow", 0)
    assert len(kept) + dropped == len(normal)
    print(f"\n(d) full disk ({disk}): {n} readings acked, {len(alarms)} alarms all kept, "
          f"{dropped} oldest normal readings dropped ({counters.get('dropped_disk', 0)} for "
          f"the disk), {len(kept)} newest kept and forwarded; integrity_check ok")


# --- (e) hostile payloads ---

def big_head(major: int) -> bytes:
    """A head declaring 2^63 items or bytes, with nothing behind it."""
    return bytes([major << 5 | 27]) + (1 << 63).to_bytes(8, "big")


def hostile_payloads(n: int, rng: random.Random, good: Callable[[int], bytes]
                     ) -> Iterator[tuple[str, bytes, str]]:
    """(topic, payload, kind) for n hostile messages; `good(seq)` gives a valid envelope
    of device wl-0001 (for truncations)."""
    kinds = ["random", "truncated", "deep", "huge_length", "wrong_type", "unknown_device",
             "bad_topic", "oversize", "status"]
    seq = 0
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "random":
            yield "nodes/wl-0001/up", rng.randbytes(rng.randint(0, 512)), kind
        elif kind == "truncated":
            p = good(10_000_000 + i)
            yield "nodes/wl-0001/up", p[:rng.randint(0, len(p) - 1)], kind
        elif kind == "deep":
            # 10,000 nested arrays, or 8,000 nested maps (16 kB, under the size cap).
            deep = rng.choice([b"\x81" * 10_000, b"\xa1\x00" * 8_000]) + b"\x00"
            yield "nodes/wl-0001/up", deep, kind
        elif kind == "huge_length":
            yield "nodes/wl-0001/up", big_head(rng.choice([2, 3, 4, 5])), kind
        elif kind == "wrong_type":
            # Decodes far enough to name its seq: kept and acked, on a device of its own.
            seq += 1
            env = {0: 1, 1: "wl-0002", 2: 1, 3: seq, 4: "water_level",
                   5: rng.choice([7, "pack", [{0: "level", 2: "high"}], [{-3: "now"}]])}
            yield "nodes/wl-0002/up", cbor2.dumps(env), kind
        elif kind == "unknown_device":
            yield f"nodes/zz-{i:06d}/up", good(1), kind
        elif kind == "bad_topic":
            # Topics the agent subscribes to, with device ids the contract forbids.
            yield rng.choice(["nodes/UPPER/up", "nodes/-x/status", f"nodes/{'a' * 40}/up",
                              "nodes/wl_0001/up"]), b"\xa0", kind
        elif kind == "oversize":
            yield "nodes/wl-0001/up", b"\x00" * 20_000, kind
        else:
            yield "nodes/wl-0001/status", rng.randbytes(rng.randint(1, 64)), kind


def test_hostile_flood_goes_to_the_dead_letter_queue_with_flat_memory(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        procs: list[AgentProcess], sims: list[FleetSim]) -> None:
    n = scaled(10_000, 2_000)
    replays = n // 10
    data = tmp_path / "data"
    db = data / "agent.db"
    devices = {"wl-0001": "water_level", "wl-0002": "water_level"}
    register(db, devices)
    agent = AgentProcess(tmp_path, data, mosquitto.url, upstream_broker.url,
                         "[queue]\nmax_dead_letters = 1000000\n")
    procs.append(agent)
    agent.start()
    sim = FleetSim(mosquitto.url, devices, outbox=False, client_id="attacker")
    sims.append(sim)

    def good(seq: int) -> bytes:
        return reading_bytes("wl-0001", 1, seq, "water_level", False)

    for seq in range(1, replays + 1):  # readings that will be replayed
        sim.publish("wl-0001", 1, seq, good(seq))
    wait_until(lambda: sim.acked("wl-0001", 1) == replays, 30, "the good readings")
    rng = random.Random(7)
    payloads = list(hostile_payloads(n, rng, good))
    warm = len(payloads) // 10
    for topic, payload, _ in payloads[:warm]:
        sim.raw(topic, payload)
    wait_until(lambda: sim.backlog() == 0, 60, "the warm-up sent")
    time.sleep(1.0)
    rss0 = agent.rss_kb()
    t0 = time.monotonic()
    for i, (topic, payload, _) in enumerate(payloads[warm:]):
        sim.raw(topic, payload)
        if i % (n // 10 + 1) == 0:  # replays mixed in: duplicates, not dead letters
            for seq in range(1, replays + 1, 10):
                sim.raw("nodes/wl-0001/up", good(seq))
    replayed = sum(1 for i in range(len(payloads) - warm) if i % (n // 10 + 1) == 0) \
        * len(range(1, replays + 1, 10))

    def processed() -> int:
        conn = sqlite3.connect(db, timeout=10)
        try:
            c = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        finally:
            conn.close()
        return c.get("dead_letters", 0) + c.get("duplicates", 0)
    # Empty retained statuses are dropped silently (a cleared status); none here is empty.
    wait_until(lambda: processed() >= n + replayed, 60 + n / 100, "every payload handled")
    elapsed = time.monotonic() - t0
    time.sleep(1.0)
    rss1 = agent.rss_kb()
    assert agent.alive()
    sim.publish("wl-0001", 1, replays + 1, good(replays + 1))  # still serving
    wait_until(lambda: sim.acked("wl-0001", 1) == replays + 1, 15, "a good reading after")
    assert agent.stop() == 0

    conn = sqlite3.connect(db)
    try:
        reasons = conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason"
                               " ORDER BY 2 DESC").fetchall()
        total = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        empty = conn.execute("SELECT count(*) FROM dead_letters WHERE reason = ''").fetchone()
        counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
        stored = conn.execute("SELECT count(*) FROM readings").fetchone()[0] \
            + counters.get("forwarded", 0)
    finally:
        conn.close()
    assert total == n and empty == (0,)
    assert counters["duplicates"] == replayed
    assert stored == replays + 1  # nothing hostile became a reading
    growth = rss1 - rss0
    assert growth < 8 * 1024, f"RSS grew {growth} kB over {n - warm} hostile payloads"
    top = ", ".join(f"{r} ({c})" for r, c in reasons[:6])
    print(f"\n(e) {n} hostile payloads: all {total} in the dead-letter queue with a reason "
          f"({len(reasons)} distinct; most common: {top}); {replayed} replays counted as "
          f"duplicates; {(n - warm) / elapsed:.0f} payloads/s; agent RSS {rss0} kB -> "
          f"{rss1} kB ({growth:+d} kB)")
