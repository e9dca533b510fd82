"""The sensor and modem types boards.yaml may name, and what each needs.

A type fixes the roles of its pins (which way the signal goes), whether it
sits on a UART, and its parameters. The loader checks boards against these,
e.g. that a trigger pin is not input-only or that a shunt keeps 20 mA under
the ADC's 3.3 V. Adding a part means adding an entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Pin directions. `adc` is an input that must be on ADC1 (ADC2 is unusable with Wi-Fi on).
IN, OUT, ADC = "in", "out", "adc"

SUPPLY_V = 3.3  # ESP32 I/O supply: the highest voltage an input or ADC may see
PIN_MAX_V = 3.6  # absolute maximum on an I/O pin (VDD 3.6 V max)

# A check gets the parameters (defaults filled in) and returns an error message or None;
# the message names the parameter it blames first, as "<param>: <message>".
Check = Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True)
class Param:
    kind: type
    required: bool = True
    default: Any = None
    positive: bool = False


@dataclass(frozen=True)
class PeripheralType:
    name: str
    category: str  # "sensor" or "modem"
    pins: dict[str, str]  # role -> direction, required
    optional_pins: dict[str, str] = field(default_factory=dict)
    uart: bool = False
    params: dict[str, Param] = field(default_factory=dict)
    provides: str = ""  # what a board role can need from it: level, position, ...
    checks: tuple[Check, ...] = ()

    def direction(self, role: str) -> str:
        return self.pins.get(role) or self.optional_pins[role]


def _echo_divider(p: dict[str, Any]) -> str | None:
    volts = p["supply_v"] * p["echo_divider"]
    if p["echo_divider"] > 1:
        return f"echo_divider: {p['echo_divider']} is a ratio Vpin/Vecho and cannot exceed 1"
    if volts > PIN_MAX_V:
        return (
            f"echo_divider: a {p['supply_v']:g} V echo times {p['echo_divider']:g} is "
            f"{volts:.2f} V at the pin, above {PIN_MAX_V} V"
        )
    return None


def _range(p: dict[str, Any]) -> str | None:
    if p["min_range_m"] >= p["max_range_m"]:
        return (
            f"min_range_m: {p['min_range_m']:g} m is not below max_range_m {p['max_range_m']:g} m"
        )
    return None


def _divider(p: dict[str, Any]) -> str | None:
    if p["ratio"] < 1:
        return f"ratio: {p['ratio']:g} is Vin/Vpin and cannot be below 1"
    volts = p["max_v"] / p["ratio"]
    if volts > SUPPLY_V:
        return (
            f"max_v: {p['max_v']:g} V divided by {p['ratio']:g} is {volts:.2f} V at the pin, "
            f"above {SUPPLY_V} V"
        )
    return None


def _shunt(p: dict[str, Any]) -> str | None:
    volts = 0.020 * p["shunt_ohms"]
    if volts > SUPPLY_V:
        return (
            f"shunt_ohms: 20 mA across {p['shunt_ohms']:g} ohm is {volts:.2f} V, "
            f"above the {SUPPLY_V} V ADC range"
        )
    return None


TYPES: dict[str, PeripheralType] = {
    t.name: t
    for t in (
        # Waterproof ultrasonic ranger, 5 V: the echo line needs a divider to 3.3 V.
        PeripheralType(
            name="jsn-sr04t",
            category="sensor",
            pins={"trig": OUT, "echo": IN},
            optional_pins={"power": OUT},  # switches its supply off during deep sleep
            params={
                "min_range_m": Param(float, positive=True),
                "max_range_m": Param(float, positive=True),
                "supply_v": Param(float, positive=True),
                "echo_divider": Param(float, positive=True),
            },
            provides="level",
            checks=(_range, _echo_divider),
        ),
        # 4-20 mA submersible pressure transmitter read as a voltage across a shunt.
        PeripheralType(
            name="pressure-4-20ma",
            category="sensor",
            pins={"adc": ADC},
            optional_pins={"power": OUT},  # enables the loop supply (boost converter)
            params={
                "shunt_ohms": Param(float, positive=True),
                "range_m": Param(float, positive=True),  # water column at 20 mA
            },
            provides="level",
            checks=(_shunt,),
        ),
        # Resistor divider to an ADC1 pin: battery or vehicle supply voltage.
        PeripheralType(
            name="adc-divider",
            category="sensor",
            pins={"adc": ADC},
            params={
                "ratio": Param(float, positive=True),  # Vin / Vpin
                "max_v": Param(float, positive=True),  # highest Vin expected
            },
            provides="battery",
            checks=(_divider,),
        ),
        # u-blox NEO-M8N GPS, NMEA over a UART. tx/rx are the ESP32's side.
        PeripheralType(
            name="neo-m8n",
            category="sensor",
            pins={"tx": OUT, "rx": IN},
            uart=True,
            params={"nav_rate_hz": Param(int, required=False, default=1, positive=True)},
            provides="position",
        ),
        # Opto-isolated ignition (or any 12/24 V) input.
        PeripheralType(
            name="ignition",
            category="sensor",
            pins={"in": IN},
            params={
                "active_low": Param(bool),
                "debounce_ms": Param(int, required=False, default=50, positive=True),
            },
            provides="ignition",
        ),
        # SIMCom SIM7600-class LTE Cat-1/4 modem, AT commands over a UART.
        PeripheralType(
            name="sim7600",
            category="modem",
            pins={"tx": OUT, "rx": IN, "pwrkey": OUT},
            optional_pins={"status": IN, "dtr": OUT, "ri": IN, "flight": OUT},
            uart=True,
            params={"pwrkey_pulse_ms": Param(int, required=False, default=500, positive=True)},
        ),
    )
}

# What each board role cannot work without, as `provides` values of its sensors.
ROLE_NEEDS: dict[str, tuple[str, ...]] = {
    "water_level": ("level",),
    "boat": ("position",),
    "truck": ("position",),
}
