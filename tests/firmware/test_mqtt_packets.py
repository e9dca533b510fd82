# firmware/lib/mqtt.py against a fake byte-buffer socket, on CPython and inside
# the MicroPython VM. Expected bytes are written out from the MQTT 3.1.1 spec
# (section numbers in comments), not produced by the client's own encoder.

import mqtt
from fwtest import raises
from mqtt import MQTTClient, MQTTError

CONNACK_OK = b"\x20\x02\x00\x00"


class FakeSock:
    """Scripted peer. rx parts are bytes, or an int n for n zero bytes (so a
    multi-megabyte packet costs no RAM). chunk > 0 caps each recv (fragments)."""

    def __init__(self, *parts, chunk=0):
        self.parts = list(parts)
        self.tx = bytearray()
        self.writes = 0
        self.chunk = chunk
        self.closed = False
        self.eof = False  # peer closed: readable, recv returns b""

    def feed(self, data):
        self.parts.append(data)

    def wait_readable(self, ms):
        return bool(self.parts) or self.eof

    def recv(self, n):
        if self.chunk:
            n = min(n, self.chunk)
        if not self.parts:
            return b""
        p = self.parts[0]
        if isinstance(p, int):
            k = min(n, p)
            if k == p:
                self.parts.pop(0)
            else:
                self.parts[0] = p - k
            return bytes(k)
        d = p[:n]
        if len(d) == len(p):
            self.parts.pop(0)
        else:
            self.parts[0] = p[n:]
        return d

    def sendall(self, data):
        self.tx.extend(data)
        self.writes += 1

    def close(self):
        self.closed = True

    def take(self):
        d = bytes(self.tx)
        self.tx = bytearray()
        self.writes = 0
        return d


def connected(sock=None, **kw):
    sock = sock or FakeSock()
    sock.feed(CONNACK_OK)
    c = MQTTClient(kw.pop("client_id", "wl-0007"), sock=sock, timeout_ms=200, **kw)
    c.connect()
    sock.take()
    return c, sock


# ---- CONNECT / CONNACK (3.1, 3.2) ----


def test_connect_bytes_with_will_user_and_password():
    s = FakeSock(CONNACK_OK)
    c = MQTTClient("wl-0007", sock=s, user="wl-0007", password="s3cret", keepalive=60)
    c.set_last_will("nodes/wl-0007/status", b"\x00offline\xff", retain=True, qos=1)
    assert c.connect() is False
    assert s.take() == (
        b"\x10\x45"  # CONNECT, remaining length 69
        b"\x00\x04MQTT\x04"  # protocol name, level 4
        b"\xee"  # user, password, will retain, will QoS 1, will, clean session
        b"\x00\x3c"  # keepalive 60 s
        b"\x00\x07wl-0007"
        b"\x00\x14nodes/wl-0007/status"
        b"\x00\x09\x00offline\xff"
        b"\x00\x07wl-0007"
        b"\x00\x06s3cret"
    )


def test_connect_minimal_persistent_session_reports_session_present():
    s = FakeSock(b"\x20\x02\x01\x00")
    c = MQTTClient("c", sock=s, keepalive=0, clean=False)
    assert c.connect() is True
    assert s.take() == b"\x10\x0d\x00\x04MQTT\x04\x00\x00\x00\x00\x01c"


def test_password_without_user_is_refused_locally():
    raises(ValueError, MQTTClient, "c", None, 1883, None, "pw")


def test_connack_refusal_codes_raise_mqtterror_with_the_code():
    names = {1: "protocol", 2: "identifier", 3: "unavailable", 4: "password", 5: "authorized"}
    for code in range(1, 6):
        s = FakeSock(b"\x20\x02\x00" + bytes((code,)))
        c = MQTTClient("c", sock=s)
        e = raises(MQTTError, c.connect)
        assert isinstance(e, OSError)
        assert e.code == code
        assert names[code] in str(e), str(e)
        assert s.closed and c.sock is None


def test_missing_or_malformed_connack():
    e = raises(MQTTError, MQTTClient("c", sock=FakeSock(), timeout_ms=50).connect)
    assert "CONNACK" in str(e)
    for bad in (b"\x20\x03\x00\x00\x00", b"\x21\x02\x00\x00", b"\xd0\x00"):
        raises(MQTTError, MQTTClient("c", sock=FakeSock(bad), timeout_ms=50).connect)


# ---- PUBLISH / PUBACK (3.3, 3.4) ----


def test_publish_qos1_bytes_and_packet_ids():
    c, s = connected()
    pid = c.publish("nodes/wl-0007/up", b"\xa2\x00\x01\x01\x62hi", qos=1)
    assert pid == 1
    assert s.take() == b"\x32\x1b\x00\x10nodes/wl-0007/up\x00\x01\xa2\x00\x01\x01\x62hi"
    assert c.publish("t", b"x", qos=1) == 2
    assert s.take() == b"\x32\x06\x00\x01t\x00\x02x"


