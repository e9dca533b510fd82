"""What a board's sensors put on its wires, from physical values.

An ultrasonic distance becomes an echo pulse width, a water level on a 4-20 mA
pressure transmitter a shunt voltage, a position a NEO-M8N's NMEA (RMC + GGA),
and a list of waypoints a position at every second. Used by the scenario
engine (scenario.py) and by hil_tests/kind_world.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

SOUND_MPS_20C = 331.3 + 0.606 * 20  # the firmware's sr04t model at 20 degC
EARTH_M_PER_DEG = 111_320.0
KN_PER_MPS = 1.943844


def echo_us(distance_m: float) -> int:
    """Round-trip echo time of an ultrasonic ping at 20 degC."""
    return round(2 * distance_m / SOUND_MPS_20C * 1e6)


def loop_mv(level_m: float, range_m: float, shunt_ohms: float, offset_m: float = 0.0) -> float:
    """Shunt voltage of a 4-20 mA pressure transmitter (4 mA = offset_m, 20 mA =
    offset_m + range_m), saturating at the ends of its span like a real one."""
    ma = 4.0 + (level_m - offset_m) * 16.0 / range_m
    return min(max(ma, 4.0), 20.0) * shunt_ohms  # mA * ohm = mV


def _nmea(body: str) -> bytes:
    cs = 0
    for ch in body.encode():
        cs ^= ch
    return f"${body}*{cs:02X}\r\n".encode()


def _ddmm(value: float, lat: bool) -> str:
    hemi = ("N" if value >= 0 else "S") if lat else ("E" if value >= 0 else "W")
    v = abs(value)
    deg = int(v)
    minutes = (v - deg) * 60
    return f"{deg:02d}{minutes:08.5f},{hemi}" if lat else f"{deg:03d}{minutes:08.5f},{hemi}"


def nmea_fix(lat: float, lon: float, speed_mps: float, course: float, when: float,
             sats: int = 9) -> bytes:
    """One second of a NEO-M8N's output: RMC then GGA, GN talker, a 3D fix."""
    t = time.gmtime(when)
    hms = f"{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}.00"
    dmy = f"{t.tm_mday:02d}{t.tm_mon:02d}{t.tm_year % 100:02d}"
    pos = f"{_ddmm(lat, True)},{_ddmm(lon, False)}"
    rmc = _nmea(f"GNRMC,{hms},A,{pos},{speed_mps * KN_PER_MPS:.3f},{course:.2f},{dmy},,,A")
    gga = _nmea(f"GNGGA,{hms},{pos},1,{sats:02d},0.9,4.0,M,-2.0,M,,")
    return rmc + gga


def offset(lat: float, lon: float, dist_m: float, course: float) -> tuple[float, float]:
    """The point dist_m from (lat, lon) on a course (degrees from north), flat-earth."""
    rad = math.radians(course)
    lat2 = lat + dist_m * math.cos(rad) / EARTH_M_PER_DEG
    lon2 = lon + dist_m * math.sin(rad) / (EARTH_M_PER_DEG * math.cos(math.radians(lat2)))
    return lat2, lon2


def _leg(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """(distance m, course deg) from a to b, equirectangular (fine for a few km)."""
    dy = (b[0] - a[0]) * EARTH_M_PER_DEG
    dx = (b[1] - a[1]) * EARTH_M_PER_DEG * math.cos(math.radians((a[0] + b[0]) / 2))
    return math.hypot(dx, dy), math.degrees(math.atan2(dx, dy)) % 360


@dataclass(frozen=True)
class Fix:
    lat: float
    lon: float
    speed_mps: float
    course: float


class Track:
    """A vehicle driving through waypoints at a speed, waiting wait_s at any of them.

    waypoints: [(lat, lon, wait_s)]. At the last one it stays (or, with loop,
    drives back to the first and round again).
    """

    def __init__(self, waypoints: list[tuple[float, float, float]], speed_mps: float,
                 loop: bool = False) -> None:
        self.points = waypoints + ([waypoints[0]] if loop and len(waypoints) > 1 else [])
        self.speed = speed_mps
        self.loop = loop and len(waypoints) > 1
        # phases: (duration, start point, end point, course, moving)
        self.phases: list[tuple[float, tuple[float, float], tuple[float, float], float,
                                bool]] = []
        course = 0.0
        for i, (lat, lon, wait) in enumerate(self.points):
            here = (lat, lon)
            last = i == len(self.points) - 1
            if wait > 0 and not (last and self.loop):
                self.phases.append((wait, here, here, course, False))
            if not last:
                nxt = (self.points[i + 1][0], self.points[i + 1][1])
                dist, course = _leg(here, nxt)
                if dist > 0:
                    self.phases.append((dist / speed_mps, here, nxt, course, True))
        self.period = sum(p[0] for p in self.phases)

    def at(self, t: float) -> Fix:
        """Where the vehicle is t seconds after it set off."""
        if self.loop and self.period > 0:
            t %= self.period
        for dur, a, b, course, moving in self.phases:
            if t < dur:
                f = t / dur
                return Fix(a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f,
                           self.speed if moving else 0.0, course)
            t -= dur
        end = self.points[0] if self.loop else self.points[-1]
        course = self.phases[-1][3] if self.phases else 0.0
        return Fix(end[0], end[1], 0.0, course)


class Heading:
    """A vehicle leaving (lat, lon) on a fixed course at a steady speed, for ever."""

    def __init__(self, lat: float, lon: float, course: float, speed_mps: float) -> None:
        self.lat, self.lon = lat, lon
        self.course = course
        self.speed = speed_mps

    def at(self, t: float) -> Fix:
        lat, lon = offset(self.lat, self.lon, self.speed * max(0.0, t), self.course)
        return Fix(lat, lon, self.speed, self.course)
