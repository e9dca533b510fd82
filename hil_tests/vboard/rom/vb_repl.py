# MicroPython code: the board's REPL, a port of shared/runtime/pyexec.c and the
# soft-reset loop of ports/esp32/main.c, byte for byte where a host can see it.
import gc
import io
import sys

import vb_console as con

FRIENDLY = 0
RAW = 1
NORMAL_EXIT = 1  # as pyexec.c: 1 ok, 0 uncaught exception, 0x100 forced exit
EXC = 0
FORCED = 0x100
PASTE_WINDOW = 128  # MICROPY_REPL_STDIN_BUFFER_MAX (256) / 2, as on the ESP32

mode = FRIENDLY
user_globals = {}
banner = b"MicroPython v1.29.0 on 2026-07-05; ESP32 module (virtual) with ESP32\r\n"
_rom_dir = __file__.rsplit("/", 1)[0]


def print_exc(e):
    # Traceback as on the board: ROM frames dropped (there they are C code).
    buf = io.StringIO()
    sys.print_exception(e, buf)
    lines = [ln for ln in buf.getvalue().split("\n") if _rom_dir not in ln]
    con.stdout.write("\n".join(lines))


def run_user(code):
    """Run compiled user code with Ctrl-C live; the only door into user code."""
    con.enter_user()
    try:
        exec(code, user_globals)
    finally:
        late = con.leave_user()
    if late:
        raise KeyboardInterrupt


def execute(src, kind, name="<stdin>", print_eof=False):
    """parse_compile_execute: returns NORMAL_EXIT, EXC or FORCED."""
    try:
        if kind == "exec" and name != "<stdin>":
            user_globals["__file__"] = name
        run_user(compile(src, name, kind))
        ret = NORMAL_EXIT
        if print_eof:
            con.out(b"\x04")
    except SystemExit:
        if print_eof:
            con.out(b"\x04")
        ret = FORCED
    except BaseException as e:  # noqa: B036 - the REPL reports everything
        if print_eof:
            con.out(b"\x04")
        print_exc(e)
        ret = EXC
    if print_eof:
        con.out(b"\x04")
    return ret


def exec_file(path):
    """pyexec_file_if_exists: a missing file counts as a clean run."""
    try:
        with open(path) as f:
            src = f.read()
    except OSError:
        return NORMAL_EXIT
    return execute(src, "exec", path)


# ---- raw REPL -------------------------------------------------------------


def _raw_paste(cmd):
    # do_reader_stdin: "R\x01", window size (2 bytes LE), 0x01 = one more
    # window free; 0x04 from the host ends the data, we echo 0x04 back.
    if cmd != ord("A"):
        con.out(b"R\x00")
        return 0
    con.out(b"R\x01")
    w = PASTE_WINDOW
    con.out(bytes((w & 0xFF, w >> 8, 1)))
    remain = w
    src = bytearray()
    while True:
        data = con.take()
        end = len(data)
        stop = None
        for ctl in (b"\x03", b"\x04"):
            i = data.find(ctl)
            if 0 <= i < end:
                end, stop = i, ctl[0]
        n = end
        while n >= remain:  # a window consumed: tell the host it may send another
            n -= remain
            remain = w
            con.out(b"\x01")
        remain -= n
        src.extend(memoryview(data)[:end])
        if stop is not None:
            con.unget(memoryview(data)[end + 1 :])
            con.out(b"\x04")
            if stop == 3:
                con.out(b"\x04")
                print_exc(KeyboardInterrupt())
                con.out(b"\x04")
                return EXC
            return execute(bytes(src), "exec", print_eof=True)


def raw_repl():
    global mode
    con.out(b"raw REPL; CTRL-B to exit\r\n")
    while True:
        line = bytearray()
        con.out(b">")
        while True:
            c = con.getc()
            if c == 1:  # ^A: reset raw REPL, or end of a raw-paste request ^E A ^A
                if len(line) == 2 and line[0] == 5:
                    ret = _raw_paste(line[1])
                    if ret & FORCED:
                        return ret
                    line = bytearray()
                    con.out(b">")
                    continue
                con.out(b"raw REPL; CTRL-B to exit\r\n>")
                line = bytearray()
            elif c == 2:  # ^B: to the friendly REPL
                con.out(b"\r\n")
                mode = FRIENDLY
                return 0
            elif c == 3:  # ^C: clear line
                line = bytearray()
            elif c == 4:  # ^D: end of input
                break
            else:
                line.append(c)
        con.out(b"OK")
        if not line:  # ^D on an empty line: soft reset
            con.out(b"\r\n")
            return FORCED
        ret = execute(bytes(line), "exec", print_eof=True)
        if ret & FORCED:
            return ret


