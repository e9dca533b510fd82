"""NodeWatch: the gateway's side of one node, for HIL tests (a real MQTT subscriber).

It subscribes to the node's `up` and `status` topics on the broker under
test, checks every message with the edge agent's own validator (so "decodes
per the wire contract" means what the agent accepts), and plays the agent's
end-to-end acknowledgement: per boot, the highest seq received with no gap
below it (or below the envelope's `lo`), published on the node's `down`
topic. Tests can hold the acks back to keep records in the node's outbox.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2
import paho.mqtt.client as mqtt

from edge_agent.errors import Rejected
from edge_agent.validate import DeviceInfo, Reading, validate_status, validate_up

from .errors import HILError

# SenML labels (RFC 8428) used to read values out of a pack.
_N, _V, _VS, _VB, _VD, _BT = 0, 2, 3, 4, 8, -3


@dataclass(frozen=True)
class Uplink:
    """One `up` message as it arrived (retransmissions arrive as separate Uplinks)."""

    at: float  # time.monotonic() on arrival
    reading: Reading
    envelope: dict[int, Any]

    @property
    def key(self) -> tuple[int, int]:
        return self.reading.boot, self.reading.seq

    @property
    def pack(self) -> list[dict[int, Any]]:
        return list(self.envelope[5])

    def values(self) -> dict[str, Any]:
        """name -> value of the pack's records (the last record of a name wins)."""
        out: dict[str, Any] = {}
        for rec in self.pack:
            for label in (_V, _VS, _VB, _VD):
                if label in rec and _N in rec:
                    out[rec[_N]] = rec[label]
        return out

    def events(self) -> list[str]:
        return [r[_VS] for r in self.pack if r.get(_N) == "event" and _VS in r]


@dataclass
class NodeWatch:
    host: str
    port: int
    device: str
    role: str
    prefix: str = "nodes"
    auto_ack: bool = True
    uplinks: list[Uplink] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[str, bytes, str]] = field(default_factory=list)
    acks_sent: list[dict[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"hil-watch-{self.device}", clean_session=True)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_message = self._on_message

    @property
    def topics(self) -> dict[str, str]:
        base = f"{self.prefix}/{self.device}"
        return {"up": f"{base}/up", "status": f"{base}/status", "down": f"{base}/down"}

    def start(self, timeout: float = 10.0) -> NodeWatch:
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            raise HILError(f"broker {self.host}:{self.port}: cannot connect: {e}") from e
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise HILError(f"broker {self.host}:{self.port}: no SUBACK in {timeout:g} s")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any = None) -> None:
        t = self.topics
        client.subscribe([(t["up"], 1), (t["status"], 1)])

    def _lookup(self, device: str) -> DeviceInfo | None:
        return DeviceInfo(self.role) if device == self.device else None

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        now = time.monotonic()
        try:
            if msg.topic == self.topics["up"]:
                reading = validate_up(self.device, payload, self._lookup)
                up = Uplink(now, reading, cbor2.loads(payload))
                with self._lock:
                    self.uplinks.append(up)
                if self.auto_ack:
                    self.send_acks()
            elif msg.topic == self.topics["status"]:
                st = validate_status(self.device, payload, self._lookup)
                if st is not None:
                    with self._lock:
                        self.statuses.append(dict(st.fields, _at=now))
        except Rejected as e:
            with self._lock:
                self.rejected.append((msg.topic, payload, e.reason))

    # ---- the end-to-end acknowledgement ----

    def committed(self) -> dict[int, int]:
        """Per boot, the highest seq received with no gap below it (the agent's rule)."""
        with self._lock:
            seen: dict[int, set[int]] = {}
            low: dict[int, int] = {}
            for u in self.uplinks:
                seen.setdefault(u.reading.boot, set()).add(u.reading.seq)
                if u.reading.lo is not None:
                    low[u.reading.boot] = max(low.get(u.reading.boot, 1), u.reading.lo)
        out = {}
        for boot, seqs in seen.items():
            hi = low.get(boot, 1) - 1
            while hi + 1 in seqs:
                hi += 1
            if hi >= 1:
                out[boot] = hi
        return out

    def send_acks(self) -> dict[int, int]:
        ack = self.committed()
        if ack:
            self.send_down({0: 1, 1: self.device, 8: ack})
            with self._lock:
                self.acks_sent.append(ack)
        return ack

    def command(self, cmd: str, args: dict[str, Any] | None = None, cid: int | None = None) \
            -> None:
        msg: dict[int, Any] = {0: 1, 1: self.device, 9: cmd, 10: args or {}}
        if cid is not None:
            msg[11] = cid
        self.send_down(msg)

    def send_down(self, msg: dict[int, Any]) -> None:
        self._client.publish(self.topics["down"], cbor2.dumps(msg, canonical=True), qos=1)

    # ---- what arrived ----

    def unique(self) -> dict[tuple[int, int], Uplink]:
        """First arrival of each (boot, seq), in arrival order (the agent's dedup)."""
        out: dict[tuple[int, int], Uplink] = {}
        with self._lock:
            for u in self.uplinks:
                out.setdefault(u.key, u)
        return out

    def since(self, t: float) -> list[Uplink]:
        with self._lock:
            return [u for u in self.uplinks if u.at >= t]

    def online_statuses(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.statuses if s.get("online")]

    def summary(self) -> str:
        with self._lock:
            keys = [f"{u.reading.boot}/{u.reading.seq}" for u in self.uplinks[-20:]]
            st = [f"boot {s.get('boot')} {s.get('reset')} online={s.get('online')}"
                  for s in self.statuses[-5:]]
            rej = [r[2] for r in self.rejected[-3:]]
        return (f"{len(self.uplinks)} uplink(s) on {self.topics['up']} (last: "
                f"{', '.join(keys) or 'none'}); status: {'; '.join(st) or 'none'}"
                + (f"; rejected: {rej}" if rej else ""))

    def wait(self, predicate: Callable[[NodeWatch], Any], timeout: float, what: str) -> Any:
        """Poll until predicate(self) is truthy; AssertionError says what arrived instead."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout:g} s for {what}; {self.summary()}")
            time.sleep(0.05)
