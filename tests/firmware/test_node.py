# firmware/lib/node.py (the runtime loop) on CPython and in the MicroPython VM,
# against a fake board (virtual clock, sensors, Wi-Fi) and a fake broker that
# speaks MQTT 3.1.1 bytes to the real mqtt.py client through a fake socket.
# The outbox is the real one, on a directory under /tmp.

import json
import os
import struct

import cbor
import config
import gpssim
import node as nodemod
import wire
from fwtest import data_path, rmtree, scratch, tmpdir

DEV = "wl-0007"
UP = "nodes/wl-0007/up"
DOWN = "nodes/wl-0007/down"
STATUS = "nodes/wl-0007/status"
EPOCH = 1767225600  # 2026-01-01, a valid wall clock


def on_flash(outbox_dir):
    """(boot, seq) of every complete record in the segment files, read independently
    of outbox.py (16-byte overhead: <BBHII header, payload, CRC-32)."""
    out = []
    for nm in sorted(os.listdir(outbox_dir)):
        if not nm.endswith(".seg"):
            continue
        with open(outbox_dir + "/" + nm, "rb") as f:
            data = f.read()
        off = 0
        while off + 16 <= len(data):
            _m, _fl, n, boot, seq = struct.unpack("<BBHII", data[off : off + 12])
            if off + 16 + n > len(data):
                break
            out.append((boot, seq))
            off += 16 + n
    return out


# ---------------------------------------------------------------- fake broker


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _mstr(b):
    return struct.pack("!H", len(b)) + b


class FakeConn:
    """The client's socket: bytes the client sends are parsed as MQTT packets and
    answered like a broker would; recv() hands out the queued answers."""

    def __init__(self, broker):
        self.broker = broker
        self.rx = bytearray()
        self.inbuf = bytearray()
        self.eof = False
        self.closed = False
        self.clean_exit = False
        self.will = None
        self.info = {}
        self.subs = []
        self.pid = 0

    def wait_readable(self, ms):
        return bool(self.rx) or self.eof

    def recv(self, n):
        if not self.rx:
            return b""
        d = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return d

    def sendall(self, data):
        if self.eof:
            raise OSError(104)  # ECONNRESET
        self.inbuf.extend(data)
        while True:
            b = self.inbuf
            if len(b) < 2:
                return
            n = 0
            shift = 0
            i = 1
            while True:
                if i >= len(b):
                    return
                c = b[i]
                n |= (c & 0x7F) << shift
                i += 1
                if not c & 0x80:
                    break
                shift += 7
            if len(b) < i + n:
                return
            first = b[0]
            body = bytes(b[i : i + n])
            self.inbuf = b[i + n :]
            self._packet(first, body)

    def _packet(self, first, body):
        br = self.broker
        kind = first & 0xF0
        if kind == 0x10:  # CONNECT: protocol name, level, flags, keepalive, payload
            flags = body[7]
            i = 10
            ln = struct.unpack("!H", body[i : i + 2])[0]
            self.info["client_id"] = body[i + 2 : i + 2 + ln].decode()
            i += 2 + ln
            if flags & 0x04:
                ln = struct.unpack("!H", body[i : i + 2])[0]
                topic = body[i + 2 : i + 2 + ln].decode()
                i += 2 + ln
                ln = struct.unpack("!H", body[i : i + 2])[0]
                self.will = (topic, body[i + 2 : i + 2 + ln], bool(flags & 0x20))
                i += 2 + ln
            if flags & 0x80:
                ln = struct.unpack("!H", body[i : i + 2])[0]
                self.info["user"] = body[i + 2 : i + 2 + ln].decode()
                i += 2 + ln
            if flags & 0x40:
                ln = struct.unpack("!H", body[i : i + 2])[0]
                self.info["password"] = body[i + 2 : i + 2 + ln].decode()
            self.info["clean"] = bool(flags & 0x02)
            self.rx.extend(b"\x20\x02\x00\x00")
        elif kind == 0x30:
            qos = (first >> 1) & 3
            ln = struct.unpack("!H", body[:2])[0]
            topic = body[2 : 2 + ln].decode()
            i = 2 + ln
            pid = 0
            if qos:
                pid = struct.unpack("!H", body[i : i + 2])[0]
                i += 2
            br.on_publish(self, topic, body[i:], bool(first & 1), bool(first & 8))
            if qos and br.puback and not self.eof:
                self.rx.extend(b"\x40\x02" + struct.pack("!H", pid))
        elif first == 0x82:
            pid = body[:2]
            ln = struct.unpack("!H", body[2:4])[0]
            self.subs.append(body[4 : 4 + ln].decode())
            self.rx.extend(b"\x90\x03" + pid + b"\x01")
        elif first == 0xC0:
            self.rx.extend(b"\xd0\x00")
        elif first == 0xE0:
            self.clean_exit = True
        # PUBACK (0x40) for our downlinks: nothing to do

    def deliver(self, topic, payload):
        self.pid += 1
        body = _mstr(topic.encode()) + struct.pack("!H", self.pid) + payload
        self.rx.extend(b"\x32" + _varint(len(body)) + body)

    def close(self):
        if not self.closed:
            self.closed = True
            if not self.clean_exit and self.will:
                self.broker.on_publish(None, self.will[0], self.will[1], self.will[2], False)


