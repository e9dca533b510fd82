"""Soft reset, hard reset, watchdog, deep sleep and power cycles of a virtual board."""

from __future__ import annotations

import serial
from vboard_helpers import mp_ok, read_until, sync_friendly, wait_for

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
CAUSE = "import machine; print(machine.reset_cause())"


# boot.py and main.py each leave a mark in /boots.txt
BOOT_FILES = {
    "boot.py": "open('/boots.txt', 'a').write('b')\n",
    "main.py": "open('/boots.txt', 'a').write('m')\nprint('main ran')\n",
}


def test_power_on_runs_boot_then_main_and_raw_soft_reset_runs_only_boot(start_vboard):
    vboard = start_vboard(BOOT_FILES)
    boots = vboard.dir / "boots.txt"
    wait_for(lambda: boots.exists() and boots.read_text() == "bm", what="boot.py, main.py")
    mp_ok(vboard.port, "soft-reset")  # mpremote soft-resets in raw REPL mode: no main.py
    assert (vboard.dir / "boots.txt").read_text() == "bmb"


def test_ctrl_d_in_friendly_repl_soft_resets_and_runs_main(start_vboard):
    vboard = start_vboard(BOOT_FILES)
    with serial.Serial(vboard.port, exclusive=True) as ser:
        sync_friendly(ser)
        assert (vboard.dir / "boots.txt").read_text() == "bm"
        ser.write(b"\x04")
        out = read_until(ser, b">>> ")
    assert b"MPY: soft reboot\r\n" in out
    assert b"main ran\r\n" in out
    assert (vboard.dir / "boots.txt").read_text() == "bmbm"


def test_reset_cause_after_soft_reset_is_soft_reset(vboard):
    mp_ok(vboard.port, "soft-reset")
    assert mp_ok(vboard.port, "resume", "exec", CAUSE).strip() == str(SOFT_RESET)


def test_machine_reset_is_a_hard_reset_and_the_flash_persists(vboard):
    mp_ok(vboard.port, "exec", "open('/kept.txt', 'w').write('still here')")
    boots = vboard.control.state()["boots"]
    mp_ok(vboard.port, "exec", "--no-follow", "import machine; machine.reset()")
    vboard.control.wait_booted(boots)
    out = mp_ok(vboard.port, "resume", "exec", CAUSE + "; print(open('/kept.txt').read())")
    assert out.split() == [str(HARD_RESET), "still", "here"]


def test_unfed_watchdog_resets_the_board_with_wdt_reset(vboard):
    boots = vboard.control.state()["boots"]
    mp_ok(vboard.port, "exec", "import machine; wdt = machine.WDT(timeout=300)")
    st = vboard.control.wait_booted(boots)
    assert st["reset_cause"] == WDT_RESET
    assert mp_ok(vboard.port, "resume", "exec", CAUSE).strip() == str(WDT_RESET)
    assert "task_wdt: Task watchdog got triggered" in vboard.control.console_log()


def test_fed_watchdog_does_not_reset(vboard):
    boots = vboard.control.state()["boots"]
    code = ("import machine, time\nw = machine.WDT(timeout=1000)\n"
            "for _ in range(30):\n    w.feed()\n    time.sleep_ms(50)\nprint('survived')")
    assert mp_ok(vboard.port, "exec", code).strip() == "survived"
    assert vboard.control.state()["boots"] == boots


def test_deepsleep_wakes_with_deepsleep_reset_and_keeps_rtc_memory(vboard):
    boots = vboard.control.state()["boots"]
    mp_ok(vboard.port, "exec", "--no-follow",
          "import machine; machine.RTC().memory(b'cycle-7'); machine.deepsleep(300)")
    wait_for(lambda: vboard.control.state()["phase"] == "sleeping", what="deep sleep")
    vboard.control.wait_booted(boots)
    out = mp_ok(vboard.port, "resume", "exec",
                "import machine; print(machine.reset_cause(), machine.wake_reason(), "
                "machine.RTC().memory())")
    assert out.split() == [str(DEEPSLEEP_RESET), str(machine_timer_wake()), "b'cycle-7'"]


def machine_timer_wake() -> int:
    return 4  # machine.TIMER_WAKE on the ESP32


def test_power_cycle_gives_pwron_reset_and_clears_rtc_memory(vboard):
    mp_ok(vboard.port, "exec", "import machine; machine.RTC().memory(b'lost on power off')")
    boots = vboard.control.state()["boots"]
    mp_ok(vboard.port, "exec", "--no-follow", "import machine; machine.reset()")
    vboard.control.wait_booted(boots)
    vboard.control.power_cycle()
    out = mp_ok(vboard.port, "resume", "exec", CAUSE + "; print(machine.RTC().memory())")
    assert out.split() == [str(PWRON_RESET), "b''"]
