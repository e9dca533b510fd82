# The node runtime: ties the board, the role, the outbox and MQTT together.
#
# Node(cfg, secrets, board, fs_root) runs the loop; the board is board.Board
# on the chip and a fake of the same shape in tests (see board.py's header
# for the interface), so this module never imports machine or network.
#
# The promise it keeps (docs/wire-format.md, end-to-end acknowledgement):
#   1. every pack the role returns gets the next seq of this boot, is encoded
#      as an envelope and appended to the outbox, and the outbox is flushed
#      to flash BEFORE anything is published;
#   2. records are published QoS1 from the outbox (alarms first, at most
#      BURST per pass, at most MAX_UNACKED waiting for their e2e ack);
#   3. a record leaves the outbox only on the agent's `ack` downlink, never on
#      a PUBACK; one without an ack after ack_timeout_ms is published again,
#      and after every reconnect (and wake) everything unacked is published
#      again with its original (boot, seq) and bytes;
#   4. measuring never waits for the link: with the link or broker down,
#      readings keep going to the outbox while reconnects back off
#      exponentially with full jitter (backoff.py). A cellular attempt blocks
#      the loop for about 3 s while the modem searches (up to ~15 s to wake a
#      silent modem, board_cell.py); attempts come at most CELL_RETRY_CAP_MS apart.
#
# Two ways to run:
#   - always on (boat, truck, mains-powered water level): step() every
#     STEP_MS: read the GPS UART or, when due, the water-level sensors; keep
#     the link and MQTT up; publish; sleep a short step. The watchdog is fed
#     once per step.
#   - deep sleep (water level with `deep_sleep: true`): wake() per boot: one
#     reading, up to awake_ms to deliver it and collect acks, role state into
#     RTC memory, deep sleep until the next reading (a new boot: the boot
#     counter goes up by one each wake, as the contract says).
#
# Downlink commands: set_interval / set_thresholds (config.apply_command,
# checked against the schema, effective at the next reading), status,
# reboot; anything unknown or malformed is logged on the console and ignored.
#
# Test knobs (keyword arguments, also read by main() from /tune.json): the
# config schema keeps intervals >= 5 s; ms_per_s scales every configured
# interval so a virtual board can take a reading every 0.2 s.
#
# RAM: the outbox keeps nothing per record; `sent` holds at most MAX_UNACKED
# (boot, seq) -> ticks entries; roles are imported only for the node's role;
# gc.collect() runs between the measure and send phases.

import gc
import json
import os
import sys

import wire
from backoff import Backoff
from bootcount import Seq, next_boot
from outbox import Outbox
from version import VERSION

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:
    from time import ticks_diff
except ImportError:  # CPython

    def ticks_diff(a, b):
        return a - b


STEP_MS = const(100)  # always-on loop period
BURST = const(8)  # records published per pass
MAX_UNACKED = const(16)  # published records waiting for their e2e ack
MAX_INFLIGHT = const(32)  # QoS1 publishes waiting for a PUBACK (the client keeps their bytes)
KEEPALIVE_S = const(60)
MQTT_TIMEOUT_MS = const(5000)
# Cellular: each failed up() (no registration during a coverage gap) already took a few
# seconds; the next one comes within this, whatever backoff_cap_ms is, so the node sees
# the network back soon while its loop keeps measuring between attempts.
CELL_RETRY_CAP_MS = const(15000)
US_WARMUP_MS = const(100)  # JSN-SR04T after power-on, before the first ping
TUNE_KEYS = ("ms_per_s", "ack_timeout_ms", "backoff_base_ms", "backoff_cap_ms", "awake_ms",
             "link_timeout_ms")


def _mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass  # exists (the errno differs per port); a real failure shows at the first write


# ---------------------------------------------------------------- roles
# Each role: packs(now_s) -> list of packs (called every step), due(now_ms),
# interval_s(), battery_v(), retune() after a config command, save().


