"""Node statuses forwarded upstream: retained, durable, latest wins, the last will too.

Real brokers throughout: node -> local mosquitto -> agent -> upstream mosquitto."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import cbor2
import paho.mqtt.client as mqtt
import pytest
from edge_helpers import AgentThread, SimNode, register, status_fields, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from status_watch import StatusWatcher
from stream_helpers import AgentProcess

from edge_agent.cli import main
from edge_agent.store import Store
from edge_agent.validate import Status
from hil_tests.mosquitto import Mosquitto

StartAgent = Callable[..., AgentThread]
DEVICES = {"wl-0001": "water_level", "bt-0001": "boat"}


def status(dev: str, uptime: int, online: bool = True) -> bytes:
    if not online:  # the last will: v, dev, online only
        return cbor2.dumps({"v": 1, "dev": dev, "online": False}, canonical=True)
    return cbor2.dumps({"v": 1, "dev": dev, "online": True, "fw": "0.4.0", "boot": 3,
                        "batt": 3.91, "rssi": -67, "link": "wifi", "uptime": uptime,
                        "interval": 60}, canonical=True)


def retained(url: str, watchers: list[StatusWatcher], devices: set[str]
             ) -> dict[str, tuple[bytes, bool]]:
    """What a subscriber arriving now gets: the upstream's retained status per device."""
    w = StatusWatcher(url, f"ioc-late-{len(watchers)}")
    watchers.append(w)
    wait_until(lambda: set(w.latest()) >= devices, 10, f"retained statuses of {devices}")
    return w.latest()


def pending(db: Path) -> dict[str, bytes]:
    store = Store(db)
    try:
        return store.pending_statuses()
    finally:
        store.close()


def is_subsequence(part: list[bytes], whole: list[bytes]) -> bool:
    it = iter(whole)
    return all(p in it for p in part)


def test_status_reaches_upstream_retained_byte_for_byte(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], watchers: list[StatusWatcher], start_agent: StartAgent) -> None:
    db = tmp_path / "data" / "agent.db"
    register(db, DEVICES)
    live = StatusWatcher(upstream_broker.url, "ioc-live")
    watchers.append(live)
    agent = start_agent(mosquitto.url, upstream_broker.url)
    nodes += [SimNode(mosquitto.url, d, r) for d, r in DEVICES.items()]
    sent = [status("wl-0001", u) for u in (10, 11, 12)]
    for p in sent:  # quickly: some may be replaced in the queue before they leave
        nodes[0].client.publish("nodes/wl-0001/status", p, qos=1, retain=True)
    nodes[1].client.publish("nodes/bt-0001/status", status("bt-0001", 5), qos=1, retain=True)

    wait_until(lambda: live.of("wl-0001")[-1:] == sent[-1:], 10, "the latest status upstream")
    wait_until(lambda: not pending(db), 10, "the status queue emptied by PUBACKs")
    got = live.of("wl-0001")
    assert is_subsequence(got, sent) and len(set(got)) == len(got), "in order, no repeat"
    assert retained(upstream_broker.url, watchers, set(DEVICES)) == {
        "wl-0001": (sent[-1], True), "bt-0001": (status("bt-0001", 5), True)}

    # The broker sends the retained statuses again on every subscribe (an agent restart):
    # an unchanged status is no change and is not forwarded again.
    agent.stop()
    before = len(live.of("wl-0001"))
    start_agent(mosquitto.url, upstream_broker.url)
    nodes[1].client.publish("nodes/bt-0001/status", status("bt-0001", 6), qos=1, retain=True)
    wait_until(lambda: live.of("bt-0001")[-1:] == [status("bt-0001", 6)], 10, "bt-0001's")
    assert len(live.of("wl-0001")) == before
    wait_until(lambda: not pending(db), 10, "the status queue emptied")
    store = Store(db)
    c = store.counters()  # every status was either forwarded or replaced before it left
    assert c["statuses_forwarded"] + c.get("statuses_replaced", 0) == len(sent) + 2
    store.close()


def test_upstream_down_statuses_queued_latest_wins(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], watchers: list[StatusWatcher], start_agent: StartAgent,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "data" / "agent.db"
    register(db, DEVICES)
    # A persistent session: the IOC's queue keeps what arrives while it is away.
    live = StatusWatcher(upstream_broker.url, "ioc-live", clean=False)
    watchers.append(live)
    start_agent(mosquitto.url, upstream_broker.url, queue__max_rows=5)
    wl, bt = SimNode(mosquitto.url, "wl-0001"), SimNode(mosquitto.url, "bt-0001", "boat")
    nodes += [wl, bt]
    wl.client.publish("nodes/wl-0001/status", status("wl-0001", 1), qos=1, retain=True)
    wait_until(lambda: live.of("wl-0001") == [status("wl-0001", 1)], 10, "the first status")
    wait_until(lambda: not pending(db), 10, "its PUBACK deleting it")

    upstream_broker.stop()
    later = [status("wl-0001", u) for u in (2, 3, 4)]
    for i, p in enumerate(later):
        wl.client.publish("nodes/wl-0001/status", p, qos=1, retain=True)
        for seq in range(1, 21):  # readings over queue.max_rows: the oldest are dropped
            wl.publish(1, i * 20 + seq)
    bt.client.publish("nodes/bt-0001/status", status("bt-0001", 9), qos=1, retain=True)
    wait_until(lambda: wl.acked(1) == 60, 10, "readings acked during the outage")
    wait_until(lambda: pending(db) == {"wl-0001": later[-1], "bt-0001": status("bt-0001", 9)},
               10, "one queued status per device, the latest")
    store = Store(db)
    assert store.queue_depth()[0] <= 5  # the drop policy ran; the statuses stayed
    assert store.counters()["statuses_replaced"] == 2
    store.close()
    capsys.readouterr()
    assert main(["status", "--data-dir", str(tmp_path / "data")]) == 0
    assert status_fields(capsys.readouterr().out)["statuses"].startswith(
        "2 waiting for upstream, 1 forwarded, 2 replaced")
    time.sleep(1.0)  # a few failed reconnects

    upstream_broker.start()
    wait_until(lambda: live.of("wl-0001")[-1:] == later[-1:], 30, "the latest after the outage")
    wait_until(lambda: live.of("bt-0001") == [status("bt-0001", 9)], 10, "bt-0001's")
    wait_until(lambda: not pending(db), 10, "the status queue emptied")
    # The replaced ones never went: after the outage only the latest arrives.
    assert live.of("wl-0001") == [status("wl-0001", 1), later[-1]]
    assert retained(upstream_broker.url, watchers, set(DEVICES)) == {
        "wl-0001": (later[-1], True), "bt-0001": (status("bt-0001", 9), True)}


