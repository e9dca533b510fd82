"""How `nodectl boards` prints board kinds: a table, one kind in full, or JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from provisioning.board_kind import BoardKind, Peripheral, Sensor

SHA256_HINT = "placeholder: record the real one with `nodectl images add FILE`"


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def sensor_names(kind: BoardKind) -> str:
    """`level, battery, (pressure)`: optional sensors in parentheses."""
    return ", ".join(f"({s.name})" if s.optional else s.name for s in kind.sensors)


def list_text(kinds: Iterable[BoardKind]) -> str:
    rows = [("NAME", "CHIP", "FLASH", "ROLE", "LINK", "SENSORS", "IMAGE")]
    rows += [
        (k.name, k.chip, k.flash_size, k.role, k.link, sensor_names(k), k.image.version)
        for k in kinds
    ]
    return table(rows)


def _wiring(p: Peripheral) -> str:
    pins = ", ".join(f"{role}={p.pins[role]} (GPIO {gpio})" for role, gpio in p.gpios.items())
    uart = f"UART {p.uart.id} at {p.uart.baud} baud; " if p.uart else ""
    params = " ".join(f"{k}={v}" for k, v in p.params.items())
    optional = " [optional]" if isinstance(p, Sensor) and p.optional else ""
    return f"{p.type}{optional}: {uart}{pins}" + (f"; {params}" if params else "")


def show_text(kind: BoardKind, path: str) -> str:
    """Every field of one board kind, for a technician at the bench."""
    image, usb = kind.image, kind.usb
    sha = f"{image.sha256} ({SHA256_HINT})" if image.placeholder else image.sha256
    sleep = "deep sleep allowed" if kind.power.deep_sleep else "always on"
    head = [
        ("name", f"{kind.name}  ({path}:{kind.line})"),
        ("description", kind.description),
        ("chip", f"{kind.chip}, {kind.module}" if kind.module else kind.chip),
        ("flash", f"{kind.flash_size}, PSRAM {kind.psram}, flashed at {kind.flash_baud} baud"),
        ("usb", f"{usb.bridge} {usb.id}"),
        ("role", kind.role),
        ("link", kind.link),
        ("power", f"{kind.power.source}, {sleep}"),
        ("image", f"{image.file} (MicroPython {image.version}) at {image.offset:#x}"),
        ("sha256", sha),
    ]
    lines = [table(head)]
    lines += ["pins", _indent(table([(n, f"GPIO {g}") for n, g in kind.pins.items()]))]
    lines += ["sensors", _indent(table([(s.name, _wiring(s)) for s in kind.sensors]))]
    if kind.modem:
        lines += ["modem", _indent(_wiring(kind.modem))]
    if kind.virtual and kind.virtual.sensors:
        rows = [
            (name, " ".join(f"{k}={v}" for k, v in settings.items()) or "(defaults)")
            for name, settings in kind.virtual.sensors.items()
        ]
        lines += ["virtual", _indent(table(rows))]
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def to_json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=False)
