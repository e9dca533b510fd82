"""Talking to MicroPython on a board: the `BoardLink` interface and `SerialLink`.

`SerialLink` is mpremote's `SerialTransport` used as a library (raw REPL,
raw-paste, exec/eval); everything nodectl does on a board (hash files, write
files atomically, read the version, reset) is built here on `exec`/`eval`,
the way mpremote builds its file operations. The serial port is opened with
pyserial's exclusive lock and a read timeout, so mpremote's own timeouts also
fire on a virtual board's pty. mpremote's errors become `BoardError` here.
"""

from __future__ import annotations

import ast
import binascii
import errno
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import serial
from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from provisioning.errors import BoardError, PortBusy

CHUNK = 2048  # file bytes per exec: the script (base64) stays a few KB of the board's heap
REPL_ATTEMPTS = 4  # Ctrl-C rounds before giving up on a running program or a booting board
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"


class BoardLink(Protocol):
    """What nodectl does with MicroPython on a board."""

    port: str

    def exec(self, code: str, timeout: float = 10.0) -> bytes: ...

    def eval(self, expr: str) -> Any: ...

    def hashes(self, paths: Sequence[str]) -> dict[str, str | None]: ...

    def write_file(self, path: str, data: bytes) -> None: ...

    def listdir(self, path: str) -> list[tuple[str, bool]]: ...

    def mkdir(self, path: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def soft_reset(self) -> None: ...

    def hard_reset(self, *, interrupt: bool = True) -> None: ...

    def read_console(self, seconds: float) -> bytes: ...

    def close(self) -> None:
        """Let the board go, running its firmware."""
        ...


def last_line(text: str) -> str:
    """The exception line of a MicroPython traceback (what a technician needs)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text.strip()


# Board-side helpers, sent once per connection: hashing and atomic writes.
_HELPERS = """\
import os, hashlib, binascii
def _nh(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(m[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
def _nmv(a, b):
    try:
        os.rename(a, b)
    except OSError:
        os.remove(b)
        os.rename(a, b)
def _nls(p):
    try:
        return [(e[0], e[1] & 0x4000 != 0) for e in os.ilistdir(p)]
    except OSError:
        return []
"""


class SerialLink:
    """MicroPython's raw REPL on a serial port, through mpremote's SerialTransport.

    `reset` pulls the board's reset line (RTS on a USB-serial bridge, a power
    cycle on a virtual board); it is used when the board does not answer (deep
    sleep, a program that swallows Ctrl-C).
    """

    def __init__(self, port: str, baud: int = 115200, timeout: float = 10.0,
                 reset: Callable[[], None] | None = None) -> None:
        self.port = port
        self.baud = baud
        self.timeout = timeout
        self.reset_line = reset
        self._t: SerialTransport | None = None
        self._helpers = False
        self._taken_over = False

    # ---- connection ----

    def _open(self) -> SerialTransport:
        try:
            # timeout=1: pyserial's read returns, so mpremote's timeouts work on a pty too
            return SerialTransport(self.port, baudrate=self.baud, exclusive=True, timeout=1)
        except TransportError as e:
            try:
                serial.Serial(self.port, exclusive=True).close()
            except serial.SerialException as se:
                if "exclusively lock" in str(se):
                    raise PortBusy(f"port {self.port} is busy: another program has it open") from e
            raise BoardError(f"cannot open {self.port}: {e}") from e

    def _transport(self) -> SerialTransport:
        if self._t is None:
            self._t = self._open()
        return self._t

    def _enter_raw(self, attempts: int, wait: float = 2.0) -> Exception | None:
        """mpremote's enter_raw_repl(soft_reset=False), without its prints to stdout."""
        t = self._transport()
        err: Exception | None = None
        for _ in range(attempts):
            try:
                t.serial.write(b"\r\x03\x03")  # Ctrl-C: stop a running program
                time.sleep(0.05)
                t.serial.reset_input_buffer()
                t.serial.write(b"\r\x01")  # Ctrl-A: raw REPL
                data = t.read_until(1, RAW_BANNER, timeout=wait, timeout_overall=wait)
                if data.endswith(RAW_BANNER):
                    t.in_raw_repl = True
                    self._helpers = False
                    return None
                err = BoardError(f"no raw REPL banner (got {data[-40:]!r})")
            except (TransportError, serial.SerialException, OSError) as e:
                err = e
        return err

    def _raw(self) -> SerialTransport:
        """The transport in the raw REPL, the board's own program stopped first.

        A node's main.py starts a hardware watchdog that keeps running after a
        Ctrl-C and would reset the board in the middle of a deploy, so a board
        holding a main.py is reset once per connection and caught with Ctrl-C
        while it boots, before the firmware gets that far.
        """
        t = self._transport()
        if t.in_raw_repl:
            return t
        err = self._enter_raw(1, wait=3.0)  # a first boot after a flash makes the filesystem
        if err is not None:
            self.pulse_reset()
            self._catch_boot()
            err = self._enter_raw(REPL_ATTEMPTS)
        if err is not None:
            raise BoardError(
                f"no MicroPython REPL answered ({err}); is MicroPython flashed?"
            ) from err
        if not self._taken_over:
            self._taken_over = True
            if self.eval("'main.py' in __import__('os').listdir('/')"):
                self.hard_reset(interrupt=True)
        return self._transport()

    def pulse_reset(self) -> None:
        """Pull the reset line: the board's own hook, else RTS (EN) on the bridge."""
        if self.reset_line is not None:
            self.reset_line()
            return
        ser = self._transport().serial
        try:
            ser.dtr = False  # IO0 high: boot the app, not the ROM bootloader
            ser.rts = True  # EN low
            time.sleep(0.1)
            ser.rts = False
        except OSError as e:
            if e.errno != errno.ENOTTY:  # a pty has no modem lines
                raise BoardError(f"cannot reset the board: {e}") from e

    def _catch_boot(self, seconds: float = 4.0) -> None:
        """Ctrl-C every 20 ms while the board boots, until its friendly prompt shows."""
        ser = self._transport().serial
        seen = bytearray()
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                ser.write(b"\x03")
                time.sleep(0.02)
                if ser.in_waiting:
                    seen += ser.read(ser.in_waiting)
                    if seen.endswith(b">>> "):
                        return
        except (serial.SerialException, OSError) as e:
            raise BoardError(f"lost while resetting: {e}") from e

    def close(self) -> None:
        """Let the port go. A board left in the raw REPL is reset into its firmware (the
        node must run again); one already running its firmware is left alone."""
        if self._t is not None:
            try:
                if self._t.in_raw_repl:
                    self._t.exec_raw_no_follow("import machine\nmachine.reset()")
                self._t.close()
            except (TransportError, serial.SerialException, OSError):
                pass
            self._t = None

    # ---- primitives ----

    def exec(self, code: str, timeout: float | None = None) -> bytes:
        t = self._raw()
        try:
            out, err = t.exec_raw(code, timeout=timeout or self.timeout)
        except (TransportError, serial.SerialException, OSError) as e:
            self.close()
            raise BoardError(f"board stopped answering: {e}") from e
        if err:
            raise BoardError(f"{last_line(err.decode(errors='replace'))}")
        return bytes(out)

    def eval(self, expr: str) -> Any:
        out = self.exec(f"print(repr({expr}))").decode(errors="replace").strip()
        try:
            return ast.literal_eval(out)
        except (ValueError, SyntaxError) as e:
            raise BoardError(f"unexpected answer to {expr!r}: {out[:80]!r}") from e

    def _with_helpers(self) -> None:
        if not self._helpers or self._t is None or not self._t.in_raw_repl:
            self.exec(_HELPERS)
            self._helpers = True

    # ---- files ----

    def hashes(self, paths: Sequence[str]) -> dict[str, str | None]:
        """sha256 hex of each file on the board, None where it does not exist."""
        self._with_helpers()
        out = self.exec(f"for p in {list(paths)!r}:\n print(repr((p, _nh(p))))", timeout=60)
        result: dict[str, str | None] = {}
        for line in out.decode().splitlines():
            if line.strip():
                path, digest = ast.literal_eval(line.strip())
                result[path] = digest
        return result

    def write_file(self, path: str, data: bytes) -> None:
        """Write to `path.new`, then rename over `path`: a cut leaves the old file or none."""
        self._with_helpers()
        tmp = path + ".new"
        self.exec(f"_f = open({tmp!r}, 'wb')")
        try:
            for i in range(0, len(data), CHUNK):
                chunk = binascii.b2a_base64(data[i:i + CHUNK], newline=False).decode()
                self.exec(f"_f.write(binascii.a2b_base64({chunk!r}))")
        finally:
            self.exec("_f.close()")
        self.exec(f"_nmv({tmp!r}, {path!r})")

    def listdir(self, path: str) -> list[tuple[str, bool]]:
        """(name, is_dir) of each entry; [] when `path` does not exist."""
        self._with_helpers()
        result = self.eval(f"_nls({path!r})")
        return [(str(n), bool(d)) for n, d in result]

    def mkdir(self, path: str) -> None:
        self.exec(f"import os\ntry:\n os.mkdir({path!r})\nexcept OSError:\n pass")

    def remove(self, path: str) -> None:
        self.exec(f"import os\nos.remove({path!r})")

    # ---- resets ----

    def soft_reset(self) -> None:
        """Ctrl-D in the raw REPL: the heap is cleared and boot.py runs, main.py does not."""
        t = self._raw()
        try:
            t.serial.write(b"\x04")
            data = t.read_until(1, b"soft reboot\r\n", timeout=10)
            if not data.endswith(b"soft reboot\r\n"):
                raise BoardError(f"no soft reboot after Ctrl-D: {data[-80:]!r}")
            # boot.py runs now; its output comes before the raw REPL banner. The
            # prompt '>' after the banner is left for the next exec to wait for.
            data = t.read_until(1, b"raw REPL; CTRL-B to exit\r\n", timeout=10)
        except (TransportError, serial.SerialException, OSError) as e:
            self.close()
            raise BoardError(f"board stopped answering: {e}") from e
        boot = data.decode(errors="replace")
        if not data.endswith(b"raw REPL; CTRL-B to exit\r\n"):
            self.close()
            raise BoardError(f"no raw REPL after the soft reset: {boot[-80:]!r}")
        if "Traceback" in boot:
            raise BoardError(f"boot.py failed: {last_line(boot[:-26])}")
        self._helpers = False

    def hard_reset(self, *, interrupt: bool = True) -> None:
        """machine.reset(); then the raw REPL again, the firmware caught with Ctrl-C while
        it boots, or, with interrupt=False, the board left running its firmware."""
        t = self._raw()
        try:
            t.exec_raw_no_follow("import machine\nmachine.reset()")
        except (TransportError, serial.SerialException, OSError) as e:
            raise BoardError(f"reset failed: {e}") from e
        t.in_raw_repl = False
        self._helpers = False
        if interrupt:
            self._catch_boot()
            err = self._enter_raw(REPL_ATTEMPTS)
            if err is not None:
                raise BoardError(f"no REPL after the reset ({err})") from err

    def read_console(self, seconds: float) -> bytes:
        """Whatever the board prints during `seconds` (firmware running, not the REPL)."""
        if self._t is None:
            self._t = self._open()
        ser = self._t.serial
        out = bytearray()
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                waiting = ser.in_waiting
                if waiting:
                    out += ser.read(waiting)
                else:
                    time.sleep(0.02)
        except (serial.SerialException, OSError) as e:
            raise BoardError(f"reading the console: {e}") from e
        return bytes(out)

