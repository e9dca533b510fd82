"""The firmware (boot.py, main.py, lib/) on a virtual board against a real mosquitto.

What runs for real: the MicroPython VM playing the ESP32 (hil_tests.vboard), the
firmware's own main.py -> node.py -> outbox/mqtt, mosquitto on 127.0.0.1, and on the
host a paho "gateway" that checks every uplink against the wire contract
(edge_agent.validate) and answers with the end-to-end ack, as the edge agent does.
The ultrasonic echo and the battery ADC come from the board's world. Readings every
0.2 s: /tune.json scales the configured seconds (the schema's minimum is 5 s).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.validate import DeviceInfo, validate_up
from hil_tests.mosquitto import Mosquitto
from hil_tests.vboard import VirtualBoard
from hil_tests.vboard.errors import VBoardError
from hil_tests.vboard.vm import find_micropython

REPO = Path(__file__).resolve().parent.parent
DEV = "wl-0007"
ECHO_PIN, BATT_PIN = 18, 34
DISTANCE_M = 3.0
TUNE = {"ms_per_s": 20, "ack_timeout_ms": 3000, "backoff_base_ms": 100, "backoff_cap_ms": 1000}

pytestmark = pytest.mark.timeout(240)


def _have_vm() -> bool:
    try:
        return Path(find_micropython()).exists()
    except VBoardError:
        return False


if not _have_vm():
    pytest.skip("MicroPython unix VM not installed", allow_module_level=True)


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def deploy(board_dir: Path, port: int, tune: dict[str, int] | None = None,
           **water_level: Any) -> dict[str, Any]:
    """Flash the firmware and a config (the water-level example, broker on 127.0.0.1)."""
    (board_dir / "lib").mkdir(parents=True)
    for f in (REPO / "firmware/lib").glob("*.py"):
        shutil.copy(f, board_dir / "lib" / f.name)
    for name in ("boot.py", "main.py"):
        shutil.copy(REPO / "firmware" / name, board_dir / name)
    cfg = json.loads((REPO / "firmware/examples/water_level.json").read_text())
    cfg["broker"] = {"host": "127.0.0.1", "port": port}
    cfg["intervals"] = {"normal_s": 10, "fast_s": 5}
    cfg["water_level"].update({"deep_sleep": False, "pings": 1, **water_level})
    (board_dir / "config.json").write_text(json.dumps(cfg))
    (board_dir / "secrets.json").write_text(json.dumps({"wifi_pass": "12345678"}))
    (board_dir / "tune.json").write_text(json.dumps(tune or TUNE))
    return cfg


@contextmanager
def running_board(board_dir: Path) -> Iterator[VirtualBoard]:
    """Power the board on; the world gives the echo of water DISTANCE_M below the
    sensor (sr04t assumes 20 degC) and 1.9 V on the battery divider (3.8 V)."""
    vb = VirtualBoard(board_dir).start()
    try:
        assert vb.control is not None
        echo_us = round(DISTANCE_M * 2 / 343.42 * 1e6)
        vb.control.set_world({"pulse_us": {ECHO_PIN: echo_us}, "adc_mv": {BATT_PIN: 1900}})
        yield vb
    finally:
        vb.stop()


def on_flash(outbox_dir: Path) -> list[tuple[int, int]]:
    """(boot, seq) of the whole records (CRC checked) in the board's outbox segments,
    read with the format of outbox.py's header comment, not with outbox.py."""
    out = []
    for seg in sorted(outbox_dir.glob("*.seg")):
        try:
            data = seg.read_bytes()
        except FileNotFoundError:  # deleted (all acked) or renamed meanwhile
            continue
        off = 0
        while off + 16 <= len(data):
            m, _f, n, boot, seq = struct.unpack_from("<BBHII", data, off)
            end = off + 12 + n
            if m != 0xD5 or end + 4 > len(data):
                break
            if struct.unpack_from("<I", data, end)[0] != zlib.crc32(data[off:end]):
                break
            out.append((boot, seq))
            off = end + 4
    return out


