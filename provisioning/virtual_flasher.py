"""`Flasher` on a virtual board (hil_tests/vboard): "flashing" = a fresh MicroPython.

A virtual board has no ROM bootloader and no image to write: its MicroPython is
the VM. What flashing does to a real board's files is done here instead: the
flash directory is emptied (the relay's `.vboard/` folder excepted) and gets the
`boot.py` a freshly flashed MicroPython creates on first boot, then the board is
power-cycled. Chip and MAC come from the relay, the flash size from the board's
own `esp.flash_size()`.
"""

from __future__ import annotations

import shutil

from provisioning.errors import FlashError
from provisioning.flasher import Progress, format_mac
from provisioning.link import SerialLink
from provisioning.target import Target

STATE_DIR = ".vboard"  # the relay's own files in the board directory: not part of the flash
# What MicroPython's ESP32 port (modules/inisetup.py) writes when it makes a new filesystem.
DEFAULT_BOOT_PY = """\
# This file is executed on every boot (including wake-boot from deepsleep)
#import esp
#esp.osdebug(None)
#import webrepl
#webrepl.start()
"""


def size_text(size: int) -> str:
    return f"{size // (1024 * 1024)}MB" if size >= 1024 * 1024 else f"{size // 1024}KB"


class VirtualFlasher:
    """A virtual board's flash directory, reset to what a fresh MicroPython image leaves."""

    def __init__(self, target: Target) -> None:
        if target.vboard is None:
            raise ValueError("VirtualFlasher needs a vboard: target")
        self.target = target
        self.root = target.vboard
        self._state: dict | None = None
        self._link: SerialLink | None = None

    def _relay(self) -> dict:
        if self._state is None:
            self._state = self.target.control().state()
        return self._state

    def _board(self) -> SerialLink:
        # Holding the raw REPL also stops whatever program the board was running,
        # so nothing writes to the flash while it is being emptied.
        if self._link is None:
            target = self.target

            def power_cycle() -> None:
                target.control().power_cycle(wait=False)

            self._link = SerialLink(target.port, reset=power_cycle)
        return self._link

    def chip(self) -> str:
        return str(self._relay()["kind"])

    def mac(self) -> str:
        return format_mac(bytes.fromhex(self._relay()["unique_id"]))

    def flash_id(self) -> str:
        return "virtual"

    def flash_size(self) -> str:
        return size_text(int(self._board().eval("__import__('esp').flash_size()")))

    def erase(self) -> None:
        self._board()
        try:
            for entry in self.root.iterdir():
                if entry.name == STATE_DIR:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        except OSError as e:
            raise FlashError(f"erasing {self.root}: {e.strerror or e}") from e

    def write(self, offset: int, data: bytes, progress: Progress | None = None) -> None:
        try:
            (self.root / "boot.py").write_text(DEFAULT_BOOT_PY)
        except OSError as e:
            raise FlashError(f"writing {self.root}: {e.strerror or e}") from e
        if progress is not None:
            progress(len(data), len(data))

    def verify(self, offset: int, data: bytes) -> None:
        files = sorted(p.name for p in self.root.iterdir() if p.name != STATE_DIR)
        boot = self.root / "boot.py"
        if files != ["boot.py"] or boot.read_text() != DEFAULT_BOOT_PY:
            raise FlashError(f"the flash is not fresh after the write: {files}")

    def finish(self) -> None:
        """Power-cycle: the VM restarts on the fresh flash, as a board after esptool's reset."""
        self.close()
        try:
            self.target.control().power_cycle(wait=True)
        except Exception as e:  # the control client's own errors: VBoardError and kin
            raise FlashError(f"power cycle failed: {e}") from e

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
