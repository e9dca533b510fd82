"""The `Board` interface: what a HIL test may do with a connected board.

Two primitives (`exec`, `eval`) and the file, reset and console operations
every test needs, as in mpremote's Transport. `SerialBoard` implements it
over a serial port (a real ESP32 on USB, or a virtual board's pty); a fake
for unit tests would implement the same methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FileEntry:
    """One directory entry on the board's flash."""

    name: str
    size: int
    is_dir: bool


class Board(ABC):
    """A connected board. Every error is a `hil_tests.errors.HILError` naming the port."""

    port: str

    @abstractmethod
    def exec(self, code: str, timeout: float | None = None) -> str:
        """Run code in the raw REPL; returns what it printed (`\\n` line ends).

        A board exception raises BoardExecError carrying the board's traceback.
        """

    @abstractmethod
    def launch(self, code: str) -> None:
        """Start code and return at once (a loop that never ends); the console is followed
        and the next REPL call interrupts it with Ctrl-C."""

    @abstractmethod
    def eval(self, expr: str, timeout: float | None = None) -> Any:
        """The value of a Python literal expression evaluated on the board."""

    @abstractmethod
    def put(self, data: bytes | Path, remote: str) -> None:
        """Write a file on the board (bytes, or a local file's contents)."""

    @abstractmethod
    def get(self, remote: str) -> bytes:
        """Read a file from the board."""

    @abstractmethod
    def ls(self, path: str = "/") -> list[FileEntry]:
        """The entries of a directory on the board."""

    @abstractmethod
    def sha256(self, remote: str) -> str:
        """Hex SHA-256 of a file, computed on the board (no transfer)."""

    @abstractmethod
    def makedirs(self, path: str) -> None:
        """Create a directory and its parents; existing ones are fine."""

    @abstractmethod
    def remove(self, path: str) -> None:
        """Delete a file on the board."""

    @abstractmethod
    def reset(self, wait_repl: bool = True, timeout: float = 30.0) -> None:
        """Hard reset (`machine.reset()`): boot.py and main.py run again.

        With wait_repl the call returns once the board answers the raw REPL
        again, without a soft reset, so `machine.reset_cause()` is still the
        hard one; without it, the board is left booting (read its console).
        """

    @abstractmethod
    def reopen(self, timeout: float = 30.0) -> None:
        """Open the port again after it vanished (power cut of a USB-powered board)."""

    @abstractmethod
    def soft_reset(self) -> None:
        """Soft reset (Ctrl-D in the raw REPL): a fresh heap, boot.py, no main.py."""

    @abstractmethod
    def wait_boot(self, timeout: float = 30.0, interrupt: bool = True,
                  since: int | None = None) -> str:
        """After a reset from outside (power cycle): wait for the REPL; returns the boot output.

        since: a `mark()` taken before the reset. With interrupt, a main.py
        that never returns is stopped with Ctrl-C once the board is quiet.
        """

    @abstractmethod
    def follow_console(self, since: int | None = None) -> None:
        """Leave the REPL alone and keep reading what the running program prints."""

    @abstractmethod
    def mark(self) -> int:
        """A position in the console output, for `expect(since=...)`."""

    @abstractmethod
    def expect(self, text: str, timeout: float = 10.0, since: int | None = None) -> str:
        """Wait until the board prints `text` (after `since`, default the last reset)."""

    @abstractmethod
    def console_tail(self, n: int = 2000) -> str:
        """The last bytes the board printed, as text."""

    @property
    @abstractmethod
    def log_path(self) -> Path | None:
        """A file with everything the board printed, when there is one."""

    @abstractmethod
    def close(self) -> None:
        """Leave the raw REPL and release the port."""

    def unique_id(self) -> str:
        """machine.unique_id() as lowercase hex: the ESP32's base MAC."""
        return str(self.eval("__import__('binascii').hexlify("
                             "__import__('machine').unique_id()).decode()"))

    def reset_cause(self) -> int:
        return int(self.eval("__import__('machine').reset_cause()"))

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
