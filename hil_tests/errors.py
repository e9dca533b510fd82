"""One exception hierarchy for the HIL harness; each message is one line naming the port.

Errors from pyserial and mpremote are converted here, at the board boundary
(`raise PortBusy(...) from e`), so a test report or the plugin's usage error
says what went wrong and on which port, never a pyserial traceback.
"""

from __future__ import annotations


class HILError(Exception):
    """Anything the harness cannot do with a board, a port or an option."""


class PortNotFound(HILError):
    """The serial device does not exist (unplugged, wrong name, wrong serial number)."""


class PortBusy(HILError):
    """Another program holds the port (pyserial's exclusive lock, or the device is in use)."""


class PortAccessDenied(HILError):
    """The port exists but this user may not open it (not in the dialout group)."""


class BoardNotResponding(HILError):
    """The port opened but nothing answered the raw REPL within the timeout."""


class BoardExecError(HILError):
    """Code run on the board raised; `traceback` is the board's own traceback text."""

    def __init__(self, port: str, traceback: str, stdout: str = "") -> None:
        self.port = port
        self.traceback = traceback
        self.stdout = stdout
        last = traceback.strip().splitlines()[-1] if traceback.strip() else "error"
        super().__init__(f"{port}: board raised {last}")

    def __str__(self) -> str:
        return f"{self.args[0]}\n{self.traceback.rstrip()}"


class UsageError(HILError):
    """A plugin option or boards.yaml entry that makes no sense (reported before any test)."""