class _WaterLevelRole:
    def __init__(self, node):
        from sr04t import SR04T
        from water_level import WaterLevel

        b = node.board
        cfg = node.cfg
        self.node = node
        self.b = b
        self.wl = cfg["water_level"]
        self.iv = cfg["intervals"]
        self.ratio = cfg["battery_ratio"]
        self.state = WaterLevel(cfg)
        self.state.restore(b.rtc_read())
        self.sensor = SR04T(b.pin("trig", out=True), b.pin("echo"), b.time_pulse_us,
                            b.sleep_us, trig_us=self.wl["trig_us"], min_m=self.wl["min_m"],
                            max_m=self.wl["max_m"])
        self.power = b.pin("us_power", out=True)
        self.batt = b.adc("batt_adc")
        self.press = b.adc("pressure_adc") if self.wl["pressure"] else None
        self.loop_power = b.pin("loop_power", out=True) if self.press else None
        self.next_s = self.iv["normal_s"]

    def due(self, now_ms):
        return ticks_diff(now_ms, self.node.next_read) >= 0

    def interval_s(self):
        st = self.state
        return self.iv["fast_s"] if st.alert or st.rising else self.iv["normal_s"]

    def battery_v(self):
        if self.batt is None:
            return None
        from current_loop import battery_v

        return battery_v(self.batt.read_uv(), self.ratio)

    def _plevel(self):
        if self.press is None:
            return None
        from current_loop import level_from_ma, ma_from_uv

        p = self.wl["pressure"]
        if self.loop_power:
            self.loop_power.value(1)
            self.b.sleep_ms(US_WARMUP_MS)
        try:
            uv = self.press.read_uv()
        finally:
            if self.loop_power:
                self.loop_power.value(0)
        return level_from_ma(ma_from_uv(uv, p["shunt_ohm"]), p["range_m"], p["offset_m"])

    def packs(self, now_s):
        node = self.node
        now = self.b.ticks_ms()
        if not self.due(now):
            return []
        wl = self.wl
        if self.power:
            self.power.value(1)
            self.b.sleep_ms(US_WARMUP_MS)
        try:
            # echo timeout: the round trip to max_m and back at 0 degC, plus 1 ms
            d = self.sensor.distance_m(None, wl["pings"], int(wl["max_m"] * 6037) + 1000)
        finally:
            if self.power:
                self.power.value(0)
        pack, self.next_s = self.state.step(d, self._plevel(), self.battery_v(), None, now_s)
        node.next_read = now + self.next_s * node.ms_per_s
        self.save()
        return [pack] if pack else []

    def retune(self):
        # A new interval applies from the last reading on (sooner if it shrank).
        node = self.node
        node.next_read = node.last_read + self.interval_s() * node.ms_per_s

    def save(self):
        self.b.rtc_write(self.state.state())