class FakeBroker:
    def __init__(self, dev=DEV):
        self.dev = dev
        self.t_up = "nodes/%s/up" % dev
        self.t_down = "nodes/%s/down" % dev
        self.up = True
        self.puback = True
        self.auto_ack = False  # act as the edge agent: e2e-ack what arrives on `up`
        self.conns = []
        self.attempts = 0
        self.published = []  # (topic, payload, retain, dup)
        self.retained = {}
        self.hook = None  # called with (boot, seq, payload) for each uplink
        self._got = {}  # boot -> set of seqs (auto_ack)
        self._lo = {}

    def accept(self):
        self.attempts += 1
        if not self.up:
            raise OSError(111)  # ECONNREFUSED
        c = FakeConn(self)
        self.conns.append(c)
        return c

    def conn(self):
        for c in reversed(self.conns):
            if not c.closed and not c.eof:
                return c
        return None

    def stop(self):
        """The broker goes away: open connections see EOF."""
        self.up = False
        for c in self.conns:
            c.eof = True

    def on_publish(self, conn, topic, payload, retain, dup):
        self.published.append((topic, payload, retain, dup))
        if retain:
            self.retained[topic] = payload
        if topic == self.t_up:
            env = cbor.loads(payload)
            if self.hook:
                self.hook(env[2], env[3], payload)
            if self.auto_ack and conn is not None:
                self._ack(conn, env)

    def _ack(self, conn, env):
        boot, seq = env[2], env[3]
        got = self._got.setdefault(boot, set())
        got.add(seq)
        if wire.K_LO in env:
            self._lo[boot] = max(self._lo.get(boot, 0), env[wire.K_LO])
        hw = self._lo.get(boot, 1) - 1
        while hw + 1 in got or hw + 1 < self._lo.get(boot, 0):
            hw += 1
        if hw:
            conn.deliver(self.t_down, wire.down(self.dev, ack={boot: hw}))

    def send_down(self, payload):
        self.conn().deliver(self.t_down, payload)

    def ups(self):
        """(boot, seq, dup) of every uplink, in arrival order."""
        out = []
        for topic, payload, _r, dup in self.published:
            if topic == self.t_up:
                env = cbor.loads(payload)
                out.append((env[2], env[3], dup))
        return out

    def first_seqs(self):
        seen = []
        for b, s, _d in self.ups():
            if (b, s) not in seen:
                seen.append((b, s))
        return seen


# ---------------------------------------------------------------- fake board


class FakePin:
    def __init__(self, v=0):
        self.v = v

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v


class FakeAdc:
    def __init__(self, uv):
        self.uv = uv

    def read_uv(self):
        return self.uv


class FakeWdt:
    def __init__(self, ms):
        self.ms = ms
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class FakeLink:
    kind = "wifi"

    def __init__(self, board):
        self.board = board

    def up(self):
        self.board.link_ups += 1

    def isconnected(self):
        return self.board.wifi

    def rssi(self):
        return -61 if self.board.wifi else None


