"""Scenarios and paced UARTs: the engine on its own clock, then on a running virtual board."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil_tests.serial_board import SerialBoard
from hil_tests.vboard.errors import VBoardError
from hil_tests.vboard.scenario import ScenarioError, ScenarioRun, load, parse
from hil_tests.vboard.sensors import SOUND_MPS_20C
from hil_tests.vboard.uartstream import NmeaLog, UartLine, split_epochs
from hil_tests.vboard.world import World

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "hil_tests" / "scenarios").glob("*.yaml"))
NMEA_DIR = Path("/work/shared/data/nmea")
sys.path.insert(0, str(REPO / "firmware" / "lib"))

import config  # noqa: E402  (firmware modules, importable on CPython)
import current_loop  # noqa: E402
import nmea  # noqa: E402
from boat import BoatTracker  # noqa: E402
from geofence import Zone  # noqa: E402
from truck import TruckTracker  # noqa: E402
from water_level import WaterLevel  # noqa: E402


class _Run:
    """A ScenarioRun on a fresh World with t0 = 0, recording power cuts."""

    def __init__(self, data: dict, kind: str | None = None, speed: float | None = None):
        self.world = World()
        self.cuts: list[tuple[float, float]] = []
        self.now = 0.0
        sc = parse(data, "test.yaml", kind, speed, REPO / "hil_tests" / "scenarios")
        self.run = ScenarioRun(sc, self.world, lambda off: self.cuts.append((self.now, off)),
                               t0=0.0, utc0=1_773_000_000.0)

    def at(self, now: float, power: bool = True) -> World:
        self.now = now
        self.run.tick(now, power)
        return self.world


# ---- the UART line ----


def test_uart_line_delivers_at_a_tenth_of_the_baud_rate():
    line = UartLine(9600)
    line.feed(b"x" * 2000, now=10.0)
    assert line.available(10.0) == 0
    assert line.available(10.5) == 480  # 960 B/s, 8N1
    assert line.take(100, 10.5) == b"x" * 100
    assert line.available(11.0) == 860
    assert line.available(12.0833) == 1899  # byte 2000 ends at 10 + 2000/960 = 12.0833.. s
    assert line.available(12.09) == 1900 and not line.wire


def test_uart_line_queues_back_to_back_and_dates_feeds_in_the_past():
    line = UartLine(9600)
    line.feed(b"a" * 96, now=0.0)  # on the wire until 0.1 s
    line.feed(b"b" * 96, now=0.05)  # queued behind it: arrives 0.1 .. 0.2 s
    assert line.take(-1, 0.15) == b"a" * 96 + b"b" * 48
    line.feed(b"c" * 96, now=1.0, at=0.5)  # a scenario catching up: started at 0.5 s
    assert line.take(-1, 1.0) == b"b" * 48 + b"c" * 96


def test_uart_line_speed_factor_instant_and_overrun():
    line = UartLine(9600)
    line.configure(0.0, speed=10)
    line.feed(b"x" * 960, now=0.0)
    assert line.available(0.05) == 480
    line.configure(0.05, speed=float("inf"))
    assert line.available(0.05) == 960
    small = UartLine(115200)
    small.configure(0.0, rxbuf=256)
    small.feed(b"y" * 300, now=0.0)
    assert small.available(1.0) == 256 and small.overrun == 44
    with pytest.raises(VBoardError):
        line.configure(0.0, speed=0)


def test_world_rejects_a_bad_uart_speed():
    with pytest.raises(VBoardError, match="uart_speed 2: expected a factor > 0 or 'instant'"):
        World({"uart_speed": {2: "fast"}})


# ---- NMEA logs ----


def _fix_times(epoch: bytes) -> set[bytes]:
    times = set()
    for ln in epoch.split(b"\r\n"):
        m = re.search(rb"\$..(RMC|GGA),(\d{6}(\.\d+)?),", ln)
        if m:
            times.add(m.group(2))
    return times


@pytest.mark.skipif(not NMEA_DIR.is_dir(), reason="no NMEA logs in /work/shared/data/nmea")
@pytest.mark.parametrize("name", ["mt3339.log", "ublox-8.log", "sirfstarv-nmea.log"])
def test_nmea_logs_split_into_one_epoch_per_fix_time(name):
    data = (NMEA_DIR / name).read_bytes()
    epochs = split_epochs(data)
    assert len(epochs) > 10
    lines = [ln for ln in data.splitlines() if ln.strip() and not ln.startswith(b"#")]
    assert b"".join(epochs) == b"".join(ln + b"\r\n" for ln in lines)  # nothing lost or moved
    times = [_fix_times(e) for e in epochs]
    assert all(len(t) == 1 for t in times[1:]), "one fix time per epoch"
    assert all(a != b for a, b in zip(times, times[1:], strict=False))
    if name == "mt3339.log":  # a clean log: as many epochs as RMC sentences nmea.parse reads
        rmc = [ln for ln in lines if (nmea.parse(ln) or {}).get("type") == "RMC"]
        assert len(epochs) == len(rmc) == 30


@pytest.mark.skipif(not NMEA_DIR.is_dir(), reason="no NMEA logs in /work/shared/data/nmea")
def test_nmea_log_realtime_feeds_one_epoch_per_scenario_second_and_loops():
    log = NmeaLog.read(NMEA_DIR / "mt3339.log")
    r = _Run({"gps": {"nmea": str(NMEA_DIR / "mt3339.log"), "rate": "realtime", "loop": True,
                      "uart": 2, "uart_speed": "instant"}}, speed=10)
    w = r.at(0.25)  # scenario t = 2.5: the epochs of t = 0, 1, 2
    assert bytes(w.uart_line(2).take(-1, 0.25)) == b"".join(log.epochs[:3])
    r.at(len(log.epochs) / 10 + 0.1)  # past the end: it starts again
    assert r.run.gps.stream.sent == len(log.epochs) + 2


@pytest.mark.skipif(not NMEA_DIR.is_dir(), reason="no NMEA logs in /work/shared/data/nmea")
def test_nmea_log_at_baud_rate_keeps_the_line_busy():
    r = _Run({"gps": {"nmea": str(NMEA_DIR / "mt3339.log"), "rate": "baud", "uart": 2}})
    w = r.at(0.0)
    line = w.uart_line(2)
    line.configure(0.0, baud=9600)
    for i in range(1, 21):
        r.at(i * 0.1)
    assert line.available(2.0) == pytest.approx(1920, abs=2)  # 2 s at 960 B/s, never idle


# ---- scenario files: errors ----


@pytest.mark.parametrize(("data", "message"), [
    ({"level": [[0, 1.0], [10, 2.0], [10, 3.0]]},
     "scenario test.yaml: level[2]: time must increase"),
    ({"level": [[0, "high"]]}, "scenario test.yaml: level[0]: expected a number, got 'high'"),
    ({"levle": [[0, 1.0]]}, "scenario test.yaml: levle: unknown key"),
    ({"wifi": {"down": [[10, 20], [15, 30]]}},
     "scenario test.yaml: wifi.down[1]: intervals must be in order and not overlap"),
    ({"wifi": {"down": [[30, 20]]}}, "scenario test.yaml: wifi.down[0]: end must be after start"),
    ({"ignition": {"on": [[0, 10]]}},
     "scenario test.yaml: ignition: board kind 'water-level-devkitc' has no ignition input"),
    ({"gps": {"nmea": "no-such.log"}}, "scenario test.yaml: gps: board kind"),
    ({"power_cuts": [20, 10]}, "scenario test.yaml: power_cuts[1]: time must increase"),
    ({"adc_mv": {34: "x"}}, "scenario test.yaml: could not convert string to float"),
    ({"speed": -1}, "scenario test.yaml: speed: must be >= 0"),
])
def test_bad_scenarios_say_which_key_is_wrong(data, message):
    with pytest.raises(ScenarioError) as e:
        parse(data, "test.yaml", "water-level-devkitc")
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_sensor_keys_need_a_board_kind_and_files_are_named():
    with pytest.raises(ScenarioError, match=r"^scenario x.yaml: level: needs a board kind"):
        parse({"level": [[0, 1.0]]}, "x.yaml")
    with pytest.raises(ScenarioError, match=r"^scenario x.yaml: board: unknown board kind"):
        parse({"board": "no-such-kind"}, "x.yaml")
    with pytest.raises(ScenarioError, match=r"^scenario x.yaml: gps.nmea: cannot read"):
        parse({"gps": {"nmea": "/nonexistent.log", "uart": 2}}, "x.yaml")


def test_the_plain_value_format_still_works(tmp_path):
    f = tmp_path / "plain.yaml"
    f.write_text("wifi: {up: false, rssi: -71}\nadc_mv: {34: 1200}\npins: {5: 1}\n"
                 "pulse_us: {18: 11648}\nuart_rx: {2: \"$GPGGA\\r\\n\"}\n")
    r = ScenarioRun(load(f), World(), t0=0.0)
    w = r.world
    assert w.wifi["up"] is False and w.wifi["rssi"] == -71
    assert (w.adc_mv, w.pins, w.pulse_us) == ({34: 1200.0}, {5: 1}, {18: 11648})
    assert w.uart_line(2).take(-1, time.monotonic() + 1) == b"$GPGGA\r\n"
    assert World.from_file(f).adc_mv == {34: 1200.0}


# ---- scenario files: what they do ----


def _distance(us: int) -> float:
    return us * SOUND_MPS_20C / 2e6


def test_level_profile_drives_the_echo_and_the_current_loop_linearly():
    r = _Run({"level": {"points": [[0, 1.0], [100, 3.0]], "datum_m": 5.0, "offset_m": -2.0}},
             "water-level-devkitc", speed=10)
    for now, level in ((0.0, 1.0), (5.0, 2.0), (7.5, 2.5), (20.0, 3.0)):
        w = r.at(now)
        assert 5.0 - _distance(w.pulse_us[18]) == pytest.approx(level, abs=0.001)
        ma = current_loop.ma_from_uv(w.adc_mv[35] * 1000, 120)  # the firmware's own arithmetic
        assert current_loop.level_from_ma(ma, 10.0, -2.0) == pytest.approx(level, abs=0.001)


def test_ignition_wifi_and_power_cuts_switch_on_time():
    r = _Run({"board": "truck-gps-cell", "ignition": {"on": [[10, 20]]},
              "wifi": {"down": [[5, 15]]}, "power_cuts": [12, [18, 4]]}, speed=2)
    assert r.at(0).pins[39] == 1 and r.world.wifi["up"]  # active low: off reads 1
    assert not r.at(2.6).wifi["up"]  # t = 5.2
    assert r.at(5.1).pins[39] == 0  # t = 10.2: on
    assert r.cuts == []
    r.at(6.1, power=False)  # the board asking: never a cut in the middle of an answer
    assert r.cuts == []
    r.at(6.2)
    assert r.cuts == [(6.2, 0.0)]
    assert r.at(7.6).wifi["up"]
    r.at(9.05)
    assert r.cuts == [(6.2, 0.0), (9.05, 2.0)]  # off 4 scenario s = 2 s at speed 2
    assert r.at(10.1).pins[39] == 1
    assert r.run.next_due(10.1) == pytest.approx(11.1)  # nothing left but the idle tick


def test_speed_zero_holds_the_scenario_at_its_start():
    r = _Run({"level": [[0, 1.0], [10, 3.0]]}, "water-level-devkitc", speed=0)
    first = r.at(0.0).pulse_us[18]
    assert r.at(100.0).pulse_us[18] == first
    assert r.run.time_at(100.0) == 0.0


def _lines(world: World, uart: int, now: float) -> list[bytes]:
    return [ln for ln in world.uart_line(uart).take(-1, now).split(b"\r\n") if ln]


def _example(role: str) -> dict:
    cfg = json.loads((REPO / "firmware" / "examples" / f"{role}.json").read_text())
    return config.parse(cfg, {})  # with the schema's defaults, as the node runs it


def _scenario_run(path: Path, speed: float = 1.0):
    sc = load(path, speed=speed)
    world = World()
    cuts: list[float] = []
    return sc, world, ScenarioRun(sc, world, cuts.append, t0=0.0, utc0=1_773_000_000.0), cuts


def test_every_shipped_scenario_loads_against_its_board_kind():
    names = {p.stem for p in SCENARIOS}
    assert {"flood", "boat_zone", "truck_round", "outages"} <= names
    for path in SCENARIOS:
        sc, world, run, _ = _scenario_run(path)
        assert sc.kind, f"{path.name} names its board kind"
        assert sc.duration and sc.duration > 0
        run.tick(0.0)
        run.tick(sc.duration)


def test_flood_scenario_raises_and_clears_the_flood_alert_of_the_firmware():
    sc, world, run, _ = _scenario_run(REPO / "hil_tests" / "scenarios" / "flood.yaml")
    cfg = _example("water_level")
    role = WaterLevel(cfg)
    datum = cfg["water_level"]["datum_m"]
    events, levels = [], []
    for t in range(0, int(sc.duration) + 1, 20):
        run.tick(float(t))
        d = _distance(world.pulse_us[18])
        pack, _ = role.step(d, None, None, None, 1_773_000_000 + t)
        events += [(t, r[3]) for r in pack if r.get(0) == "event"]
        levels.append(datum - d)
    assert [e for _, e in events] == ["flood_alert", "flood_clear"]
    # 1.9 m is crossed at t = 225 s going up, 1.85 m at t = 382.5 s going down
    assert 225 <= events[0][0] < 245 and 382 <= events[1][0] < 403
    assert max(levels) == pytest.approx(2.4, abs=0.01) and levels[0] == pytest.approx(1.0, 0.01)


def _play_gps(world: World, run: ScenarioRun, duration: float, tracker, ignition=None):
    reader = nmea.LineReader()
    out = []
    for t in range(int(duration) + 1):
        run.tick(float(t))
        ign = None if ignition is None else not world.pins[ignition]
        for line in reader.feed(world.uart_line(2).take(-1, float(t) + 1)):
            fix = nmea.parse(line)
            if fix:
                args = (fix, 1_773_000_000 + t) + ((ign,) if ignition is not None else ())
                out += [(t, p) for p in tracker.update(*args)]
        args = (None, 1_773_000_000 + t) + ((ign,) if ignition is not None else ())
        out += [(t, p) for p in tracker.update(*args)]
    return [(t, rec[3]) for t, p in out for rec in p if rec.get(0) == "event"]


def test_boat_zone_scenario_enters_and_leaves_the_licensed_zone():
    sc, world, run, _ = _scenario_run(REPO / "hil_tests" / "scenarios" / "boat_zone.yaml")
    zones = [Zone(z["name"], z["polygon"], z["hours"]) for z in _example("boat")["boat"]["zones"]]
    events = _play_gps(world, run, sc.duration, BoatTracker(zones))
    kinds = [e for _, e in events if e in ("zone_enter", "zone_exit")]
    assert kinds == ["zone_enter", "zone_exit"]
    t_enter = next(t for t, e in events if e == "zone_enter")
    t_exit = next(t for t, e in events if e == "zone_exit")
    assert 30 <= t_enter <= 45 and 110 <= t_exit <= 130  # 187 m and 599 m at 5 m/s


def test_truck_round_scenario_makes_a_trip_with_two_stops():
    sc, world, run, _ = _scenario_run(REPO / "hil_tests" / "scenarios" / "truck_round.yaml")
    events = _play_gps(world, run, sc.duration, TruckTracker(), ignition=39)
    assert [e for _, e in events] == ["trip_start", "stop", "stop", "trip_end"]
    assert events[0][0] == 10 and events[-1][0] == 390


def test_outages_scenario_takes_wifi_down_twice_and_cuts_the_power_once():
    sc, world, run, cuts = _scenario_run(REPO / "hil_tests" / "scenarios" / "outages.yaml",
                                         speed=10)
    ups = []
    for i in range(0, 181):
        run.tick(i / 10)
        ups.append(world.wifi["up"])
    downs = sum(1 for a, b in zip(ups, ups[1:], strict=False) if a and not b)
    assert downs == 2 and ups[-1]
    assert cuts == [pytest.approx(0.3)]  # off 3 s of scenario time = 0.3 s at speed 10


# ---- on a running virtual board ----


def _board(vb) -> SerialBoard:
    return SerialBoard(vb.port, connect_timeout=10, soft_reset=False)


def test_board_reads_uart_bytes_at_the_baud_rate_pace(vboard):
    with _board(vboard) as b:
        b.exec("from machine import UART\nu = UART(1, 9600, rxbuf=4096)")
        assert vboard.control.state()["world"]["uart_rx"]["1"]["baud"] == 9600
        vboard.control.feed_uart(1, bytes(range(240)) * 10)  # 2400 B: 2.5 s at 960 B/s
        out = b.exec(
            "import time\n"
            "t0 = time.ticks_ms(); c0 = u.any(); got = b''\n"
            "while len(got) < 2400 and time.ticks_diff(time.ticks_ms(), t0) < 8000:\n"
            "    got += u.read() or b''\n"
            "    time.sleep_ms(5)\n"
            "dt = time.ticks_diff(time.ticks_ms(), t0)\n"
            "print(c0, len(got), dt, got == bytes(range(240)) * 10)", timeout=15)
    c0, n, dt, same = out.split()
    assert int(n) == 2400 and same == "True"
    assert int(c0) < 1200  # not there at once (this exec started within about 1 s)
    rate = (2400 - int(c0)) / (int(dt) / 1000)
    print(f"UART 9600 baud: {rate:.0f} B/s measured on the board")
    assert 960 * 0.8 < rate < 960 * 1.15, f"{rate:.0f} B/s measured on the board"


def test_uart_speed_instant_delivers_at_once(vboard):
    with _board(vboard) as b:
        b.exec("from machine import UART\nu = UART(1, 9600)")
        vboard.control.uart_speed(1, "instant")
        vboard.control.feed_uart(1, b"$GNRMC,1\r\n" * 20)
        assert b.eval("u.any()") == 200


def test_level_profile_moves_the_echo_pulse_on_the_board(vboard):
    vboard.control.load_scenario({"level": [[0, 1.0], [1, 1.0], [2, 3.0]]},
                                 board="water-level-devkitc", speed=1)
    probe = ("from machine import Pin, time_pulse_us\n"
             "print(time_pulse_us(Pin(18, Pin.IN), 1, 100000))")
    with _board(vboard) as b:
        first = int(b.exec(probe))
        time.sleep(2.2)
        last = int(b.exec(probe))
    assert 4.5 - _distance(first) == pytest.approx(1.0, abs=0.01)  # datum 4.5 m
    assert 4.5 - _distance(last) == pytest.approx(3.0, abs=0.01)


def test_power_cut_of_a_scenario_happens_at_its_time(vboard):
    ctl = vboard.control
    boots = ctl.state()["boots"]
    t_load = time.monotonic()
    ctl.load_scenario({"power_cuts": [[1.0, 0.5]]}, speed=1, name="cut.yaml")
    assert ctl.state()["boots"] == boots  # not yet
    st = ctl.wait_booted(boots, timeout=10)
    took = time.monotonic() - t_load
    assert st["reset_cause"] == 1  # PWRON_RESET
    assert 1.4 <= took < 5, f"power came back after {took:.2f} s (cut at 1 s, off 0.5 s)"
    assert any("power cycle (off 0.5 s)" in e for e in st["events"])
    assert st["scenario"]["name"] == "cut.yaml" and st["scenario"]["power_cuts_done"] == 1


def test_control_reports_a_bad_scenario_in_one_line(vboard):
    with pytest.raises(VBoardError, match=r"scenario flood.yaml: level\[1\]: time must increase"):
        vboard.control.load_scenario({"level": [[5, 1.0], [5, 2.0]]}, board="water-level-devkitc",
                                     name="flood.yaml")


def test_cli_runs_a_scenario_file_and_refuses_a_bad_one(tmp_path):
    bad = tmp_path / "flood.yaml"
    bad.write_text("board: water-level-devkitc\nlevel: [[0, 1.0], [10, 2.0], [10, 3.0]]\n")
    r = subprocess.run([sys.executable, "-m", "hil_tests.vboard.cli", "run", "--dir",
                        str(tmp_path / "b"), "--scenario", str(bad)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2
    assert r.stderr.strip() == f"vboard: scenario {bad}: level[2]: time must increase"


def test_vboard_run_with_a_board_kind_and_a_scenario_file(tmp_path):
    from hil_tests.vboard import VirtualBoard

    path = REPO / "hil_tests" / "scenarios" / "truck_round.yaml"
    with VirtualBoard(tmp_path / "b", kind="truck-gps-cell", scenario=path) as vb:
        st = vb.control.state()
        assert st["scenario"]["kind"] == "truck-gps-cell" and st["scenario"]["speed"] == 1
        world = st["world"]
        assert world["pins"] == {"39": 1}  # ignition off until t = 10 s (active low)
        assert world["adc_mv"]["36"] == pytest.approx(27.6 / 11 * 1000, abs=0.1)
        with _board(vb) as b:
            b.exec("from machine import UART\nu = UART(2, 9600, rxbuf=1024)")
            time.sleep(1.2)
            lines = b.exec("print(u.read())")
    assert "$GNRMC," in lines and "$GNGGA," in lines  # the track's fixes, at 9600 baud
