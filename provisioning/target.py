"""Which board a command works on: a serial port, or a virtual board's directory.

A target is written `/dev/ttyUSB0` (a real board) or `vboard:DIR` (a virtual
board started with `vboard run --dir DIR`; its pty is read from the relay's
run file). `check_free` opens the port with pyserial's exclusive lock, so a
port held by another program is refused before anything is sent to the board.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import serial

from provisioning.errors import PortBusy, TargetError

if TYPE_CHECKING:
    from hil_tests.vboard.control import VBoardControl
    from provisioning.flasher import Flasher

VBOARD_PREFIX = "vboard:"


@dataclass(frozen=True)
class Target:
    spec: str  # as the technician wrote it
    port: str  # the serial device
    vboard: Path | None = None  # the virtual board's directory, for vboard: targets

    def __str__(self) -> str:
        return self.spec

    @property
    def virtual(self) -> bool:
        return self.vboard is not None

    def control(self) -> VBoardControl:
        """The relay's control client (virtual boards only)."""
        from hil_tests.vboard.control import VBoardControl

        assert self.vboard is not None
        return VBoardControl.for_dir(self.vboard)

    def flasher(self, flash_baud: int) -> Flasher:
        if self.vboard is not None:
            from provisioning.virtual_flasher import VirtualFlasher

            return VirtualFlasher(self)
        from provisioning.esptool_flasher import EsptoolFlasher

        return EsptoolFlasher(self.port, flash_baud=flash_baud)


def parse_target(spec: str) -> Target:
    """`/dev/ttyUSB0` or `vboard:DIR` -> Target; TargetError when nothing is there."""
    if spec.startswith(VBOARD_PREFIX):
        root = Path(spec[len(VBOARD_PREFIX):]).expanduser().resolve()
        run_file = root / ".vboard" / "run.json"
        try:
            info = json.loads(run_file.read_text())
            port = str(info["port"])
        except (OSError, ValueError, KeyError) as e:
            raise TargetError(
                f"no virtual board is running in {root} (start one: vboard run --dir {root})"
            ) from e
        return Target(spec=spec, port=port, vboard=root)
    if not os.path.exists(spec):
        raise TargetError(f"no such serial port {spec} (see `nodectl ports`)")
    return Target(spec=spec, port=spec)


def check_free(target: Target) -> None:
    """Refuse a port another program holds (exclusive lock), before touching the board."""
    try:
        port = serial.Serial(target.port, exclusive=True)
    except serial.SerialException as e:
        text = str(e)
        if "exclusively lock" in text:
            raise PortBusy(
                f"port {target.port} is busy: another program has it open "
                "(mpremote, esptool, a serial terminal?)"
            ) from e
        if not os.path.exists(target.port):
            raise TargetError(f"port {target.port} has gone") from e
        raise TargetError(f"cannot open {target.port}: {text}") from e
    port.close()