class FakeBoard:
    """board.Board's interface on a virtual clock: sleep_ms advances it at once."""

    def __init__(self, broker, cause="power_on"):
        self.broker = broker
        self.cause = cause
        self.t = 1000
        self._us = 0
        self.wifi = True
        self.link_ups = 0
        self.distance_m = 3.0  # the water is this far below the sensor
        self.readings = []  # board ticks of each ultrasonic ping
        self.rtc = b""
        self.resets = 0
        self.slept = []
        self.watchdog = None
        self.gps = None

    def reset_cause(self):
        return self.cause

    def uid_hex(self):
        return "240ac4000001"

    def wdt(self, ms):
        self.watchdog = FakeWdt(ms)
        return self.watchdog

    def pin(self, name, out=False, pull=None):
        return FakePin()

    def adc(self, name):
        if name == "batt_adc":
            return FakeAdc(1_900_000)  # 3.8 V through the 2:1 divider
        if name == "pressure_adc":
            return FakeAdc(1_440_000)  # 12 mA across 120 ohm
        return None

    def uart(self, rx, tx, baud, uid=2):
        return self.gps

    def time_pulse_us(self, pin, level, timeout_us):
        self.readings.append(self.t)
        return int(self.distance_m * 2 / 343.42 * 1e6)  # 20 degC, as sr04t assumes

    def sleep_us(self, us):
        self._us += us
        self.t += self._us // 1000
        self._us %= 1000

    def sleep_ms(self, ms):
        self.t += ms

    def ticks_ms(self):
        return self.t

    def now(self):
        return EPOCH + self.t // 1000, True

    def set_time(self, unix):
        pass

    def sync_time(self):
        return False

    def free_heap(self):
        return 81234

    def deepsleep(self, ms):
        self.slept.append(ms)

    def reset(self):
        self.resets += 1

    def rtc_read(self):
        return self.rtc

    def rtc_write(self, data):
        self.rtc = bytes(data)

    def link(self, secrets, feed=None):
        return FakeLink(self)

    def connect_tcp(self, host, port, tls, timeout_ms):
        return self.broker.accept()


# ---------------------------------------------------------------- helpers


def make_cfg(**wl):
    with open(data_path("firmware/examples/water_level.json")) as f:
        raw = json.load(f)
    raw["water_level"]["deep_sleep"] = False
    raw["water_level"]["pings"] = 1
    raw["water_level"].update(wl)
    cfg = config.parse(raw, {"wifi_pass": "12345678", "mqtt_pass": "pw"})
    return cfg, cfg.pop("secrets")


class Rig:
    """A node on a fake board and broker, in a fresh directory; 1 config second = 1 ms."""

    def __init__(self, cause="power_on", root=None, broker=None, board=None, max_bytes=None,
                 **wl):
        self.root = root or tmpdir()
        self.broker = broker or FakeBroker()
        self.board = board or FakeBoard(self.broker, cause)
        self.cfg, self.secrets = make_cfg(**wl)
        if max_bytes:
            self.cfg["outbox"]["max_bytes"] = max_bytes
        self.logs = []
        self.node = nodemod.Node(self.cfg, self.secrets, self.board, self.root, ms_per_s=1,
                                 ack_timeout_ms=5000, backoff_base_ms=100, backoff_cap_ms=2000,
                                 awake_ms=3000, link_timeout_ms=1000, log=self.logs.append)
        self.node.start()

    def until(self, cond, limit=5000):
        for _ in range(limit):
            if cond():
                return
            self.node.step()
        assert cond(), "condition not reached in %d steps" % limit

    def steps(self, n):
        for _ in range(n):
            self.node.step()

    def done(self):
        rmtree(self.root)


# ---------------------------------------------------------------- tests


def test_each_reading_is_on_flash_before_it_is_published():
    r = Rig()
    outbox_dir = r.root + "/data/outbox"
    checked = []

    def hook(boot, seq, payload):
        assert (boot, seq) in on_flash(outbox_dir), "published before it was flushed"
        checked.append(seq)

    r.broker.hook = hook
    r.until(lambda: len(checked) >= 3)
    assert checked[:3] == [1, 2, 3]
    env = cbor.loads(r.broker.published[[t for t, _p, _r, _d in r.broker.published].index(UP)][1])
    assert (env[0], env[1], env[2], env[3], env[4]) == (1, DEV, 1, 1, "water_level")
    names = [rec[wire.N] for rec in env[5]]
    assert names[:2] == ["level", "distance"] and "battery" in names and "plevel" in names
    assert env[5][0][wire.BT] >= EPOCH and wire.K_UT not in env and wire.K_LO not in env
    assert abs(env[5][0][wire.V] - (4.5 - 3.0)) < 0.01  # level = datum - distance
    assert r.board.watchdog.ms == 120000 and r.board.watchdog.feeds >= 3
    r.done()


