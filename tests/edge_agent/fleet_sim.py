"""Many simulated nodes over one MQTT connection, for the resilience tests and the bench.

`FleetSim(url, devices, outbox=True)` behaves like the firmware: each device keeps
every reading in an outbox until the agent's end-to-end ack covers it (never on the
broker's PUBACK), and sends its unacked readings again, in order, on every reconnect
and whenever its oldest unacked reading has waited `resend_after` seconds without the
ack moving. Like the firmware's MQTT client (`forget()`), a new connection starts
with nothing in flight: the outbox, not the client library, decides what is resent.
With `outbox=False` each reading is published once (QoS1) and forgotten.

One thread owns the paho client and does every publish, so the order on the wire is
the outbox's order. Acks can be checked as they arrive (`check(dev, boot, seq)`, run on
that thread; return a problem string or None).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

Key = tuple[str, int, int]


class FleetSim:
    def __init__(self, broker_url: str, devices: Iterable[str], *, client_id: str = "fleet-sim",
                 outbox: bool = True, resend_after: float = 2.0, prefix: str = "nodes",
                 check: Callable[[str, int, int], str | None] | None = None,
                 inflight: int = 100) -> None:
        self.host, port = broker_url.split("://", 1)[1].rsplit(":", 1)
        self.port = int(port)
        self.devices = set(devices)
        self.client_id, self.use_outbox, self.prefix = client_id, outbox, prefix
        self.resend_after, self.check, self.inflight = resend_after, check, inflight
        self.lock = threading.Lock()
        # dev -> OrderedDict[(boot, seq)] = (payload, last sent monotonic)
        self.outbox: dict[str, collections.OrderedDict[tuple[int, int], list[Any]]] = {
            d: collections.OrderedDict() for d in self.devices}
        # (topic, payload, (boot, seq) of an outbox reading or None, retain)
        self.to_send: collections.deque[tuple[str, bytes, tuple[int, int] | None, bool]] = \
            collections.deque()
        self.acks: dict[str, dict[int, int]] = {d: {} for d in self.devices}
        self.ack_moved: dict[str, float] = {d: time.monotonic() for d in self.devices}
        self.errors: list[str] = []
        self.published = 0
        self.resent = 0
        self.connects = 0
        self.connected = threading.Event()
        self._resend_all = False
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sim-{client_id}", daemon=True)
        self._thread.start()
        if not self.connected.wait(15):
            raise AssertionError(f"{client_id}: could not connect to {broker_url}")

    # --- the test's side ---

    def publish(self, dev: str, boot: int, seq: int, payload: bytes) -> None:
        topic = f"{self.prefix}/{dev}/up"
        with self.lock:
            if self.use_outbox:
                self.outbox[dev][(boot, seq)] = [payload, 0.0]
            self.to_send.append((topic, payload, (boot, seq) if self.use_outbox else None,
                                 False))

    def raw(self, topic: str, payload: bytes) -> None:
        """Publish anything once (hostile input)."""
        with self.lock:
            self.to_send.append((topic, payload, None, False))

    def status(self, dev: str, payload: bytes) -> None:
        """Publish a status, retained, once, in order with the device's readings (a node
        publishes its status on the same connection as its readings)."""
        with self.lock:
            self.to_send.append((f"{self.prefix}/{dev}/status", payload, None, True))

    def acked(self, dev: str, boot: int) -> int:
        with self.lock:
            return self.acks[dev].get(boot, 0)

    def unacked(self) -> int:
        with self.lock:
            return sum(len(o) for o in self.outbox.values())

    def backlog(self) -> int:
        """Publishes not yet handed to the client."""
        with self.lock:
            return len(self.to_send)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(10)

    # --- the client's thread ---

    def _run(self) -> None:
        while not self._closed.is_set():
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 clean_session=True)
            client.max_inflight_messages_set(self.inflight)
            client.max_queued_messages_set(0)
            client.on_connect = self._on_connect
            client.on_message = self._on_message
            try:
                client.connect(self.host, self.port, keepalive=10)
            except OSError:
                time.sleep(0.1)
                continue
            self._loop(client)
            self.connected.clear()
            try:
                client.socket() and client.disconnect()
            except Exception:
                pass
        self.connected.clear()

    def _loop(self, client: mqtt.Client) -> None:
        last_resend_check = 0.0
        while not self._closed.is_set():
            if client.loop(0.01) != mqtt.MQTT_ERR_SUCCESS:
                return
            if not self.connected.is_set():
                continue
            if self._resend_all:
                self._resend_all = False
                self._resend(client, every=True)
            self._drain(client)
            now = time.monotonic()
            if self.use_outbox and now - last_resend_check > 0.25:
                last_resend_check = now
                self._resend(client, every=False)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            return
        client.subscribe(f"{self.prefix}/+/down", 1)
        self.connects += 1
        self._resend_all = self.use_outbox and (self.connects > 1 or self._resend_all)
        self.connected.set()

    def _send(self, client: mqtt.Client, topic: str, payload: bytes,
              retain: bool = False) -> None:
        client.publish(topic, payload, qos=1, retain=retain)
        self.published += 1

    def _drain(self, client: mqtt.Client) -> None:
        """Send what the test published, in order, a bounded number per turn."""
        for _ in range(500):
            with self.lock:
                if not self.to_send:
                    return
                topic, payload, key, retain = self.to_send.popleft()
                if key is not None:
                    rec = self.outbox[topic.split("/")[-2]].get(key)
                    if rec is None:
                        continue  # acked already (a resend got there first)
                    rec[1] = time.monotonic()
            self._send(client, topic, payload, retain)

    def _resend(self, client: mqtt.Client, every: bool) -> None:
        """On a new connection: every unacked reading, in order (and nothing waiting in
        to_send is sent twice). Otherwise: the outbox of each device whose oldest
        unacked reading waited `resend_after` with no ack progress."""
        now = time.monotonic()
        batch: list[tuple[str, bytes]] = []
        with self.lock:
            if every:
                self.to_send = collections.deque(e for e in self.to_send if e[2] is None)
            for dev, box in self.outbox.items():
                if not box:
                    continue
                first = next(iter(box.values()))
                stale = (first[1] and now - first[1] > self.resend_after
                         and now - self.ack_moved[dev] > self.resend_after)
                if every or stale:
                    for (_boot, _seq), rec in box.items():
                        rec[1] = now
                        batch.append((f"{self.prefix}/{dev}/up", rec[0]))
        for topic, payload in batch:
            self._send(client, topic, payload)
        self.resent += len(batch)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        dev = msg.topic.split("/")[-2]
        if dev not in self.devices:
            return
        try:
            m = cbor2.loads(msg.payload)
            acks = m[8]
        except Exception:
            self.errors.append(f"{dev}: bad downlink {msg.payload.hex()}")
            return
        for boot, seq in acks.items():
            if self.check is not None:
                problem = self.check(dev, boot, seq)
                if problem:
                    self.errors.append(problem)
            with self.lock:
                prev = self.acks[dev].get(boot, 0)
                if seq > prev:
                    self.acks[dev][boot] = seq
                    self.ack_moved[dev] = time.monotonic()
                box = self.outbox[dev]
                for k in [k for k in box if k[0] == boot and k[1] <= seq]:
                    del box[k]