class Gateway:
    """The edge agent's part of the contract, in paho: validate each uplink, record
    (boot, seq) in arrival order, answer with {boot: highest gap-free seq} (seqs below
    an envelope's `lo` count as settled) while `acking` is set."""

    def __init__(self, port: int, acking: bool = True) -> None:
        self.acking = acking
        self.got: list[tuple[int, int]] = []
        self.seen: dict[int, set[int]] = {}
        self.lo: dict[int, int] = {}
        self.hw: dict[int, int] = {}
        self.errors: list[str] = []
        self.status: list[dict[str, Any]] = []
        self.last: dict[int, Any] = {}  # the last uplink envelope
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-test", clean_session=False)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(
            [(f"nodes/{DEV}/up", 1), (f"nodes/{DEV}/status", 1)])
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 0.5)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        assert self.subscribed.wait(10), "gateway: no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:  # an exception would end paho's thread: collect instead
            if msg.topic.endswith("/status"):
                with self.lock:
                    self.status.append(cbor2.loads(msg.payload))
                return
            r = validate_up(DEV, msg.payload, lambda d: DeviceInfo("water_level"))
            with self.lock:
                self.last = cbor2.loads(msg.payload)
                self.got.append((r.boot, r.seq))
                self.seen.setdefault(r.boot, set()).add(r.seq)
                if r.lo is not None:
                    self.lo[r.boot] = max(self.lo.get(r.boot, 0), r.lo)
                if not self.acking:
                    return
                lo = self.lo.get(r.boot, 0)
                hw = self.hw.get(r.boot, 0)
                while hw + 1 in self.seen[r.boot] or hw + 1 < lo:
                    hw += 1
                self.hw[r.boot] = hw
            if hw:
                down = cbor2.dumps({0: 1, 1: DEV, 8: {r.boot: hw}}, canonical=True)
                client.publish(f"nodes/{DEV}/down", down, qos=1)
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{type(e).__name__}: {e}")

    def keys(self) -> set[tuple[int, int]]:
        with self.lock:
            return set(self.got)

    def firsts(self) -> list[tuple[int, int]]:
        with self.lock:
            got = list(self.got)
        seen: set[tuple[int, int]] = set()
        out = []
        for k in got:
            if k not in seen:
                seen.add(k)
                out.append(k)
        return out

    def acked(self, boot: int) -> int:
        with self.lock:
            return self.hw.get(boot, 0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def gateway():
    made: list[Gateway] = []

    def make(port: int, acking: bool = True) -> Gateway:
        made.append(Gateway(port, acking))
        return made[-1]

    yield make
    for g in made:
        g.close()


def test_node_publishes_contract_readings_and_drains_its_outbox_on_acks(
        tmp_path, mosquitto, gateway):
    gw = gateway(mosquitto.port)
    board_dir = tmp_path / "board"
    deploy(board_dir, mosquitto.port)
    with running_board(board_dir) as vb:
        wait_for(lambda: len(gw.firsts()) >= 10, 30, "10 readings")
        assert not gw.errors, gw.errors
        assert gw.firsts()[:10] == [(1, s) for s in range(1, 11)]
        # the ack reaches the node: the outbox stays near empty while readings go on
        wait_for(lambda: gw.acked(1) >= 15, 30, "acks up to seq 15")
        log = vb.control.console_log()
    assert "config error" not in log and "mqtt connected" in log
    st = gw.status[0]
    assert st["online"] is True and st["dev"] == DEV and st["fw"] == "0.1.0"
    assert st["reset"] == "power_on" and st["link"] == "wifi" and st["boot"] == 1
    assert abs(st["batt"] - 3.8) < 0.01 and st["interval"] == 10
    # the last reading's content, per the contract's names and units
    env = gw.last
    names = {r[0]: r for r in env[5]}
    assert abs(names["level"][2] - (4.5 - DISTANCE_M)) < 0.01 and names["level"][1] == "m"
    assert abs(names["distance"][2] - DISTANCE_M) < 0.01
    assert abs(names["battery"][2] - 3.8) < 0.01
    left = [k for k in on_flash(board_dir / "data/outbox") if k[1] > gw.acked(1)]
    assert len(left) <= 3  # acked records are gone from what the outbox counts as live


def test_broker_outage_of_100_readings_loses_nothing_and_keeps_order(
        tmp_path, mosquitto, gateway):
    """Issue 4's must-show: the broker is down for more than 100 readings; once it is
    back every reading arrives, in (boot, seq) order, none lost."""
    gw = gateway(mosquitto.port)
    board_dir = tmp_path / "board"
    deploy(board_dir, mosquitto.port)
    outbox = board_dir / "data/outbox"
    broker2 = None
    with running_board(board_dir) as vb:
        wait_for(lambda: gw.acked(1) >= 5, 30, "the first acks")
        mosquitto.stop()
        before = max(s for _b, s in gw.keys())
        wait_for(lambda: len([k for k in on_flash(outbox) if k[1] > before]) >= 105, 90,
                 ">= 105 readings taken while the broker is down")
        taken = max(s for _b, s in on_flash(outbox))
        try:
            broker2 = Mosquitto(mosquitto.dir, port=mosquitto.port).start()
            wait_for(lambda: gw.acked(1) >= taken, 90, f"everything up to seq {taken} acked")
            log = vb.control.console_log()
        finally:
            if broker2 is not None:
                broker2.stop()
    assert not gw.errors, gw.errors
    firsts = gw.firsts()
    assert firsts[:taken] == [(1, s) for s in range(1, taken + 1)]  # all, in order, boot 1
    assert taken - before >= 105
    assert "retry in" in log  # it backed off while the broker was away


def test_power_cuts_while_measuring_lose_no_flushed_reading(tmp_path, mosquitto, gateway):
    """Power cut at random moments (in imports, boot-counter writes, readings, outbox
    writes) while the broker is away, so every reading waits on flash: every record
    whole on flash just after a cut reaches the gateway once the broker is back, and
    each boot's readings are gap-free from seq 1 (only the RAM batch being written at
    the cut, the boot's newest readings, may go)."""
    gw = gateway(mosquitto.port)
    board_dir = tmp_path / "board"
    deploy(board_dir, mosquitto.port)
    outbox = board_dir / "data/outbox"
    rng = random.Random(4)
    on_disk: set[tuple[int, int]] = set()
    broker2 = None
    with running_board(board_dir) as vb:
        assert vb.control is not None
        wait_for(lambda: len(gw.keys()) >= 3, 30, "the first readings")
        mosquitto.stop()  # nothing leaves the board while it is cut: all stays on flash
        for _ in range(8):
            time.sleep(rng.uniform(0.2, 1.5))
            boots_so_far = vb.control.request("power_cycle")["boots"]  # the VM is dead now
            on_disk |= set(on_flash(outbox))
            vb.control.wait_booted(boots_so_far)
        time.sleep(1.0)
        try:
            broker2 = Mosquitto(mosquitto.dir, port=mosquitto.port).start()
            boots = [int(m) for m in re.findall(r"boot (\d+) \(", vb.control.console_log())]
            wait_for(lambda: any(b == boots[-1] for b, _s in gw.keys()), 30,
                     f"readings of the last boot ({boots[-1]})")
            need = {b: max(s for bb, s in on_disk if bb == b) for b in {b for b, _s in on_disk}}
            wait_for(lambda: all(gw.acked(b) >= s for b, s in need.items()), 90,
                     "every record found on flash after a cut delivered and acked")
            seen = gw.keys()
        finally:
            if broker2 is not None:
                broker2.stop()
    assert not gw.errors, gw.errors
    assert len(on_disk) > 20 and on_disk <= seen, sorted(on_disk - seen)[:10]
    for b in {b for b, _s in seen}:
        seqs = {s for bb, s in seen if bb == b}
        assert seqs == set(range(1, max(seqs) + 1)), f"boot {b} has a gap"
    assert boots == sorted(set(boots)) and len(boots) >= 5  # a new boot number each life


def test_deep_sleep_node_wakes_reads_delivers_and_keeps_its_state(tmp_path, mosquitto,
                                                                   gateway):
    """deep_sleep: one reading per wake, a new boot each time (reset cause deepsleep),
    the rise rate needs 3 levels: it only appears if the history survived in RTC memory."""
    gw = gateway(mosquitto.port)
    board_dir = tmp_path / "board"
    deploy(board_dir, mosquitto.port, {**TUNE, "ms_per_s": 100, "awake_ms": 5000},
           deep_sleep=True)
    with running_board(board_dir) as vb:
        assert vb.control is not None
        wait_for(lambda: len({b for b, _s in gw.keys()}) >= 4 and gw.acked(4), 60,
                 "4 wakes delivered and acked")
        log = vb.control.console_log()
        state = vb.control.state()
    assert not gw.errors, gw.errors
    assert gw.firsts()[:4] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert [st["reset"] for st in gw.status[:4]] == ["power_on"] + ["deepsleep"] * 3
    assert "deep sleep" in log and any("deepsleep" in e for e in state["events"])
    with gw.lock:
        assert "rise" in {r[0] for r in gw.last[5]} and gw.last[2] >= 3


def test_invalid_config_prints_one_line_and_stays_reachable(tmp_path):
    board_dir = tmp_path / "board"
    deploy(board_dir, 1883)
    cfg = json.loads((board_dir / "config.json").read_text())
    cfg["water_level"]["alert_m"] = "x"
    (board_dir / "config.json").write_text(json.dumps(cfg))
    with running_board(board_dir) as vb:
        assert vb.control is not None
        wait_for(lambda: "config error" in vb.control.console_log(), 20, "the error line")
        time.sleep(1.5)
        log = vb.control.console_log()
        mpremote = str(Path(sys.executable).parent / "mpremote")
        r = subprocess.run([mpremote, "connect", vb.port, "exec", "print(6 * 7)"],
                           capture_output=True, text=True, timeout=30)
        state = vb.control.state()
    lines = [ln for ln in log.splitlines() if "config error" in ln]
    assert lines == ["config error: water_level.alert_m: must be a number, got 'x'"]
    assert "12345678" not in log
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stdout + r.stderr
    assert state["boots"] == 1 and state["wdt_ms"] is None  # no reset loop, no watchdog
    assert not (board_dir / "data").exists()