def test_puback_alone_keeps_records_only_the_e2e_ack_removes_them():
    r = Rig()
    r.until(lambda: len(r.broker.ups()) >= 3)
    r.steps(5)
    assert r.node.outbox.depth() == len(r.board.readings) >= 3  # all PUBACKed, all kept
    assert r.node.client.inflight() == []  # the PUBACKs did arrive
    r.broker.send_down(wire.down(DEV, ack={1: 2}))
    r.steps(1)
    left = [(b, s) for b, s, _p, _a in r.node.outbox.pending(100)]
    assert (1, 1) not in left and (1, 2) not in left and (1, 3) in left
    assert r.node.acked == 2
    r.done()


def test_unacked_record_is_resent_after_the_timeout_with_the_same_bytes():
    r = Rig()
    r.cfg["intervals"]["normal_s"] = 86400  # one reading, then a long wait
    r.until(lambda: len(r.broker.ups()) >= 1)
    first = [p for t, p, _r, _d in r.broker.published if t == UP][0]
    r.steps(20)  # 2 s of 5: not yet
    assert len(r.broker.ups()) == 1
    r.until(lambda: len(r.broker.ups()) >= 2, 100)
    again = [p for t, p, _r, _d in r.broker.published if t == UP]
    assert again[1] == first and r.broker.ups()[1][:2] == (1, 1)
    r.broker.send_down(wire.down(DEV, ack={1: 1}))
    r.steps(200)  # 20 s: acked, so never again
    assert len(r.broker.ups()) == 2 and r.node.outbox.depth() == 0
    r.done()


def test_reconnect_resends_every_unacked_record_with_its_boot_and_seq():
    r = Rig()
    r.until(lambda: len(r.broker.ups()) >= 3)
    sent = [p for t, p, _r, _d in r.broker.published if t == UP]
    old = r.broker.conn()
    old.eof = True  # the connection breaks
    r.broker.published = []
    r.until(lambda: len(r.broker.ups()) >= 3)
    assert r.broker.conn() is not old and old.closed
    again = [p for t, p, _r, _d in r.broker.published if t == UP]
    assert again[:3] == sent[:3]  # same (boot, seq), same bytes, in order
    assert any("mqtt" in ln for ln in r.logs)
    r.done()


def test_broker_down_for_100_readings_then_up_delivers_all_in_order():
    r = Rig()
    r.broker.up = False
    r.until(lambda: r.node.seq.last >= 100, 200000)
    assert r.broker.published == [] and r.node.outbox.depth() == 100
    # measuring went on at its interval while the reconnects backed off
    gaps = [b - a for a, b in zip(r.board.readings, r.board.readings[1:])]
    assert max(gaps) <= 900 + 100
    assert 1 < r.broker.attempts < 100
    r.broker.up = True
    r.broker.auto_ack = True
    n = r.node.seq.last
    r.until(lambda: r.node.outbox.depth() == 0 and r.node.seq.last >= n)
    firsts = r.broker.first_seqs()
    assert firsts[:100] == [(1, s) for s in range(1, 101)]
    assert r.node.outbox.dropped == 0
    r.done()


def test_overflow_sets_lo_so_the_agent_can_close_the_gap():
    r = Rig(max_bytes=4096)
    r.broker.up = False
    r.until(lambda: r.node.outbox.dropped > 0 and r.node.seq.last >= 60, 200000)
    low = r.node.outbox.low(1)
    assert low > 1
    r.broker.up = True
    r.broker.auto_ack = True
    r.until(lambda: r.node.outbox.depth() == 0)
    los = [cbor.loads(p).get(wire.K_LO) for t, p, _r, _d in r.broker.published if t == UP]
    assert any(lo is not None and lo >= low for lo in los)
    for t, p, _r, _d in r.broker.published:
        if t == UP:
            env = cbor.loads(p)
            assert wire.K_LO not in env or 1 <= env[wire.K_LO] <= env[3]
    r.done()