def test_offline_will_is_forwarded(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        watchers: list[StatusWatcher], start_agent: StartAgent) -> None:
    db = tmp_path / "data" / "agent.db"
    register(db, DEVICES)
    live = StatusWatcher(upstream_broker.url, "ioc-live")
    watchers.append(live)
    start_agent(mosquitto.url, upstream_broker.url)
    dev = "wl-0001"
    node = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=dev, clean_session=True)
    node.will_set(f"nodes/{dev}/status", status(dev, 0, online=False), qos=1, retain=True)
    node.connect("127.0.0.1", mosquitto.port, keepalive=30)
    node.loop_start()
    try:
        node.publish(f"nodes/{dev}/status", status(dev, 7), qos=1, retain=True).wait_for_publish(5)
        wait_until(lambda: live.of(dev) == [status(dev, 7)], 10, "the online status upstream")
    finally:
        node.loop_stop()
        sock = node.socket()
        assert sock is not None
        sock.close()  # no DISCONNECT: the broker publishes the will
    wait_until(lambda: live.of(dev) == [status(dev, 7), status(dev, 0, online=False)], 10,
               "the offline will upstream")
    assert retained(upstream_broker.url, watchers, {dev})[dev] == (
        status(dev, 0, online=False), True)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT online FROM device_state WHERE device = ?", (dev,)
                        ).fetchone() == (0,)
    conn.close()


def test_status_committed_then_agent_killed_is_still_delivered(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], watchers: list[StatusWatcher],
        procs: list[AgentProcess]) -> None:
    data = tmp_path / "data"
    db = data / "agent.db"
    register(db, DEVICES)
    upstream_broker.stop()  # the status cannot leave before the kill
    agent = AgentProcess(tmp_path, data, mosquitto.url, upstream_broker.url)
    procs.append(agent)
    agent.start()
    wl = SimNode(mosquitto.url, "wl-0001")
    nodes.append(wl)
    p = status("wl-0001", 42)
    wl.client.publish("nodes/wl-0001/status", p, qos=1, retain=True)
    wait_until(lambda: pending(db) == {"wl-0001": p}, 10, "the status committed")
    agent.kill9()
    # The broker delivers the retained status again on the next subscribe: clear it, so
    # what reaches the upstream can only come from the agent's store.
    wl.client.publish("nodes/wl-0001/status", b"", qos=1, retain=True).wait_for_publish(5)

    upstream_broker.start()
    live = StatusWatcher(upstream_broker.url, "ioc-live")
    watchers.append(live)
    agent.start()
    wait_until(lambda: live.of("wl-0001") == [p], 20, "the status upstream after the restart")
    wait_until(lambda: not pending(db), 10, "the status queue emptied")
    assert retained(upstream_broker.url, watchers, {"wl-0001"})["wl-0001"] == (p, True)


def test_store_keeps_the_latest_unsent_status_per_device(tmp_path: Path) -> None:
    store = Store(tmp_path / "agent.db")
    try:
        def st(dev: str, u: int) -> Status:
            return Status(dev, True, {"v": 1, "dev": dev, "online": True}, status(dev, u))
        store.insert_batch([st("a", 1), st("b", 1)], now=1.0)
        (a1, b1) = store.next_statuses(0, 10)
        store.insert_batch([st("a", 2)], now=2.0)  # replaces a1 while "in flight"
        store.insert_batch([st("b", 1)], now=3.0)  # the same bytes again: no change
        assert store.pending_statuses() == {"a": status("a", 2), "b": status("b", 1)}
        (a2,) = store.next_statuses(b1.id, 10)
        assert a2.id > b1.id > a1.id
        store.delete([], status_ids=[a1.id, b1.id])  # a1's PUBACK does not delete a2
        assert store.pending_statuses() == {"a": status("a", 2)}
        store.delete([], status_ids=[a2.id])
        assert store.pending_statuses() == {}
        assert store.counters()["statuses_forwarded"] == 2
        assert store.counters()["statuses_replaced"] == 1
    finally:
        store.close()
