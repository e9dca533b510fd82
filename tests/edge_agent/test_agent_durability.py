"""kill -9 of the `edge-agent` process mid-stream: nothing acked is lost, nothing is lost."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from edge_helpers import (
    SimNode,
    Upstream,
    assert_per_device_order,
    db_keys,
    first_occurrences,
    kill9,
    register,
    start_agent_process,
    wait_until,
    write_toml,
)

from hil_tests.mosquitto import Mosquitto

DEVICES = {"wl-0001": "water_level", "wl-0002": "water_level", "wl-0003": "water_level",
           "bt-0001": "boat", "tr-0001": "truck"}
BOOTS = (1, 2)
PER_BOOT = 400  # 5 devices x 2 boots x 400 = 4,000 readings


def check_acked_were_durable(nodes: list[SimNode], db: Path, up: Upstream) -> int:
    """Right after a kill: every reading a node got an end-to-end ack for is in the
    database, or had already been forwarded (and so is upstream). Returns how many."""
    acked = {(n.dev, b, s) for n in nodes for b in BOOTS for s in range(1, n.acked(b) + 1)}
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    in_db = db_keys(db)
    time.sleep(1.0)  # forwarded rows were PUBACKed upstream: let the subscriber get them
    missing = acked - in_db - up.keys()
    assert not missing, f"{len(missing)} acked readings lost, e.g. {sorted(missing)[:5]}"
    return len(acked)


@pytest.mark.durability
def test_sigkill_mid_stream_loses_nothing(tmp_path: Path, mosquitto: Mosquitto,
                                          upstream_broker: Mosquitto, nodes: list[SimNode],
                                          subscribers: list[Upstream]) -> None:
    data = tmp_path / "data"
    db = data / "agent.db"
    register(db, DEVICES)
    conf = write_toml(tmp_path / "agent.toml", data, mosquitto.url, upstream_broker.url)
    log = tmp_path / "agent.log"
    up = Upstream(upstream_broker.url)
    subscribers.append(up)

    proc = start_agent_process(conf, log)
    try:
        wait_until(lambda: "subscribed to nodes" in log.read_text(), 15, "the agent subscribing")
        nodes += [SimNode(mosquitto.url, d, r) for d, r in DEVICES.items()]
        sent = {(n.dev, b, s) for n in nodes for b in BOOTS for s in range(1, PER_BOOT + 1)}

        def publish() -> None:
            # Paced so the stream outlives the kills; the broker queues while the agent is
            # down (the agent's session is persistent), as it would in the field.
            for boot in BOOTS:
                for seq in range(1, PER_BOOT + 1):
                    for n in nodes:
                        n.publish(boot, seq, alarm=seq % 41 == 0 and n.role != "truck")
                    time.sleep(0.002)

        t0 = time.monotonic()
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()

        kills = []
        for threshold in (800, 2000):
            wait_until(lambda t=threshold: len(up.keys()) >= t, 60, f"{threshold} upstream")
            kill9(proc)
            kills.append((len(up.keys()), check_acked_were_durable(nodes, db, up)))
            proc = start_agent_process(conf, log)

        publisher.join(60)
        wait_until(lambda: up.keys() >= sent, 90, "every reading upstream")
        elapsed = time.monotonic() - t0
        wait_until(lambda: all(n.acked(b) == PER_BOOT for n in nodes for b in BOOTS), 20,
                   "every reading acked")
    finally:
        if proc.poll() is None:
            kill9(proc)

    got = up.snapshot()
    assert {(d, b, s) for d, b, s, _ in got} == sent
    assert_per_device_order(got)
    assert [e for n in nodes for e in n.errors] == []
    assert all(acked > 0 for _, acked in kills), "each kill came after some acks"
    print(f"\nkill -9 twice: {len(sent)} readings, all upstream in {elapsed:.1f} s, "
          f"{len(got) - len(first_occurrences(got))} duplicates upstream, "
          f"(upstream, acked) at the kills: {kills}")