def test_status_at_connect_and_last_will():
    r = Rig()
    r.until(lambda: STATUS in r.broker.retained)
    st = cbor.loads(r.broker.retained[STATUS])
    assert st["online"] is True and st["dev"] == DEV and st["boot"] == 1
    assert st["fw"] == "0.1.0" and st["reset"] == "power_on" and st["link"] == "wifi"
    assert st["interval"] == 900 and st["rssi"] == -61 and st["heap"] == 81234
    assert abs(st["batt"] - 3.8) < 0.001 and "cmd_id" not in st
    c = r.broker.conn()
    assert c.info == {"client_id": DEV, "user": DEV, "password": "pw", "clean": True}
    assert c.subs == [DOWN]
    assert c.will == (STATUS, wire.status_offline(DEV), True)
    r.done()


def test_set_interval_changes_the_interval_and_is_echoed_in_status():
    r = Rig()
    r.until(lambda: len(r.board.readings) >= 2)
    assert r.board.readings[1] - r.board.readings[0] == 900
    r.broker.send_down(wire.down(DEV, cmd="set_interval", args={"normal": 300}, cid=7))
    r.until(lambda: len(r.board.readings) >= 5)
    assert r.board.readings[4] - r.board.readings[3] == 300
    assert r.cfg["intervals"]["normal_s"] == 300
    st = cbor.loads(r.broker.retained[STATUS])
    assert st["cmd_id"] == 7 and st["interval"] == 300
    # out of the schema's range: logged, nothing changes
    r.broker.send_down(wire.down(DEV, cmd="set_interval", args={"normal": 1}, cid=8))
    r.steps(3)
    assert r.cfg["intervals"]["normal_s"] == 300
    assert any("command ignored" in ln and "normal_s" in ln for ln in r.logs)
    r.done()


def test_set_thresholds_moves_the_alert_line_and_the_alarm_goes_out():
    r = Rig()
    r.until(lambda: len(r.board.readings) >= 1)
    r.broker.send_down(wire.down(DEV, cmd="set_thresholds", args={"alert": 1.4}, cid=5))
    r.until(lambda: len(r.broker.ups()) >= 2 and r.node.seq.last >= 2)
    assert r.cfg["water_level"]["alert_m"] == 1.4
    env = cbor.loads([p for t, p, _r, _d in r.broker.published if t == UP][-1])
    assert gpssim.val(env[5], "event", wire.VS) == "flood_alert"  # level 1.5 >= 1.4
    r.until(lambda: len(r.board.readings) >= 4)
    # fast_s (60 ms here) while in alert; a reading itself takes 200 ms of sensor warm-up
    assert r.board.readings[3] - r.board.readings[2] == 200
    r.broker.send_down(wire.down(DEV, cmd="status"))
    r.steps(1)
    assert cbor.loads(r.broker.retained[STATUS])["interval"] == 60
    r.broker.send_down(wire.down(DEV, cmd="set_thresholds", args={"dwell": 5}, cid=6))
    r.steps(2)
    assert any("command ignored" in ln for ln in r.logs)  # a boat threshold on a water node
    r.done()


def test_status_command_publishes_status_now():
    r = Rig()
    r.until(lambda: STATUS in r.broker.retained)
    n = len([1 for t, _p, _r, _d in r.broker.published if t == STATUS])
    r.broker.send_down(wire.down(DEV, cmd="status", cid=3))
    r.steps(1)
    st = [p for t, p, _r, _d in r.broker.published if t == STATUS]
    assert len(st) == n + 1 and cbor.loads(st[-1])["cmd_id"] == 3
    r.done()


def test_unknown_command_and_malformed_downlink_are_logged_and_ignored():
    r = Rig()
    r.until(lambda: len(r.broker.ups()) >= 2)
    before = json.dumps(r.cfg)
    # an unknown command beside an ack: the ack still counts
    r.broker.send_down(wire.down(DEV, ack={1: 1}, cmd="self_destruct", args={"now": 1}, cid=9))
    r.broker.send_down(b"\xff\x00garbage")
    r.broker.send_down(cbor.dumps({0: 1, 1: DEV, 5: 1}))  # unknown key < 16
    r.broker.send_down(wire.down("wl-0008", ack={1: 2}))  # another device's
    r.steps(3)
    assert json.dumps(r.cfg) == before and r.board.resets == 0 and r.node.running
    assert r.node.acked == 1 and r.node.cmd_id == 9
    assert len([ln for ln in r.logs if "unknown command" in ln]) == 1
    assert len([ln for ln in r.logs if "downlink ignored" in ln]) == 3
    n = len(r.board.readings)
    r.steps(30)
    assert len(r.board.readings) > n  # still measuring
    r.done()


