"""Target: one slot brought up for one test (labgrid's word for it).

For a virtual slot: a fresh virtual board whose world is the kind's
`virtual` section, started in the test's own directory. For a serial slot:
the port opened. Either way `board` is a connected SerialBoard, and the
target knows how (and whether) it can cut the board's power or Wi-Fi.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .faults import (
    CommandPowerSwitch,
    CommandWifiSwitch,
    PowerSwitch,
    VirtualPowerSwitch,
    VirtualWifiSwitch,
    WifiSwitch,
)
from .kind_world import GpsFeeder, world_for
from .serial_board import SerialBoard
from .slots import BoardSlot
from .vboard import VirtualBoard
from .vboard.errors import VBoardError

TAIL_BYTES = 3000
MAIN = "main.py"
PARKED = "main.py.hil-parked"


@dataclass(frozen=True)
class Settings:
    """The bench, from the plugin's options."""

    baudrate: int = 115200
    connect_timeout: float = 10.0
    power_cmd: str | None = None
    wifi_cmd: str | None = None
    broker_url: str | None = None
    wifi_ssid: str | None = None
    wifi_pass: str | None = None
    apn: str | None = None
    vm_heap: str | None = None


class Target:
    def __init__(self, slot: BoardSlot, workdir: Path, settings: Settings) -> None:
        self.slot = slot
        self.workdir = workdir
        self.settings = settings
        self.vboard: VirtualBoard | None = None
        self.board: SerialBoard | None = None
        self.gps: GpsFeeder | None = None
        self.parked = False

    def start(self) -> Target:
        self.workdir.mkdir(parents=True, exist_ok=True)
        port = self.slot.port
        if self.slot.virtual:
            scenario = self.workdir / "scenario.json"
            kind = self.slot.kind
            scenario.write_text(json.dumps(world_for(kind) if kind else {}))
            try:
                self.vboard = VirtualBoard(self.workdir / "board", scenario=scenario,
                                           heap=self.settings.vm_heap).start()
            except VBoardError as e:
                from .errors import HILError

                raise HILError(f"virtual board for {self.slot.describe()}: {e}") from e
            port = self.vboard.port
        self.board = SerialBoard(port, baudrate=self.settings.baudrate,
                                 connect_timeout=self.settings.connect_timeout,
                                 log_path=self.workdir / "console.log")
        if not self.slot.virtual:
            self._park_main()
        return self

    def _park_main(self) -> None:
        """An attached board may run a node from an earlier test: its watchdog keeps
        running after Ctrl-C (a soft reset does not stop an ESP32's WDT) and would reset
        the board in the middle of this test. Move main.py aside and hard-reset; stop()
        puts it back unless the test deployed a new one."""
        assert self.board is not None
        names = self.board.eval("__import__('os').listdir('/')")
        if MAIN not in names:
            return
        self.board.exec(f"import os\nos.rename({MAIN!r}, {PARKED!r})")
        self.parked = True
        self.board.reset()

    def _unpark_main(self) -> None:
        assert self.board is not None
        names = self.board.eval("__import__('os').listdir('/')")
        if MAIN in names:  # the test deployed firmware of its own: keep it
            self.board.remove(f"/{PARKED}")
        else:
            self.board.exec(f"import os\nos.rename({PARKED!r}, {MAIN!r})")

    @property
    def power_switch(self) -> PowerSwitch | None:
        if self.vboard is not None:
            return VirtualPowerSwitch(self.vboard)
        if self.settings.power_cmd:
            return CommandPowerSwitch(self.settings.power_cmd, self.slot.port)
        return None

    @property
    def wifi_switch(self) -> WifiSwitch | None:
        if self.vboard is not None:
            return VirtualWifiSwitch(self.vboard)
        kind = self.slot.kind
        if self.settings.wifi_cmd and kind is not None and kind.link == "wifi":
            return CommandWifiSwitch(self.settings.wifi_cmd, self.slot.port)
        return None

    def start_world(self) -> None:
        """Start the streams of the virtual world (the GPS) once firmware reads them."""
        if self.vboard is not None and self.vboard.control and self.slot.kind and not self.gps:
            self.gps = GpsFeeder.for_kind(self.slot.kind, self.vboard.control)
            if self.gps:
                self.gps.start()

    def wait_world(self, timeout: float = 10.0) -> None:
        """Until the world's streams have something to read (the GPS's first fix)."""
        if self.gps is not None:
            try:
                self.gps.wait_first_fix(timeout)
            except VBoardError as e:
                from .errors import HILError

                raise HILError(f"virtual board for {self.slot.describe()}: {e}") from e

    def console_report(self) -> tuple[str, str]:
        """(title, text) for a failure report: the console's tail and where the whole log is."""
        if self.vboard is not None:
            log = self.vboard.dir / ".vboard" / "console.log"
            try:
                data = log.read_bytes()[-TAIL_BYTES:].decode("latin-1")
            except OSError:
                data = ""
        else:
            log = self.workdir / "console.log"
            data = self.board.console_tail(TAIL_BYTES) if self.board else ""
        title = f"board {self.slot.describe()}: console (last {TAIL_BYTES} bytes), log {log}"
        return title, readable(data)

    def stop(self) -> None:
        if self.gps is not None:
            self.gps.stop()
        if self.board is not None:
            if self.parked:
                with contextlib.suppress(Exception):
                    self._unpark_main()
            with contextlib.suppress(Exception):
                self.board.close()
        if self.vboard is not None:
            self.vboard.stop()


_RAW_PASTE = re.compile(r"R\x01..", re.S)  # raw-paste "ok" and its window size (2 bytes)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_RAW_ONLY = re.compile(r"^[>\s]*(OK)?[>\s]*$")
_RAW_PROMPTS = re.compile(r"(?m)^(?:>|OK)+(?=[^ >]|$)")  # raw prompts glued to what follows


def readable(console: str) -> str:
    """The console as a person reads it: without the raw REPL's protocol bytes, which
    every exec leaves behind (prompts, raw-paste handshakes, \\x04 framing)."""
    text = _CONTROL.sub("", _RAW_PASTE.sub("", console.replace("\r\n", "\n")))
    text = _RAW_PROMPTS.sub("", text)
    return "\n".join(ln for ln in text.split("\n") if not _RAW_ONLY.match(ln))