# ---- friendly REPL ----------------------------------------------------------

_KEYWORDS = ("if", "while", "for", "try", "with", "def", "class", "async")


def continue_with_input(s):
    """py/repl.c mp_repl_continue_with_input."""
    if not s:
        return False
    compound = s[0] == "@"
    if not compound:
        for kw in _KEYWORDS:
            nxt = s[len(kw) : len(kw) + 1]
            if s.startswith(kw) and not (nxt.isalpha() or nxt.isdigit() or nxt == "_"):
                compound = True
                break
    depth = 0
    quote = None  # "'", '"', "'''", '"""'
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if quote:
            if c == "\\":
                i += 1
            elif s.startswith(quote, i):
                i += len(quote) - 1
                quote = None
        elif c == "#":
            while i < n and s[i] != "\n":
                i += 1
            continue
        elif c in "'\"":
            quote = c * 3 if s.startswith(c * 3, i) else c
            i += len(quote) - 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        i += 1
    if quote and len(quote) == 3:
        return True
    if depth > 0 and not quote:
        return True
    if s.endswith("\\"):
        return True
    return compound and not s.endswith("\n")


def readline(prompt, prefix):
    """shared/readline: returns (ctrl_char or 0, line).  No history, no auto-indent."""
    con.stdout.write(prompt)
    line = ""
    while True:
        c = con.getc()
        if 1 <= c <= 5 and not line:
            return c, line
        if c == 3:
            return c, line
        if c == 13:
            con.out(b"\r\n")
            return 0, line
        if c in (8, 127):
            if line:
                line = line[:-1]
                con.out(b"\x08 \x08")
        elif c == 27:  # escape sequence (arrows): skip it
            c = con.getc()
            if c in (91, 79):  # '[' or 'O'
                while True:
                    c = con.getc()
                    if 64 <= c <= 126:
                        break
        elif 32 <= c <= 126:
            line += chr(c)
            con.out(bytes((c,)))


def _paste_mode():
    con.out(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
    src = bytearray()
    while True:
        c = con.getc()
        if c == 3:
            con.out(b"\r\n")
            return None
        if c == 4:
            con.out(b"\r\n")
            return bytes(src)
        src.append(c)
        con.out(b"\r\n=== " if c == 13 else bytes((c,)))


def friendly_repl():
    global mode
    con.out(banner)
    con.out(b'Type "help()" for more information.\r\n')
    while True:
        kind = "single"
        ret, line = readline(">>> ", "")
        if ret == 1:
            con.out(b"\r\n")
            mode = RAW
            return 0
        if ret == 2:
            con.out(b"\r\n")
            con.out(banner)
            con.out(b'Type "help()" for more information.\r\n')
            continue
        if ret == 3:
            con.out(b"\r\n")
            continue
        if ret == 4:
            con.out(b"\r\n")
            return FORCED
        if ret == 5:
            line = _paste_mode()
            if line is None:
                continue
            kind = "exec"
        elif not line:
            continue
        else:
            cancelled = False
            while continue_with_input(line):
                line += "\n"
                ret, more = readline("... ", line)
                line += more
                if ret == 3:
                    con.out(b"\r\n")
                    cancelled = True
                    break
                if ret == 4:
                    break
            if cancelled:
                continue
        ret = execute(line, kind)
        if ret & FORCED:
            return ret


# ---- the soft-reset loop ----------------------------------------------------


def soft_reset_loop(reset_user_state, on_soft_reset):
    """ports/esp32/main.c: boot.py, main.py (friendly mode only), REPL, repeat."""
    global user_globals
    while True:
        user_globals = {"__name__": "__main__"}
        ret = exec_file("boot.py")
        if not ret & FORCED and mode == FRIENDLY and ret != EXC:
            ret = exec_file("main.py")
        if not ret & FORCED:
            while True:
                if mode == RAW:
                    if raw_repl() != 0:
                        break
                elif friendly_repl() != 0:
                    break
        con.out(b"MPY: soft reboot\r\n")
        reset_user_state()
        on_soft_reset()
        gc.collect()
