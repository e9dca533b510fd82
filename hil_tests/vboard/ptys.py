"""Pseudo-terminal pairs in raw mode, the way a USB-UART bridge presents a board.

Raw mode matters: with OPOST/ONLCR on, the tty turns the board's "\\r\\n" into
"\\r\\r\\n" and mpremote hangs waiting for its prompts.
"""

from __future__ import annotations

import fcntl
import os
import termios
import tty
from dataclasses import dataclass

_VINTR = termios.VINTR
_CTRL_C = b"\x03"


@dataclass
class PtyPair:
    master: int
    slave_path: str


def open_raw_pty() -> tuple[int, int]:
    """A new pty pair, both ends raw; returns (master, slave) fds."""
    master, slave = os.openpty()
    make_raw(slave)
    fl = fcntl.fcntl(master, fcntl.F_GETFL)
    fcntl.fcntl(master, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    return master, slave


def make_raw(fd: int) -> None:
    tty.setraw(fd, termios.TCSANOW)


def board_side_mode(fd: int) -> None:
    """The VM's end: raw, ISIG off (the ROM turns it on while user code runs),
    VINTR=^C, and NOFLSH so a ^C does not throw away input already queued."""
    make_raw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[3] &= ~termios.ISIG
    attrs[3] |= termios.NOFLSH
    attrs[6][_VINTR] = _CTRL_C
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