def test_reboot_command_resets_the_board_and_leaves_the_last_will():
    r = Rig()
    r.until(lambda: len(r.broker.ups()) >= 1)
    r.broker.send_down(wire.down(DEV, cmd="reboot", cid=4))
    r.steps(1)
    assert r.board.resets == 1 and not r.node.running
    assert cbor.loads(r.broker.retained[STATUS]) == {"v": 1, "dev": DEV, "online": False}
    # the next boot gets the next boot number and sends what was not acked
    broker = r.broker
    broker.published = []
    r2 = Rig(cause="hard", root=r.root, broker=broker)
    assert r2.node.boot == 2
    r2.until(lambda: (1, 1) in broker.first_seqs() and (2, 1) in broker.first_seqs())
    assert cbor.loads(broker.retained[STATUS])["reset"] == "hard"
    r2.done()


def test_deep_sleep_node_reads_delivers_saves_state_and_sleeps():
    broker = FakeBroker()
    broker.auto_ack = True
    r = Rig(broker=broker, deep_sleep=True)
    r.node.run()
    assert len(r.board.readings) == 1 and broker.first_seqs() == [(1, 1)]
    assert r.node.outbox.depth() == 0 and not r.node.running
    assert len(r.board.slept) == 1 and 0 < r.board.slept[0] <= 900
    assert r.board.rtc[:3] == b"WL\x01" and r.board.rtc[4] == 1  # one level in the history
    assert broker.conns[0].clean_exit and broker.conns[0].info["clean"] is False
    board = r.board
    board.cause = "deepsleep"
    board.t += board.slept[0] + 1000
    r2 = Rig(root=r.root, broker=broker, board=board, deep_sleep=True)
    r2.node.run()
    assert r2.node.boot == 2 and broker.first_seqs() == [(1, 1), (2, 1)]
    assert board.rtc[4] == 2  # the history survived the sleep
    r2.done()


def test_deep_sleep_without_a_link_keeps_the_reading_for_the_next_wake():
    broker = FakeBroker()
    broker.up = False
    r = Rig(broker=broker, deep_sleep=True)
    r.node.run()
    assert broker.published == [] and len(r.board.slept) == 1
    broker.up = True
    broker.auto_ack = True
    r.board.cause = "deepsleep"
    r2 = Rig(root=r.root, broker=broker, board=r.board, deep_sleep=True)
    r2.node.run()
    assert broker.first_seqs()[:2] == [(1, 1), (2, 1)] and r2.node.outbox.depth() == 0
    r2.done()


def test_wifi_down_keeps_measuring_and_reconnects():
    r = Rig()
    r.until(lambda: len(r.broker.ups()) >= 1)
    r.board.wifi = False
    n = len(r.board.readings)
    r.steps(50)
    assert r.node.client is None and len(r.board.readings) > n and r.board.link_ups >= 1
    r.board.wifi = True
    r.broker.auto_ack = True
    r.until(lambda: r.node.outbox.depth() == 0 and r.node.client is not None)
    assert [s for _b, s in r.broker.first_seqs()] == list(range(1, r.node.seq.last + 1))
    r.done()


class FakeUart:
    def __init__(self):
        self.rx = bytearray()

    def any(self):
        return len(self.rx)

    def read(self, n=-1):
        d = bytes(self.rx)
        self.rx = bytearray()
        return d or None


def rmc_line(lat_dm, lon_dm):
    """A valid RMC sentence, lat/lon in NMEA's ddmm.mmm form (north, east)."""
    return (gpssim.cs("GNRMC,070000.00,A,%s,N,%s,E,0.50,90.0,010126,,,A" % (lat_dm, lon_dm))
            + "\r\n").encode()


