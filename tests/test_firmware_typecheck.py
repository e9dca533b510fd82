"""firmware/typecheck.py catches calls into APIs the ESP32 port lacks, and only those.

Each test copies typecheck.py and a few small firmware files into a temp tree and runs it
as `make typecheck` does, against the real micropython-esp32-stubs in .stubs/esp32.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STUBS = REPO / ".stubs" / "esp32"

pytestmark = pytest.mark.skipif(
    not (STUBS / "machine.pyi").is_file(),
    reason="ESP32 stubs not installed in .stubs/esp32 (run `make stubs`)",
)

# A board layer written the way the firmware is: untyped, MicroPython idioms, CPython fallbacks.
GOOD_BOARD = """\
import time

import esp32
import machine
import network

try:
    from micropython import const
except ImportError:  # CPython: the fallback redefines const and uses time.monotonic

    def const(x):
        return x

    def ticks_ms():
        return int(time.monotonic() * 1000)

_LED = const(2)


class Board:
    def __init__(self):
        self.led = machine.Pin(_LED, machine.Pin.OUT, value=0)
        self.wdt = None
        self.readings = []

    def blink(self):
        self.led.value(not self.led.value())
        self.readings.append(esp32.raw_temperature())
        self.readings = {}  # untyped code rebinds names: not an error here

    def wifi(self, ssid, password):
        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        if not wlan.isconnected():
            wlan.connect(ssid, password)
        t0 = time.ticks_ms()
        while not wlan.isconnected() and time.ticks_diff(time.ticks_ms(), t0) < 10000:
            time.sleep_ms(100)
        return wlan.ifconfig()[0]

    def arm(self):
        self.wdt = machine.WDT(timeout=30000)
        self.wdt.feed()
        r = {"cause": "boot"}
        r["count"] = 1  # a dict literal's inferred value type is not enforced
        return machine.reset_cause(), r
"""

GOOD_MAIN = """\
import board

b = board.Board()
b.blink()
"""

# Line numbers matter: the test asserts each error names its line.
BAD_BOARD = """\
import machine
import network
import time


def setup():
    machine.Pin(4).nonexistent()
    machine.no_such_func()
    network.WLAN().no_such()
    time.ticks_ms(5)
    machine.WDT(timeout=5000, bogus=1)
    return int(time.monotonic())
"""

BAD_MAIN = """\
import cbor2
import machine

machine.UART(1).no_such_uart_method()
"""


def make_tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A repository-like tree: firmware/typecheck.py plus the given firmware files."""
    (tmp_path / "firmware" / "lib").mkdir(parents=True)
    shutil.copy(REPO / "firmware" / "typecheck.py", tmp_path / "firmware" / "typecheck.py")
    for rel, text in files.items():
        (tmp_path / rel).write_text(textwrap.dedent(text))
    return tmp_path


def typecheck(root: Path, stubs: Path = STUBS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "firmware/typecheck.py", "--stubs", str(stubs)],
        cwd=root, capture_output=True, text=True, timeout=300,
    )


def test_firmware_using_the_esp32_api_correctly_passes(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"firmware/lib/board.py": GOOD_BOARD,
                                "firmware/main.py": GOOD_MAIN})
    proc = typecheck(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # typecheck.py itself is not firmware: 2 files, not 3.
    assert "no errors in 2 firmware files" in proc.stdout
    assert "2 in `except ImportError:` fallbacks not counted" in proc.stdout


def test_calls_the_esp32_port_lacks_fail_naming_file_and_line(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"firmware/lib/board.py": BAD_BOARD,
                                "firmware/main.py": BAD_MAIN})
    proc = typecheck(root)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    expected = [
        ('firmware/lib/board.py:7: error: "Pin" has no attribute "nonexistent"'),
        ('firmware/lib/board.py:8: error: Module has no attribute "no_such_func"'),
        ('firmware/lib/board.py:9: error: "WLAN" has no attribute "no_such"'),
        ('firmware/lib/board.py:10: error: Too many arguments for "ticks_ms"'),
        ('firmware/lib/board.py:11: error: Unexpected keyword argument "bogus" for "WDT"'),
        # ESP32's time has no monotonic(): outside an ImportError fallback it counts.
        ('firmware/lib/board.py:12: error: Module has no attribute "monotonic"'),
        # Firmware cannot import CPython packages, and firmware/*.py is checked too.
        ('firmware/main.py:1: error: Cannot find implementation or library stub for module '
         'named "cbor2"'),
        ('firmware/main.py:4: error: "UART" has no attribute "no_such_uart_method"'),
    ]
    for line in expected:
        assert line in out, f"missing {line!r} in:\n{out}"
    assert "typecheck: 8 error(s) in 2 firmware files" in out


def test_missing_stubs_stop_the_check_with_a_clear_message(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"firmware/lib/board.py": GOOD_BOARD})
    proc = typecheck(root, stubs=tmp_path / "no-stubs")
    assert proc.returncode == 2
    assert "ESP32 stubs not found" in proc.stderr
    assert "make stubs" in proc.stderr
