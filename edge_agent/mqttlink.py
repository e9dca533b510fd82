"""One paho-mqtt client driven by its owner's thread, with reconnects, backoff and jitter.

The owner calls `step()` in its loop; paho's callbacks run inside it, on the owner's
thread, so the owner's state (pending lists, SQLite connection) needs no locks.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .config import BrokerConfig
from .errors import ConfigError

log = logging.getLogger(__name__)


class Waker:
    """An Event another thread can also use to cut short a Link.step(): set() writes a
    byte to a socket pair the step's select() watches, so the forwarder hears of a
    commit at once instead of at the end of its poll interval."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def set(self) -> None:
        if not self._event.is_set():
            self._event.set()
            try:
                self._w.send(b"\0")
            except (BlockingIOError, OSError):
                pass  # already full of wake-ups, or closed: nothing to add

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()
        self.drain()

    def drain(self) -> None:
        try:
            while self._r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def fileno(self) -> int:
        return self._r.fileno()

    def close(self) -> None:
        self._r.close()
        self._w.close()


class Backoff:
    """Exponential backoff with jitter: after n failures wait in [d/2, d], d = base * 2^n,
    capped; the jitter keeps a fleet of gateways from reconnecting in lockstep."""

    def __init__(self, base: float = 0.5, cap: float = 60.0,
                 rng: random.Random | None = None) -> None:
        self.base, self.cap, self.failures = base, cap, 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        d = min(self.cap, self.base * (2 ** min(self.failures, 30)))
        self.failures += 1
        return d / 2 + self.rng.uniform(0, d / 2)

    def reset(self) -> None:
        self.failures = 0


def make_client(cfg: BrokerConfig, *, clean_session: bool, manual_ack: bool = False
                ) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                         clean_session=clean_session, protocol=mqtt.MQTTv311,
                         manual_ack=manual_ack)
    if cfg.url.tls:
        try:
            client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                           certfile=str(cfg.cert_file) if cfg.cert_file else None,
                           keyfile=str(cfg.key_file) if cfg.key_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(f"{cfg.url}: TLS files: {e}") from e
    return client


class Link:
    """Keeps one client connected: connect, loop, reconnect after a backoff.

    `on_up(client)` runs after every successful CONNACK (subscribe there); `on_down()`
    after every loss. `epoch` grows with each connection, so the owner can tell which
    connection a received message (and its packet id) belongs to.
    """

    def __init__(self, name: str, cfg: BrokerConfig, client: mqtt.Client,
                 on_up: Callable[[mqtt.Client, bool], None] | None = None,
                 on_down: Callable[[], None] | None = None) -> None:
        self.name, self.cfg, self.client = name, cfg, client
        self.on_up, self.on_down = on_up, on_down
        self.backoff = Backoff()
        self.connected = False
        self.epoch = 0
        self._next_try = 0.0
        self._was_up = False
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("%s broker %s refused the connection: %s", self.name, self.cfg.url, reason)
            return
        self.connected = True
        self.epoch += 1
        self.backoff.reset()
        log.info("%s broker %s connected (session present: %s)", self.name, self.cfg.url,
                 bool(flags.session_present))
        if self.on_up:
            self.on_up(client, bool(flags.session_present))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        was = self.connected
        self.connected = False
        if was and self.on_down:
            self.on_down()

    def _lost(self, why: str) -> None:
        delay = self.backoff.next()
        self._next_try = time.monotonic() + delay
        if self.connected or self.backoff.failures == 1:
            log.warning("%s broker %s: %s; retrying in %.1f s", self.name, self.cfg.url, why,
                        delay)
        if self.connected:
            self.connected = False
            if self.on_down:
                self.on_down()

    def step(self, timeout: float, waker: Waker | None = None) -> None:
        """Run the network for up to `timeout` seconds, (re)connecting when it is time;
        a `waker` set by another thread ends the wait early."""
        if self.client.socket() is None:
            wait = self._next_try - time.monotonic()
            if wait > 0:
                time.sleep(min(timeout, wait))
                return
            try:
                if self.cfg.username:
                    self.client.username_pw_set(self.cfg.username, self.cfg.password())
                self.client.connect(self.cfg.url.host, self.cfg.url.port, self.cfg.keepalive)
            except (OSError, ssl.SSLError) as e:
                self._lost(f"cannot connect ({e.strerror or e})")
                return
        if waker is not None and timeout > 0:
            self._wait(timeout, waker)
            timeout = 0.0
        rc = self.client.loop(timeout)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._lost(f"connection lost ({mqtt.error_string(rc)})")

    def _wait(self, timeout: float, waker: Waker) -> None:
        """Wait for the socket (readable, or writable when paho has something to send) or
        the waker; paho's loop(0) then does the work. TLS may hold decrypted bytes the
        socket no longer signals: then do not wait at all."""
        sock = cast(socket.socket | None, self.client.socket())
        if sock is None or waker.is_set():
            return
        pending = getattr(sock, "pending", None)
        if pending is not None and pending() > 0:
            return
        rlist: list[Any] = [sock, waker]
        wlist = [sock] if self.client.want_write() else []
        try:
            select.select(rlist, wlist, [], timeout)
        except (OSError, ValueError, TypeError):
            pass  # a closed socket: loop() reports it

    def close(self, timeout: float = 2.0) -> None:
        """Send DISCONNECT (after what is queued) and close the socket."""
        if self.client.socket() is None:
            return
        self.client.disconnect()
        deadline = time.monotonic() + timeout
        while self.client.socket() is not None and time.monotonic() < deadline:
            if self.client.loop(0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
        self.connected = False