def test_publish_qos0_retained_has_no_packet_id():
    c, s = connected()
    assert c.publish("a/b", "on", retain=True) is None
    assert s.take() == b"\x31\x07\x00\x03a/bon"
    assert c.inflight() == []


def test_publish_large_payload_varint_and_no_payload_copy():
    c, s = connected()
    c.publish("t", bytes(300))
    assert s.writes == 2  # header, then the payload object itself
    assert s.take() == b"\x30\xaf\x02\x00\x01t" + bytes(300)  # 303 = 0xaf 0x02
    c.publish("t", bytes(20))
    assert s.writes == 1  # small: one write, one TCP segment
    assert s.take() == b"\x30\x17\x00\x01t" + bytes(20)
    c.publish("t", bytes(16381))  # remaining length 16384: three varint bytes
    assert s.take()[:6] == b"\x30\x80\x80\x01\x00\x01"


def test_retransmit_uses_the_same_packet_id_with_dup():
    c, s = connected()
    pid = c.publish("nodes/wl-0007/up", b"reading", qos=1)
    first = s.take()
    c.resend(pid)
    again = s.take()
    assert again[0] == first[0] | 0x08  # DUP flag
    assert again[1:] == first[1:]  # same packet id, topic and payload
    assert c.inflight() == [pid]


def test_resend_all_after_reconnect_keeps_packet_ids():
    c, s = connected()
    p1 = c.publish("t", b"1", qos=1)
    p2 = c.publish("t", b"2", qos=1)
    c.close()
    s2 = FakeSock(CONNACK_OK)
    c.sock = s2
    c.connect()
    s2.take()
    c.resend()
    out = s2.take()
    assert b"\x3a\x06\x00\x01t\x00\x01" + b"1" in out
    assert b"\x3a\x06\x00\x01t\x00\x02" + b"2" in out
    assert sorted(c.inflight()) == [p1, p2]


def test_several_publishes_in_flight_are_tracked_by_puback():
    c, s = connected()
    pids = [c.publish("t", b"%d" % i, qos=1) for i in range(3)]
    assert pids == [1, 2, 3]
    s.feed(b"\x40\x02\x00\x02")  # PUBACK 2 arrives first
    s.feed(b"\x40\x02\x00\x01")
    assert c.wait_puback(1, 200) is True
    assert c.inflight() == [3]
    assert c.wait_puback(3, 20) is False
    s.feed(b"\x40\x02\x00\x09")  # unknown id: ignored
    s.feed(b"\x40\x02\x00\x03")
    assert c.poll(0) == 2
    assert c.inflight() == []


def test_packet_ids_wrap_and_skip_ids_still_in_flight():
    c, s = connected()
    c.publish("t", b"a", qos=1)  # pid 1 stays in flight
    c._pid = 65534
    assert c.publish("t", b"b", qos=1) == 65535
    assert c.publish("t", b"c", qos=1) == 2  # 0 is not an id; 1 is taken


# ---- SUBSCRIBE / SUBACK (3.8, 3.9) ----


def test_subscribe_bytes_and_granted_qos():
    c, s = connected()
    s.feed(b"\x90\x03\x00\x01\x01")
    assert c.subscribe("nodes/wl-0007/down") == 1
    assert s.take() == b"\x82\x17\x00\x01\x00\x12nodes/wl-0007/down\x01"


def test_suback_failure_0x80_raises():
    c, s = connected()
    s.feed(b"\x90\x03\x00\x01\x80")
    e = raises(MQTTError, c.subscribe, "nodes/other/down")
    assert e.code == 0x80


def test_no_suback_times_out():
    c, s = connected()
    e = raises(MQTTError, c.subscribe, "x")
    assert "SUBACK" in str(e)


def test_messages_arriving_before_the_suback_reach_the_callback():
    c, s = connected()
    got = []
    c.set_callback(lambda t, m: got.append((t, m)))
    s.feed(b"\x30\x0d\x00\x06down/xhello")  # a queued QoS0 message first
    s.feed(b"\x90\x03\x00\x01\x01")
    assert c.subscribe("down/x") == 1
    assert got == [(b"down/x", b"hello")]


# ---- PINGREQ / PINGRESP, DISCONNECT (3.12-3.14) ----


def test_pingreq_bytes_and_pingresp():
    c, s = connected(keepalive=30)
    c.ping()
    assert s.take() == b"\xc0\x00"
    s.feed(b"\xd0\x00")
    assert c.poll(0) == 1
    assert c._ping_at is None


def test_poll_sends_pingreq_after_half_the_keepalive_without_traffic():
    c, s = connected(keepalive=10)
    c.poll(0)
    assert s.take() == b""  # just connected
    c.last_tx = mqtt.ticks_ms() - 5001
    c.poll(0)
    assert s.take() == b"\xc0\x00"
    c.poll(0)
    assert s.take() == b""  # one PINGREQ outstanding at a time


