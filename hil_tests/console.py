"""ConsoleTap: keeps what a board printed, for failure reports and `Board.console()`.

It stands between mpremote's SerialTransport and the pyserial port: every
byte read passes through it into a bounded in-memory tail and, when given a
path, into a log file that stays after the test (the path is printed with
every failure that involved the board).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, BinaryIO

TAIL_BYTES = 64 * 1024


class DeadlineExceeded(Exception):
    """A read past the tap's deadline (mpremote's read_until checks its overall
    timeout only while the line is silent: a board that never stops printing
    would keep it reading forever)."""


class ConsoleTap:
    """A pyserial stand-in that forwards everything and records what is read."""

    _own = ("_port", "_tail", "_log", "_total", "deadline")

    def __init__(self, port: Any, log_path: Path | None = None) -> None:
        object.__setattr__(self, "_port", port)
        object.__setattr__(self, "_tail", bytearray())
        object.__setattr__(self, "_total", 0)
        log: BinaryIO | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "deadline", None)  # time.monotonic() after which reads fail

    def set_deadline(self, deadline: float | None) -> None:
        object.__setattr__(self, "deadline", deadline)

    def _check(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded

    def _record(self, data: bytes) -> bytes:
        if data:
            self._tail.extend(data)
            del self._tail[:-TAIL_BYTES]
            object.__setattr__(self, "_total", self._total + len(data))
            if self._log is not None:
                self._log.write(data)
        return data

    def read(self, size: int = 1) -> bytes:
        self._check()
        return self._record(self._port.read(size))

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        self._check()
        return self._record(self._port.read_until(expected, size))

    def close(self) -> None:
        """Close the port; the log stays open for a port reopened with reattach()."""
        self._port.close()

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            object.__setattr__(self, "_log", None)

    def reattach(self, port: Any) -> None:
        """Carry on with a reopened port (after the device re-enumerated); keeps the tail.
        The log file stays open: close() closed only the old port."""
        object.__setattr__(self, "_port", port)

    @property
    def total(self) -> int:
        """Bytes read since the port was opened (an offset for `since()`)."""
        return self._total

    def tail(self, n: int = 2000) -> str:
        """The last `n` bytes read, as text (latin-1: the console is not always UTF-8)."""
        return bytes(self._tail[-n:]).decode("latin-1")

    def since(self, offset: int) -> str:
        """What was read after `total` was `offset` (as far as the tail reaches back)."""
        return bytes(self._tail[max(0, len(self._tail) - (self._total - offset)):]) \
            .decode("latin-1")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._port, name, value)  # dtr, rts, timeout, ... belong to the port
