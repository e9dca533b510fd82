"""End to end with real brokers: node -> local mosquitto -> agent -> upstream mosquitto."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import cbor2
import pytest
from edge_helpers import (
    AgentThread,
    SimNode,
    Upstream,
    assert_per_device_order,
    committed_check,
    db_keys,
    envelope,
    first_occurrences,
    register,
    start_agent_process,
    status_fields,
    wait_until,
    write_toml,
)

from edge_agent.cli import main
from edge_agent.store import Store
from hil_tests.mosquitto import Mosquitto, free_port

StartAgent = Callable[..., AgentThread]

DEVICES = {"wl-0001": "water_level", "wl-0002": "water_level", "bt-0001": "boat",
           "tr-0001": "truck"}


def publish_stream(nodes: list[SimNode], boots: tuple[int, ...], per_boot: int,
                   alarm_every: int = 0, start: int = 1) -> set[tuple[str, int, int]]:
    """Interleave the nodes' publishes, each node in (boot, seq) order."""
    sent = set()
    for boot in boots:
        for seq in range(start, start + per_boot):
            for n in nodes:
                alarm = bool(alarm_every) and seq % alarm_every == 0 and n.role != "truck"
                n.publish(boot, seq, alarm)
                sent.add((n.dev, boot, seq))
    return sent


def test_readings_reach_upstream_in_order_and_acks_follow_commits(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], subscribers: list[Upstream], start_agent: StartAgent) -> None:
    db = tmp_path / "data" / "agent.db"
    register(db, DEVICES)
    up = Upstream(upstream_broker.url)
    subscribers.append(up)
    agent = start_agent(mosquitto.url, upstream_broker.url)
    check = committed_check(db)
    nodes += [SimNode(mosquitto.url, d, r, check=check) for d, r in DEVICES.items()]

    t0 = time.monotonic()
    sent = publish_stream(nodes, boots=(1, 2), per_boot=300, alarm_every=37)
    wait_until(lambda: up.keys() >= sent, 90, "every reading upstream")
    elapsed = time.monotonic() - t0
    wait_until(lambda: all(n.acked(b) == 300 for n in nodes for b in (1, 2)), 10, "acks")
    store = Store(db)
    # Rows leave the store only on the upstream's PUBACK, which may trail the delivery.
    wait_until(lambda: store.queue_depth() == (0, 0), 10, "an empty queue")
    agent.stop()

    got = up.snapshot()
    assert {(d, b, s) for d, b, s, _ in got} == sent
    assert_per_device_order(got)
    assert any(a for *_, a in got), "the stream had alarms"
    assert [e for n in nodes for e in n.errors] == []
    assert store.counters()["stored"] == len(sent)
    store.close()
    print(f"\nend to end: {len(sent)} readings from {len(nodes)} nodes in {elapsed:.2f} s = "
          f"{len(sent) / elapsed:.0f} readings/s, {len(got) - len(sent)} duplicates upstream")


def test_upstream_outage_backlog_drains_with_nothing_lost(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], subscribers: list[Upstream], start_agent: StartAgent) -> None:
    db = tmp_path / "data" / "agent.db"
    register(db, DEVICES)
    up = Upstream(upstream_broker.url)
    subscribers.append(up)
    agent = start_agent(mosquitto.url, upstream_broker.url)
    nodes += [SimNode(mosquitto.url, d, r) for d, r in DEVICES.items()]

    sent = publish_stream(nodes, boots=(1,), per_boot=100)
    wait_until(lambda: up.keys() >= sent, 30, "first part upstream")

    upstream_broker.stop()  # SIGTERM: the broker saves its sessions and queued messages
    more = publish_stream(nodes, boots=(1,), per_boot=300, start=101, alarm_every=50)
    # Acks depend on the local commit only: they keep coming during the outage.
    wait_until(lambda: all(n.acked(1) == 400 for n in nodes), 30, "acks during the outage")
    store = Store(db)
    assert store.queue_depth()[0] >= len(more) - 200  # the window may be in flight
    time.sleep(1.5)  # a few failed reconnects with backoff

    upstream_broker.start()
    wait_until(lambda: up.keys() >= sent | more, 60, "the backlog upstream")
    wait_until(lambda: store.queue_depth() == (0, 0), 10, "an empty queue")
    store.close()
    agent.stop()
    got = up.snapshot()
    assert {(d, b, s) for d, b, s, _ in got} == sent | more
    assert_per_device_order(got)


