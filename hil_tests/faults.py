"""Fault injection: cutting a board's power, its Wi-Fi and its cellular network.

Virtual boards do both through their control socket. Real boards need a way
the bench provides: a command (a switchable USB hub: `uhubctl -a cycle -l 1-1
-p {port_number}`, a relay board's script) given as --power-cmd / --wifi-cmd;
without one the fault fixtures skip the test with the reason. The cellular
network can be taken away only from a virtual board's simulated modem.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path
from typing import Protocol

from .board import Board
from .errors import HILError
from .vboard import VirtualBoard


class PowerSwitch(Protocol):
    reopens: bool  # the serial port goes away with the power and must be opened again

    def cycle(self) -> None:
        """Cut the power and restore it (the board boots with a power-on reset)."""


class WifiSwitch(Protocol):
    def set(self, up: bool) -> None:
        """Make the board's access point reachable or not."""


class CellSwitch(Protocol):
    def set(self, up: bool) -> None:
        """Make the cellular network reachable for the board's modem or not."""


class VirtualPowerSwitch:
    reopens = False  # the relay keeps the pty: a USB-UART bridge powered from the host

    def __init__(self, vb: VirtualBoard) -> None:
        self.vb = vb

    def cycle(self) -> None:
        assert self.vb.control is not None
        self.vb.control.power_cycle(wait=True)


class VirtualWifiSwitch:
    def __init__(self, vb: VirtualBoard) -> None:
        self.vb = vb

    def set(self, up: bool) -> None:
        assert self.vb.control is not None
        self.vb.control.wifi(up)


class VirtualCellSwitch:
    def __init__(self, vb: VirtualBoard) -> None:
        self.vb = vb

    def set(self, up: bool) -> None:
        assert self.vb.control is not None
        self.vb.control.cell(up)


def run_command(template: str, what: str, timeout: float = 60.0, **fields: str) -> None:
    """Run a bench command (`{port}`, `{state}` filled in); HILError if it fails."""
    cmd = template.format(**{k: shlex.quote(v) for k, v in fields.items()})
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise HILError(f"{what} {cmd!r} did not finish in {timeout:g} s") from e
    if r.returncode != 0:
        err = (r.stderr or r.stdout).strip().splitlines()
        raise HILError(f"{what} {cmd!r} failed with exit code {r.returncode}"
                       + (f": {err[-1]}" if err else ""))


class CommandPowerSwitch:
    """--power-cmd: cycles the power; then waits for the serial port to come back."""

    reopens = True

    def __init__(self, template: str, port: str, port_timeout: float = 30.0) -> None:
        self.template = template
        self.port = port
        self.port_timeout = port_timeout

    def cycle(self) -> None:
        run_command(self.template, "--power-cmd", port=self.port)
        deadline = time.monotonic() + self.port_timeout
        while not Path(self.port).exists():  # a native-USB board re-enumerates
            if time.monotonic() > deadline:
                raise HILError(f"{self.port}: did not come back within {self.port_timeout:g} s "
                               f"after --power-cmd")
            time.sleep(0.1)


class CommandWifiSwitch:
    def __init__(self, template: str, port: str) -> None:
        self.template = template
        self.port = port

    def set(self, up: bool) -> None:
        run_command(self.template, "--wifi-cmd", port=self.port, state="up" if up else "down")


class Power:
    """The `power` fixture: power-cycle the test's board and get its REPL (or not) back."""

    def __init__(self, switch: PowerSwitch, board: Board) -> None:
        self.switch = switch
        self.board = board

    def cycle(self, wait_repl: bool = True, timeout: float = 30.0) -> None:
        """Power off and on. With wait_repl, return at the raw REPL (main.py stopped);
        without, main.py keeps running and the console is followed."""
        mark = self.board.mark()
        self.switch.cycle()
        if self.switch.reopens:
            self.board.reopen(timeout)
        if wait_repl:
            self.board.wait_boot(timeout, since=mark)
        else:
            self.board.follow_console(since=mark)

    power_cycle = cycle


class _Link:
    """A link a fault fixture takes away (down) and brings back (up)."""

    def __init__(self, switch: WifiSwitch | CellSwitch) -> None:
        self.switch = switch
        self.is_up = True

    def down(self) -> None:
        self.switch.set(False)
        self.is_up = False

    def up(self) -> None:
        self.switch.set(True)
        self.is_up = True


class Wifi(_Link):
    """The `wifi` fixture: take the board's access point away and bring it back."""


class Cell(_Link):
    """The `cell` fixture: take the board's cellular network away and bring it back
    (a call in data mode ends with NO CARRIER; registration drops to searching)."""