def test_missing_pingresp_raises():
    c, s = connected(keepalive=10)
    c.ping()
    c._ping_at = mqtt.ticks_ms() - 10001
    e = raises(MQTTError, c.poll, 0)
    assert "PINGRESP" in str(e)


def test_disconnect_bytes_and_close():
    c, s = connected()
    c.disconnect()
    assert s.take() == b"\xe0\x00"
    assert s.closed and c.sock is None
    raises(MQTTError, c.publish, "t", b"x")


# ---- incoming PUBLISH (3.3), remaining length (2.2.3) ----


def test_incoming_qos0_and_qos1_publish_with_puback():
    c, s = connected()
    got = []
    c.set_callback(lambda t, m: got.append((t, m)))
    s.feed(b"\x30\x08\x00\x03a/b\x01\x02\x03")
    s.feed(b"\x32\x09\x00\x03a/b\x12\x34\xa1\x08")
    assert c.poll(0) == 2
    assert got == [(b"a/b", b"\x01\x02\x03"), (b"a/b", b"\xa1\x08")]
    assert s.take() == b"\x40\x02\x12\x34"  # PUBACK for 0x1234 only


def test_callback_error_leaves_qos1_message_unacknowledged():
    c, s = connected()

    def boom(t, m):
        raise ValueError("bad command")

    c.set_callback(boom)
    s.feed(b"\x32\x08\x00\x01t\x00\x07abc")
    raises(ValueError, c.poll, 0)
    assert s.take() == b""  # the broker will deliver it again


def _incoming(rl_bytes, rl, qos=0):
    # A PUBLISH to topic "d" whose remaining length is rl, header given literally.
    pid = b"\x00\x05" if qos else b""
    body = b"\x00\x01d" + pid
    return b"\x30" if not qos else b"\x32", rl_bytes, body, rl - len(body)


def test_remaining_length_of_one_two_and_three_bytes():
    # Boundary values of the spec's table in 2.2.3.
    for rl_bytes, rl in ((b"\x7f", 127), (b"\x80\x01", 128), (b"\x80\x80\x01", 16384)):
        for qos in (0, 1):
            c, s = connected(max_packet=20000)
            got = []
            c.set_callback(lambda t, m, got=got: got.append((t, m)))
            first, hdr, body, n = _incoming(rl_bytes, rl, qos)
            s.feed(first + hdr + body + b"\x07" * n)
            s.feed(b"\x30\x04\x00\x01dZ")  # the next packet must still parse
            assert c.poll(0) == 2
            assert got == [(b"d", b"\x07" * n), (b"d", b"Z")], (rl, qos)
            assert s.take() == (b"\x40\x02\x00\x05" if qos else b"")


def test_remaining_length_of_four_bytes_oversized_is_skipped_and_acked():
    c, s = connected(max_packet=4096)
    got = []
    c.set_callback(lambda t, m: got.append((t, m)))
    first, hdr, body, n = _incoming(b"\x80\x80\x80\x01", 2097152, qos=1)
    assert hdr == b"\x80\x80\x80\x01"
    s.feed(first + hdr + body)
    s.feed(n)  # 2 MiB of payload, streamed
    s.feed(b"\x30\x04\x00\x01dZ")
    assert c.poll(0) == 2
    assert got == [(b"d", b"Z")]  # skipped exactly to the next packet
    assert c.oversize == 1
    assert s.take() == b"\x40\x02\x00\x05"


def test_five_byte_remaining_length_is_malformed():
    c, s = connected()
    s.feed(b"\x30\xff\xff\xff\xff\x01")
    raises(MQTTError, c.poll, 0)


def test_fragmented_reads_one_byte_at_a_time():
    s = FakeSock(chunk=1)
    c, s = connected(s)
    got = []
    c.set_callback(lambda t, m: got.append((t, m)))
    c.publish("t", b"x", qos=1)
    s.feed(b"\x40\x02\x00\x01")
    s.feed(b"\x32\x0b\x00\x04down\x00\x2aack")
    s.feed(b"\x90\x03\x00\x02\x01")
    assert c.wait_puback(1, 200)
    assert c.subscribe("down") == 1
    assert got == [(b"down", b"ack")]


def test_unexpected_or_qos2_packets_are_protocol_errors():
    for bad in (b"\x50\x02\x00\x01", b"\x34\x06\x00\x01t\x00\x01x", b"\x41\x02\x00\x01"):
        c, s = connected()
        s.feed(bad)
        raises(MQTTError, c.poll, 0)


def test_peer_closing_mid_packet_raises():
    c, s = connected()
    s.feed(b"\x30\x10\x00\x01d")
    s.eof = True
    e = raises(MQTTError, c.poll, 0)
    assert isinstance(e, OSError)
    assert "closed" in str(e)


def test_stalled_peer_mid_packet_times_out():
    c, s = connected()
    s.feed(b"\x30\x10\x00\x01d")
    e = raises(MQTTError, c.poll, 0)
    assert "timeout" in str(e)
