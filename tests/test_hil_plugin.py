"""The HIL pytest plugin as QA runs it: a real pytest process against virtual boards.

Each test starts `python -m pytest` on part of hil_tests/ (or on a small test
file of its own) with the plugin's options, and checks what QA would see:
skip reasons, one-line errors naming the port, which board got bound, and
the console tail and log path in a JUnit failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import serial

from hil_tests.plugin import NO_BOARD
from hil_tests.vboard import VirtualBoard

REPO = Path(__file__).resolve().parent.parent
VBOARD_CLI = str(Path(sys.executable).parent / "vboard")


def run_pytest(*args: str, cwd: Path = REPO, timeout: float = 120) \
        -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIL_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def vboard(tmp_path):
    with VirtualBoard(tmp_path / "board") as vb:
        yield vb


def test_without_a_board_every_hil_test_skips_with_the_reason():
    r = run_pytest("hil_tests/test_board_repl.py", "hil_tests/test_node_faults.py", "-rs", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    assert NO_BOARD == "no board: pass --board-port PORT or --board-port virtual"
    assert re.search(rf"SKIPPED \[\d+\] hil_tests/test_board_repl.py: {re.escape(NO_BOARD)}",
                     r.stdout)
    assert re.search(rf"SKIPPED \[\d+\] hil_tests/test_node_faults.py.*: {re.escape(NO_BOARD)}",
                     r.stdout)
    assert "passed" not in r.stdout and "error" not in r.stdout.lower()


def test_a_port_that_does_not_exist_stops_the_run_with_one_line():
    r = run_pytest("hil_tests/test_board_repl.py", "--board-port", "/dev/ttyHIL-nope")
    assert r.returncode == 4  # pytest's usage error
    assert "ERROR: /dev/ttyHIL-nope: no such serial port (unplugged, or a wrong name?)" \
        in r.stderr.splitlines()


def test_a_held_port_fails_the_tests_with_one_line_naming_it(vboard):
    with serial.Serial(vboard.port, exclusive=True):
        r = run_pytest("hil_tests/test_board_repl.py", "-k", "runs_code", "-q",
                       "--board-port", vboard.port)
    assert r.returncode == 1
    line = f"hil_tests.errors.PortBusy: {vboard.port}: busy: another program holds the port " \
        f"(a serial monitor, mpremote, esptool, a second test run?)"
    assert line in r.stdout.splitlines()  # the error is this one line, no mpremote frames
    assert "transport_serial.py" not in r.stdout


def test_a_board_is_bound_by_its_mac_among_several_ports(tmp_path):
    with VirtualBoard(tmp_path / "a") as a, VirtualBoard(tmp_path / "b") as b:
        mac_b = (tmp_path / "b" / ".vboard" / "uid").read_text().strip()
        colons = ":".join(mac_b[i:i + 2] for i in range(0, 12, 2))
        r = run_pytest("hil_tests/test_board_repl.py", "-k", "unique_id", "-v",
                       "--board-port", f"{a.port},{b.port}", "--board-mac", colons,
                       "--board", "water-level-devkitc")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"[pts{Path(b.port).name}-water-level-devkitc] PASSED" in r.stdout
        assert f"[pts{Path(a.port).name}-" not in r.stdout
        r = run_pytest("hil_tests/test_board_repl.py", "--board-port", a.port,
                       "--board-mac", "00:11:22:33:44:55")
        assert r.returncode == 4
        assert "--board-mac 001122334455: no board with that MAC" in r.stderr


def test_power_tests_skip_on_a_bench_without_power_control_and_use_power_cmd(vboard):
    # The virtual board's pty given as a plain serial port: to the plugin, attached hardware.
    common = ("hil_tests/test_board_resets.py", "-k", "power_cycle_is", "-rs", "-q",
              "--board-port", vboard.port, "--board", "water-level-devkitc")
    r = run_pytest(*common)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "water-level-devkitc on " + vboard.port + " lacks power_control: no way to cut " \
        "its power: pass --power-cmd" in r.stdout
    # a bench's power switch is any command; here the virtual board's own
    r = run_pytest(*common, "--power-cmd", f"{VBOARD_CLI} power-cycle --dir {vboard.dir}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed" in r.stdout
    assert vboard.control.state()["reset_cause"] == 1  # PWRON_RESET, from the command


def test_a_junit_failure_carries_the_board_console_and_the_log_path(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text("from hil_tests.plugin import *  # noqa\n")
    (tmp_path / "test_demo.py").write_text(textwrap.dedent("""
        def test_fails_after_the_board_printed(board):
            board.exec("print('hil-marker-' + str(6 * 7))")
            assert board.eval("1 + 1") == 3
    """))
    xml = tmp_path / "junit.xml"
    r = run_pytest("test_demo.py", "--board-port", "virtual", "--board", "boat-gps-cell",
                   f"--junitxml={xml}", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    failure = ET.parse(xml).getroot().find(".//testcase/failure")
    assert failure is not None
    text = failure.text or ""
    assert "assert 2 == 3" in text
    assert "board boat-gps-cell on a virtual board: console" in text
    assert "hil-marker-42" in text
    log = text.split(", log ", 1)[1].split()[0]
    assert log.endswith("console.log") and b"hil-marker-42" in Path(log).read_bytes()
