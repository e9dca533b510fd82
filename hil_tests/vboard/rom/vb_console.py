# MicroPython code: the virtual ESP32's UART0 as the ROM REPL sees it.
#
# fd 0 (blocking) stays the user's sys.stdin; the relay also hands us a
# second, O_NONBLOCK open file description of the same pty (VBOARD_FD_IN) so
# the REPL can read whatever is queued in one syscall (MicroPython's readinto
# on a blocking fd waits for the whole buffer).  fd 1/2 are the pty too.
#
# Ctrl-C: the pty has ISIG off and VINTR=^C; ISIG is switched on only while
# user code runs (and kbd_intr allows it), so a 0x03 then becomes SIGINT and
# MicroPython raises KeyboardInterrupt, while the REPL reads 0x03 as a byte.
import io
import os
import select
import sys
import termios

_ISIG = 0o1  # Linux c_lflag bit
_VINTR = 0  # index of VINTR in c_cc

_raw_out = sys.stdout.buffer
_in = open(int(os.getenv("VBOARD_FD_IN")), "rb")
_poll = select.poll()
_poll.register(_in, select.POLLIN)
_chunk = bytearray(512)
_buf = bytearray()  # queued input; _buf[_pos:] not yet consumed
_pos = 0

_attrs = termios.tcgetattr(0)
_kbd_char = 3
_user = False  # True while user code runs


def out(b):
    """Raw bytes to the UART (protocol bytes, echo)."""
    _raw_out.write(b)


def _fill(timeout):
    # Append whatever is queued on the pty to _buf; True if anything came.
    global _buf, _pos
    if not _poll.poll(timeout):
        return False
    n = _in.readinto(_chunk)
    if not n:
        return False
    if _pos:
        _buf = _buf[_pos:]
        _pos = 0
    _buf.extend(memoryview(_chunk)[:n])
    return True


def getc():
    """Next input byte, blocking."""
    global _pos
    while _pos >= len(_buf):
        _fill(-1)
    c = _buf[_pos]
    _pos += 1
    return c


def take():
    """All queued input bytes (at least one), blocking."""
    global _buf, _pos
    while _pos >= len(_buf):
        _fill(-1)
    data = _buf[_pos:]
    _buf = bytearray()
    _pos = 0
    return data


def unget(data):
    """Push bytes back in front of the queue (bytes read past a protocol end)."""
    global _buf, _pos
    _buf = bytearray(data) + _buf[_pos:]
    _pos = 0


def _set_isig(on):
    lflag = _attrs[3]
    want = (lflag | _ISIG) if on else (lflag & ~_ISIG)
    cc = _attrs[6]
    intr = bytes((_kbd_char & 0xFF,))
    if want != lflag or cc[_VINTR] != intr:
        _attrs[3] = want
        cc[_VINTR] = intr
        termios.tcsetattr(0, termios.TCSANOW, _attrs)


def enter_user():
    """Before user code runs: a ^C already queued interrupts it at once.

    This closes the window in which a 0x03 arrived while ISIG was off (as a
    data byte) but was meant for the code about to start.
    """
    global _user, _pos
    while _fill(0):
        pass
    i = _buf.find(b"\x03", _pos)
    if i >= 0:
        _pos = i + 1
        raise KeyboardInterrupt
    _user = True
    if _kbd_char >= 0:
        _set_isig(True)


def leave_user():
    """After user code: ISIG off; returns True if a late SIGINT was pending."""
    global _user
    _user = False
    _set_isig(False)
    try:
        for _ in (0, 1):  # a backward jump makes a pending KeyboardInterrupt fire here
            pass
    except KeyboardInterrupt:
        return True
    return False


def kbd_intr(c):
    """micropython.kbd_intr for the board: only toggles ISIG/VINTR."""
    global _kbd_char
    _kbd_char = c
    if _user:
        _set_isig(c >= 0)


class Cooked(io.IOBase):
    """Text stdout like an ESP32 UART: "\\n" goes out as "\\r\\n"; .buffer is raw."""

    def __init__(self):
        self.buffer = _raw_out

    def write(self, s):
        if isinstance(s, str):
            s = s.encode()
        _raw_out.write(bytes(s).replace(b"\n", b"\r\n"))
        return len(s)

    def flush(self):
        pass

    def ioctl(self, req, arg):
        if req == 10:  # MP_STREAM_GET_FILENO: lets select.poll register it
            return 1
        return 0


stdout = Cooked()
_sio = io.StringIO()
_real_print = print


def cooked_print(*args, sep=" ", end="\n", file=None):
    if file is not None and file is not stdout:
        _real_print(*args, sep=sep, end=end, file=file)
        return
    s = io.StringIO()
    _real_print(*args, sep=sep, end=end, file=s)
    stdout.write(s.getvalue())


def repl_print(obj):
    # builtins.__repl_print__: what the friendly REPL shows for an expression
    if obj is not None:
        stdout.write(repr(obj) + "\n")