class _GpsRole:
    """Boat and truck: NMEA from the GPS UART into the tracker, ticked each second."""

    def __init__(self, node):
        from nmea import LineReader

        b = node.board
        cfg = node.cfg
        self.node = node
        self.b = b
        self.role = cfg["role"]
        self.ratio = cfg["battery_ratio"]
        self.uart = b.uart("gps_rx", "gps_tx", 9600)
        self.reader = LineReader()
        self.batt = b.adc("batt_adc") or b.adc("supply_adc")
        self.ign = None
        self.boat = None
        self.truck = None
        if self.role == "boat":
            from boat import BoatTracker
            from geofence import Zone

            c = cfg["boat"]
            zones = [Zone(z["name"], z["polygon"], z["hours"]) for z in c["zones"]]
            self.boat = BoatTracker(zones, tz_offset_s=cfg["tz_offset_s"])
        else:
            from truck import TruckTracker

            self.truck = TruckTracker()
            self.ign = b.pin("ignition_in")
        self.last_tick = None
        self.retune()

    def due(self, now_ms):
        return True

    def interval_s(self):
        return self.node.cfg["intervals"]["normal_s"]

    def battery_v(self):
        if self.batt is None:
            return None
        from current_loop import battery_v

        return battery_v(self.batt.read_uv(), self.ratio)

    def packs(self, now_s):
        from nmea import parse, to_unix

        out = []
        ign = None
        if self.ign is not None:
            # The ignition input is an opto-coupler with a pull-up (boards.yaml,
            # truck-gps-cell): the line reads low while the ignition is on.
            ign = not self.ign.value()
        u = self.uart
        if u is not None and u.any():
            data = u.read()
            if data:
                for line in self.reader.feed(data):
                    fix = parse(line)
                    if fix is None:
                        continue
                    if fix["type"] == "RMC" and fix["valid"] and not self.node.clock_valid:
                        t = to_unix(fix["date"], fix["time"])
                        if t is not None:
                            self.b.set_time(t)
                            now_s, self.node.clock_valid = self.b.now()
                    out.extend(self._update(fix, now_s, ign))
                    self.last_tick = now_s
        if self.last_tick != now_s:  # once a second: fix loss, periodic reports
            self.last_tick = now_s
            out.extend(self._update(None, now_s, ign))
        return out

    def _update(self, fix, now_s, ign):
        if self.boat is not None:
            return self.boat.update(fix, now_s)
        return self.truck.update(fix, now_s, ign)

    def retune(self):
        cfg = self.node.cfg
        if self.boat is not None:
            t = self.boat
            c = cfg["boat"]
            t.dwell_s = c["dwell_s"]
            t.dwell_radius_m = c["dwell_radius_m"]
            t.report_interval_s = cfg["intervals"]["normal_s"]
        else:
            t = self.truck
            c = cfg["truck"]
            t.min_dist_m = c["min_dist_m"]
            t.max_interval_s = c["max_interval_s"]
            t.heading_change_deg = c["heading_deg"]
            t.stop_min_s = c["stop_min_s"]
            t.points_per_payload = c["points_per_payload"]
            t.flush_s = cfg["intervals"]["normal_s"]

    def save(self):
        pass


# ---------------------------------------------------------------- node


