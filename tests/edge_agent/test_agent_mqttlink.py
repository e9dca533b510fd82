"""The agent's batched MQTT client against a real mosquitto: packets cut anywhere by the
reads, raw QoS1 publishes matched to their PUBACKs, and the commit that starts as soon
as the broker has nothing more to send."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from edge_helpers import AgentThread, SimNode, agent_config, register, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import mqttlink
from edge_agent.mqttlink import Link, make_client
from hil_tests.mosquitto import Mosquitto

StartAgent = Callable[..., AgentThread]


def _link(tmp_path: Path, broker: Mosquitto, client_id: str) -> Link:
    cfg = agent_config(tmp_path / "data", broker.url, None, local__client_id=client_id).local
    return Link("test", cfg, make_client(cfg, clean_session=True))


def _run_until(link: Link, cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        link.step(0.02)


def _paho(broker: Mosquitto, client_id: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.max_inflight_messages_set(0)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


@pytest.mark.parametrize("chunk", [1, 7, 1000])
@pytest.mark.parametrize("fast", [True, False])
def test_packets_cut_anywhere_by_the_reads_arrive_whole_and_in_order(
        tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch, chunk: int,
        fast: bool) -> None:
    # A recv() of `chunk` bytes cuts packets at every possible place: in the fixed header,
    # the remaining length (2-3 bytes for the big payloads), the topic, the payload.
    monkeypatch.setattr(mqttlink, "READ_CHUNK", chunk)
    link = _link(tmp_path, mosquitto, "batched-reader")
    got: list[tuple[str, bytes, int]] = []
    subscribed = threading.Event()

    def on_fast(topic: str, payload: bytes, mid: int, qos: int) -> None:
        got.append((topic, payload, qos))

    if fast:
        link.client.on_fast_message = on_fast
    else:
        link.client.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload), m.qos))
    link.on_up = lambda c, present: c.subscribe("t/#", 1)
    link.client.on_subscribe = lambda *a: subscribed.set()
    _run_until(link, subscribed.is_set, 10, "the SUBACK")

    sent = []
    for i in range(150):
        size = (0, 1, 126, 127, 128, 16_383, 16_384, 20_000)[i % 8]
        if chunk == 1:
            size = min(size, 300)  # a system call per byte: keep it to seconds
        payload = bytes((i + j) % 256 for j in range(size))
        qos = i % 2
        sent.append((f"t/{i}/{'x' * (i % 40)}", payload, qos))
    pub = _paho(mosquitto, "batched-writer")
    try:
        for topic, payload, qos in sent:
            pub.publish(topic, payload, qos=qos)
        _run_until(link, lambda: len(got) >= len(sent), 60, "every message")
    finally:
        pub.disconnect()
        pub.loop_stop()
    # In order per QoS: the broker holds QoS1 messages back once its inflight window to
    # us is full, while QoS0 ones go at once.
    for qos in (0, 1):
        assert [m for m in got if m[2] == qos] == [m for m in sent if m[2] == qos]
    assert len(got) == len(sent)
    assert link.connected and link.epoch == 1  # no protocol error, no reconnect
    link.close()


def test_raw_publishes_get_their_own_pubacks_and_leave_in_order(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    link = _link(tmp_path, mosquitto, "batched-publisher")
    acked: list[int] = []
    paho_acked: list[int] = []
    link.client.on_fast_puback = acked.append
    link.client.on_publish = lambda c, u, mid, rc, p: paho_acked.append(mid)
    _run_until(link, lambda: link.connected, 10, "the CONNACK")

    received: list[bytes] = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-sub", clean_session=True)
    sub.on_subscribe = lambda *a: ready.set()
    sub.on_message = lambda c, u, m: received.append(bytes(m.payload))
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("raw/#", 1)
    sub.loop_start()
    try:
        assert ready.wait(10)
        mids = []
        for i in range(3000):
            mids.append(link.client.publish_raw(f"raw/{i % 7}".encode(), b"%d" % i))
            if i == 1500:  # paho's own publish in the middle (the fleet events use it)
                paho_mid = link.client.publish("raw/event", b"event", qos=1).mid
            if i % 500 == 0:
                link.flush()
        link.flush()
        _run_until(link, lambda: len(acked) >= 3000 and paho_acked, 30, "every PUBACK")
        wait_until(lambda: len(received) >= 3001, 30, "every message at the subscriber")
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert sorted(acked) == sorted(mids) and len(set(mids)) == 3000
    assert paho_acked == [paho_mid] and paho_mid not in acked
    assert [r for r in received if r != b"event"] == [b"%d" % i for i in range(3000)]
    link.close()


def test_a_reading_is_committed_and_acked_as_soon_as_the_broker_has_sent_all(
        tmp_path: Path, mosquitto: Mosquitto, upstream_broker: Mosquitto,
        start_agent: StartAgent, nodes: list[SimNode]) -> None:
    # With a 30 s interval and 500 to a batch, only the drained socket can start the
    # commit: the ack comes in well under the interval.
    register(tmp_path / "data" / "agent.db", {"wl-0001": "water_level"})
    start_agent(mosquitto.url, upstream_broker.url, commit__interval=30.0,
                commit__at_pending=500)
    node = SimNode(mosquitto.url, "wl-0001")
    nodes.append(node)
    for seq in (1, 2, 3):
        t0 = time.monotonic()
        node.publish(1, seq)
        wait_until(lambda s=seq: node.acked(1) == s, 10, f"the ack of seq {seq}")
        assert time.monotonic() - t0 < 10
    assert node.errors == []