def test_bad_messages_go_to_the_dead_letter_queue(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], subscribers: list[Upstream], start_agent: StartAgent,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    register(data / "agent.db", {"wl-0001": "water_level"})
    up = Upstream(upstream_broker.url)
    subscribers.append(up)
    agent = start_agent(mosquitto.url, upstream_broker.url)
    wl = SimNode(mosquitto.url, "wl-0001")
    stranger = SimNode(mosquitto.url, "wl-0666")
    nodes += [wl, stranger]

    wl.publish(1, 1)
    wl.publish(1, 2, payload=b"\x81" * 10_000)  # hostile: no identity, seq 2 stays open
    wl.publish(1, 2, payload=envelope("wl-0001", 1, 2, pack=[{-3: 1, 0: "depth", 2: 1.0}]))
    wl.publish(1, 3)
    stranger.publish(1, 1)
    wl.client.publish("nodes/wl-0001/status", cbor2.dumps(
        {"v": 1, "dev": "wl-0001", "online": True, "fw": "0.3.1", "interval": 60}), qos=1,
        retain=True)
    # The rejected seq 2 is kept in the dead-letter queue and closed: the ack goes past it.
    wait_until(lambda: wl.acked(1) == 3, 10, "ack past the dead letter")
    wait_until(lambda: len(up.keys()) == 2, 10, "the two good readings upstream")
    time.sleep(0.5)
    agent.stop()
    assert stranger.acks == {}  # unknown devices get no ack
    assert up.keys() == {("wl-0001", 1, 1), ("wl-0001", 1, 3)}

    capsys.readouterr()
    assert main(["dlq", "list", "--data-dir", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()  # id, date, time, topic, size, B, reason
    listed = sorted((f[3], " ".join(f[6:])) for f in (line.split() for line in lines))
    assert listed == [
        ("nodes/wl-0001/up", "bad CBOR: maximum container nesting depth (4) exceeded"),
        ("nodes/wl-0001/up", "pack[0]: unknown name 'depth'"),
        ("nodes/wl-0666/up", "unknown device")]
    dl_id = next(line.split()[0] for line in lines if "depth'" in line)
    assert main(["dlq", "show", dl_id, "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "seq:     2" in out and "depth" in out
    assert main(["dlq", "show", "999", "--data-dir", str(data)]) == 1
    assert capsys.readouterr().err == "edge-agent: no dead letter 999\n"

    assert main(["status", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    fields = status_fields(out)
    assert fields["dead_letters"] == "3" and fields["forwarded"] == "2"
    assert fields["queue"].startswith("0 readings")
    assert "wl-0001" in out and "online" in out and "wl-0666" not in out


def test_sigterm_commits_acks_and_exits_0(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        nodes: list[SimNode], subscribers: list[Upstream]) -> None:
    data = tmp_path / "data"
    register(data / "agent.db", DEVICES)
    conf = write_toml(tmp_path / "agent.toml", data, mosquitto.url, upstream_broker.url)
    up = Upstream(upstream_broker.url)
    subscribers.append(up)
    log = tmp_path / "agent.log"
    proc = start_agent_process(conf, log)
    nodes += [SimNode(mosquitto.url, d, r) for d, r in DEVICES.items()]
    try:
        wait_until(lambda: "subscribed to nodes" in log.read_text(), 15, "the agent subscribing")
        sent = publish_stream(nodes, boots=(1,), per_boot=500)
        wait_until(lambda: len(up.keys()) > 200, 30, "some readings upstream")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "SIGTERM: stopping" in text and "edge agent stopped" in text
    # Everything acked is on disk or upstream; what was not is still at the broker.
    in_db = db_keys(data / "agent.db")
    time.sleep(0.5)
    upstream_now = up.keys()
    for n in nodes:
        for seq in range(1, n.acked(1) + 1):
            assert (n.dev, 1, seq) in in_db | upstream_now
    proc = start_agent_process(conf, log)
    try:
        wait_until(lambda: up.keys() >= sent, 60, "everything upstream after the restart")
        wait_until(lambda: all(n.acked(1) == 500 for n in nodes), 10, "all acks")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert_per_device_order(up.snapshot())


def make_tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1."""
    ca_key, ca, key, csr, cert = (tmp_path / n for n in
                                  ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
        str(ca), "-days", "2", "-subj", "/CN=test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def test_upstream_over_tls_with_a_password(
        tmp_path: Path, mosquitto: Mosquitto, nodes: list[SimNode],
        subscribers: list[Upstream], start_agent: StartAgent,
        caplog: pytest.LogCaptureFixture) -> None:
    ca, cert, key = make_tls(tmp_path)
    pwfile = tmp_path / "mosquitto.passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pwfile), "gw-01", "pa55-w0rd!"],
                   check=True, capture_output=True)
    plain = free_port()
    # The first listener (the one Mosquitto writes) is TLS with passwords; a second, plain,
    # anonymous one lets the test's subscriber in.
    tls = Mosquitto(tmp_path / "up", extra=(
        f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\npassword_file {pwfile}\n"
        f"allow_anonymous false\nlistener {plain} 127.0.0.1\nallow_anonymous true\n"))
    with tls:
        up = Upstream(f"mqtt://127.0.0.1:{plain}")
        subscribers.append(up)
        secret = tmp_path / "upstream.pass"
        secret.write_text("pa55-w0rd!\n")
        secret.chmod(0o600)
        register(tmp_path / "data" / "agent.db", DEVICES)
        caplog.set_level("DEBUG")
        agent = start_agent(mosquitto.url, f"mqtts://127.0.0.1:{tls.port}",
                            upstream__username="gw-01", upstream__password_file=str(secret),
                            upstream__ca_file=str(ca), log_level="debug")
        nodes += [SimNode(mosquitto.url, d, r) for d, r in DEVICES.items()]
        sent = publish_stream(nodes, boots=(1,), per_boot=20)
        wait_until(lambda: up.keys() >= sent, 30, "readings upstream over TLS")
        agent.stop()
    assert "upstream broker mqtts://127.0.0.1" in caplog.text
    assert "pa55" not in caplog.text
    assert len(first_occurrences(up.snapshot())) == len(sent)
