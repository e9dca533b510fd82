"""`make demo`: the whole data path on this machine, every part real.

Three virtual ESP32s (a real MicroPython VM behind a pty each) run the real
firmware (main.py -> node.py -> outbox on flash -> own MQTT client): a
water-level node watching a flood rise past the alert line, a sand-mining boat
leaving its licensed zone, and a garbage truck on a round with a stop. They
publish to a local mosquitto; the edge agent (`edge-agent run`) validates,
commits with fsync, acknowledges end to end and forwards to an upstream
mosquitto, where this script subscribes and prints what the IOC receives.
Half-way through, the agent is killed with SIGKILL and restarted: the summary
at the end shows that no reading was lost and per-device order held.

Run: `make demo` (or `.venv/bin/python demo/run.py [--seconds 45]`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_agent.registry import add_device, ensure_registry  # noqa: E402
from hil_tests.mosquitto import Mosquitto  # noqa: E402
from hil_tests.vboard import VirtualBoard  # noqa: E402

WORK = REPO / "var" / "demo"
# The firmware's schema keeps intervals >= 10 s; /tune.json scales a configured
# second to this many ms so the demo shows minutes of field time in seconds.
MS_PER_S = 200
ECHO_PIN, BATT_PIN = 18, 34
GPS_UART = 2
SOUND_MPS = 343.42  # what the SR04T driver assumes at 20 degC


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- the nodes

def deploy(board_dir: Path, cfg: dict[str, Any]) -> None:
    """What `nodectl deploy` + `configure` put on a board: firmware and config."""
    if board_dir.exists():
        shutil.rmtree(board_dir)
    (board_dir / "lib").mkdir(parents=True)
    for f in (REPO / "firmware/lib").glob("*.py"):
        shutil.copy(f, board_dir / "lib" / f.name)
    for name in ("boot.py", "main.py"):
        shutil.copy(REPO / "firmware" / name, board_dir / name)
    (board_dir / "config.json").write_text(json.dumps(cfg))
    (board_dir / "secrets.json").write_text(json.dumps({"wifi_pass": "demo-pass"}))
    (board_dir / "secrets.json").chmod(0o600)
    (board_dir / "tune.json").write_text(json.dumps(
        {"ms_per_s": MS_PER_S, "ack_timeout_ms": 3000, "backoff_base_ms": 100,
         "backoff_cap_ms": 1000}))


def node_configs(broker_port: int) -> dict[str, dict[str, Any]]:
    broker = {"host": "127.0.0.1", "port": broker_port}
    wifi = {"type": "wifi", "ssid": "demo-gw"}
    wl = json.loads((REPO / "firmware/examples/water_level.json").read_text())
    wl.update(device="wl-0007", broker=broker, link=wifi,
              intervals={"normal_s": 20, "fast_s": 10})
    wl["water_level"].update(deep_sleep=False, pings=1)
    wl["water_level"].pop("pressure", None)
    boat = json.loads((REPO / "firmware/examples/boat.json").read_text())
    boat.update(device="boat-0112", broker=broker, link=wifi,
                intervals={"normal_s": 15, "fast_s": 10})
    boat["pins"] = {"gps_tx": 33, "gps_rx": 34, "batt_adc": 35}
    for z in boat["boat"]["zones"]:  # licensed all day: the demo shows the geofence
        z["hours"] = [[0, 1440]]
    truck = json.loads((REPO / "firmware/examples/truck.json").read_text())
    truck.update(device="trk-0031", broker=broker, link=wifi,
                 intervals={"normal_s": 20, "fast_s": 10})
    truck["pins"] = {"gps_tx": 25, "gps_rx": 34, "supply_adc": 36, "ignition_in": 39}
    truck["truck"].update(min_dist_m=40, max_interval_s=10, stop_min_s=5,
                          points_per_payload=4)
    return {c["device"]: c for c in (wl, boat, truck)}


def nmea(body: str) -> bytes:
    cs = 0
    for ch in body.encode():
        cs ^= ch
    return b"$%s*%02X\r\n" % (body.encode(), cs)


def fix_lines(lat: float, lon: float, speed_kn: float, course: float) -> bytes:
    """One second of a GPS: RMC + GGA at the current UTC time."""
    now = dt.datetime.now(dt.UTC)
    hms = now.strftime("%H%M%S.00")
    dmy = now.strftime("%d%m%y")

    def ddm(v: float, width: int) -> str:
        d = int(abs(v))
        return f"{d:0{width}d}{(abs(v) - d) * 60:08.5f}"

    ns, ew = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
    rmc = (f"GPRMC,{hms},A,{ddm(lat, 2)},{ns},{ddm(lon, 3)},{ew},{speed_kn:.1f},"
           f"{course:.1f},{dmy},,,A")
    gga = f"GPGGA,{hms},{ddm(lat, 2)},{ns},{ddm(lon, 3)},{ew},1,09,0.9,4.0,M,-2.0,M,,"
    return nmea(rmc) + nmea(gga)


class World(threading.Thread):
    """Drives the boards' senses once a second: the flood, the boat, the truck."""

    def __init__(self, boards: dict[str, VirtualBoard], seconds: float) -> None:
        super().__init__(daemon=True)
        self.boards = boards  # filled in as the boards start
        self.seconds = seconds
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.wait(1.0):
            self.tick(time.monotonic() - t0)

    def tick(self, t: float) -> None:
        """The world at t seconds, sent to every board started so far."""
        frac = min(t / self.seconds, 1.0)
        # Flood: water 3.0 m below the sensor rising to 2.3 m (level 1.5 -> 2.2 m,
        # alert line 1.9 m) over the first 60 %, then falling back.
        depth = 3.0 - 0.7 * (frac / 0.6 if frac < 0.6 else (1 - frac) / 0.4)
        echo_us = round(depth * 2 / SOUND_MPS * 1e6)
        self._world("wl-0007", {"pulse_us": {ECHO_PIN: echo_us}, "adc_mv": {BATT_PIN: 1950}})
        # The boat starts inside licensed zone hau-07 (east edge at 105.7843 E on its
        # parallel) and heads east, fast enough to leave it 40 % into the run.
        lon = 105.778 + 0.0063 / (0.4 * self.seconds) * t
        self._uart("boat-0112", fix_lines(10.056, lon, 52.0, 90.0))
        # The truck drives north-east from Ninh Kieu, stops to collect, then turns north.
        t_stop, t_go = 0.35 * self.seconds, 0.55 * self.seconds
        moving = min(t, t_stop) + max(0.0, t - t_go)
        lat = 10.0341 + 0.00008 * moving
        lon = 105.7852 + 0.00008 * min(moving, t_stop) - 0.00002 * max(0.0, moving - t_stop)
        stopped = t_stop < t < t_go
        # ignition on: the opto-coupler pulls the input low
        self._world("trk-0031", {"pins": {39: 0}, "adc_mv": {36: 2200}})
        self._uart("trk-0031", fix_lines(lat, lon, 0.0 if stopped else 24.0,
                                         45.0 if t < t_stop else 350.0))

    def _world(self, dev: str, values: dict[str, Any]) -> None:
        ctl = self.boards[dev].control if dev in self.boards else None
        if ctl is not None:
            try:
                ctl.set_world(values)
            except Exception:  # noqa: BLE001 - a board mid-reset misses one second
                pass

    def _uart(self, dev: str, data: bytes) -> None:
        ctl = self.boards[dev].control if dev in self.boards else None
        if ctl is not None:
            try:
                ctl.feed_uart(GPS_UART, data)
            except Exception:  # noqa: BLE001
                pass


