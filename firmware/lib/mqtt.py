# MQTT 3.1.1 client for the node (OASIS MQTT v3.1.1, 2014): one class, QoS 0 and 1.
#
# What it does: CONNECT (client id, user/password, clean session, keepalive,
# last will), PUBLISH QoS 0/1 with several QoS1 publishes in flight and
# retransmission under the SAME packet id with DUP set, SUBSCRIBE (one topic,
# SUBACK checked), PINGREQ keepalive, a non-blocking poll() that dispatches
# incoming PUBLISH to a callback (PUBACK sent after the callback returns, so a
# callback that raises gets the message again), DISCONNECT.
#
# What it does not: QoS 2 (the node never asks for it; an incoming QoS2
# PUBLISH is a protocol error), reconnecting (the caller does it, with
# backoff.py), durability (the outbox keeps readings; a PUBACK only frees the
# in-flight slot here, never an outbox record).
#
# Errors: socket errors propagate as OSError; protocol failures raise
# MQTTError (a subclass of OSError, with .code = the CONNACK return code or the
# SUBACK code 0x80 where there is one). After any error the connection is
# unusable: close() it and connect again.
#
# Transport: a socket created here from (server, port), or any object passed
# as `sock` with recv(n)/sendall(b) (or read(n)/write(b)) and close(). The
# client waits for input with select.poll on it, or, if the object has
# wait_readable(timeout_ms) -> bool, with that (fakes, modem bridges). A TLS
# socket that buffers decrypted bytes needs wait_readable.
#
# RAM: one 5-byte header buffer; a PUBLISH goes out as one write of header +
# topic + payload when the payload is small, else as two writes (no copy of a
# large payload). In-flight QoS1 publishes keep a reference to their topic and
# payload until the PUBACK. Incoming packets larger than max_packet are read
# through and discarded (QoS1 ones are still acknowledged, or the broker would
# send them forever) and counted in .oversize.

import select
import socket
import struct
import time

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


# Fixed-header first bytes (type << 4 | flags; flags fixed by the spec, 2.2.2).
_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)
_SMALL = const(256)  # payloads up to this size are sent in one write with their header
_MAX_RL = const(268435455)  # largest remaining length a 4-byte varint holds

_REFUSED = (
    "",
    "unacceptable protocol version",
    "identifier rejected",
    "server unavailable",
    "bad user name or password",
    "not authorized",
)


class MQTTError(OSError):
    def __init__(self, msg, code=0):
        super().__init__(msg)
        self.code = code


def _b(s):
    return s.encode() if isinstance(s, str) else bytes(s)


def _str(b):
    # An MQTT UTF-8 string / binary field: u16 length + bytes.
    return struct.pack("!H", len(b)) + b


