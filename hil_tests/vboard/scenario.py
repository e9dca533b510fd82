"""Scenario files: a virtual board's world over time, in sensor terms.

A scenario is YAML (or JSON, or a dict over the control socket). Times are
seconds since the run started, scaled by the run's speed (speed 10: a
600 s flood passes in a minute of wall time). Sensor keys are mapped onto
pins through the board kind's sensors in boards.yaml:

    board: water-level-devkitc     # kind the sensor keys map to (--board overrides)
    speed: 1                       # default speed (--speed / load_scenario overrides)
    level: [[0, 1.0], [300, 2.4], [600, 1.0]]   # metres above the datum, linear
    battery: [[0, 3.9], [600, 3.7]]             # volts at the divider's input
    gps: {track: {waypoints: [[10.04, 105.75], [10.05, 105.76, 60]], speed_mps: 5}}
    gps: {nmea: /work/shared/data/nmea/ublox-8.log, rate: realtime, loop: true}
    ignition: {on: [[10, 300]]}
    wifi: {down: [[60, 90]]}
    power_cuts: [120, [400, 5]]    # at t (, off for s)
    adc_mv: {34: 1200}             # the plain world values (world.py) still work

Errors are one line naming the file and key:
`scenario flood.yaml: level[2]: time must increase`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import VBoardError
from .sensors import Heading, Track, echo_us, loop_mv, nmea_fix
from .uartstream import NmeaLog, NmeaStream, parse_speed
from .world import World

REPO = Path(__file__).resolve().parents[2]
WATER_LEVEL_EXAMPLE = REPO / "firmware" / "examples" / "water_level.json"
PLAIN_KEYS = ("adc_mv", "pins", "pulse_us", "uart_rx", "uart_speed")
TIMELINE_KEYS = ("level", "battery", "gps", "ignition", "power_cuts")
META_KEYS = ("board", "speed", "duration", "description")
KNOWN_KEYS = (*META_KEYS, *TIMELINE_KEYS, "wifi", *PLAIN_KEYS)
LEVEL_SENSORS = ("jsn-sr04t", "pressure-4-20ma")
TICK_S = 0.1  # how often the relay refreshes continuous values between the board's reads


class ScenarioError(VBoardError):
    """A scenario that cannot be used: `scenario NAME: KEY: what is wrong`."""


# ---- reading ----


class _Reader:
    """Checks values and raises ScenarioError naming the file and the key."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, key: str, msg: str) -> ScenarioError:
        return ScenarioError(f"scenario {self.name}: {key}: {msg}" if key else
                             f"scenario {self.name}: {msg}")

    def number(self, key: str, v: Any, low: float | None = None, strict: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(key, f"expected a number, got {v!r}")
        if low is not None and (v <= low if strict else v < low):
            raise self.fail(key, f"must be {'>' if strict else '>='} {low:g}, got {v!r}")
        return float(v)

    def mapping(self, key: str, v: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(key, f"expected a mapping, got {type(v).__name__}")
        for k in v:
            if k not in allowed:
                raise self.fail(f"{key}.{k}" if key else str(k),
                                f"unknown key (known: {', '.join(allowed)})")
        return v

    def seq(self, key: str, v: Any) -> list[Any]:
        if not isinstance(v, list) or not v:
            raise self.fail(key, "expected a non-empty list")
        return v

    def profile(self, key: str, v: Any) -> list[tuple[float, float]]:
        """[[t, value], ...] with t strictly increasing."""
        out: list[tuple[float, float]] = []
        for i, p in enumerate(self.seq(key, v)):
            k = f"{key}[{i}]"
            if not isinstance(p, list) or len(p) != 2:
                raise self.fail(k, f"expected [time_s, value], got {p!r}")
            t = self.number(k, p[0], 0)
            if out and t <= out[-1][0]:
                raise self.fail(k, "time must increase")
            out.append((t, self.number(k, p[1])))
        return out

    def intervals(self, key: str, v: Any) -> list[tuple[float, float]]:
        """[[start, end], ...], each start < end, in order, not overlapping."""
        out: list[tuple[float, float]] = []
        for i, p in enumerate(self.seq(key, v)):
            k = f"{key}[{i}]"
            if not isinstance(p, list) or len(p) != 2:
                raise self.fail(k, f"expected [start_s, end_s], got {p!r}")
            a, b = self.number(k, p[0], 0), self.number(k, p[1], 0)
            if b <= a:
                raise self.fail(k, "end must be after start")
            if out and a < out[-1][1]:
                raise self.fail(k, "intervals must be in order and not overlap")
            out.append((a, b))
        return out


def interp(points: list[tuple[float, float]], t: float) -> float:
    """The piecewise-linear value of `points` ((time, value), times increasing) at t."""
    if t <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in zip(points, points[1:], strict=False):
        if t < t1:
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return points[-1][1]


def _inside(intervals: list[tuple[float, float]], t: float) -> bool:
    return any(a <= t < b for a, b in intervals)


def _edges(intervals: list[tuple[float, float]]) -> list[float]:
    return [x for iv in intervals for x in iv]


# ---- the parts of a scenario ----


@dataclass
class _Setter:
    """A continuous value (level, battery) written to world pins at every tick."""

    key: str
    points: list[tuple[float, float]]
    apply: Callable[[World, float], None]


@dataclass
class _Gps:
    uart: int
    start: float = 0.0
    track: Track | Heading | None = None
    sats: int = 9
    stream: NmeaStream | None = None
    next_s: float = 0.0


@dataclass
class Scenario:
    """A parsed scenario: plain starting values plus what changes over time."""

    name: str
    kind: str | None = None
    speed: float = 1.0
    duration: float | None = None
    initial: dict[str, Any] = field(default_factory=dict)
    setters: list[_Setter] = field(default_factory=list)
    gps: _Gps | None = None
    ignition: tuple[list[tuple[float, float]], int, bool] | None = None  # on, pin, active_low
    wifi_down: list[tuple[float, float]] | None = None
    power_cuts: list[tuple[float, float]] = field(default_factory=list)  # (t, off_s)

    @property
    def timed(self) -> bool:
        """Whether anything changes over time (else it is only starting values)."""
        return bool(self.setters or self.gps or self.ignition or self.wifi_down
                    or self.power_cuts)

    def events(self) -> list[float]:
        """Times at which something switches (for tests and `next_due`)."""
        out: list[float] = []
        if self.ignition:
            out += _edges(self.ignition[0])
        if self.wifi_down:
            out += _edges(self.wifi_down)
        out += [t for t, _ in self.power_cuts]
        return sorted(out)


def load_kind(name: str) -> Any:
    """The BoardKind `name` from the repository's boards.yaml."""
    from provisioning.boards import default_boards_path, load_boards
    from provisioning.errors import ProvisioningError

    try:
        return load_boards(default_boards_path()).get(name)
    except ProvisioningError as e:
        raise VBoardError(str(e)) from None


def _sensor(kind: Any, types: tuple[str, ...]) -> Any:
    for s in kind.sensors:
        if s.type in types:
            return s
    return None


def _example_level() -> dict[str, Any]:
    try:
        return dict(json.loads(WATER_LEVEL_EXAMPLE.read_text())["water_level"])
    except (OSError, ValueError, KeyError):
        return {}


def read_file(path: Path | str) -> dict[str, Any]:
    name = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        msg = getattr(e, "strerror", None) or str(e).replace("\n", " ")
        raise ScenarioError(f"scenario {name}: cannot read: {msg}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario {name}: expected a mapping at the top level")
    return data


def load(path: Path | str, kind: str | None = None, speed: float | None = None) -> Scenario:
    """Read and check a scenario file (relative NMEA paths are from its folder)."""
    return parse(read_file(path), str(path), kind, speed, Path(path).resolve().parent)


def parse(data: dict[str, Any], name: str = "<control>", kind: str | None = None,
          speed: float | None = None, base: Path | None = None) -> Scenario:
    """Check a scenario and map its sensor keys onto `kind`'s pins (kind overrides `board:`)."""
    r = _Reader(name)
    if not isinstance(data, dict):
        raise r.fail("", "expected a mapping at the top level")
    r.mapping("", data, KNOWN_KEYS)
    sc = Scenario(name)
    if "speed" in data:
        sc.speed = r.number("speed", data["speed"], 0)
    if speed is not None:
        sc.speed = r.number("speed", speed, 0)
    if "duration" in data:
        sc.duration = r.number("duration", data["duration"], 0, strict=True)
    kind_name = kind or data.get("board")
    if kind_name is not None and not isinstance(kind_name, str):
        raise r.fail("board", f"expected a board kind name, got {kind_name!r}")
    bk = None
    if kind_name and kind_name != "esp32":
        try:
            bk = load_kind(kind_name)
        except VBoardError as e:
            raise r.fail("board", str(e)) from None
        sc.kind = kind_name

    def need(key: str, types: tuple[str, ...], what: str) -> Any:
        if bk is None:
            raise r.fail(key, "needs a board kind (`board: KIND` in the file, or --board KIND)")
        s = _sensor(bk, types)
        if s is None:
            raise r.fail(key, f"board kind {kind_name!r} has no {what}")
        return s

    plain = {k: data[k] for k in PLAIN_KEYS if k in data}
    wifi = data.get("wifi")
    if wifi is not None:
        if not isinstance(wifi, dict):
            raise r.fail("wifi", f"expected a mapping, got {type(wifi).__name__}")
        rest = {k: v for k, v in wifi.items() if k != "down"}
        if "down" in wifi:
            if "up" in wifi:
                raise r.fail("wifi.up", "give either `up` or `down` intervals, not both")
            sc.wifi_down = r.intervals("wifi.down", wifi["down"])
        if rest:
            plain["wifi"] = rest
    try:
        World(plain)  # the plain values' own checks, on a scratch world
    except (VBoardError, AttributeError, TypeError, ValueError) as e:
        raise r.fail("", str(e)) from None
    sc.initial = plain

    if "level" in data:
        first = need("level", LEVEL_SENSORS, "level sensor (jsn-sr04t or pressure-4-20ma)")
        assert bk is not None  # need() said so
        _level(r, sc, data["level"], [first] + [x for x in bk.sensors
                                                if x.type in LEVEL_SENSORS and x is not first])
    if "battery" in data:
        s = need("battery", ("adc-divider",), "battery divider (adc-divider)")
        sc.setters.append(_Setter("battery", r.profile("battery", data["battery"]),
                                  _battery_setter(s.gpios["adc"], float(s.params["ratio"]))))
    if "gps" in data:
        g = data["gps"]
        if isinstance(g, dict) and "uart" in g:  # wired by hand: no kind needed
            uart = int(r.number("gps.uart", g["uart"], 0))
        else:
            s = need("gps", ("neo-m8n",), "GPS (neo-m8n)")
            uart = s.uart.id if s.uart else 2
        _gps(r, sc, g, uart, base)
    if "ignition" in data:
        s = need("ignition", ("ignition",), "ignition input")
        ign = data["ignition"]
        if isinstance(ign, dict):  # YAML 1.1 reads a bare `on:` key as true (JSON: "true")
            ign = {("on" if k is True or k == "true" else k): v for k, v in ign.items()}
        ign = r.mapping("ignition", ign, ("on",))
        if "on" not in ign:
            raise r.fail("ignition", "expected `on: [[start_s, end_s], ...]`")
        sc.ignition = (r.intervals("ignition.on", ign["on"]), s.gpios["in"],
                       bool(s.params.get("active_low", True)))
    if "power_cuts" in data:
        for i, c in enumerate(r.seq("power_cuts", data["power_cuts"])):
            k = f"power_cuts[{i}]"
            if isinstance(c, list) and len(c) == 2:
                t, off = r.number(k, c[0], 0), r.number(k, c[1], 0)
            elif isinstance(c, list):
                raise r.fail(k, f"expected a time or [time_s, off_s], got {c!r}")
            else:
                t, off = r.number(k, c, 0), 0.0
            if sc.power_cuts and t <= sc.power_cuts[-1][0]:
                raise r.fail(k, "time must increase")
            sc.power_cuts.append((t, off))
    return sc


def _level(r: _Reader, sc: Scenario, v: Any, sensors: list[Any]) -> None:
    """level: [[t, m], ...] or {points: [...], datum_m: M, offset_m: M}: metres above the
    datum, onto every level sensor of the kind (datum and offset: the node config's)."""
    ex = _example_level()
    key = "level"
    datum = float(ex.get("datum_m", 0.0))  # the sensor face's height above the datum
    offset = float((ex.get("pressure") or {}).get("offset_m", 0.0))
    if isinstance(v, dict):
        r.mapping("level", v, ("points", "datum_m", "offset_m"))
        datum = r.number("level.datum_m", v.get("datum_m", datum))
        offset = r.number("level.offset_m", v.get("offset_m", offset))
        key, v = "level.points", v.get("points")
    points = r.profile(key, v)
    for s in sensors:
        if s.type == "jsn-sr04t":
            # the surface is datum - level below the face; over the face (a drowned
            # sensor) the echo is 2 cm: inside the blind zone, so no reading
            sc.setters.append(_Setter("level", points, _echo_setter(s.gpios["echo"], datum)))
        else:
            sc.setters.append(_Setter("level", points, _loop_setter(
                s.gpios["adc"], float(s.params["range_m"]), float(s.params["shunt_ohms"]),
                offset)))


def _echo_setter(pin: int, datum: float) -> Callable[[World, float], None]:
    def apply(w: World, level: float) -> None:
        w.pulse_us[pin] = echo_us(max(datum - level, 0.02))
    return apply


def _loop_setter(pin: int, rng: float, shunt: float, offset: float) \
        -> Callable[[World, float], None]:
    def apply(w: World, level: float) -> None:
        w.adc_mv[pin] = round(loop_mv(level, rng, shunt, offset), 1)
    return apply


def _battery_setter(pin: int, ratio: float) -> Callable[[World, float], None]:
    def apply(w: World, volts: float) -> None:
        w.adc_mv[pin] = round(volts / ratio * 1000, 1)
    return apply


def _latlon(r: _Reader, key: str, p: Any) -> tuple[float, float]:
    if not isinstance(p, list) or len(p) < 2:
        raise r.fail(key, f"expected [lat, lon], got {p!r}")
    lat, lon = r.number(key, p[0]), r.number(key, p[1])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise r.fail(key, f"not a position: {p!r}")
    return lat, lon


def _gps(r: _Reader, sc: Scenario, v: Any, uart: int, base: Path | None) -> None:
    g = r.mapping("gps", v, ("nmea", "rate", "loop", "track", "drive", "start", "sats",
                             "uart", "uart_speed"))
    sources = [k for k in ("nmea", "track", "drive") if k in g]
    if len(sources) != 1:
        raise r.fail("gps", "give one of `nmea` (a log file), `track` (waypoints) or `drive`")
    gps = _Gps(uart, start=r.number("gps.start", g.get("start", 0), 0))
    gps.next_s = gps.start
    if "uart_speed" in g:
        try:
            parse_speed(g["uart_speed"])
        except VBoardError as e:
            raise r.fail("gps.uart_speed", str(e)) from None
        sc.initial.setdefault("uart_speed", {})[uart] = g["uart_speed"]
    if "sats" in g:
        gps.sats = int(r.number("gps.sats", g["sats"], 0))
    loop = g.get("loop", False)
    if not isinstance(loop, bool):
        raise r.fail("gps.loop", f"expected true or false, got {loop!r}")
    if "nmea" in g:
        if not isinstance(g["nmea"], str):
            raise r.fail("gps.nmea", f"expected a file path, got {g['nmea']!r}")
        path = Path(g["nmea"])
        if not path.is_absolute() and base is not None and (base / path).exists():
            path = base / path
        rate = g.get("rate", "realtime")
        if rate not in ("baud", "realtime"):
            rate = r.number("gps.rate", rate, 0, strict=True) if not isinstance(rate, str) \
                else None
            if rate is None:
                raise r.fail("gps.rate", f"expected baud, realtime or a factor, "
                                         f"got {g['rate']!r}")
        try:
            log = NmeaLog.read(path)
        except VBoardError as e:
            raise r.fail("gps.nmea", str(e)) from None
        gps.stream = NmeaStream(log, rate, loop, gps.start)
    elif "track" in g:
        t = r.mapping("gps.track", g["track"], ("waypoints", "speed_mps", "loop"))
        if "speed_mps" not in t:
            raise r.fail("gps.track", "needs speed_mps")
        speed = r.number("gps.track.speed_mps", t["speed_mps"], 0, strict=True)
        wps = []
        for i, p in enumerate(r.seq("gps.track.waypoints", t.get("waypoints"))):
            k = f"gps.track.waypoints[{i}]"
            lat, lon = _latlon(r, k, p)
            wait = r.number(k, p[2], 0) if len(p) > 2 else 0.0
            if len(p) > 3:
                raise r.fail(k, f"expected [lat, lon] or [lat, lon, wait_s], got {p!r}")
            wps.append((lat, lon, wait))
        tloop = t.get("loop", False)
        if not isinstance(tloop, bool):
            raise r.fail("gps.track.loop", f"expected true or false, got {tloop!r}")
        gps.track = Track(wps, speed, tloop)
    else:
        d = r.mapping("gps.drive", g["drive"], ("from", "course", "speed_mps"))
        lat, lon = _latlon(r, "gps.drive.from", d.get("from"))
        gps.track = Heading(lat, lon, r.number("gps.drive.course", d.get("course", 0)),
                            r.number("gps.drive.speed_mps", d.get("speed_mps", 0), 0))
    sc.gps = gps


# ---- running ----


class ScenarioRun:
    """A scenario playing on a World from monotonic time t0, `speed` scenario seconds
    per second (0: held at t = 0). The relay calls tick() when next_due() comes and
    before it answers the board, so values are exact at the moment they are read.
    """

    def __init__(self, sc: Scenario, world: World,
                 power_cycle: Callable[[float], None] | None = None,
                 t0: float | None = None, utc0: float | None = None) -> None:
        import time

        self.sc = sc
        self.world = world
        self.power_cycle = power_cycle
        self.speed = sc.speed
        self.t0 = time.monotonic() if t0 is None else t0
        self.utc0 = time.time() if utc0 is None else utc0  # the GPS's UTC at t = 0
        self.cuts_done = 0
        self.ign: bool | None = None
        self.wifi_down: bool | None = None
        self.gps = dataclasses.replace(sc.gps) if sc.gps else None
        if self.gps and self.gps.stream:
            st = self.gps.stream
            self.gps.stream = NmeaStream(st.log, st.rate, st.loop, st.start)
        world.update(sc.initial)
        if self.gps and self.gps.uart not in {int(k) for k in sc.initial.get("uart_speed", {})}:
            # a scenario second lasts 1/speed s: the GPS's 9600 baud, in scenario time
            world.uart_speed(self.gps.uart, max(1.0, self.speed))

    def time_at(self, now: float) -> float:
        """Scenario seconds at monotonic time `now`."""
        return max(0.0, (now - self.t0) * self.speed)

    def wall(self, t: float) -> float:
        """Monotonic time at scenario time t (inf when held)."""
        if self.speed == 0:
            return self.t0 if t <= 0 else math.inf
        return self.t0 + t / self.speed

    def tick(self, now: float, power: bool = True) -> None:
        """Bring the world to `now`; power cuts only when `power` (the relay's own tick:
        a cut kills the VM, so it must not happen while the relay answers it)."""
        t = self.time_at(now)
        w = self.world
        for s in self.sc.setters:
            s.apply(w, interp(s.points, t))
        if self.sc.ignition:
            on_iv, pin, low = self.sc.ignition
            on = _inside(on_iv, t)
            if on != self.ign:
                self.ign = on
                w.pins[pin] = int(on != low)
        if self.sc.wifi_down is not None:
            down = _inside(self.sc.wifi_down, t)
            if down != self.wifi_down:
                self.wifi_down = down
                w.set_wifi(not down)
        if self.gps:
            self._gps(t, now)
        while power and self.cuts_done < len(self.sc.power_cuts) and \
                self.sc.power_cuts[self.cuts_done][0] <= t:
            off = self.sc.power_cuts[self.cuts_done][1]
            self.cuts_done += 1
            if self.power_cycle is not None:
                self.power_cycle(off / self.speed if self.speed else 0.0)

    def _gps(self, t: float, now: float) -> None:
        g = self.gps
        assert g is not None
        if g.stream is not None:
            if g.stream.rate == "baud":
                if t >= g.start:
                    g.stream.top_up(self.world.uart_line(g.uart), now)
                return
            for at, data in g.stream.due(t):
                self.world.feed_uart(g.uart, data, at=self.wall(at))
            return
        assert g.track is not None
        while g.next_s <= t:
            fix = g.track.at(g.next_s - g.start)
            data = nmea_fix(fix.lat, fix.lon, fix.speed_mps, fix.course,
                            self.utc0 + g.next_s, g.sats)
            self.world.feed_uart(g.uart, data, at=self.wall(g.next_s))
            g.next_s += 1

    def next_due(self, now: float) -> float:
        """Monotonic time of the next tick the relay must make."""
        t = self.time_at(now)
        cand = [now + 1.0]
        if any(t < s.points[-1][0] for s in self.sc.setters):
            cand.append(now + TICK_S)
        times = self.sc.events()
        nxt = [x for x in times if x > t]
        if nxt:
            cand.append(self.wall(nxt[0]))
        if self.cuts_done < len(self.sc.power_cuts):
            cand.append(self.wall(self.sc.power_cuts[self.cuts_done][0]))
        g = self.gps
        if g is not None:
            if g.stream is not None:
                at = g.stream.next_at()
                cand.append(now + 0.25 if g.stream.rate == "baud" else
                            self.wall(at) if at is not None else math.inf)
            else:
                cand.append(self.wall(g.next_s))
        return min(cand)

    def snapshot(self, now: float) -> dict[str, Any]:
        return {"name": self.sc.name, "kind": self.sc.kind, "speed": self.speed,
                "t": round(self.time_at(now), 3), "power_cuts_done": self.cuts_done}
