"""An upstream subscriber that records every status it receives, retained flag included."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class StatusWatcher:
    """An upstream subscriber on nodes/+/status: every (device, payload, retain flag) in
    arrival order. A fresh one receives the broker's retained statuses."""

    def __init__(self, url: str, client_id: str, clean: bool = True) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        # Subscribe again only without a session: a SUBSCRIBE would bring the retained
        # statuses again, which the tests would take for the agent sending them twice.
        c.on_connect = lambda cl, u, f, rc, p: (subscribed.set() if f.session_present
                                                else cl.subscribe("nodes/+/status", 1))
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 0.5)
        c.connect("127.0.0.1", int(url.rsplit(":", 1)[1]))
        c.loop_start()
        self.client = c
        if not subscribed.wait(10):
            raise AssertionError("status watcher: no SUBACK")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.got.append((msg.topic.split("/")[1], bytes(msg.payload), bool(msg.retain)))

    def of(self, dev: str) -> list[bytes]:
        with self.lock:
            return [p for d, p, _ in self.got if d == dev]

    def latest(self) -> dict[str, tuple[bytes, bool]]:
        with self.lock:
            return {d: (p, r) for d, p, r in self.got}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