class MQTTClient:
    def __init__(
        self,
        client_id,
        server=None,
        port=1883,
        user=None,
        password=None,
        keepalive=60,
        clean=True,
        sock=None,
        timeout_ms=5000,
        max_packet=4096,
    ):
        if password is not None and user is None:
            raise ValueError("MQTT 3.1.1: a password needs a user name")
        self.client_id = _b(client_id)
        self.server = server
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive  # seconds, 0 = off
        self.clean = clean
        self.sock = sock
        self.timeout_ms = timeout_ms  # for CONNACK/SUBACK and between bytes of one packet
        self.max_packet = max_packet
        self.cb = None
        self.oversize = 0  # incoming messages discarded for size
        self.last_tx = 0  # ticks_ms of the last packet sent (keepalive)
        self._will = None
        self._pid = 0
        self._inflight = {}  # pid -> (topic, msg, retain): QoS1 publishes awaiting PUBACK
        self._subacks = {}  # pid -> SUBACK return code
        self._sub_wait = 0  # pid of the SUBSCRIBE being waited for
        self._ping_at = None  # ticks_ms of an unanswered PINGREQ
        self._connack = None
        self._hdr = bytearray(5)
        self._poller = None

    # ---- setup ----

    def set_callback(self, cb):
        """cb(topic: bytes, msg: bytes) for each incoming PUBLISH."""
        self.cb = cb

    def set_last_will(self, topic, msg, retain=False, qos=0):
        """Message the broker publishes if the connection dies without DISCONNECT."""
        if qos not in (0, 1, 2):
            raise ValueError("will QoS")
        self._will = (_b(topic), _b(msg), retain, qos)

    def connect(self):
        """Open the connection (a socket from server/port unless one was given),
        send CONNECT and return the CONNACK's session-present flag. On any
        failure the socket is closed before the error propagates."""
        if self.sock is None:
            addr = socket.getaddrinfo(self.server, self.port)[0][-1]
            self.sock = socket.socket()
            try:
                self.sock.settimeout(self.timeout_ms / 1000)
                self.sock.connect(addr)
            except OSError:
                self.close()
                raise
        try:
            return self._handshake()
        except Exception:
            self.close()
            raise

    def _handshake(self):
        self._bind()
        self._ping_at = None
        self._connack = None
        # Variable header (3.1.2): protocol name "MQTT", level 4 (3.1.1), flags, keepalive.
        flags = 0x02 if self.clean else 0
        parts = [_str(self.client_id)]
        if self._will:
            topic, msg, retain, qos = self._will
            flags |= 0x04 | qos << 3 | (0x20 if retain else 0)
            parts.append(_str(topic))
            parts.append(_str(msg))
        if self.user is not None:
            flags |= 0x80
            parts.append(_str(_b(self.user)))
        if self.password is not None:
            flags |= 0x40
            parts.append(_str(_b(self.password)))
        vh = b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack("!H", self.keepalive)
        body = vh + b"".join(parts)
        self._send(self._fixed(_CONNECT, len(body)) + body)
        start = ticks_ms()
        while self._connack is None:
            left = self.timeout_ms - ticks_diff(ticks_ms(), start)
            if left <= 0 or self._packet(left) is None:
                raise MQTTError("no CONNACK")
        sp, rc = self._connack
        if rc:
            name = _REFUSED[rc] if rc < len(_REFUSED) else "code %d" % rc
            raise MQTTError("connection refused: " + name, rc)
        return bool(sp & 1)

    # ---- publish ----

    def publish(self, topic, msg, retain=False, qos=0):
        """Send a PUBLISH. QoS1 returns its packet id (see wait_puback/resend);
        QoS0 returns None."""
        if qos not in (0, 1):
            raise ValueError("QoS must be 0 or 1")
        topic = _b(topic)
        if isinstance(msg, str):
            msg = msg.encode()
        pid = 0
        if qos:
            pid = self._next_pid()
            # Tracked before sending, so resend() also covers a send that failed.
            self._inflight[pid] = (topic, msg, retain)
        self._publish(topic, msg, retain, qos, pid, 0)
        return pid or None

    def wait_puback(self, pid, timeout_ms):
        """Handle incoming packets until pid's PUBACK arrives (True) or timeout_ms
        passes (False)."""
        start = ticks_ms()
        while pid in self._inflight:
            left = timeout_ms - ticks_diff(ticks_ms(), start)
            if left <= 0:
                return False
            self._packet(left)
        return True

    def resend(self, pid=None):
        """Send in-flight QoS1 publish pid again (all of them if None) with the same
        packet id and DUP set (MQTT 4.4: on reconnect with clean session off)."""
        for p in [pid] if pid is not None else list(self._inflight):
            topic, msg, retain = self._inflight[p]
            self._publish(topic, msg, retain, 1, p, 1)

    def inflight(self):
        """Packet ids of QoS1 publishes not yet acknowledged by PUBACK."""
        return list(self._inflight)

    def forget(self, pid=None):
        """Stop tracking pid (all if None), e.g. after a clean-session reconnect
        when the outbox resends from its own records."""
        if pid is None:
            self._inflight = {}
        else:
            self._inflight.pop(pid, None)

    # ---- subscribe, keepalive, receive ----

    def subscribe(self, topic, qos=1):
        """SUBSCRIBE to one topic filter and wait for its SUBACK; return the granted
        QoS. Messages that arrive meanwhile go to the callback."""
        if qos not in (0, 1):
            raise ValueError("QoS must be 0 or 1")
        topic = _b(topic)
        pid = self._next_pid()
        body = struct.pack("!H", pid) + _str(topic) + bytes((qos,))
        self._sub_wait = pid
        self._send(self._fixed(_SUBSCRIBE, len(body)) + body)
        start = ticks_ms()
        try:
            while pid not in self._subacks:
                left = self.timeout_ms - ticks_diff(ticks_ms(), start)
                if left <= 0:
                    raise MQTTError("no SUBACK")
                self._packet(left)
        finally:
            self._sub_wait = 0
        rc = self._subacks.pop(pid)
        if rc == 0x80:
            raise MQTTError("subscription refused: " + topic.decode(), 0x80)
        if rc > qos:
            raise MQTTError("bad SUBACK code %d" % rc)
        return rc

    def ping(self):
        """Send PINGREQ; poll() expects the PINGRESP within keepalive seconds."""
        self._send(b"\xc0\x00")
        if self._ping_at is None:
            self._ping_at = ticks_ms()

    def poll(self, timeout_ms=0):
        """Wait up to timeout_ms for input, then handle every packet already
        received (at most 16). Also keeps the connection alive: sends PINGREQ
        after keepalive/2 s without sending, raises MQTTError when a PINGRESP is
        keepalive s late. Returns the number of packets handled."""
        if self.keepalive:
            now = ticks_ms()
            if self._ping_at is not None:
                if ticks_diff(now, self._ping_at) > self.keepalive * 1000:
                    raise MQTTError("no PINGRESP")
            elif ticks_diff(now, self.last_tx) >= self.keepalive * 500:
                self.ping()
        n = 0
        if self._packet(timeout_ms) is not None:
            n = 1
            while n < 16 and self._packet(0) is not None:
                n += 1
        return n

    def check_msg(self):
        """poll() without waiting (umqtt's name)."""
        return self.poll(0)

    def disconnect(self):
        """Send DISCONNECT (the broker discards the last will) and close."""
        try:
            self._send(b"\xe0\x00")
        finally:
            self.close()

    def close(self):
        """Close the socket without DISCONNECT (the broker publishes the last will)."""
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None
                self._poller = None

    # ---- internals ----

    def _bind(self):
        s = self.sock
        self._recv = getattr(s, "recv", None) or s.read
        self._sendall = getattr(s, "sendall", None) or s.write
        w = getattr(s, "wait_readable", None)
        if w is None:
            p = select.poll()
            p.register(s, select.POLLIN)
            self._poller = p

            def w(ms):
                return bool(p.poll(ms))

        self._ready = w

    def _next_pid(self):
        while True:
            self._pid = self._pid % 65535 + 1  # 1..65535, 0 is not a valid packet id
            if self._pid not in self._inflight and self._pid not in self._subacks:
                return self._pid

    def _fixed(self, first, n):
        # Fixed header: first byte + remaining length as a 1..4 byte varint (2.2.3).
        if n > _MAX_RL:
            raise ValueError("MQTT packet too large")
        h = self._hdr
        h[0] = first
        i = 1
        while True:
            b = n & 0x7F
            n >>= 7
            h[i] = b | 0x80 if n else b
            i += 1
            if not n:
                return bytes(h[:i])

    def _send(self, data):
        if self.sock is None:
            raise MQTTError("not connected")
        self._sendall(data)
        self.last_tx = ticks_ms()

    def _publish(self, topic, msg, retain, qos, pid, dup):
        n = 2 + len(topic) + len(msg) + (2 if qos else 0)
        head = self._fixed(_PUBLISH | dup << 3 | qos << 1 | (1 if retain else 0), n)
        head += _str(topic)
        if qos:
            head += struct.pack("!H", pid)
        if len(msg) <= _SMALL:
            self._send(head + msg)
        else:
            self._send(head)
            self._send(msg)

    def _read(self, n):
        # Exactly n bytes; waits at most timeout_ms for each chunk.
        got = None
        while True:
            if not self._ready(self.timeout_ms):
                raise MQTTError("read timeout")
            chunk = self._recv(n if got is None else n - len(got))
            if not chunk:
                raise MQTTError("connection closed")
            if got is None:
                if len(chunk) == n:
                    return chunk
                got = bytearray(chunk)
            else:
                got.extend(chunk)
            if len(got) == n:
                return bytes(got)

    def _skip(self, n):
        while n > 0:
            k = min(n, 256)
            self._read(k)
            n -= k

    def _packet(self, timeout_ms):
        # Read and handle one packet if one starts within timeout_ms; return its
        # first byte, or None if nothing came.
        if self.sock is None:
            raise MQTTError("not connected")
        if not self._ready(timeout_ms):
            return None
        first = self._read(1)[0]
        n = 0
        shift = 0
        while True:  # remaining length varint, at most 4 bytes
            b = self._read(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTError("malformed remaining length")
        if first & 0xF0 == _PUBLISH:
            self._publish_in(first, n)
            return first
        if n > 4:  # every other packet this client accepts is 2 or 3 bytes long
            raise MQTTError("unexpected packet 0x%02x, %d bytes" % (first, n))
        body = self._read(n) if n else b""
        if first == _PUBACK and n == 2:
            self._inflight.pop(struct.unpack("!H", body)[0], None)
        elif first == _SUBACK and n == 3:
            pid = struct.unpack("!H", body[:2])[0]
            if pid == self._sub_wait:
                self._subacks[pid] = body[2]
        elif first == _PINGRESP and n == 0:
            self._ping_at = None
        elif first == _CONNACK and n == 2 and self._connack is None:
            self._connack = (body[0], body[1])
        else:
            raise MQTTError("unexpected packet 0x%02x, %d bytes" % (first, n))
        return first

    def _publish_in(self, first, n):
        qos = (first >> 1) & 3
        if qos > 1:
            raise MQTTError("QoS %d PUBLISH not supported" % qos)
        big = n > self.max_packet
        tl = struct.unpack("!H", self._read(2))[0]
        n -= 2 + tl + (2 if qos else 0)
        if n < 0:
            raise MQTTError("malformed PUBLISH")
        if big:
            self._skip(tl)
        else:
            topic = self._read(tl)
        pid = struct.unpack("!H", self._read(2))[0] if qos else 0
        if big:
            self._skip(n)
            self.oversize += 1
        else:
            msg = self._read(n) if n else b""
            if self.cb:
                self.cb(topic, msg)
        if qos:
            self._send(struct.pack("!BBH", _PUBACK, 2, pid))
