# MicroPython code: the virtual ESP32's "ROM", run by the unix VM as its script.
#
# Everything the board needs is imported before the flash is mounted on "/"
# (after that the host file system is out of reach), then the simulated
# modules are put in sys.modules like frozen ones, so the board directory
# holds nothing but the firmware.
import builtins
import gc
import os
import sys

import micropython
import vb_console as con
import vb_esp
import vb_host
import vb_machine
import vb_micropython
import vb_network
import vb_os
import vb_repl
import vb_socket
import vb_sys
import vb_vfs

_HIDDEN_OS = ("system", "getenv", "putenv", "unsetenv", "errno")  # unix-only: absent on the chip
_real_print_exception = sys.print_exception


def _print_exception(exc, file=None):
    _real_print_exception(exc, file if file is not None else con.stdout)


def _uname():
    # os.uname() on the ESP32 port
    machine = "ESP32 module (virtual) with ESP32"
    return ("esp32", "esp32", "1.29.0", "v1.29.0 on 2026-07-05", machine)


def _sync():
    pass


def _input(prompt=""):
    con.stdout.write(prompt)
    line = ""
    while True:
        c = con.getc()
        if c == 13:
            con.out(b"\r\n")
            return line
        if c == 4 and not line:
            raise EOFError
        if c in (8, 127) and line:
            line = line[:-1]
            con.out(b"\x08 \x08")
        elif c >= 32:
            line += chr(c)
            con.out(bytes((c,)))


def _fill_modules():
    for k in dir(sys):
        setattr(vb_sys, k, getattr(sys, k))
    vb_sys.stdout = con.stdout
    vb_sys.stderr = con.stdout
    vb_sys.platform = "esp32"
    vb_sys.print_exception = _print_exception
    vb_sys.__name__ = "sys"
    for k in dir(os):
        if k not in _HIDDEN_OS:
            setattr(vb_os, k, getattr(os, k))
    vb_os.uname = _uname
    vb_os.sync = _sync
    vb_os.__name__ = "os"
    for k in dir(micropython):
        setattr(vb_micropython, k, getattr(micropython, k))
    vb_micropython.kbd_intr = con.kbd_intr
    vb_micropython.__name__ = "micropython"
    builtins.print = con.cooked_print
    builtins.__repl_print__ = con.repl_print
    builtins.input = _input


_SIM = {
    "machine": vb_machine,
    "umachine": vb_machine,
    "network": vb_network,
    "socket": vb_socket,
    "usocket": vb_socket,
    "esp": vb_esp,
    "sys": vb_sys,
    "os": vb_os,
    "uos": vb_os,
    "micropython": vb_micropython,
}


def _install():
    for name, mod in _SIM.items():
        sys.modules[name] = mod
    global _rom_modules
    _rom_modules = set(sys.modules)


_rom_modules = set()


def _reset_user_state():
    # A soft reset frees the whole heap on the chip: user modules go too.
    for name in list(sys.modules):
        if name not in _rom_modules:
            del sys.modules[name]
    sys.path[:] = ["", ".frozen", "/lib"]
    con.kbd_intr(3)
    try:
        os.chdir("/")
    except OSError:
        pass


def _boot_banner():
    cause = vb_machine.reset_cause()
    rst = {
        vb_machine.PWRON_RESET: "0x1 (POWERON_RESET)",
        vb_machine.HARD_RESET: "0xc (SW_CPU_RESET)",
        vb_machine.WDT_RESET: "0x7 (TG0WDT_SYS_RESET)",
        vb_machine.DEEPSLEEP_RESET: "0x5 (DEEPSLEEP_RESET)",
    }.get(cause, "0x1 (POWERON_RESET)")
    con.out(b"ets Jul 29 2019 12:21:46\r\n\r\nrst:" + rst.encode())
    con.out(b",boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n")


def main():
    _fill_modules()
    _install()
    os.mount(vb_vfs.Flash(os.getenv("VBOARD_DIR")), "/")
    _reset_user_state()
    gc.collect()
    _boot_banner()
    vb_host.send({"op": "booted", "mem_free": gc.mem_free()})
    vb_repl.soft_reset_loop(_reset_user_state, vb_machine._soft_reset_happened)


main()
