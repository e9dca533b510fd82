"""Binding boards to slots: by port, by USB serial number, or by MAC (as pytest-embedded does).

A bench may have several boards whose /dev/ttyUSB numbers change with every
replug; the USB serial number (of the USB-UART bridge) and the ESP32's MAC
(machine.unique_id(), read over the raw REPL) do not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from provisioning.boards import BoardKind, Boards
from provisioning.errors import UnknownBoard

from .errors import HILError, PortNotFound, UsageError
from .ports import is_url, ports_by_serial_number, usb_serial_ports
from .slots import VIRTUAL, BoardSlot

_MAC_RE = re.compile(r"^[0-9a-f]{12}$")


@dataclass(frozen=True)
class BindOptions:
    ports: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    count: int | None = None
    serials: tuple[str, ...] = ()
    macs: tuple[str, ...] = ()


def split(values: Iterable[str] | None) -> tuple[str, ...]:
    """Repeatable options that also take comma lists: ("a,b", "c") -> ("a", "b", "c")."""
    out: list[str] = []
    for v in values or ():
        out += [p.strip() for p in v.split(",") if p.strip()]
    return tuple(out)


def normalise_mac(text: str) -> str:
    mac = re.sub(r"[:\-.]", "", text.strip().lower())
    if not _MAC_RE.match(mac):
        raise UsageError(f"--board-mac {text!r}: expected 12 hex digits, e.g. 24:0a:c4:12:34:56")
    return mac


def virtual_kinds(boards: Boards) -> list[BoardKind]:
    """The kinds a virtual board can play: an esp32 chip and a `virtual` section."""
    return [k for k in boards if k.virtual is not None and k.chip == "esp32"]


def _kind(boards: Boards, name: str) -> BoardKind:
    try:
        return boards.get(name)
    except UnknownBoard as e:
        raise UsageError(f"--board: {e}") from e


MacReader = Callable[[str], str]  # port -> MAC hex; raises HILError


def resolve(opts: BindOptions, boards: Boards, read_mac: MacReader) -> list[BoardSlot]:
    """The session's slots; [] when no board was asked for. UsageError/PortNotFound if wrong."""
    kinds = [_kind(boards, k) for k in opts.kinds]
    if opts.count is not None and opts.count < 1:
        raise UsageError(f"--board-count must be at least 1, got {opts.count}")
    real = [p for p in opts.ports if p != VIRTUAL]
    if VIRTUAL in opts.ports:
        if real or opts.serials or opts.macs:
            raise UsageError("--board-port virtual starts its own boards: do not mix it with "
                             "serial ports, --board-serial or --board-mac")
        return _virtual_slots(kinds or virtual_kinds(boards), opts.count or 1)

    for port in real:
        if not is_url(port) and not os.path.exists(port):
            raise PortNotFound(f"{port}: no such serial port (unplugged, or a wrong name?)")
    bound: list[tuple[str, str | None, str | None]] = [(p, None, None) for p in real]
    if opts.serials:
        table = ports_by_serial_number()
        for sn in opts.serials:
            if sn not in table:
                seen = ", ".join(f"{s} ({p})" for s, p in sorted(table.items())) or "none"
                raise PortNotFound(f"--board-serial {sn}: no USB serial port has that serial "
                                   f"number (attached: {seen})")
            bound.append((table[sn], sn, None))
    if opts.macs:
        bound = _bind_macs(bound, [normalise_mac(m) for m in opts.macs], read_mac)
    if not bound:
        return []
    if opts.count is not None and opts.count != len(bound):
        raise UsageError(f"--board-count {opts.count}, but {len(bound)} board(s) given: "
                         f"{', '.join(p for p, _, _ in bound)}")
    if len(kinds) > 1 and len(kinds) != len(bound):
        raise UsageError(f"{len(kinds)} --board kinds for {len(bound)} boards: give one kind "
                         f"for all, or one per board in the same order")
    slots: list[BoardSlot] = []
    for i, (port, serial_number, mac) in enumerate(bound):
        kind: BoardKind | None = kinds[i] if len(kinds) > 1 else (kinds[0] if kinds else None)
        slots.append(BoardSlot(i, port, kind, serial_number=serial_number, mac=mac))
    return slots


def _virtual_slots(kinds: list[BoardKind], count: int) -> list[BoardSlot]:
    slots: list[BoardSlot] = []
    for kind in kinds:
        if kind.virtual is None or kind.chip != "esp32":
            raise UsageError(f"--board {kind.name}: a virtual board cannot play it "
                             f"(needs chip esp32 and a `virtual` section in boards.yaml)")
        for _ in range(count):
            slots.append(BoardSlot(len(slots), VIRTUAL, kind))
    return slots


def _bind_macs(bound: list[tuple[str, str | None, str | None]], macs: list[str],
               read_mac: MacReader) -> list[tuple[str, str | None, str | None]]:
    """Keep the boards whose MAC was asked for, in the order the MACs were given."""
    candidates = [p for p, _, _ in bound] or usb_serial_ports()
    found: dict[str, str] = {}
    tried: list[str] = []
    for port in candidates:
        try:
            mac = read_mac(port)
        except HILError as e:
            tried.append(str(e))  # names the port already
            continue
        found[mac] = port
        tried.append(f"{port}: {mac}")
    out: list[tuple[str, str | None, str | None]] = []
    for mac in macs:
        if mac not in found:
            raise PortNotFound(f"--board-mac {mac}: no board with that MAC "
                               f"({'; '.join(tried) or 'no USB serial ports'})")
        port = found[mac]
        sn = next((s for p, s, _ in bound if p == port), None)
        out.append((port, sn, mac))
    return out
