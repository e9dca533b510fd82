"""Board level: reset causes, boot files, the watchdog, power and Wi-Fi faults."""

from __future__ import annotations

import time

import pytest

PWRON_RESET, HARD_RESET, WDT_RESET, SOFT_RESET = 1, 2, 3, 5


@pytest.fixture
def clean_boot_files(board):
    """Tests here write boot.py/main.py; put back a board that boots to the REPL."""
    saved = {}
    for name in ("boot.py", "main.py"):
        try:
            saved[name] = board.get(f"/{name}")
        except Exception:  # noqa: BLE001 - absent
            saved[name] = None
    yield
    board.exec("import os\nfor n in ('boot.py', 'main.py', 'hil_cause.txt', 'hil_count.txt'):\n"
               "    try:\n        os.remove(n)\n    except OSError:\n        pass\n")
    for name, data in saved.items():
        if data is not None:
            board.put(data, f"/{name}")


def test_soft_reset_clears_the_heap_and_reports_soft_reset(board):
    board.exec("hil_marker = 123")
    board.soft_reset()
    with pytest.raises(Exception, match="NameError"):
        board.exec("hil_marker")
    assert board.reset_cause() == SOFT_RESET


def test_hard_reset_reboots_with_hard_reset_cause(board):
    board.exec("hil_marker = 1")
    board.reset()
    assert board.reset_cause() == HARD_RESET
    with pytest.raises(Exception, match="NameError"):
        board.exec("hil_marker")


def test_main_py_runs_after_a_hard_reset_and_sees_the_cause(board, clean_boot_files):
    board.put(b"import machine\nf = open('hil_cause.txt', 'w')\n"
              b"f.write(str(machine.reset_cause()))\nf.close()\nprint('hil main ran')\n",
              "/main.py")
    board.reset(wait_repl=False)
    board.expect("hil main ran", timeout=20)
    board.wait_boot(timeout=20)
    assert board.get("/hil_cause.txt") == str(HARD_RESET).encode()


@pytest.mark.needs("watchdog")
def test_watchdog_resets_a_hung_main_loop(board, clean_boot_files):
    # main.py arms a 2 s watchdog, feeds it a few times, then hangs on its first boot;
    # on the boot after that it records the reset cause and returns to the REPL.
    board.put(b"import machine, os, time\n"
              b"if 'hil_count.txt' in os.listdir('/'):\n"
              b"    f = open('hil_cause.txt', 'w')\n"
              b"    f.write(str(machine.reset_cause()))\n"
              b"    f.close()\n"
              b"    print('hil second boot')\n"
              b"else:\n"
              b"    open('hil_count.txt', 'w').close()\n"
              b"    wdt = machine.WDT(timeout=2000)\n"
              b"    for i in range(3):\n"
              b"        wdt.feed()\n"
              b"        time.sleep_ms(200)\n"
              b"    print('hil hanging')\n"
              b"    while True:\n"
              b"        pass\n", "/main.py")
    mark = board.mark()
    board.reset(wait_repl=False)
    board.expect("hil hanging", timeout=20, since=mark)
    t0 = time.monotonic()
    board.expect("hil second boot", timeout=30, since=mark)
    waited = time.monotonic() - t0
    board.wait_boot(timeout=20)
    assert board.get("/hil_cause.txt") == str(WDT_RESET).encode()
    assert waited >= 1.5, "reset before the watchdog's 2 s ran out"


@pytest.mark.needs("power_control")
def test_power_cycle_is_a_power_on_reset_and_keeps_the_flash(board, power):
    board.put(b"kept", "/hil_power.txt")
    board.exec("hil_marker = 1")
    try:
        power.cycle()
        assert board.reset_cause() == PWRON_RESET
        assert board.get("/hil_power.txt") == b"kept"
        with pytest.raises(Exception, match="NameError"):
            board.exec("hil_marker")
    finally:
        board.remove("/hil_power.txt")


@pytest.mark.needs("power_control")
def test_power_cycle_clears_rtc_memory_but_a_hard_reset_keeps_it(board, power):
    board.exec("import machine\nmachine.RTC().memory(b'hil-rtc')")
    board.reset()
    assert board.eval("bytes(__import__('machine').RTC().memory())") == b"hil-rtc"
    power.cycle()
    assert board.eval("bytes(__import__('machine').RTC().memory())") == b""


@pytest.mark.needs("wifi_control")
def test_wifi_outage_is_seen_by_network_wlan_and_it_reconnects(board, wifi):
    board.exec("import network, time\nw = network.WLAN(network.STA_IF)\nw.active(True)\n"
               "w.connect('hil-ap', 'hil-wifi-passphrase')\n"
               "t = time.ticks_ms()\n"
               "while not w.isconnected() and time.ticks_diff(time.ticks_ms(), t) < 10000:\n"
               "    time.sleep_ms(50)\n")
    assert board.eval("w.isconnected()") is True
    wifi.down()
    assert board.eval("w.isconnected()") is False
    assert board.eval("w.status() == network.STAT_NO_AP_FOUND") is True
    wifi.up()
    board.exec("t = time.ticks_ms()\n"
               "while not w.isconnected() and time.ticks_diff(time.ticks_ms(), t) < 10000:\n"
               "    time.sleep_ms(50)\n")
    assert board.eval("w.isconnected()") is True
    assert board.eval("w.ifconfig()[0]") != "0.0.0.0"