# ---------------------------------------------------------------- the IOC side

class Upstream:
    """The IOC: subscribes upstream and prints each reading as it arrives."""

    def __init__(self, port: int) -> None:
        self.got: dict[str, list[tuple[int, int]]] = {}
        self.alarms = 0
        self.lock = threading.Lock()
        self.ready = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ioc-demo")
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("nodes/+/up", qos=1)
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = self.on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        env = cbor2.loads(msg.payload)
        dev, boot, seq, pack = env[1], env[2], env[3], env[5]
        with self.lock:
            self.got.setdefault(dev, []).append((boot, seq))
        say(f"IOC <- {dev:9} boot {boot} seq {seq:3}  {describe(pack)}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def describe(pack: list[dict[int, Any]]) -> str:
    parts = []
    for r in pack:
        name = r.get(0, "")
        if name == "event":
            parts.insert(0, f"EVENT {r.get(3)}")
        elif name == "track":
            n = len(cbor2.loads(r[8])) // 3
            parts.append(f"track {n} points")
        elif 2 in r:
            v = r[2]
            unit = r.get(1, "") if r.get(1) not in ("lat", "lon") else ""
            parts.append(f"{name}={v:.6g}{unit}" if isinstance(v, float) else f"{name}={v}")
        elif 3 in r:
            parts.append(f"{name}={r[3]!r}")
        elif 4 in r:
            parts.append(f"{name}={r[4]}")
    return ", ".join(parts)


def start_agent(data_dir: Path, local: Mosquitto, upstream: Mosquitto,
                log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("edge-agent")
    cmd = [str(exe) if exe.exists() else sys.executable, "run", "--data-dir", str(data_dir),
           "--local-broker", local.url, "--upstream", upstream.url, "--log-level", "info"]
    if not exe.exists():
        cmd[1:1] = ["-m", "edge_agent.cli"]
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def summary(up: Upstream, boards: dict[str, VirtualBoard]) -> bool:
    ok = True
    print()
    print(f"{'device':10} {'received':>8} {'unique':>6} {'dups':>5} {'gaps':>5} {'in order':>9}")
    for dev in boards:
        got = up.got.get(dev, [])
        uniq = sorted(set(got))
        gaps = 0
        for boot in {b for b, _ in uniq}:
            seqs = [s for b, s in uniq if b == boot]
            gaps += max(seqs) - len(seqs)
        first = [k for i, k in enumerate(got) if k not in got[:i]]
        in_order = first == sorted(first)
        ok &= bool(got) and gaps == 0
        print(f"{dev:10} {len(got):8} {len(uniq):6} {len(got) - len(uniq):5} {gaps:5} "
              f"{'yes' if in_order else 'alarms first':>9}")
    print()
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=45.0, help="how long the field runs")
    args = ap.parse_args(argv)
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    say(f"working directory {WORK}")
    local = Mosquitto(WORK / "broker-local").start()
    upstream = Mosquitto(WORK / "broker-upstream").start()
    say(f"local broker {local.url}, upstream broker {upstream.url}")
    data_dir = WORK / "agent"
    data_dir.mkdir()
    cfgs = node_configs(local.port)
    with sqlite3.connect(data_dir / "agent.db") as conn:  # what `nodectl register` writes
        ensure_registry(conn)
        for dev, cfg in cfgs.items():
            add_device(conn, dev, cfg["role"])
    agent_log = WORK / "agent.log"
    agent = start_agent(data_dir, local, upstream, agent_log)
    say(f"edge agent running (pid {agent.pid}, log {agent_log})")
    up = Upstream(upstream.port)
    up.ready.wait(10)
    boards: dict[str, VirtualBoard] = {}
    world = None
    ok = False
    try:
        world = World(boards, args.seconds)
        for dev, cfg in cfgs.items():
            deploy(WORK / dev, cfg)
            boards[dev] = VirtualBoard(WORK / dev).start()
            world.tick(0.0)  # the sensors read the world from the first reading on
            say(f"virtual board {dev} ({cfg['role']}) on {boards[dev].port}")
        world.start()
        half = time.monotonic() + args.seconds / 2
        end = time.monotonic() + args.seconds
        while time.monotonic() < half:
            time.sleep(0.2)
        say("*** killing the edge agent with SIGKILL ***")
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        time.sleep(3)
        agent = start_agent(data_dir, local, upstream, agent_log)
        say(f"*** edge agent restarted (pid {agent.pid}) ***")
        while time.monotonic() < end:
            time.sleep(0.2)
        world.stop.set()
        say("field stopped; waiting for the outboxes to drain")
        time.sleep(8)
        ok = summary(up, boards)
        print("No gaps: every seq from 1 to the last of each boot reached the IOC, across"
              " the agent's kill -9; duplicates (if any) carry the same (device, boot, seq).")
    finally:
        if world:
            world.stop.set()
        for vb in boards.values():
            vb.stop()
        up.close()
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
        local.stop()
        upstream.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
