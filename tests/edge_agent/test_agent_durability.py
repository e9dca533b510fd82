"""kill -9 mid-stream, with real brokers and the real `edge-agent` process: (a) the agent
killed at random moments, repeatedly, while the nodes publish readings and now and then a
status change; (c) the local broker killed while the nodes keep
their readings in an outbox until the end-to-end ack.

Sizes scale with $EDGE_SCALE (default 0.1); EDGE_SCALE=1 runs the full sizes (20,000
readings from 200 devices, 10 kills; 10,000 readings with 5 broker kills). $EDGE_SEED
fixes the kill moments. Run with -s for the figures.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from pathlib import Path

import pytest
from edge_helpers import (
    Upstream,
    assert_per_device_order,
    first_occurrences,
    register,
    wait_until,
)
from fleet_sim import FleetSim
from status_watch import StatusWatcher
from stream_helpers import (
    AckedOnDisk,
    AgentProcess,
    acked_keys,
    all_acked,
    db_state,
    fleet,
    per_device,
    publish_paced,
    scaled,
    status_changes,
    stream,
)

from edge_agent.config import Config
from edge_agent.forward import DELETE_AT
from hil_tests.mosquitto import Mosquitto


@pytest.mark.durability
def test_agent_killed_at_random_moments_loses_nothing(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        subscribers: list[Upstream], procs: list[AgentProcess], sims: list[FleetSim],
        watchers: list[StatusWatcher]) -> None:
    devices = fleet(scaled(200, 30))
    n = scaled(20_000, 2_000)
    kills = scaled(10, 3)
    rng = random.Random(int(os.environ.get("EDGE_SEED", time.time())))
    data = tmp_path / "data"
    db = data / "agent.db"
    register(db, devices)
    up = Upstream(upstream_broker.url)
    subscribers.append(up)
    live = StatusWatcher(upstream_broker.url, "ioc-statuses")
    watchers.append(live)
    agent = AgentProcess(tmp_path, data, mosquitto.url, upstream_broker.url)
    procs.append(agent)
    agent.start()
    sim = FleetSim(mosquitto.url, devices, outbox=False, check=AckedOnDisk(db))
    sims.append(sim)
    readings = stream(devices, n, boots=2)  # every node reboots halfway
    sent = {(d, b, s) for d, b, s, _ in readings}
    statuses = status_changes(readings, 10, rng)  # a status change every 10 readings or so
    published = per_device(statuses)
    # Paced so the stream outlives the kills (each restart costs about a second).
    t0 = time.monotonic()
    publisher = publish_paced(sim, readings, devices, rate=n / (kills * 1.6 + 2),
                              statuses=statuses)

    at_kills = []
    for _ in range(kills):
        time.sleep(rng.uniform(0.2, 1.5))  # a random moment: startup, mid-commit, anywhere
        agent.kill9()
        acked = acked_keys(sim, readings)
        in_db, check, _ = db_state(db)
        assert check == "ok"
        # Rows PUBACKed upstream were deleted: the subscriber has them, or soon will (the
        # agent is dead, so nothing new reaches the upstream meanwhile).
        try:
            wait_until(lambda a=acked - in_db: not a - up.keys(), 10, "the subscriber")
        except AssertionError:
            missing = acked - in_db - up.keys()
            raise AssertionError(f"{len(missing)} acked readings lost, e.g. "
                                 f"{sorted(missing)[:5]}") from None
        at_kills.append((len(acked), len(up.keys())))
        agent.start(wait=False)
    publisher.join(120)
    wait_until(lambda: up.keys() >= sent, 120, "every reading upstream")
    elapsed = time.monotonic() - t0
    wait_until(all_acked(sim, readings), 30, "every reading acked")
    wait_until(lambda: all(live.of(d)[-1:] == p[-1:] for d, p in published.items()), 30,
               "every device's last status upstream")
    wait_until(lambda: not status_queue(db), 10, "the status queue emptied")
    seen = {d: live.of(d) for d in published}
    late = StatusWatcher(upstream_broker.url, "ioc-late")
    watchers.append(late)
    wait_until(lambda: set(late.latest()) >= set(published), 10, "retained statuses")
    retained = late.latest()
    assert agent.stop() == 0
    # What a subscriber arriving now gets: every device's last published status, retained.
    assert retained == {d: (p[-1], True) for d, p in published.items()}
    # What the upstream saw, per device: in publish order; a replaced status may be
    # skipped, the one in flight at a kill may come again (right after itself).
    repeats = 0
    for dev, got in seen.items():
        order = {p: i for i, p in enumerate(published[dev])}
        assert set(got) <= set(order), f"{dev}: a status it never published"
        idx = [order[p] for p in got]
        assert idx == sorted(idx), f"{dev}: statuses out of publish order: {idx}"
        repeats += len(idx) - len(set(idx))
        assert len(idx) - len(set(idx)) <= kills, f"{dev}: repeats {idx}"
    n_status = sum(len(p) for p in published.values())

    got = up.snapshot()
    assert {(d, b, s) for d, b, s, _ in got} == sent
    assert_per_device_order(got)
    assert sim.errors == []
    _, check, counters = db_state(db)
    assert check == "ok"
    dup_up = len(got) - len(first_occurrences(got))
    # Duplicates come only from what was in flight at a kill: upstream, the forwarder's
    # window plus the acked rows not yet deleted; at the agent, the broker's inflight
    # window (committed, PUBACK not sent yet).
    window = Config.upstream_inflight  # the default: AgentProcess does not set it
    assert dup_up <= kills * (window + DELETE_AT), dup_up
    assert counters.get("duplicates", 0) <= kills * 20, counters
    # Each status was queued once (its retained copy, sent again on every restart, is no
    # change), then forwarded or replaced by the next before it left.
    assert counters.get("statuses_forwarded", 0) + counters.get("statuses_replaced", 0) \
        == n_status, counters
    assert any(acked for acked, _ in at_kills), "the kills came after some acks"
    print(f"\n(a) kill -9 x{kills} at random moments: {n} readings from {len(devices)} devices, "
          f"all upstream in order in {elapsed:.1f} s; duplicates upstream {dup_up} "
          f"(bound {kills * (window + DELETE_AT)}), at the agent {counters.get('duplicates', 0)} "
          f"(bound {kills * 20}); (acked, upstream) at the kills: {at_kills}; "
          f"{n_status} statuses from {len(published)} devices: upstream "
          f"{sum(len(g) for g in seen.values())} in publish order, {repeats} repeats, "
          f"{counters.get('statuses_replaced', 0)} replaced, the last of each retained")


def status_queue(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return int(conn.execute("SELECT count(*) FROM status_out").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.durability
def test_local_broker_killed_while_nodes_keep_their_outbox(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        subscribers: list[Upstream], procs: list[AgentProcess], sims: list[FleetSim]) -> None:
    devices = fleet(scaled(100, 20))
    n = scaled(10_000, 1_500)
    kills = scaled(5, 2)
    rng = random.Random(int(os.environ.get("EDGE_SEED", time.time())))
    data = tmp_path / "data"
    register(data / "agent.db", devices)
    up = Upstream(upstream_broker.url)
    subscribers.append(up)
    agent = AgentProcess(tmp_path, data, mosquitto.url, upstream_broker.url)
    procs.append(agent)
    agent.start()
    sim = FleetSim(mosquitto.url, devices, outbox=True, resend_after=2.0)
    sims.append(sim)
    readings = stream(devices, n)
    sent = {(d, b, s) for d, b, s, _ in readings}
    t0 = time.monotonic()
    publisher = publish_paced(sim, readings, devices, rate=n / (kills * 2.0 + 2))
    for _ in range(kills):
        time.sleep(rng.uniform(0.5, 1.5))
        mosquitto.kill()  # SIGKILL: whatever it had not saved is gone
        time.sleep(rng.uniform(0.1, 1.0))
        mosquitto.start()
    publisher.join(120)
    wait_until(lambda: sim.unacked() == 0, 120, "every outbox emptied by acks")
    wait_until(lambda: up.keys() >= sent, 60, "every reading upstream")
    elapsed = time.monotonic() - t0
    assert agent.alive()
    assert agent.stop() == 0
    got = up.snapshot()
    assert {(d, b, s) for d, b, s, _ in got} == sent
    assert sim.errors == []
    print(f"\n(c) local broker kill -9 x{kills}: {n} readings from {len(devices)} devices, "
          f"none lost, all upstream in {elapsed:.1f} s; the nodes resent {sim.resent} "
          f"(reconnected {sim.connects - 1} times), {len(got) - n} duplicates upstream")
