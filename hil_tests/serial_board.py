"""SerialBoard: the `Board` interface over mpremote's SerialTransport.

mpremote speaks the raw REPL (Ctrl-A, raw-paste, the `\\x04` framing); this
class only adds what a test harness needs on top: bounded waits everywhere
(mpremote's own timeouts never fire on a pty), a console tap, hard-reset
handling, and conversion of every failure into a one-line HILError naming
the port.
"""

from __future__ import annotations

import ast
import contextlib
import io
import threading
import time
from pathlib import Path
from typing import Any

import serial
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

from .board import Board, FileEntry
from .console import ConsoleTap, DeadlineExceeded
from .errors import BoardExecError, BoardNotResponding, HILError
from .ports import open_transport

PROMPT = "\r\n>>> "
# While waiting for a byte that may never come (a board that does not answer)
# pyserial reads block this long; during normal traffic a longer limit applies,
# so a busy CI machine does not break raw-paste flow control.
_POLL_S = 0.2
_TRAFFIC_S = 5.0
_QUIET_S = 1.0  # a booting board silent this long has finished printing
_SILENT_S = 3.0  # a board that printed nothing for this long may have booted unheard


class SerialBoard(Board):
    """A board on a serial port (real USB-UART, or a virtual board's /dev/pts/N)."""

    def __init__(self, port: str, *, baudrate: int = 115200, timeout: float = 10.0,
                 connect_timeout: float = 10.0, log_path: Path | None = None,
                 soft_reset: bool = True) -> None:
        """Open the port and enter the raw REPL (with a soft reset unless told not to).

        timeout: the default limit for one exec (seconds of silence from the board).
        """
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._log_path = log_path
        self._raw = False
        self._follower: threading.Thread | None = None
        self._follow_stop = threading.Event()
        self._t: SerialTransport = open_transport(port, baudrate, _TRAFFIC_S)
        self._tap = ConsoleTap(self._t.serial, log_path)
        self._t.serial = self._tap
        self._epoch = 0  # tap offset where the current boot's output starts
        try:
            self._enter_raw(soft_reset)
        except BaseException:
            self._close_port()
            self._tap.close_log()
            raise

    # ---- raw REPL ----

    def _enter_raw(self, soft_reset: bool, timeout: float | None = None) -> None:
        limit = timeout if timeout is not None else self.connect_timeout
        self._stop_following()
        self._tap.timeout = _POLL_S
        self._tap.set_deadline(time.monotonic() + limit + 1)
        mark = self._tap.total
        try:
            # mpremote prints what it got when this fails; the tap has it already.
            with contextlib.redirect_stdout(io.StringIO()):
                self._t.enter_raw_repl(soft_reset=soft_reset, timeout_overall=limit)
        except (TransportError, DeadlineExceeded) as e:
            got = self._tap.since(mark)[-120:]
            raise BoardNotResponding(
                f"{self.port}: no answer to the raw REPL (Ctrl-A) within {limit:g} s; "
                f"board printed {got!r}" if got else
                f"{self.port}: no answer to the raw REPL (Ctrl-A) within {limit:g} s: "
                f"nothing came back (not a MicroPython board, wrong baud rate, or hung?)"
            ) from e
        except serial.SerialException as e:
            raise HILError(f"{self.port}: serial error while connecting: {e}") from e
        finally:
            self._tap.timeout = _TRAFFIC_S
            self._tap.set_deadline(None)
        self._raw = True

    def _ensure_raw(self) -> None:
        if not self._raw:
            self._enter_raw(soft_reset=False)

    def exec(self, code: str, timeout: float | None = None) -> str:
        out, err = self._exec_raw(code, timeout)
        if err:
            raise BoardExecError(self.port, err, out)
        return out

    def _exec_raw(self, code: str, timeout: float | None) -> tuple[str, str]:
        self._ensure_raw()
        limit = timeout if timeout is not None else self.timeout
        try:
            out, err = self._t.exec_raw(code, timeout=limit)
        except TransportError as e:
            self._raw = False  # whatever runs there is interrupted on the next call
            raise BoardNotResponding(f"{self.port}: board stopped answering while running "
                                     f"code ({e}; limit {limit:g} s)") from e
        except serial.SerialException as e:
            self._raw = False
            raise HILError(f"{self.port}: serial error: {e}") from e
        return _text(out), _text(err)

    def launch(self, code: str) -> None:
        self._ensure_raw()
        mark = self.mark()
        try:
            self._t.exec_raw_no_follow(code)
        except (TransportError, serial.SerialException) as e:
            self._raw = False
            raise BoardNotResponding(f"{self.port}: could not start code: {e}") from e
        self.follow_console(since=mark)

    def eval(self, expr: str, timeout: float | None = None) -> Any:
        out = self.exec(f"print(repr({expr}))", timeout)
        try:
            return ast.literal_eval(out.strip())
        except (ValueError, SyntaxError) as e:
            raise HILError(f"{self.port}: eval({expr!r}) printed {out.strip()[:80]!r}, "
                           f"not a literal") from e

    # ---- files (mpremote's Transport.fs_*) ----

    def _fs(self, what: str, path: str, fn: Any, *args: Any) -> Any:
        self._ensure_raw()
        try:
            return fn(*args)
        except TransportExecError as e:
            raise BoardExecError(self.port, e.error_output) from e
        except TransportError as e:
            self._raw = False
            raise BoardNotResponding(f"{self.port}: {what} {path}: {e}") from e
        except serial.SerialException as e:
            self._raw = False
            raise HILError(f"{self.port}: serial error during {what} {path}: {e}") from e
        except OSError as e:  # mpremote's translation of the board's OSError
            raise HILError(f"{self.port}: {what} {path}: {e.strerror or e} "
                           f"(errno {e.errno})") from e

    def put(self, data: bytes | Path, remote: str) -> None:
        blob = data.read_bytes() if isinstance(data, Path) else bytes(data)
        self._fs("write", remote, self._t.fs_writefile, remote, blob, 1024)

    def get(self, remote: str) -> bytes:
        return bytes(self._fs("read", remote, self._t.fs_readfile, remote, 1024))

    def ls(self, path: str = "/") -> list[FileEntry]:
        entries = self._fs("list", path, self._t.fs_listdir, path)
        return [FileEntry(e.name, e.st_size, bool(e.st_mode & 0x4000)) for e in entries]

    def sha256(self, remote: str) -> str:
        return bytes(self._fs("hash", remote, self._t.fs_hashfile, remote, "sha256")).hex()

    def makedirs(self, path: str) -> None:
        self.exec("import os\np = ''\n"
                  f"for part in {path!r}.strip('/').split('/'):\n"
                  "    p += '/' + part\n"
                  "    try:\n        os.mkdir(p)\n"
                  "    except OSError as e:\n"
                  "        if e.args[0] != 17:\n            raise\n")

    def remove(self, path: str) -> None:
        self._fs("remove", path, self._t.fs_rmfile, path)

    # ---- resets and console ----

    def reset(self, wait_repl: bool = True, timeout: float = 30.0) -> None:
        self._ensure_raw()
        mark = self.mark()
        try:
            self._t.exec_raw_no_follow("import machine\nmachine.reset()")
        except (TransportError, serial.SerialException) as e:
            raise BoardNotResponding(f"{self.port}: could not send machine.reset(): {e}") from e
        self._raw = False
        self._t.in_raw_repl = False
        if wait_repl:
            self.wait_boot(timeout, since=mark)
        else:
            self.follow_console(since=mark)

    def reopen(self, timeout: float = 30.0) -> None:
        """Open the port again (it vanished: the USB device re-enumerated after a power cut)."""
        self._stop_following()
        self._raw = False
        self._close_port()  # release the exclusive lock before opening again
        deadline = time.monotonic() + timeout
        while True:
            try:
                fresh = open_transport(self.port, self._t.serial.baudrate, _TRAFFIC_S)
                break
            except HILError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._tap.reattach(fresh.serial)
        fresh.serial = self._tap
        self._t = fresh

    def soft_reset(self) -> None:
        self._enter_raw(soft_reset=True)

    def wait_boot(self, timeout: float = 30.0, interrupt: bool = True,
                  since: int | None = None) -> str:
        """Wait for the friendly prompt of a board that is (re)booting, then enter the raw REPL.

        since: a `mark()` taken before the reset (default: where the last
        reset() or follow_console() started). If the board
        printed and then went quiet with no prompt (a main.py that loops), it
        is interrupted with Ctrl-C when `interrupt`, else BoardNotResponding.
        """
        start = self._epoch if since is None else since
        self.follow_console(since=start)
        deadline = time.monotonic() + timeout
        last, quiet_since = self._tap.total, time.monotonic()
        seen = ""
        while True:
            now = time.monotonic()
            seen = self._tap.since(start)
            if PROMPT in seen:
                break
            if self._tap.total != last:
                last, quiet_since = self._tap.total, now
            elif interrupt and now - quiet_since > (_QUIET_S if "\n" in seen else _SILENT_S):
                # booted and went quiet (main.py loops without output), or printed
                # nothing at all (its boot went out while the port was closed): ask it
                break
            if now > deadline:
                if not interrupt:
                    raise BoardNotResponding(f"{self.port}: no REPL prompt within "
                                             f"{timeout:g} s after the reset; board printed "
                                             f"{seen[-200:]!r}")
                break
            time.sleep(0.02)
        self._stop_following()
        left = max(2.0, deadline - time.monotonic())
        self._enter_raw(soft_reset=False, timeout=left)  # Ctrl-C stops a main.py that loops
        return seen

    def follow_console(self, since: int | None = None) -> None:
        """Read the console in the background (main.py runs and prints) until the next
        REPL call: a pty holds a board back while its output is not read.

        since: a `mark()` from before the reset, where `expect()` starts looking.
        """
        if since is not None:
            self._epoch = since
        if self._follower is not None:
            return
        if since is None:
            self._epoch = self._tap.total
        self._raw = False
        self._t.in_raw_repl = False
        self._follow_stop.clear()
        self._tap.timeout = _POLL_S
        self._follower = threading.Thread(target=self._follow, name=f"console {self.port}",
                                          daemon=True)
        self._follower.start()

    def _follow(self) -> None:
        while not self._follow_stop.is_set():
            try:
                self._tap.read(self._tap.in_waiting or 1)  # block for one byte, then drain
            except (serial.SerialException, OSError, TypeError):
                time.sleep(_POLL_S)  # unplugged for a moment (power cycle): keep trying

    def _stop_following(self) -> None:
        if self._follower is not None:
            self._follow_stop.set()
            self._follower.join(timeout=5)
            self._follower = None
            self._tap.timeout = _TRAFFIC_S

    def mark(self) -> int:
        """A console position: `expect(..., since=mark)` looks only at output after it."""
        return self._tap.total

    def expect(self, text: str, timeout: float = 10.0, since: int | None = None) -> str:
        """Wait until the board prints `text` (after `since`, default: the last reset).

        The console is read in the background meanwhile and keeps being read
        afterwards, so output is never held back; returns the output up to `text`.
        """
        self.follow_console()
        start = self._epoch if since is None else since
        deadline = time.monotonic() + timeout
        while True:
            seen = self._tap.since(start)
            at = seen.find(text)
            if at >= 0:
                return seen[: at + len(text)]
            if time.monotonic() > deadline:
                raise BoardNotResponding(
                    f"{self.port}: waited {timeout:g} s for {text!r}; board printed "
                    f"{seen[-200:]!r}")
            time.sleep(0.02)

    def console_tail(self, n: int = 2000) -> str:
        return self._tap.tail(n)

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def close(self) -> None:
        self._stop_following()
        if self._raw:
            with contextlib.suppress(Exception):
                self._t.exit_raw_repl()
        self._raw = False
        self._close_port()
        self._tap.close_log()

    def _close_port(self) -> None:
        with contextlib.suppress(Exception):
            self._t.close()


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").replace("\r\n", "\n")