def test_boat_gps_role_sends_its_geofence_alarm_first():
    with open(data_path("firmware/examples/boat.json")) as f:
        raw = json.load(f)
    cfg = config.parse(raw, {"mqtt_pass": "pw"})
    secrets = cfg.pop("secrets")
    with scratch() as root:
        broker = FakeBroker("boat-0112")
        board = FakeBoard(broker)
        board.gps = FakeUart()
        n = nodemod.Node(cfg, secrets, board, root, ms_per_s=1, backoff_base_ms=100,
                         backoff_cap_ms=500, log=[].append)
        n.start()
        broker.up = False
        board.gps.rx.extend(b"$GPGSV,noise\r\n" + rmc_line("1003.300", "10545.900"))  # in hau-07
        for _ in range(20):
            n.step()
        board.gps.rx.extend(rmc_line("1012.000", "10530.000"))  # outside every zone
        for _ in range(5):
            n.step()
        assert broker.published == [] and n.seq.last >= 3
        broker.up = True
        broker.auto_ack = True
        for _ in range(100):
            n.step()
        assert n.outbox.depth() == 0
        packs = [cbor.loads(p)[5] for t, p, _r, _d in broker.published if t == broker.t_up]
        events = [gpssim.val(p, "event", wire.VS) for p in packs]
        assert events[0] == "zone_exit"  # the alarm overtook the older readings
        assert "zone_enter" in events[1:]
        assert gpssim.val(packs[0], "zone", wire.VS) == ""
        assert abs(gpssim.val(packs[0], "lat") - 10.2) < 1e-6
        seqs = [s for _b, s in broker.first_seqs()]
        assert sorted(seqs) == list(range(1, n.seq.last + 1)) and seqs[1:] == sorted(seqs[1:])


def write_files(root, cfg, secrets):
    with open(root + "/config.json", "w") as f:
        f.write(json.dumps(cfg))
    with open(root + "/secrets.json", "w") as f:
        f.write(json.dumps(secrets))


def example():
    with open(data_path("firmware/examples/water_level.json")) as f:
        return json.load(f)


def test_invalid_config_prints_one_line_and_idles():
    with scratch() as root:
        cfg = example()
        cfg["water_level"]["alert_m"] = "x"
        write_files(root, cfg, {"wifi_pass": "12345678"})
        logs = []
        boards = []
        idles = []
        got = nodemod.main(root, make_board=boards.append, log=logs.append,
                           idle=lambda: idles.append(1))
        assert got is None and boards == [] and idles == [1]
        assert logs == ["config error: water_level.alert_m: must be a number, got 'x'"]
        assert "data" not in os.listdir(root)  # nothing started: no boot counted
        # a bad secret is named, its value never printed
        write_files(root, example(), {"wifi_pass": "hunter2"})
        logs = []
        nodemod.main(root, make_board=boards.append, log=logs.append, idle=lambda: None)
        assert len(logs) == 1 and logs[0].startswith("config error: secrets: wifi_pass:")
        assert "hunter2" not in logs[0]
        # a missing file
        os.remove(root + "/config.json")
        logs = []
        nodemod.main(root, make_board=boards.append, log=logs.append, idle=lambda: None)
        assert len(logs) == 1 and logs[0].startswith("config error: ") and "config.json" in logs[0]


def test_main_runs_the_node_with_a_valid_config_and_tune_file():
    with scratch() as root:
        cfg = example()
        cfg["water_level"]["deep_sleep"] = True
        write_files(root, cfg, {"wifi_pass": "12345678", "mqtt_pass": "pw"})
        with open(root + "/tune.json", "w") as f:
            f.write(json.dumps({"ms_per_s": 2, "awake_ms": 500, "bogus": 1}))
        broker = FakeBroker()
        broker.auto_ack = True
        made = []

        def make(c):
            made.append(FakeBoard(broker))
            return made[0]

        logs = []
        n = nodemod.main(root, make_board=make, log=logs.append, idle=None)
        assert n.ms_per_s == 2 and n.awake_ms == 500 and "secrets" not in n.cfg
        assert broker.first_seqs() == [(1, 1)] and made[0].slept and made[0].slept[0] <= 1800
        assert not [ln for ln in logs if "pw" in ln.split() or "12345678" in ln]
