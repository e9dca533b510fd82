"""The agent as a service: metrics over HTTP, sd_notify over a real unix socket, the
watchdog, the fleet view (offline events), `status`, `dlq replay`."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
import pytest
from edge_helpers import (
    AgentThread,
    SimNode,
    Upstream,
    agent_config,
    committed_check,
    envelope,
    register,
    start_agent_process,
    status_fields,
    wait_until,
    write_toml,
)
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from edge_agent import service
from edge_agent.cli import main
from edge_agent.fleet import judge
from edge_agent.hooks import Hooks
from edge_agent.sdnotify import Notifier, notify_address, watchdog_interval
from edge_agent.service import service_hooks
from edge_agent.store import DeadLetter, Store
from hil_tests.mosquitto import Mosquitto, free_port

DEVICES = {"wl-0001": "water_level", "bt-0001": "boat"}


class NotifySocket:
    """What systemd does for Type=notify: a unix datagram socket the service writes to."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            with self.lock:
                self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        with self.lock:
            return [(t, m) for t, m in self.messages if key in m]

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def agents() -> Iterator[list[AgentThread]]:
    made: list[AgentThread] = []
    yield made
    for a in made:
        a.stop()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


# --- sd_notify ---

def test_notify_address_and_watchdog_from_the_environment() -> None:
    assert notify_address({}) is None
    assert notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify_address({"NOTIFY_SOCKET": "@sd-abc"}) == b"\0sd-abc"
    assert notify_address({"NOTIFY_SOCKET": "relative/path"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "2"}, pid=2) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notifier_writes_datagrams_systemd_can_read(tmp_path: Path, abstract: bool) -> None:
    name = f"@edge-agent-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
    sock = NotifySocket(b"\0" + name[1:].encode() if abstract else name)
    try:
        n = Notifier({"NOTIFY_SOCKET": name})
        assert n.ready("local up; queue 0")
        assert n.ping()
        assert n.stopping()
        wait_until(lambda: len(sock.messages) == 3, 5, "three datagrams")
        assert [m for _, m in sock.messages] == [
            {"READY": "1", "STATUS": "local up; queue 0"}, {"WATCHDOG": "1"},
            {"STOPPING": "1", "STATUS": "stopping"}]
        n.close()
    finally:
        sock.close()
    # Outside systemd every call is a harmless no-op.
    assert not Notifier({}).ready("x")


def test_agent_process_notifies_ready_watchdog_and_stopping(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto) -> None:
    name = f"@edge-agent-proc-{os.getpid()}"
    sock = NotifySocket(b"\0" + name[1:].encode())
    data = tmp_path / "data"
    register(data / "agent.db", DEVICES)
    conf = write_toml(tmp_path / "agent.toml", data, mosquitto.url, upstream_broker.url)
    log = tmp_path / "agent.log"
    env = {**os.environ, "NOTIFY_SOCKET": name, "WATCHDOG_USEC": "2000000"}
    proc = start_agent_process(conf, log, env=env)
    try:
        wait_until(lambda: sock.with_key("READY"), 20, "READY=1")
        (t_ready, ready), = sock.with_key("READY")
        assert ready["READY"] == "1"
        assert ready["STATUS"].startswith("local up; upstream up; queue 0")
        # Pings every WatchdogSec/2 = 1 s.
        wait_until(lambda: len(sock.with_key("WATCHDOG")) >= 3, 10, "three watchdog pings")
        pings = [t for t, _ in sock.with_key("WATCHDOG")]
        assert all(0.5 < b - a < 3.0 for a, b in zip(pings, pings[1:], strict=False))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    stopping = sock.with_key("STOPPING")
    assert len(stopping) == 1 and stopping[0][1]["STOPPING"] == "1"
    assert "SIGTERM: stopping" in log.read_text()


