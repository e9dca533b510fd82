"""`Flasher` on a real ESP32: esptool v5's Python API (`esptool.cmds`).

The ROM connection is made lazily by the first question asked and kept until
`finish()`/`close()`. esptool's own output goes nowhere; its progress bar is
routed to the `progress` callback of the write running in the same thread, so
several boards can flash at once. esptool's `FatalError` and serial errors
become `FlashError` (or `TargetError` when the ROM cannot be reached).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import serial
from esptool import cmds
from esptool.logger import TemplateLogger, log
from esptool.util import FatalError

from provisioning.errors import FlashError, TargetError
from provisioning.flasher import Progress, format_mac

# esptool CHIP_NAME -> boards.yaml chip
CHIP_NAMES = {"ESP32": "esp32", "ESP32-S3": "esp32s3", "ESP32-C3": "esp32c3"}
ROM_BAUD = 115200
T = TypeVar("T")


class _ThreadProgress(TemplateLogger):
    """esptool's logger: silent, except progress bars go to this thread's callback."""

    local = threading.local()

    def print(self, *args: Any, **kwargs: Any) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def error(self, message: str) -> None:
        pass

    def stage(self, finish: bool = False) -> None:
        pass

    def progress_bar(
        self, cur_iter: int, total_iters: int, prefix: str = "", suffix: str = "",
        bar_length: int = 30,
    ) -> None:
        callback = getattr(self.local, "progress", None)
        if callback is not None:
            callback(cur_iter, total_iters)

    def set_verbosity(self, verbosity: str) -> None:
        pass


_LOGGER = _ThreadProgress()
_installed = False
_install_lock = threading.Lock()


def _install_logger() -> None:
    global _installed
    with _install_lock:
        if not _installed:
            log.set_logger(_LOGGER)
            _installed = True


@contextmanager
def _progress_to(progress: Progress | None) -> Iterator[None]:
    _ThreadProgress.local.progress = progress
    try:
        yield
    finally:
        _ThreadProgress.local.progress = None


def flash_id_text(flash_id: int) -> str:
    """esptool's 24-bit RDID -> `ef4016` (manufacturer, then device id as esptool prints it)."""
    manufacturer = flash_id & 0xFF
    device = ((flash_id >> 8) & 0xFF) << 8 | (flash_id >> 16) & 0xFF
    return f"{manufacturer:02x}{device:04x}"


class EsptoolFlasher:
    """A real board's ROM bootloader, through esptool.cmds."""

    def __init__(self, port: str, flash_baud: int = 460800, connect_attempts: int = 3) -> None:
        self.port = port
        self.flash_baud = flash_baud
        self.connect_attempts = connect_attempts
        self._esp: Any = None

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except FatalError as e:
            raise FlashError(f"{what}: {e}") from e
        except (serial.SerialException, OSError) as e:
            raise FlashError(f"{what}: serial error: {e}") from e

    def _loader(self) -> Any:
        """Connect to the ROM (reset into the bootloader), load the stub, speed up."""
        if self._esp is None:
            _install_logger()
            try:
                esp = cmds.detect_chip(
                    self.port, baud=ROM_BAUD, connect_mode="default-reset",
                    connect_attempts=self.connect_attempts,
                )
            except FatalError as e:
                raise TargetError(
                    f"no ESP32 bootloader answered ({e}); hold BOOT while "
                    "pressing EN, or check the cable"
                ) from e
            except (serial.SerialException, OSError) as e:
                raise TargetError(f"cannot open: {e}") from e
            esp = self._call("loading the flasher stub", cmds.run_stub, esp)
            if self.flash_baud != ROM_BAUD:
                self._call("changing baud rate", esp.change_baud, self.flash_baud)
            self._call("attaching the flash", cmds.attach_flash, esp)
            self._esp = esp
        return self._esp

    def chip(self) -> str:
        name = self._loader().CHIP_NAME
        return CHIP_NAMES.get(name, name.lower().replace("-", ""))

    def mac(self) -> str:
        return format_mac(self._call("reading the MAC", self._loader().read_mac))

    def flash_id(self) -> str:
        return flash_id_text(self._call("reading the flash id", self._loader().flash_id))

    def flash_size(self) -> str:
        size = self._call("detecting the flash size", cmds.detect_flash_size, self._loader())
        if size is None:
            raise FlashError("the flash chip's size is not one esptool knows")
        return str(size)

    def erase(self) -> None:
        self._call("erasing the flash", cmds.erase_flash, self._loader())

    def write(self, offset: int, data: bytes, progress: Progress | None = None) -> None:
        with _progress_to(progress):
            self._call(
                f"writing at {offset:#x}", cmds.write_flash, self._loader(), [(offset, data)],
                flash_size="keep", compress=True, no_progress=progress is None,
            )

    def verify(self, offset: int, data: bytes) -> None:
        self._call(
            f"verifying at {offset:#x}", cmds.verify_flash, self._loader(), [(offset, data)],
            flash_size="keep",
        )

    def finish(self) -> None:
        if self._esp is not None:
            try:
                self._call("resetting the board", cmds.reset_chip, self._esp, "hard-reset")
            finally:
                self._release()

    def close(self) -> None:
        """Back to the board's own program (best effort: this runs after errors too)."""
        if self._esp is not None:
            try:
                cmds.reset_chip(self._esp, "hard-reset")
            except (FatalError, serial.SerialException, OSError):
                pass
            self._release()

    def _release(self) -> None:
        if self._esp is not None:
            port = getattr(self._esp, "_port", None)
            self._esp = None
            if port is not None:
                try:
                    port.close()
                except (serial.SerialException, OSError):
                    pass
