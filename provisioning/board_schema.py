"""boards.yaml's schema, in plain Python: one board's YAML nodes -> a checked BoardKind.

Every check raises `SchemaError` at the line of the value it blames, so the
technician sees where to fix it. The facts checked come from `chips` (what
each GPIO can do) and `peripherals` (what each part needs).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from provisioning.board_kind import (
    FLASH_BAUDS,
    FLASH_SIZES,
    LINKS,
    POWER_SOURCES,
    ROLES,
    BoardKind,
    Image,
    Modem,
    Power,
    Scalar,
    Sensor,
    Uart,
    Usb,
    Virtual,
)
from provisioning.chips import CHIPS, Chip
from provisioning.peripherals import ADC, OUT, ROLE_NEEDS, TYPES, PeripheralType
from provisioning.yamlnodes import MapReader, SchemaError, kind_of, line_of, scalar_value

BOARD_FIELDS = (
    "description",
    "chip",
    "module",
    "flash_size",
    "psram",
    "flash_baud",
    "usb",
    "role",
    "link",
    "power",
    "pins",
    "sensors",
    "modem",
    "image",
    "virtual",
)
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:-preview(?:\.\d+)*)?$")
IMAGE_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*\.bin$")
# Official MicroPython image names: <FAMILY>[-VARIANT]-<YYYYMMDD>-v<version>.bin
IMAGE_FAMILY_RE = re.compile(r"^(ESP32_GENERIC(?:_[A-Z0-9]+)?)-")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
UART_BAUDS = (4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


def _spans(gpios: frozenset[int]) -> str:
    """`{32, 33, ..., 39}` -> `32-39` (for messages)."""
    out: list[str] = []
    for g in sorted(gpios):
        if out and g - 1 in gpios:
            out[-1] = f"{out[-1].split('-')[0]}-{g}"
        else:
            out.append(str(g))
    return ", ".join(out)


class _Wiring:
    """The board's pins and UARTs, handed out to peripherals one use at a time."""

    def __init__(self, chip: Chip, pins: MapReader, gpios: dict[str, int], native: bool) -> None:
        self.chip = chip
        self.pins = pins
        self.gpios = gpios
        self.native = native
        self.pin_users: dict[str, str] = {}
        self.uart_users: dict[int, str] = {}
        self.names: set[str] = set()

    def connect(self, field: str, node: yaml.Node, direction: str, user: str) -> tuple[str, int]:
        """Give the pin named by `node` to `user`; check it can work in `direction`."""
        value = scalar_value(node, field) if isinstance(node, yaml.ScalarNode) else None
        if isinstance(value, int) and not isinstance(value, bool):
            raise SchemaError(line_of(node), field, f"give a name from pins, not GPIO {value}")
        if not isinstance(value, str):
            raise SchemaError(line_of(node), field, "expected a pin name from pins")
        if value not in self.gpios:
            known = ", ".join(self.gpios) or "none"
            raise SchemaError(line_of(node), field, f"unknown pin {value!r} (pins: {known})")
        if value in self.pin_users:
            raise SchemaError(
                line_of(node), field, f"pin {value!r} is already used by {self.pin_users[value]}"
            )
        gpio = self.gpios[value]
        where = (self.pins.value_line(value), self.pins.field_of(value))
        if direction == OUT and gpio in self.chip.input_only:
            raise SchemaError(*where, f"GPIO {gpio} is input-only and cannot be an output ({user})")
        if direction == ADC and gpio not in self.chip.adc1:
            raise SchemaError(
                *where,
                f"GPIO {gpio} is not an ADC1 pin ({user}; {self.chip.name} ADC1 is GPIO "
                f"{_spans(self.chip.adc1)})",
            )
        self.pin_users[value] = f"{field} ({user})"
        return value, gpio


def _pins(r: MapReader, chip: Chip, psram: str, native: bool) -> dict[str, int]:
    gpios: dict[str, int] = {}
    owner: dict[int, str] = {}
    for name in r.keys():
        if not NAME_RE.match(name):
            raise SchemaError(r.key_line(name), r.field_of(name), "pin names are lower_snake_case")
        gpio = r.get(name, int)
        reason = chip.unusable(gpio, psram=psram, native_usb=native)
        if reason:
            raise SchemaError(r.value_line(name), r.field_of(name), reason)
        if gpio in owner:
            first = owner[gpio]
            raise SchemaError(
                r.value_line(name),
                r.field_of(name),
                f"GPIO {gpio} is already pins.{first} (line {r.value_line(first)})",
            )
        owner[gpio] = name
        gpios[name] = gpio
    return gpios


