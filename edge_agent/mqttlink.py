"""One paho-mqtt client driven by its owner's thread, with reconnects, backoff and jitter.

The owner calls `step()` in its loop; paho's callbacks run inside it, on the owner's
thread, so the owner's state (pending lists, SQLite connection) needs no locks.

The client is paho's with batched socket I/O (`BatchedClient`): paho reads a packet in
three recv() calls and writes each packet with two send() calls the moment it is queued;
at thousands of messages a second those system calls, and the GIL hand-overs around
each of them, were most of the agent's time. Here a step reads the socket in 64 kB
chunks and parses every whole packet in them, and everything queued meanwhile (PUBACKs,
end-to-end acks, forwarded readings) leaves in one send() when the owner flushes.
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
from typing import Any, TypeVar, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.exception import MalformedPacket

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


READ_CHUNK = 65536  # bytes per recv()
WRITE_HIGH = 4 << 20  # bytes buffered before paho is told the socket would block
READ_BATCH = 5000  # packets handled per step at most, so the owner's loop keeps turning


class BatchedClient(mqtt.Client):
    """paho's client with a read buffer and a write buffer in front of the socket.

    Reads: `_sock_recv` serves paho's small reads from a buffer refilled 64 kB at a
    time, so `read_packets()` handles every whole packet a recv() brought. Writes:
    `_packet_queue` only queues (paho would write at once, and poke its wake-up socket
    pair); `flush()` moves every queued packet into the write buffer and sends it in as
    few send() calls as the kernel takes. Nothing is reordered: packets leave in the
    order they were queued. Uses paho 2.x internals (`_packet_read`, `_packet_write`,
    `_out_packet`), which paho's own loop is built on; pinned by pyproject (<3).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._wbuf = bytearray()
        # Fast paths (MQTT 3.1.1), set by the owner: on_fast_message(topic, payload, mid,
        # qos) instead of on_message (no MQTTMessage, no topic matcher, no locks);
        # on_fast_puback(mid) for PUBACKs of packets sent with publish_raw().
        self.on_fast_message: Callable[[str, bytes, int, int], None] | None = None
        self.on_fast_puback: Callable[[int], None] | None = None
        self.drained = False  # the last read_packets() emptied the socket

    # --- paho's socket hooks ---

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(READ_CHUNK)  # BlockingIOError when nothing is there
            if not data:
                return data  # EOF: paho sees the connection lost
            self._rbuf, self._rpos = data, 0
        end = self._rpos + bufsize
        out = self._rbuf[self._rpos:end]
        self._rpos = min(end, len(self._rbuf))
        return out

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if len(self._wbuf) >= WRITE_HIGH:
            self._send_buffered()
            if len(self._wbuf) >= WRITE_HIGH:
                raise BlockingIOError  # paho keeps the packet and tries again later
        self._wbuf += buf
        return len(buf)

    def _sock_close(self) -> None:
        if self._sock is not None and self._wbuf:
            self._drain_on_close()
        self._rbuf, self._rpos, self._wbuf = b"", 0, bytearray()
        super()._sock_close()

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: Any = None) -> mqtt.MQTTErrorCode:
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": info})
        return mqtt.MQTT_ERR_SUCCESS

    def want_write(self) -> bool:
        return bool(self._out_packet) or bool(self._wbuf)

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        """A whole packet already in the buffer is taken in one slice; anything else
        (a packet cut by the end of a recv()) goes through paho's byte-wise reader."""
        if self._in_packet["command"] == 0:
            buf, pos = self._rbuf, self._rpos
            end = len(buf)
            i, length, mult = pos + 1, 0, 1
            while i < end and i - pos <= 4:
                b = buf[i]
                i += 1
                length += (b & 127) * mult
                mult <<= 7
                if not b & 128:
                    if i + length <= end:
                        self._rpos = i + length
                        self._in_packet = {"command": buf[pos], "have_remaining": 1,
                                           "remaining_count": [], "remaining_mult": 1,
                                           "remaining_length": length,  # read-only:
                                           "packet": cast(bytearray, buf[i:i + length]),
                                           "to_process": 0, "pos": 0}
                        try:
                            rc = self._packet_handle()
                        except (MalformedPacket, IndexError):
                            rc = mqtt.MQTT_ERR_PROTOCOL
                        self._in_packet = {"command": 0, "have_remaining": 0,
                                           "remaining_count": [], "remaining_mult": 1,
                                           "remaining_length": 0, "packet": bytearray(),
                                           "to_process": 0, "pos": 0}
                        self._last_bytes_received = mqtt.time_func()
                        return rc
                    break
        return super()._packet_read()

    def _packet_handle(self) -> mqtt.MQTTErrorCode:
        cmd = self._in_packet["command"]
        kind = cmd & 0xF0
        if kind == mqtt.PUBLISH and self.on_fast_message is not None and (cmd & 6) in (0, 2) \
                and self._protocol != mqtt.MQTTv5:
            pkt = self._in_packet["packet"]
            qos = (cmd >> 1) & 3
            n = (pkt[0] << 8) | pkt[1] if len(pkt) >= 2 else len(pkt)
            if len(pkt) < 2 + n + 2 * qos:
                raise MalformedPacket("PUBLISH shorter than its topic and packet id")
            try:
                topic = pkt[2:2 + n].decode()
            except UnicodeDecodeError:
                return super()._packet_handle()
            mid = (pkt[2 + n] << 8) | pkt[3 + n] if qos else 0
            self.on_fast_message(topic, bytes(pkt[4 + n:] if qos else pkt[2 + n:]), mid, qos)
            if qos and not self._manual_ack:
                return self._send_puback(mid)
            return mqtt.MQTT_ERR_SUCCESS
        if kind == mqtt.PUBACK and self.on_fast_puback is not None and \
                self._protocol != mqtt.MQTTv5:
            pkt = self._in_packet["packet"]
            if len(pkt) < 2:
                raise MalformedPacket("PUBACK without a packet id")
            mid = (pkt[0] << 8) | pkt[1]
            if mid not in self._out_messages:
                self.on_fast_puback(mid)
                return mqtt.MQTT_ERR_SUCCESS
        return super()._packet_handle()

    # --- the owner's calls ---

    def publish_raw(self, topic: bytes, payload: bytes, retain: bool = False) -> int:
        """Queue a QoS1 PUBLISH built here; its PUBACK goes to on_fast_puback(mid). paho
        does not track it: after a reconnect the owner sends it again itself."""
        mid = self._mid_generate()
        body = len(topic) + len(payload) + 4
        head = bytearray(b"\x33" if retain else b"\x32")
        while True:
            b, body = body & 127, body >> 7
            head.append(b | 128 if body else b)
            if not body:
                break
        packet = b"".join((head, len(topic).to_bytes(2, "big"), topic,
                           mid.to_bytes(2, "big"), payload))
        self._out_packet.append({"command": mqtt.PUBLISH, "mid": mid, "qos": 1, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": None})
        return mid

    def ack_many(self, mids: list[int]) -> None:
        """Queue the PUBACKs of many received QoS1 messages as one write."""
        if mids:
            packet = b"".join(b"\x40\x02" + m.to_bytes(2, "big") for m in mids)
            self._out_packet.append({"command": mqtt.PUBACK, "mid": 0, "qos": 0, "pos": 0,
                                     "to_process": len(packet), "packet": packet,
                                     "info": None})

    def buffered(self) -> int:
        """Bytes received and not parsed yet (a TLS socket's decrypted ones included):
        select() would not signal them."""
        n = len(self._rbuf) - self._rpos
        pending = getattr(self._sock, "pending", None)
        return n + (pending() if pending is not None else 0)

    def read_packets(self, limit: int = READ_BATCH) -> mqtt.MQTTErrorCode:
        """Handle up to `limit` packets: what is buffered, then what the socket has.
        `drained` tells whether it stopped because the socket had nothing more."""
        self.drained = False
        for _ in range(limit):
            if self._sock is None:
                return mqtt.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc == mqtt.MQTT_ERR_AGAIN:
                self.drained = True
                return mqtt.MQTT_ERR_SUCCESS
            if rc > 0:
                return self._loop_rc_handle(rc)
        return mqtt.MQTT_ERR_SUCCESS

    def flush(self) -> mqtt.MQTTErrorCode:
        """Send what is queued: paho's packets into the buffer, the buffer to the socket."""
        if self._sock is None:
            return mqtt.MQTT_ERR_NO_CONN
        if self._out_packet:
            rc = self._packet_write()  # into _wbuf, through _sock_send
            if rc > 0 and rc != mqtt.MQTT_ERR_AGAIN:
                return self._loop_rc_handle(rc)
            if self._sock is None:  # it wrote a DISCONNECT and closed
                return mqtt.MQTT_ERR_SUCCESS
        return self._send_buffered()

    def _send_buffered(self) -> mqtt.MQTTErrorCode:
        while self._wbuf and self._sock is not None:
            try:
                n = super()._sock_send(self._wbuf)
            except BlockingIOError:
                return mqtt.MQTT_ERR_SUCCESS  # the rest when select() says writable
            except OSError:
                return self._loop_rc_handle(mqtt.MQTT_ERR_CONN_LOST)
            del self._wbuf[:n]
        return mqtt.MQTT_ERR_SUCCESS

    def _drain_on_close(self, timeout: float = 1.0) -> None:
        """Before closing: send what is buffered (a DISCONNECT, the last PUBACKs)."""
        sock = self._sock
        deadline = time.monotonic() + timeout
        while self._wbuf and sock is not None and time.monotonic() < deadline:
            try:
                n = sock.send(self._wbuf)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                try:
                    select.select([], [sock], [], 0.05)
                except (OSError, ValueError, TypeError):
                    return
                continue
            except OSError:
                return
            del self._wbuf[:n]


def make_client(cfg: BrokerConfig, *, clean_session: bool, manual_ack: bool = False
                ) -> BatchedClient:
    client = BatchedClient(CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                         clean_session=clean_session, protocol=mqtt.MQTTv311,
                         manual_ack=manual_ack)
    return _with_tls(client, cfg)


def make_plain_client(cfg: BrokerConfig, client_id: str) -> mqtt.Client:
    """paho's own client for `cfg` (TLS set up, clean session), for a short job."""
    return _with_tls(mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                 clean_session=True, protocol=mqtt.MQTTv311), cfg)


_C = TypeVar("_C", bound=mqtt.Client)


def _with_tls(client: _C, cfg: BrokerConfig) -> _C:
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

    def __init__(self, name: str, cfg: BrokerConfig, client: BatchedClient,
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

    def step(self, timeout: float, waker: Waker | None = None,
             max_packets: int = READ_BATCH) -> None:
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
        if timeout > 0:
            self._wait(timeout, waker)
        c = self.client
        rc = c.read_packets(max(1, max_packets))
        if rc == mqtt.MQTT_ERR_SUCCESS and c.want_write():
            rc = c.flush()
        if rc == mqtt.MQTT_ERR_SUCCESS and c.socket() is not None:
            rc = c.loop_misc()  # keepalive
        if rc == mqtt.MQTT_ERR_SUCCESS and c.socket() is None:
            rc = mqtt.MQTT_ERR_CONN_LOST
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._lost(f"connection lost ({mqtt.error_string(rc)})")

    def flush(self) -> None:
        """Send what the owner queued (acks, publishes) now rather than at the next step."""
        if self.client.socket() is None:
            return
        rc = self.client.flush()
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._lost(f"connection lost ({mqtt.error_string(rc)})")

    def _wait(self, timeout: float, waker: Waker | None) -> None:
        """Wait for the socket (readable, or writable when something is queued) or the
        waker. Bytes already buffered (ours, or TLS's decrypted ones) are not signalled
        by the socket: then do not wait at all."""
        sock = cast(socket.socket | None, self.client.socket())
        if sock is None or (waker is not None and waker.is_set()):
            return
        if self.client.buffered() > 0:
            return
        rlist: list[Any] = [sock] if waker is None else [sock, waker]
        wlist = [sock] if self.client.want_write() else []
        try:
            select.select(rlist, wlist, [], timeout)
        except (OSError, ValueError, TypeError):
            pass  # a closed socket: loop() reports it

    def close(self, timeout: float = 2.0) -> None:
        """Send DISCONNECT (after what is queued) and close the socket."""
        if self.client.socket() is None:
            return
        c = self.client
        c.disconnect()  # queued behind what is already queued; closes once written
        deadline = time.monotonic() + timeout
        while c.socket() is not None and time.monotonic() < deadline:
            rc = c.flush()
            if rc == mqtt.MQTT_ERR_SUCCESS and c.socket() is not None:
                self._wait(0.05, None)
                rc = c.read_packets()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                break
        self.connected = False
