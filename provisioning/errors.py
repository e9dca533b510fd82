"""The provisioning component's exceptions.

Everything nodectl can report to a technician derives from `ProvisioningError`;
only `provisioning.cli.main` prints them, as one line, and exits 2.
"""

from __future__ import annotations

from collections.abc import Iterable


def one_line(text: str) -> str:
    """Collapse whitespace so a message never spans lines (it is printed as one)."""
    return " ".join(text.split())


class ProvisioningError(Exception):
    """Base of every error nodectl reports as `nodectl: <msg>` with exit code 2."""


class BoardsFileError(ProvisioningError):
    """boards.yaml is unreadable or breaks the schema.

    str() is one line naming the file, line, board and field, e.g.
    `boards.yaml:23: board 'boat-gps-cell': pins.gps_tx: GPIO 6 is a flash pin`.
    """

    def __init__(
        self,
        path: str,
        line: int | None,
        message: str,
        *,
        board: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.message = one_line(message)
        self.board = board
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.path if self.line is None else f"{self.path}:{self.line}"]
        if self.board is not None:
            parts.append(f"board {self.board!r}")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class UnknownBoard(ProvisioningError):
    """A board kind name that boards.yaml does not define."""

    def __init__(self, name: str, known: Iterable[str], path: str) -> None:
        self.name = name
        self.known = sorted(known)
        self.path = path
        super().__init__(
            f"unknown board kind {name!r} in {path} (known: {', '.join(self.known) or 'none'})"
        )


class TargetError(ProvisioningError):
    """A board cannot be reached: no such port, the port is busy, no virtual board there."""


class PortBusy(TargetError):
    """Another program holds the serial port (pyserial's exclusive lock refused us)."""


class BoardMismatch(ProvisioningError):
    """The board on the port is not the board kind asked for (chip or flash size)."""


class ImageError(ProvisioningError):
    """The MicroPython image is missing from the cache or is not the one boards.yaml names."""


class FlashError(ProvisioningError):
    """esptool (or the virtual flasher) failed while erasing, writing or verifying."""


class BoardError(ProvisioningError):
    """Talking to MicroPython on the board failed (raw REPL, a command, a file)."""


class FirmwareError(ProvisioningError):
    """The firmware tree cannot be built or does not run on the board."""


class SettingsError(ProvisioningError):
    """The node settings (site file, options, zone file) are wrong; names file and field."""


class RegistryError(ProvisioningError):
    """The device registry refuses the operation (id taken, board already registered, ...)."""


class BrokerAuthError(ProvisioningError):
    """The mosquitto password/ACL files cannot be written or the broker cannot be reloaded."""


class VerifyError(ProvisioningError):
    """The smoke test failed: the board did not report what was provisioned."""