def _uart(r: MapReader, wiring: _Wiring, user: str) -> Uart:
    r.only(("id", "baud"))
    chip = wiring.chip
    uid = r.get("id", int)
    if not 0 <= uid < chip.uarts:
        raise SchemaError(
            r.value_line("id"),
            r.field_of("id"),
            f"UART {uid} does not exist on {chip.name} (0-{chip.uarts - 1})",
        )
    if uid == 0 and not wiring.native:
        raise SchemaError(
            r.value_line("id"),
            r.field_of("id"),
            f"UART 0 carries the REPL console nodectl provisions through (use 1-{chip.uarts - 1})",
        )
    if uid in wiring.uart_users:
        raise SchemaError(
            r.value_line("id"),
            r.field_of("id"),
            f"UART {uid} is already used by {wiring.uart_users[uid]}",
        )
    baud = r.get("baud", int)
    if baud not in UART_BAUDS:
        raise SchemaError(
            r.value_line("baud"),
            r.field_of("baud"),
            f"{baud} is not a standard UART baud rate ({', '.join(map(str, UART_BAUDS))})",
        )
    wiring.uart_users[uid] = user
    return Uart(uid, baud)


def _params(r: MapReader, ptype: PeripheralType) -> dict[str, Scalar]:
    required = [k for k, p in ptype.params.items() if p.required]
    if "params" not in r:
        if required:
            raise SchemaError(
                r.line,
                r.field_of("params"),
                f"required field is missing ({ptype.name} needs {', '.join(required)})",
            )
        return {k: p.default for k, p in ptype.params.items()}
    pr = r.map("params").only(ptype.params)
    values: dict[str, Any] = {}
    for key, param in ptype.params.items():
        if key not in pr:
            if param.required:
                raise SchemaError(pr.line, pr.field_of(key), "required field is missing")
            values[key] = param.default
            continue
        value: Any = pr.get(key, param.kind)
        if param.positive and value <= 0:
            raise SchemaError(pr.value_line(key), pr.field_of(key), f"must be above 0, got {value}")
        values[key] = value
    for check in ptype.checks:
        problem = check(values)
        if problem:
            key, _, message = problem.partition(": ")
            line = pr.value_line(key) if key in pr else pr.line
            raise SchemaError(line, pr.field_of(key), message)
    return values


def _peripheral(
    field: str, node: yaml.Node, line: int, wiring: _Wiring, category: str
) -> dict[str, Any]:
    """Fields shared by sensors and the modem, as keyword arguments."""
    named = category == "sensor"
    allowed = (
        ("name", "type", "optional", "uart", "pins", "params")
        if named
        else ("type", "uart", "pins", "params")
    )
    r = MapReader(node, field, line).only(allowed)
    name = r.get("name", str) if named else "modem"
    if named and not NAME_RE.match(name):
        raise SchemaError(r.value_line("name"), r.field_of("name"), "names are lower_snake_case")
    if name in wiring.names:
        raise SchemaError(r.value_line("name"), r.field_of("name"), f"{name!r} is named twice")
    wiring.names.add(name)
    ptype = TYPES[r.choice("type", [t.name for t in TYPES.values() if t.category == category])]
    user = f"{ptype.name} {name!r}"
    uart = None
    if ptype.uart:
        uart = _uart(r.map("uart"), wiring, user)
    elif "uart" in r:
        raise SchemaError(r.key_line("uart"), r.field_of("uart"), f"{ptype.name} is not on a UART")
    pr = r.map("pins").only([*ptype.pins, *ptype.optional_pins])
    for role in ptype.pins:
        pr.node(role)  # required roles first, so a missing one is named
    pins: dict[str, str] = {}
    gpios: dict[str, int] = {}
    for role in pr.keys():
        direction = ptype.direction(role)
        pins[role], gpios[role] = wiring.connect(
            pr.field_of(role), pr.node(role), direction, f"{user} {role}"
        )
    return {
        "name": name,
        "type": ptype.name,
        "pins": pins,
        "gpios": gpios,
        "uart": uart,
        "params": _params(r, ptype),
        "line": line_of(node),
        **({"optional": r.get("optional", bool, False)} if named else {}),
    }


def _image(r: MapReader, chip: Chip) -> Image:
    r.only(("file", "version", "sha256", "offset"))
    file = r.get("file", str)
    if not IMAGE_FILE_RE.match(file):
        raise SchemaError(
            r.value_line("file"), r.field_of("file"), f"expected a .bin file name, got {file!r}"
        )
    version = r.get("version", str)
    if not VERSION_RE.match(version):
        raise SchemaError(
            r.value_line("version"),
            r.field_of("version"),
            f"expected a version like 1.29.0, got {version!r}",
        )
    if f"-v{version}" not in file:
        raise SchemaError(
            r.value_line("file"),
            r.field_of("file"),
            f"{file!r} is not version {version} (no '-v{version}' in the name)",
        )
    family = IMAGE_FAMILY_RE.match(file)
    if family and family.group(1) != chip.image_family:
        raise SchemaError(
            r.value_line("file"),
            r.field_of("file"),
            f"{family.group(1)} images are not for {chip.name} (use {chip.image_family})",
        )
    sha256 = r.get("sha256", str).lower()
    if not SHA256_RE.match(sha256):
        got = f"{len(sha256)} characters" if len(sha256) != 64 else "non-hex characters"
        raise SchemaError(
            r.value_line("sha256"), r.field_of("sha256"), f"expected 64 hex digits, got {got}"
        )
    offset = r.get("offset", int)
    if offset != chip.image_offset:
        raise SchemaError(
            r.value_line("offset"),
            r.field_of("offset"),
            f"{chip.name} images are written at {chip.image_offset:#x}, not {offset:#x}",
        )
    return Image(file=file, version=version, sha256=sha256, offset=offset)


