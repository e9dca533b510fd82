"""The world a virtual board of a given kind senses, from boards.yaml's `virtual` section.

`world_for(kind)` turns the sensor settings into vboard world values: a
battery divider's volts become millivolts on its ADC pin, an ignition input
a pin level, an ultrasonic distance an echo pulse width on the echo pin.
A GPS sensor is a stream rather than a value: `kind_scenario` adds it as a
scenario key and `GpsFeeder` plays it (RMC + GGA, 1 Hz, the NEO-M8N's
default) on a running board through the scenario engine (vboard/scenario.py).
The conversions themselves live in vboard/sensors.py.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from provisioning.boards import BoardKind, Sensor

from .vboard import VBoardControl
from .vboard.errors import VBoardError
from .vboard.sensors import echo_us, loop_mv, nmea_fix

__all__ = ["GpsFeeder", "battery_volts", "echo_us", "gps_sensor", "kind_scenario", "loop_mv",
           "nmea_fix", "world_for"]

ADC_FULL_SCALE_MV = 2450  # ESP32 ADC at 11 dB attenuation
FEEDER = "gps-feeder"  # the name GpsFeeder's scenario runs under


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


def kind_scenario(kind: BoardKind) -> dict[str, Any]:
    """The kind's `virtual` section as a scenario: world_for's values, and the GPS (when
    it has one) leaving its lat/lon heading east at its speed_mps, RMC + GGA at 1 Hz."""
    sc: dict[str, Any] = {k: v for k, v in world_for(kind).items() if v}
    found = gps_sensor(kind)
    if found is not None:
        _, s = found
        sc["gps"] = {"drive": {"from": [float(s["lat"]), float(s["lon"])], "course": 90.0,
                               "speed_mps": float(s.get("speed_mps", 0.0))}}
    return sc


class GpsFeeder:
    """The kind's GPS stream on a running virtual board: the relay's scenario engine
    plays it (vboard/scenario.py), so fixes arrive at 9600 baud's pace, 1 Hz.

    The track starts at lat/lon and heads east (course 90), so a moving truck's
    longitude grows by speed / (111 km * cos(lat)) per second. A test that loads
    a scenario of its own replaces this stream.
    """

    def __init__(self, control: VBoardControl, uart: int, lat: float, lon: float,
                 speed_mps: float = 0.0, course: float = 90.0) -> None:
        self.control = control
        self.scenario = {"gps": {"uart": uart, "drive": {
            "from": [lat, lon], "course": course, "speed_mps": speed_mps}}}

    @classmethod
    def for_kind(cls, kind: BoardKind, control: VBoardControl) -> GpsFeeder | None:
        found = gps_sensor(kind)
        if found is None:
            return None
        sensor, s = found
        assert sensor.uart is not None
        return cls(control, sensor.uart.id, float(s["lat"]), float(s["lon"]),
                   float(s.get("speed_mps", 0.0)))

    def start(self) -> GpsFeeder:
        """Play the stream, unless a test already runs a scenario of its own there."""
        running = self.control.state().get("scenario")
        if running is None or running.get("name") == FEEDER:
            self.control.load_scenario(self.scenario, name=FEEDER)
        return self

    def wait_first_fix(self, timeout: float) -> None:
        """Until the stream's first fix has wholly arrived in the UART's receive buffer (a
        GPS powered with the board has a fix when the node starts); at once when a test's
        own scenario plays there instead. VBoardError if it does not arrive in time."""
        uart = str(self.scenario["gps"]["uart"])
        deadline = time.monotonic() + timeout
        while True:
            st = self.control.state()
            running = st.get("scenario")
            if running is None or running.get("name") != FEEDER:
                return
            line = st["world"]["uart_rx"].get(uart, {})
            if line.get("received", 0) > 0 and line.get("on_wire", 1) == 0:
                return
            if time.monotonic() > deadline:
                raise VBoardError(f"the GPS stream's first fix did not reach UART {uart} "
                                  f"within {timeout:g} s: {line}")
            time.sleep(0.02)

    def stop(self) -> None:
        with contextlib.suppress(VBoardError, OSError):  # the board may be unplugged already
            running = self.control.state().get("scenario")
            if running is not None and running.get("name") == FEEDER:
                self.control.stop_scenario()