def test_ready_comes_after_a_grace_when_the_upstream_is_down(
        tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch,
        agents: list[AgentThread]) -> None:
    monkeypatch.setattr(service, "READY_GRACE", 1.5)
    name = str(tmp_path / "notify")
    sock = NotifySocket(name)
    try:
        cfg = agent_config(tmp_path / "data", mosquitto.url, f"mqtt://127.0.0.1:{free_port()}")
        t0 = time.monotonic()
        agents.append(AgentThread(cfg, [service_hooks(cfg, {"NOTIFY_SOCKET": name})]))
        wait_until(lambda: sock.with_key("READY"), 10, "READY=1 despite the upstream")
        (t_ready, ready), = sock.with_key("READY")
        assert t_ready - t0 >= 1.4
        assert ready["STATUS"].startswith("local up; upstream DOWN; queue 0")
    finally:
        sock.close()


class Stall(Hooks):
    """Blocks the ingress thread inside its commit callback while `block` is set."""

    def __init__(self) -> None:
        self.block = threading.Event()
        self.release = threading.Event()
        self.stalled = threading.Event()

    def committed(self, *args: Any) -> None:
        if self.block.is_set():
            self.stalled.set()
            self.release.wait(20)


def test_watchdog_pings_stop_while_a_worker_is_stuck(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], agents: list[AgentThread]) -> None:
    name = str(tmp_path / "notify")
    sock = NotifySocket(name)
    stall = Stall()
    try:
        register(tmp_path / "data" / "agent.db", DEVICES)
        cfg = agent_config(tmp_path / "data", mosquitto.url, upstream_broker.url)
        hooks = service_hooks(cfg, {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1000000"})
        agents.append(AgentThread(cfg, [hooks, stall]))
        wait_until(lambda: len(sock.with_key("WATCHDOG")) >= 2, 10, "pings")
        node = SimNode(mosquitto.url, "wl-0001")
        nodes.append(node)
        stall.block.set()
        node.publish(1, 1)
        assert stall.stalled.wait(10)
        t_stuck = time.monotonic()
        time.sleep(3.0)
        late = [t for t, _ in sock.with_key("WATCHDOG") if t > t_stuck + 1.0]
        assert late == [], "pinged while the ingress loop was stuck"
        stall.block.clear()
        stall.release.set()
        wait_until(lambda: any(t > t_stuck + 3.0 for t, _ in sock.with_key("WATCHDOG")), 5,
                   "pings again once the loop turns")
    finally:
        stall.release.set()
        sock.close()


# --- metrics ---

def test_metrics_endpoint_counts_what_happens(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], subscribers: list[Upstream], agents: list[AgentThread]) -> None:
    register(tmp_path / "data" / "agent.db", DEVICES)
    up = Upstream(upstream_broker.url)
    subscribers.append(up)
    port = free_port()
    cfg = agent_config(tmp_path / "data", mosquitto.url, upstream_broker.url, metrics_port=port,
                       queue__max_rows=5)
    agents.append(AgentThread(cfg, [service_hooks(cfg, {})]))
    wl, stranger = SimNode(mosquitto.url, "wl-0001"), SimNode(mosquitto.url, "wl-0999")
    nodes += [wl, stranger]
    for seq in range(1, 4):
        wl.publish(1, seq)
    wl.publish(1, 2)  # a duplicate
    wl.publish(1, 4, payload=b"\xff\x00")  # bad CBOR: a dead letter without identity
    stranger.publish(1, 1)  # unknown device
    wait_until(lambda: len(up.keys()) == 3, 15, "three readings upstream")
    wait_until(lambda: metric(scrape(port), "edge_agent_readings_forwarded_total") == 3, 10,
               "forwarded counter")
    m = scrape(port)
    assert metric(m, "edge_agent_messages_received_total", kind="up") == 6
    assert metric(m, "edge_agent_messages_committed_total", outcome="stored") == 3
    assert metric(m, "edge_agent_duplicates_total") == 1
    assert metric(m, "edge_agent_messages_rejected_total", reason="bad_cbor") == 1
    assert metric(m, "edge_agent_messages_rejected_total", reason="unknown_device") == 1
    assert metric(m, "edge_agent_messages_rejected_total", reason="pack") == 0
    assert metric(m, "edge_agent_commit_seconds_count") >= 1
    assert metric(m, "edge_agent_upstream_connected") == 1
    assert metric(m, "edge_agent_local_connected") == 1
    wait_until(lambda: metric(scrape(port), "edge_agent_dead_letters") == 2, 5, "dlq gauge")

    upstream_broker.stop()
    for seq in range(4, 13):  # 9 readings into a queue of at most 5: 4 dropped
        wl.publish(1, seq)
    wait_until(lambda: wl.acked(1) == 12, 10, "acks while the upstream is down")

    def settled() -> bool:
        s = scrape(port)
        return (metric(s, "edge_agent_upstream_connected") == 0
                and metric(s, "edge_agent_queue_readings") == 5)
    wait_until(settled, 10, "the gauges to follow")
    m = scrape(port)
    assert metric(m, "edge_agent_readings_dropped_total", policy="overflow") == 4
    assert metric(m, "edge_agent_readings_dropped_total", policy="age") == 0
    assert metric(m, "edge_agent_queue_bytes") > 0
    assert metric(m, "edge_agent_queue_oldest_age_seconds") >= 0
    assert metric(m, "edge_agent_devices", state="online") == 1  # the stranger is no device
    # Loopback only: this machine's other address (when it has one) gets no answer.
    other = _non_loopback_address()
    if other:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((other, port), timeout=2).close()


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


# --- the fleet view ---

def test_judge_offline_rules() -> None:
    now = 1000.0
    rows = [
        ("a", 990.0, 1, 5, None, None),     # 10 s silent, 3 x 5 s allowed: online
        ("b", 980.0, 1, 5, None, None),     # 20 s silent: offline
        ("c", 980.0, 1, None, 4.0, None),   # observed interval 4 s: offline
        ("d", 980.0, 1, None, None, None),  # no interval known: not judged
        ("e", 999.0, 0, 60, None, None),    # its last will: offline at once
        ("f", 995.0, 1, 5, None, 990.0),    # offline since 990, heard at 995: back
        ("g", 900.0, 1, 5, None, 950.0),    # offline, still silent: stays offline
    ]
    j = judge(rows, now, 3.0, heard_from=0.0)
    assert {(d, k) for d, k, _ in j.events} == {("b", "offline"), ("c", "offline"),
                                                ("e", "offline"), ("f", "online")}
    assert (j.online, j.offline) == (3, 4)
    # Silence counts from when the agent could hear: right after a (re)connect, nobody
    # is silent yet; with the local link down, silence is not judged at all.
    assert {d for d, *_ in judge(rows, now, 3.0, heard_from=995.0).events} == {"e", "f"}
    assert {d for d, *_ in judge(rows, now, 3.0, heard_from=None).events} == {"e", "f"}


def test_silent_device_goes_offline_and_comes_back(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], agents: list[AgentThread],
        caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    register(data / "agent.db", DEVICES)
    port = free_port()
    events: list[tuple[str, dict[str, Any]]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ioc-events")
    sub.on_message = lambda c, u, m: events.append((m.topic, cbor2.loads(m.payload)))
    sub.connect("127.0.0.1", upstream_broker.port)
    sub.subscribe("nodes/+/event", 1)
    sub.loop_start()
    caplog.set_level("INFO", logger="edge_agent")
    try:
        cfg = agent_config(data, mosquitto.url, upstream_broker.url, metrics_port=port,
                           offline_multiple=2)
        agents.append(AgentThread(cfg, [service_hooks(cfg, {})]))
        wl, boat = SimNode(mosquitto.url, "wl-0001"), SimNode(mosquitto.url, "bt-0001", "boat")
        nodes += [wl, boat]
        wl.client.publish("nodes/wl-0001/status", cbor2.dumps(
            {"v": 1, "dev": "wl-0001", "online": True, "interval": 2}), qos=1, retain=True)
        # The boat teaches its interval by its spacing: 4 gaps of 1.5 s (3 are needed;
        # a gap under 1 s, if the machine is slow, does not count).
        for seq in (1, 2, 3, 4, 5):
            if seq > 1:
                time.sleep(1.5)
            boat.publish(1, seq)
            wl.publish(1, seq)
        t_last = time.monotonic()
        wait_until(lambda: len(events) == 2, 15, "two offline events upstream")
        assert time.monotonic() - t_last >= 3.0  # 2 x 1.5 s of silence, at least
        assert sorted((t, e["event"]) for t, e in events) == [
            ("nodes/bt-0001/event", "offline"), ("nodes/wl-0001/event", "offline")]
        assert all(e["v"] == 1 and e["dev"] == t.split("/")[1] for t, e in events)
        assert "device wl-0001 offline: silent for" in caplog.text
        m = scrape(port)
        assert metric(m, "edge_agent_device_events_total", kind="offline") == 2
        assert metric(m, "edge_agent_devices", state="offline") == 2

        # Heard again, now on a slow interval (so silence does not take it down again).
        wl.client.publish("nodes/wl-0001/status", cbor2.dumps(
            {"v": 1, "dev": "wl-0001", "online": True, "interval": 600}), qos=1, retain=True)
        wl.publish(1, 6)
        wait_until(lambda: len(events) == 3, 10, "the online event")
        assert (events[2][0], events[2][1]["event"]) == ("nodes/wl-0001/event", "online")
        wait_until(lambda: metric(scrape(port), "edge_agent_devices", state="online") == 1, 5,
                   "the gauge")
        # Its last will (what the broker publishes when the node's connection dies).
        wl.client.publish("nodes/wl-0001/status", cbor2.dumps(
            {"v": 1, "dev": "wl-0001", "online": False}), qos=1, retain=True)
        wait_until(lambda: len(events) == 4, 10, "the last will's event")
        assert events[3][1]["event"] == "offline" and "last will" in events[3][1]["detail"]
    finally:
        sub.disconnect()
        sub.loop_stop()
    store = Store(data / "agent.db")
    try:
        kinds = [(e["device"], e["kind"], e["published"]) for e in store.events()]
        assert sorted(kinds) == [("bt-0001", "offline", 1), ("wl-0001", "offline", 1),
                                 ("wl-0001", "offline", 1), ("wl-0001", "online", 1)]
    finally:
        store.close()


def test_status_shows_the_agent_links_queue_devices_and_events(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], agents: list[AgentThread],
        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    register(data / "agent.db", DEVICES)
    cfg = agent_config(data, mosquitto.url, upstream_broker.url)
    agent = AgentThread(cfg, [service_hooks(cfg, {})])
    agents.append(agent)
    wl = SimNode(mosquitto.url, "wl-0001")
    nodes.append(wl)
    wl.publish(1, 1)
    wl.publish(1, 2, payload=envelope("wl-0001", 1, 2, pack=[{-3: 1, 0: "depth", 2: 1.0}]))
    wait_until(lambda: wl.acked(1) == 2, 10, "acks")
    upstream_broker.stop()

    def reported_down() -> bool:
        store = Store(data / "agent.db")
        try:
            return store.agent_state().get("upstream", ("",))[0].startswith("disconnected")
        finally:
            store.close()
    wait_until(reported_down, 15, "the agent to report the upstream down")
    for seq in range(3, 6):
        wl.publish(1, seq)
    wait_until(lambda: wl.acked(1) == 5, 10, "acks")
    capsys.readouterr()
    assert main(["status", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    fields = status_fields(out)
    assert fields["agent"].startswith(f"running, pid {os.getpid()}, reported")
    assert fields["upstream"].startswith("disconnected for")
    assert fields["local broker"].startswith("connected for")
    assert fields["queue"].startswith("3 readings")
    assert fields["dlq now"] == "1"
    assert fields["devices"] == "2: 1 online, 0 offline, 1 never heard from"
    lines = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert ["wl-0001", "water_level", "online"] == lines[0][:3]
    assert ["bt-0001", "boat", "unknown", "last", "seen", "never"] == lines[1]

    agent.stop()
    assert main(["status", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    fields = status_fields(out)
    assert re.fullmatch(r"stopped \d s ago", fields["agent"])
    assert re.fullmatch(r"disconnected for \d s \(when the agent last reported\)",
                        fields["upstream"])


# --- dead letters: replay ---

def test_dlq_replay_ingests_dead_letters_once_their_device_is_registered(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], subscribers: list[Upstream], agents: list[AgentThread],
        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    db = data / "agent.db"
    register(db, {"wl-0001": "water_level", "bt-0002": "water_level"})  # wrong role
    up = Upstream(upstream_broker.url)
    subscribers.append(up)
    cfg = agent_config(data, mosquitto.url, upstream_broker.url)
    agents.append(AgentThread(cfg, [service_hooks(cfg, {})]))
    newbie = SimNode(mosquitto.url, "wl-0042", check=committed_check(db))  # not registered yet
    boat = SimNode(mosquitto.url, "bt-0002", "boat")
    nodes += [newbie, boat]
    for seq in (1, 2, 3):
        newbie.publish(1, seq)
    boat.publish(1, 1)  # role mismatch: dead letter with identity, its seq closed (acked)
    newbie.publish(1, 4, payload=b"\x9f")  # never valid
    wait_until(lambda: boat.acked(1) == 1, 10, "the boat's dead letter acked")
    store = Store(db)
    wait_until(lambda: store.dead_letter_count() == 5, 10, "five dead letters")
    assert newbie.acks == {}

    capsys.readouterr()
    assert main(["dlq", "replay", "--all", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.count("still rejected: unknown device") == 4
    assert "still rejected: role: boat but the registry says water_level" in out
    assert out.rstrip().endswith("replayed 5: 5 still rejected")

    register(db, {"wl-0042": "water_level", "bt-0002": "boat"})  # provisioning catches up
    # The CLI acks what it stored, end to end, on the local broker the config names (with
    # the agent's credentials), once the replay is committed (the node's check).
    conf = write_toml(tmp_path / "cli.toml", data, mosquitto.url, upstream_broker.url)
    replay = ["dlq", "replay", "--config", str(conf)]
    assert main([*replay, "--reason", "unknown device"]) == 0
    out = capsys.readouterr().out
    assert "still rejected: bad CBOR" in out
    assert "replayed 4: 1 still rejected, 3 stored\nsent end-to-end acks to 1 device" in out
    wait_until(lambda: newbie.acked(1) == 3, 10, "the ack covering the replayed readings")
    assert main([*replay, "--all"]) == 0
    out = capsys.readouterr().out
    assert "replayed 2: 1 still rejected, 1 stored\nsent end-to-end acks to 1 device" in out
    assert main([*replay, "--all"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("replayed 1: 1 still rejected")

    # The running agent forwards what was replayed; a resend by the node is a duplicate.
    want = {("wl-0042", 1, 1), ("wl-0042", 1, 2), ("wl-0042", 1, 3), ("bt-0002", 1, 1)}
    wait_until(lambda: up.keys() >= want, 15, "the replayed readings upstream")
    time.sleep(1.2)  # the agent rereads the registry on a miss at most once a second
    newbie.publish(1, 2)
    wait_until(lambda: store.counters().get("duplicates") == 1, 10, "the resend deduplicated")
    assert newbie.acks == {1: 3} and newbie.errors == [] and boat.errors == []
    assert store.counters()["dead_letters_replayed"] == 4
    assert store.dead_letter_count() == 1
    store.close()
    assert main(["dlq", "replay", "999", "--data-dir", str(data)]) == 1
    assert capsys.readouterr().err == "edge-agent: no dead letter 999\n"
    assert main(["dlq", "replay", "--data-dir", str(data)]) == 1


def test_dlq_replay_with_the_local_broker_down_still_ingests_and_warns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    db = data / "agent.db"
    data.mkdir()
    store = Store(db)
    store.insert_batch([DeadLetter("nodes/wl-0042/up", envelope("wl-0042", 1, 1),
                                   "unknown device")])
    store.close()
    register(db, {"wl-0042": "water_level"})
    closed = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    conf = write_toml(tmp_path / "cli.toml", data, closed, closed)
    assert main(["dlq", "replay", "--all", "--config", str(conf)]) == 0
    out, err = capsys.readouterr()
    assert out.rstrip().endswith("replayed 1: 1 stored")
    assert err.startswith(f"edge-agent: warning: end-to-end acks of 1 device not sent ({closed}:")
    assert err.count("\n") == 1
    store = Store(db)
    assert store.ack_levels("wl-0042") == {1: 1}
    store.close()


def test_schema_1_databases_are_migrated(tmp_path: Path) -> None:
    db = tmp_path / "agent.db"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.executescript("DROP TABLE events; DROP TABLE agent_state;"
                       " ALTER TABLE device_state DROP COLUMN seen_interval;"
                       " ALTER TABLE device_state DROP COLUMN offline_since;"
                       " ALTER TABLE device_state DROP COLUMN seen_samples;"
                       " INSERT INTO device_state (device, last_seen) VALUES ('wl-1', 5.0);"
                       " DROP TRIGGER dead_letters_count_ins; DROP TRIGGER dead_letters_count_del;"
                       " ALTER TABLE queue_stats DROP COLUMN dead;"
                       " INSERT INTO dead_letters (received_at, topic, payload, reason)"
                       "   VALUES (1, 'nodes/x/up', x'00', 'bad'), (2, 'nodes/x/up', x'01', 'bad');"
                       " PRAGMA user_version = 1;")
    conn.close()
    store = Store(db)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == 3
        assert store.pending_statuses() == {}  # schema 3: the status queue
        assert store.fleet() == [("wl-1", 5.0, None, None, None, None)]
        store.record_events([("wl-1", "offline", "silent")], now=10.0)
        assert store.fleet() == [("wl-1", 5.0, None, None, None, 10.0)]
        assert store.conn.execute("SELECT seen_samples FROM device_state").fetchone() == (None,)
        assert store.dead_letter_count() == 2  # counted once at the migration, then kept
        store.insert_batch([DeadLetter("nodes/x/up", b"\x02", "bad")])
        assert store.dead_letter_count() == 3
        store.conn.execute("DELETE FROM dead_letters WHERE id = 1")
        assert store.dead_letter_count() == 2
    finally:
        store.close()


def test_observed_interval_ignores_bursts_and_caps_outages(tmp_path: Path) -> None:
    from edge_agent.validate import Reading
    store = Store(tmp_path / "agent.db")
    try:
        def at(t: float, seq: int) -> None:
            store.insert_batch([Reading("wl-1", 1, seq, "water_level", False, b"x")], now=t)
        at(0.0, 1)
        at(60.0, 2)
        at(60.2, 3)  # a burst: not an interval
        assert store.fleet(min_samples=1)[0][4] == 60.0
        assert store.fleet()[0][4] is None  # one gap is not enough to call it silent
        at(120.0, 4)
        at(7320.0, 5)  # two hours of outage count as 2 x 60 s, not 7,200 s
        e = 0.75 * 60 + 0.25 * (120 - 60.2)
        assert store.fleet()[0][4] == pytest.approx(0.75 * e + 0.25 * 2 * e)
    finally:
        store.close()
