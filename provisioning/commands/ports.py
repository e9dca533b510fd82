"""`nodectl ports`: serial ports on this machine, and which board kinds could be on each."""

from __future__ import annotations

import json
from typing import Any

import click
from serial.tools import list_ports

from provisioning.boards import Boards
from provisioning.boards_view import table
from provisioning.commands import json_option
from provisioning.context import Options


def list_serial_ports(boards: Boards) -> list[dict[str, Any]]:
    """Each USB serial port with its ids, and the kinds whose USB bridge has those ids."""
    out = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        if p.vid is None:  # not USB (a motherboard UART, a pty): no board to match
            continue
        kinds = [k.name for k in boards if (k.usb.vid, k.usb.pid) == (p.vid, p.pid)]
        out.append({"port": p.device, "vid": f"{p.vid:04x}", "pid": f"{p.pid:04x}",
                    "serial": p.serial_number, "description": p.description, "kinds": kinds})
    return out


def ports_report(boards: Boards, *, as_json: bool) -> str:
    ports = list_serial_ports(boards)
    if as_json:
        return json.dumps(ports, indent=2)
    if not ports:
        return "no USB serial ports (virtual boards are given as vboard:DIR)"
    head = ("PORT", "VID:PID", "SERIAL", "DESCRIPTION", "BOARD KINDS")
    body = [(p["port"], f"{p['vid']}:{p['pid']}", p["serial"] or "-", p["description"] or "-",
             ", ".join(p["kinds"]) or "-") for p in ports]
    return table([head, *body])


@click.command("ports")
@json_option
@click.pass_obj
def ports(opts: Options) -> None:
    """USB serial ports with VID:PID, serial number and the board kinds that match."""
    click.echo(ports_report(opts.boards(), as_json=opts.json))