class Node:
    def __init__(self, cfg, secrets, board, fs_root="/", ms_per_s=1000, ack_timeout_ms=30000,
                 backoff_base_ms=1000, backoff_cap_ms=60000, awake_ms=20000,
                 link_timeout_ms=30000, log=print):
        self.cfg = cfg
        self.secrets = secrets or {}
        self.board = board
        self.data = fs_root.rstrip("/") + "/data"
        self.ms_per_s = ms_per_s
        self.ack_timeout_ms = ack_timeout_ms
        self.awake_ms = awake_ms
        self.link_timeout_ms = link_timeout_ms
        self.log = log
        self.dev = cfg["device"]
        prefix = cfg["topic_prefix"]
        self.t_up = wire.topic_up(prefix, self.dev)
        self.t_status = wire.topic_status(prefix, self.dev)
        self.t_down = wire.topic_down(prefix, self.dev)
        self.deep = cfg["role"] == "water_level" and cfg["water_level"]["deep_sleep"]
        self.backoff = Backoff(backoff_base_ms, backoff_cap_ms)
        link_cap = backoff_cap_ms
        if cfg["link"]["type"] == "cell":
            link_cap = min(link_cap, CELL_RETRY_CAP_MS)
        self.link_backoff = Backoff(backoff_base_ms, link_cap)
        self.running = True
        self.started = False
        self.link = None
        self.no_link = False  # the board could not make a link object (logged once)
        self.link_ok = False
        self.client = None
        self.sent = {}  # (boot, seq) -> ticks_ms of its last publish, waiting for the e2e ack
        self.acked = 0  # highest e2e ack for this boot
        self.cmd_id = None
        self.want_status = False
        self.want_reboot = False
        self.clock_valid = False
        self.synced = False

    # ---- start ----

    def start(self):
        b = self.board
        self.t0 = b.ticks_ms()
        self.reset_cause = b.reset_cause()
        _mkdir(self.data)
        self.boot = next_boot(self.data + "/boot")
        self.seq = Seq()
        self.outbox = Outbox(self.data + "/outbox", self.cfg["outbox"]["max_bytes"])
        self.dropped0 = self.outbox.dropped
        self.wdt = b.wdt(self.cfg["watchdog_s"] * 1000)
        self.next_read = self.last_read = self.t0
        self.next_link = self.next_mqtt = self.t0
        if self.cfg["role"] == "water_level":
            self.role = _WaterLevelRole(self)
        else:
            self.role = _GpsRole(self)
        self.started = True
        self.log("node: %s boot %d (%s), fw %s, %d record(s) in the outbox"
                 % (self.dev, self.boot, self.reset_cause, VERSION, self.outbox.depth()))
        gc.collect()

    def run(self, steps=0):
        """Run until stopped (forever on the chip); steps > 0 bounds the passes (tests)."""
        if not self.started:
            self.start()
        n = 0
        while self.running:
            if self.deep:
                self.wake()
            else:
                self.step()
            n += 1
            if steps and n >= steps:
                break

    # ---- one pass ----

    def step(self):
        """One pass of the always-on loop: measure, keep the link up, publish, sleep."""
        b = self.board
        self.wdt.feed()
        self.measure()
        self.service()
        if self.want_reboot:
            self.reboot()
            return
        now = b.ticks_ms()
        wait = STEP_MS
        if self.cfg["role"] == "water_level":
            wait = max(0, min(wait, ticks_diff(self.next_read, now)))
        if wait:
            b.sleep_ms(wait)

    def wake(self):
        """One deep-sleep cycle: a reading, up to awake_ms to deliver, then deep sleep."""
        b = self.board
        self.wdt.feed()
        self.measure()
        while ticks_diff(b.ticks_ms(), self.t0) < self.awake_ms:
            self.wdt.feed()
            self.service()
            if self.want_reboot:
                self.reboot()
                return
            if self.client is not None and not self.outbox.depth() and not self.want_status:
                break  # everything delivered and acknowledged
            b.sleep_ms(STEP_MS)
        self.role.save()
        self.outbox.close()
        if self.client is not None:
            try:
                self.client.disconnect()  # a sleeping node is not lost: no last will
            except OSError:
                pass
            self.client = None
        left = ticks_diff(self.next_read, b.ticks_ms())
        self.log("node: deep sleep %d ms" % max(left, 1))
        self.running = False  # deepsleep() does not return on the chip; a fake board's does
        b.deepsleep(max(left, 1))

    def measure(self):
        """Read the role's sensors; enqueue and flush what it returns."""
        now_s, self.clock_valid = self.board.now()
        due = self.role.due(self.board.ticks_ms())
        if due and self.cfg["role"] == "water_level":
            self.last_read = self.board.ticks_ms()
        packs = self.role.packs(now_s)
        if packs:
            for p in packs:
                self.enqueue(p)
            self.outbox.flush()  # on flash before anything is published
            gc.collect()
        else:
            self.outbox.flush_due()

    def enqueue(self, pack):
        """Wrap one pack in an envelope with the next seq and append it to the outbox."""
        seq = self.seq.last + 1
        ut = None
        if not self.clock_valid:
            pack[0].pop(wire.BT, None)
            ut = self.uptime_ms()
        try:
            payload = wire.envelope(self.dev, self.boot, seq, self.cfg["role"], pack, ut,
                                    self._lo(seq))
            self.outbox.append(self.boot, seq, payload, wire.is_alarm(pack))
        except ValueError as e:  # a role bug (bad or oversized pack): log it, no seq gap
            self.log("node: pack not sent: %s" % e)
            return
        self.seq.next()

    def _lo(self, seq):
        # `lo` once the overflow policy dropped records of this boot: the lowest
        # seq still held, when records between the agent's ack and it are gone.
        if self.outbox.dropped == self.dropped0:
            return None
        low = self.outbox.low(self.boot) or seq
        return low if low > self.acked + 1 else None

    def uptime_ms(self):
        return ticks_diff(self.board.ticks_ms(), self.t0)

    # ---- link and MQTT ----

    def service(self):
        """Keep the link and the MQTT session up; handle downlinks; publish."""
        now = self.board.ticks_ms()
        if not self._link_up(now):
            if self.client is not None:
                self._drop("link down")
            return
        if self.client is None:
            if ticks_diff(now, self.next_mqtt) < 0:
                return
            self._connect()
            if self.client is None:
                return
        try:
            self.client.poll(0)  # downlinks: acks and commands
            if self.want_status:
                self.publish_status()
            if self._send() == BURST:
                self.client.poll(0)
        except OSError as e:
            self._drop("mqtt: %s" % e)

    def _link_up(self, now):
        if self.link is None:
            if self.no_link:
                return False
            try:
                self.link = self.board.link(self.secrets, self.wdt.feed)
            except OSError as e:
                self.log("node: no link: %s" % e)
                self.no_link = True
                return False
        if self.link.isconnected():
            if not self.link_ok:
                self.link_ok = True
                self.link_backoff.reset()
                self.log("node: %s up" % self.link.kind)
                if not self.clock_valid and not self.synced:
                    self.synced = self.board.sync_time()
            return True
        if self.link_ok:
            self.link_ok = False
            self.log("node: %s down" % self.link.kind)
        if ticks_diff(now, self.next_link) >= 0:
            wait = self.link_timeout_ms  # for the connection up() started to come up
            try:
                self.link.up()  # Wi-Fi: starts and returns; cellular: one bounded attempt
            except OSError as e:
                self.log("node: %s: %s" % (self.link.kind, e))
                if self.link.kind == "cell":
                    wait = 0  # nothing under way: the (capped) backoff alone
            self.next_link = self.board.ticks_ms() + wait + self.link_backoff.next_ms()
            if self.link.isconnected():
                return self._link_up(now)
        return False

    def _connect(self):
        from mqtt import MQTTClient

        br = self.cfg["broker"]
        c = None
        try:
            sock = self.board.connect_tcp(br["host"], br["port"], br["tls"], MQTT_TIMEOUT_MS)
            c = MQTTClient(self.dev, user=br["user"], password=self.secrets.get("mqtt_pass"),
                           keepalive=KEEPALIVE_S, clean=not self.deep, sock=sock,
                           timeout_ms=MQTT_TIMEOUT_MS)
            c.set_last_will(self.t_status, wire.status_offline(self.dev), retain=True, qos=1)
            c.set_callback(self._on_message)
            c.connect()
            self.client = c
            self.sent = {}  # everything unacked goes out again on this connection
            c.subscribe(self.t_down, 1)
            self.publish_status()
        except OSError as e:
            self.client = None
            if c is not None:
                c.close()
            d = self.backoff.next_ms()
            self.next_mqtt = self.board.ticks_ms() + d
            self.log("node: mqtt: %s; retry in %d ms" % (e, d))
            return
        self.backoff.reset()
        self.log("node: mqtt connected")

    def _drop(self, why):
        self.log("node: %s" % why)
        if self.client is not None:
            self.client.close()  # no DISCONNECT: the broker publishes the last will
        self.client = None
        self.sent = {}
        d = self.backoff.next_ms()
        self.next_mqtt = self.board.ticks_ms() + d

    def _send(self):
        """Publish up to BURST unacked records not already waiting for their ack."""
        c = self.client
        now = self.board.ticks_ms()
        sent = self.sent
        for k in list(sent):
            if ticks_diff(now, sent[k]) >= self.ack_timeout_ms:
                del sent[k]  # no e2e ack in time: it goes out again below
        room = min(BURST, MAX_UNACKED - len(sent))
        if room <= 0 or self.outbox.depth() <= len(sent) or len(c.inflight()) >= MAX_INFLIGHT:
            return 0
        recs = self.outbox.pending(room, sent)
        n = len(recs)
        for boot, seq, payload, _alarm in recs:
            c.publish(self.t_up, payload, qos=1)
            sent[(boot, seq)] = now
        del recs
        gc.collect()
        return n

    def publish_status(self):
        self.want_status = False
        b = self.board
        lk = self.link
        batt = self.role.battery_v()
        payload = wire.status(
            self.dev, self.boot, VERSION, self.reset_cause, b.free_heap(),
            lk.kind if lk else "wifi", batt if batt is not None else 0.0, self.outbox.depth(),
            self.outbox.dropped, self.uptime_ms() // 1000, self.role.interval_s(),
            rssi=lk.rssi() if lk else None, cmd_id=self.cmd_id)
        self.client.publish(self.t_status, payload, retain=True, qos=1)

    # ---- downlink ----

    def _on_message(self, topic, msg):
        if topic != self.t_down.encode():
            return
        try:
            d = wire.decode_down(msg, self.dev)
        except (ValueError, TypeError) as e:
            self.log("node: downlink ignored: %s" % e)
            return
        ack = d["ack"]
        for boot in ack:
            seq = ack[boot]
            self.outbox.ack(boot, seq)
            if boot == self.boot and seq > self.acked:
                self.acked = seq
            for k in list(self.sent):
                if k[0] == boot and k[1] <= seq:
                    del self.sent[k]
        if d["cmd"] is not None:
            self.command(d["cmd"], d["args"], d["id"])

    def command(self, cmd, args, cid=None):
        if cid is not None:
            self.cmd_id = cid
        if cmd == "set_interval" or cmd == "set_thresholds":
            import config

            try:
                changed = config.apply_command(self.cfg, cmd, args)
            except config.ConfigError as e:
                self.log("node: command ignored: %s" % e)
                return
            self.role.retune()
            self.log("node: %s: %s" % (cmd, ", ".join(changed) or "no change"))
            self.want_status = True
        elif cmd == "status":
            self.want_status = True
        elif cmd == "reboot":
            self.want_reboot = True
        else:
            self.log("node: unknown command %r ignored" % (cmd,))

    def reboot(self):
        self.log("node: reboot on command")
        self.want_reboot = False
        self.role.save()
        self.outbox.close()
        if self.client is not None:
            self.client.close()  # the last will marks the node offline until it is back
            self.client = None
        self.running = False  # reset() does not return on the chip
        self.board.reset()


