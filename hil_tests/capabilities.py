"""What a slot can do, for `@pytest.mark.needs(...)` and `@pytest.mark.role(...)`.

Capabilities come from the board kind in boards.yaml (its role, link, sensor
names and what they provide: level, battery, position, ignition) and from the
harness (power and Wi-Fi control exist on virtual boards, and on hardware when
a command to do them was given; a virtual board of a cellular kind can also
take its simulated modem's network away). A test that needs one a slot lacks is
skipped with the reason, so one suite runs on every bench.
"""

from __future__ import annotations

from provisioning.peripherals import TYPES

from .slots import BoardSlot

POWER = "power_control"
WIFI = "wifi_control"
CELL = "cell_control"

# Why a capability is missing, and what would provide it.
HINTS = {
    POWER: "no way to cut its power: pass --power-cmd 'CMD {port}' (a USB hub or relay switch)",
    WIFI: "no way to take its Wi-Fi down: pass --wifi-cmd 'CMD {state}' (switches the AP)",
    CELL: "no way to take its cellular network away (only virtual boards of a cellular kind "
          "have one: their simulated modem's network)",
    "console_log": "only virtual boards keep a log of what they printed while nobody listened",
}


def capabilities(slot: BoardSlot, power_cmd: str | None = None,
                 wifi_cmd: str | None = None) -> frozenset[str]:
    caps = {"repl", "files", "watchdog"}
    kind = slot.kind
    if kind is not None:
        caps |= {kind.role, kind.chip, f"link_{kind.link}"}
        for sensor in kind.sensors:
            caps.add(sensor.name)
            provides = TYPES[sensor.type].provides if sensor.type in TYPES else ""
            if provides:
                caps.add(provides)
        if kind.modem is not None:
            caps.add("modem")
        if kind.power.deep_sleep:
            caps.add("deep_sleep")
    if slot.virtual:
        caps |= {POWER, WIFI, "console_log", "virtual"}
        if kind is not None and kind.link == "cell" and kind.modem is not None \
                and kind.modem.uart is not None:
            caps.add(CELL)  # a simulated SIM7600 on the modem UART (hil_tests/vboard/modem.py)
        elif kind is not None:
            caps.add("link_wifi")  # no modem to simulate: the node is deployed on Wi-Fi
    else:
        if power_cmd:
            caps.add(POWER)
        if wifi_cmd and kind is not None and kind.link == "wifi":
            caps.add(WIFI)
    return frozenset(caps)


def missing_reason(slot: BoardSlot, needed: tuple[str, ...], caps: frozenset[str]) -> str | None:
    """None when the slot has everything; else a skip reason naming the first lack."""
    for need in needed:
        if need not in caps:
            hint = HINTS.get(need, f"its kind has no {need!r}")
            return f"{slot.describe()} lacks {need}: {hint}"
    return None


def role_reason(slot: BoardSlot, roles: tuple[str, ...]) -> str | None:
    if slot.kind is None:
        return f"{slot.describe()}: pass --board KIND to run tests for role {'/'.join(roles)}"
    if slot.kind.role not in roles:
        return f"{slot.kind.name} has role {slot.kind.role}, this test is for {'/'.join(roles)}"
    return None