def _usb(r: MapReader) -> Usb:
    r.only(("bridge", "vid", "pid"))
    bridge = r.get("bridge", str)
    ids: dict[str, int] = {}
    for key in ("vid", "pid"):
        value = r.get(key, int)
        if not 0 < value <= 0xFFFF:
            raise SchemaError(
                r.value_line(key), r.field_of(key), f"{value:#x} is not a 16-bit USB id"
            )
        ids[key] = value
    return Usb(bridge=bridge, vid=ids["vid"], pid=ids["pid"])


def _virtual(r: MapReader, sensors: tuple[Sensor, ...]) -> Virtual:
    r.only(("sensors",))
    sr = r.map("sensors")
    names = [s.name for s in sensors]
    out: dict[str, dict[str, Scalar]] = {}
    for name in sr.keys():
        if name not in names:
            raise SchemaError(
                sr.key_line(name),
                sr.field_of(name),
                f"not a sensor of this board (sensors: {', '.join(names)})",
            )
        settings = sr.map(name)
        out[name] = {}
        for key in settings.keys():
            node = settings.node(key)
            scalar = isinstance(node, yaml.ScalarNode)
            value = scalar_value(node, settings.field_of(key)) if scalar else None
            if not isinstance(value, str | int | float):  # bool is an int
                raise SchemaError(
                    line_of(node),
                    settings.field_of(key),
                    f"expected a string, number or boolean, got {kind_of(node)}",
                )
            out[name][key] = value
    return Virtual(sensors=out)


def parse_board(name: str, line: int, node: yaml.Node) -> BoardKind:
    """Check one board kind; `line` is the line of its name in the file."""
    m = MapReader(node, "", line).only(BOARD_FIELDS)
    chip = CHIPS[m.choice("chip", CHIPS)]
    flash_size = m.choice("flash_size", FLASH_SIZES)
    psram = m.choice("psram", chip.psram_pins, default="none")
    flash_baud = m.get("flash_baud", int)
    if flash_baud not in FLASH_BAUDS:
        raise SchemaError(
            m.value_line("flash_baud"),
            "flash_baud",
            f"{flash_baud} is not an esptool baud rate ({', '.join(map(str, FLASH_BAUDS))})",
        )
    usb = _usb(m.map("usb"))
    role = m.choice("role", ROLES)
    link = m.choice("link", LINKS)
    pr = m.map("power").only(("source", "deep_sleep"))
    power = Power(source=pr.choice("source", POWER_SOURCES), deep_sleep=pr.get("deep_sleep", bool))

    pins_reader = m.map("pins")
    pins = _pins(pins_reader, chip, psram, usb.native)
    wiring = _Wiring(chip, pins_reader, pins, usb.native)
    sensors = tuple(
        Sensor(**_peripheral(field, item, line_of(item), wiring, "sensor"))
        for field, item in m.seq("sensors")
    )
    for need in ROLE_NEEDS[role]:
        if not any(TYPES[s.type].provides == need and not s.optional for s in sensors):
            parts = ", ".join(t.name for t in TYPES.values() if t.provides == need)
            raise SchemaError(
                m.key_line("sensors"),
                "sensors",
                f"role {role} needs a {need} sensor that is always fitted ({parts})",
            )
    modem = None
    if "modem" in m:
        if link != "cell":
            raise SchemaError(
                m.key_line("modem"), "modem", f"a board with link {link} has no modem"
            )
        modem = Modem(**_peripheral("modem", m.node("modem"), m.key_line("modem"), wiring, "modem"))
    elif link == "cell":
        raise SchemaError(line, "modem", "required field is missing (link is cell)")

    return BoardKind(
        name=name,
        line=line,
        description=m.get("description", str, ""),
        chip=chip.name,
        module=m.get("module", str, ""),
        flash_size=flash_size,
        psram=psram,
        flash_baud=flash_baud,
        usb=usb,
        role=role,
        link=link,
        power=power,
        pins=pins,
        sensors=sensors,
        modem=modem,
        image=_image(m.map("image"), chip),
        virtual=_virtual(m.map("virtual"), sensors) if "virtual" in m else None,
    )