# ---------------------------------------------------------------- entry point


def _idle():
    import time

    while True:  # nothing to feed, nothing to reset: Ctrl-C reaches the REPL
        time.sleep(1)


def read_tune(path):
    """Test knobs from a JSON file (see the header); {} when there is none."""
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return {}
    out = {}
    if isinstance(d, dict):
        for k in TUNE_KEYS:
            if isinstance(d.get(k), int) and not isinstance(d.get(k), bool) and d[k] > 0:
                out[k] = d[k]
    return out


def main(fs_root="/", make_board=None, log=print, idle=_idle):
    """What main.py runs: load and check /config.json and /secrets.json, then run
    the node. An invalid config prints one line and idles (no reset loop)."""
    import config

    root = fs_root.rstrip("/") + "/"
    try:
        cfg = config.load(root + "config.json", root + "secrets.json")
    except config.ConfigError as e:
        msg = str(e)
        if msg.startswith("config: "):
            msg = msg[8:]
        log("config error: " + msg)
        idle()
        return None
    secrets = cfg.pop("secrets")
    # The schema module costs ~12 KB on an ESP32: drop it once the config is
    # checked; command() imports it again when a downlink command arrives.
    del config
    sys.modules.pop("config", None)
    gc.collect()
    if make_board is None:
        from board import Board

        make_board = Board
    node = Node(cfg, secrets, make_board(cfg), root, log=log, **read_tune(root + "tune.json"))
    node.run()
    return node
