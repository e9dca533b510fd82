"""The world a virtual board of a given kind senses, from boards.yaml's `virtual` section.

`world_for(kind)` turns the sensor settings into vboard world values: a
battery divider's volts become millivolts on its ADC pin, an ignition input
a pin level, an ultrasonic distance an echo pulse width on the echo pin.
A GPS sensor is a stream rather than a value, so `GpsFeeder` feeds NMEA
(RMC + GGA, 1 Hz, the NEO-M8N's default) into its UART while a test runs.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any

from provisioning.boards import BoardKind, Sensor

from .vboard import VBoardControl
from .vboard.errors import VBoardError

SOUND_MPS_20C = 331.3 + 0.606 * 20  # the firmware's sr04t model at 20 degC
ADC_FULL_SCALE_MV = 2450  # ESP32 ADC at 11 dB attenuation
EARTH_M_PER_DEG = 111_320.0
KN_PER_MPS = 1.943844


def echo_us(distance_m: float) -> int:
    """Round-trip echo time of an ultrasonic ping at 20 degC."""
    return round(2 * distance_m / SOUND_MPS_20C * 1e6)


def _gpio(kind: BoardKind, sensor: Sensor, role: str) -> int:
    return sensor.gpios[role]


def world_for(kind: BoardKind) -> dict[str, Any]:
    """vboard world values ({"adc_mv": ..., "pins": ..., "pulse_us": ...}) for a kind."""
    world: dict[str, Any] = {"adc_mv": {}, "pins": {}, "pulse_us": {}}
    settings = kind.virtual.sensors if kind.virtual else {}
    for sensor in kind.sensors:
        values = settings.get(sensor.name)
        if values is None:
            continue
        if sensor.type == "adc-divider" and "volts" in values:
            mv = float(values["volts"]) / float(sensor.params["ratio"]) * 1000
            world["adc_mv"][_gpio(kind, sensor, "adc")] = round(mv, 1)
        elif sensor.type == "ignition" and "active" in values:
            active = bool(values["active"])
            low = bool(sensor.params.get("active_low", True))
            world["pins"][_gpio(kind, sensor, "in")] = int(active != low)
        elif sensor.type == "jsn-sr04t" and "distance_m" in values:
            world["pulse_us"][_gpio(kind, sensor, "echo")] = echo_us(float(values["distance_m"]))
    return world


def battery_volts(kind: BoardKind) -> float | None:
    """What the battery sensor should read, after the ADC clamps at full scale."""
    settings = kind.virtual.sensors if kind.virtual else {}
    for sensor in kind.sensors:
        if sensor.type == "adc-divider" and "volts" in settings.get(sensor.name, {}):
            ratio = float(sensor.params["ratio"])
            volts = float(settings[sensor.name]["volts"])
            return min(volts, ADC_FULL_SCALE_MV / 1000 * ratio)
    return None


def gps_sensor(kind: BoardKind) -> tuple[Sensor, dict[str, Any]] | None:
    settings = kind.virtual.sensors if kind.virtual else {}
    for sensor in kind.sensors:
        if sensor.type == "neo-m8n" and sensor.name in settings and sensor.uart:
            return sensor, dict(settings[sensor.name])
    return None


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


class GpsFeeder:
    """Feeds a virtual board's GPS UART once a second from a thread, moving at speed_mps.

    The track starts at the kind's lat/lon and heads east (course 90), so a
    moving truck's longitude grows by speed / (111 km * cos(lat)) per second.
    """

    def __init__(self, control: VBoardControl, uart: int, lat: float, lon: float,
                 speed_mps: float = 0.0, course: float = 90.0, period_s: float = 1.0) -> None:
        self.control = control
        self.uart = uart
        self.lat0, self.lon0 = lat, lon
        self.speed = speed_mps
        self.course = course
        self.period = period_s
        self.t0 = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gps-feeder", daemon=True)

    @classmethod
    def for_kind(cls, kind: BoardKind, control: VBoardControl) -> GpsFeeder | None:
        found = gps_sensor(kind)
        if found is None:
            return None
        sensor, s = found
        assert sensor.uart is not None
        return cls(control, sensor.uart.id, float(s["lat"]), float(s["lon"]),
                   float(s.get("speed_mps", 0.0)))

    def position(self, when: float) -> tuple[float, float]:
        dist = self.speed * max(0.0, when - self.t0)
        rad = math.radians(self.course)
        lat = self.lat0 + dist * math.cos(rad) / EARTH_M_PER_DEG
        lon = self.lon0 + dist * math.sin(rad) / (EARTH_M_PER_DEG * math.cos(math.radians(lat)))
        return lat, lon

    def start(self) -> GpsFeeder:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            lat, lon = self.position(now)
            with contextlib.suppress(VBoardError, OSError):  # the board may be unplugging
                self.control.feed_uart(self.uart, nmea_fix(lat, lon, self.speed, self.course,
                                                           now))
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
