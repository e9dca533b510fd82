"""Simulated ESP32 peripherals, driven from the host through the control socket."""

from __future__ import annotations

import subprocess
import sys

from vboard_helpers import mp_ok

CONNECT = ("import network, time\nw = network.WLAN(network.STA_IF)\nw.active(True)\n"
           "w.connect('delta-ap', 'secret')\n"
           "t = time.ticks_ms()\n"
           "while not w.isconnected() and time.ticks_diff(time.ticks_ms(), t) < 3000:\n"
           "    time.sleep_ms(20)\n")


def _vboard_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hil_tests.vboard.cli", *args],
                          capture_output=True, text=True, timeout=20)


def test_wifi_down_disconnects_and_up_reconnects(vboard):
    out = mp_ok(vboard.port, "exec", CONNECT + "print(w.isconnected(), w.status())")
    assert out.split() == ["True", "1010"]  # STAT_GOT_IP
    vboard.control.wifi(False)
    out = mp_ok(vboard.port, "resume", "exec", "print(w.isconnected(), w.status())")
    assert out.split() == ["False", "201"]  # STAT_NO_AP_FOUND
    vboard.control.wifi(True)
    out = mp_ok(vboard.port, "resume", "exec",
                "t = time.ticks_ms()\n"
                "while not w.isconnected() and time.ticks_diff(time.ticks_ms(), t) < 3000:\n"
                "    time.sleep_ms(20)\nprint(w.isconnected())")
    assert out.strip() == "True"


def test_wifi_cli_and_wrong_password(vboard):
    assert _vboard_cli("wifi", "down", "--dir", str(vboard.dir)).returncode == 0
    out = mp_ok(vboard.port, "exec", CONNECT + "print(w.isconnected())")
    assert out.strip() == "False"
    assert _vboard_cli("wifi", "up", "--dir", str(vboard.dir)).returncode == 0
    vboard.control.set_world({"wifi": {"key": "right"}})
    out = mp_ok(vboard.port, "exec", CONNECT + "print(w.status() == network.STAT_WRONG_PASSWORD)")
    assert out.strip() == "True"


def test_mac_is_the_unique_id_and_stable_across_runs(vboard):
    out = mp_ok(vboard.port, "exec",
                "import machine, network\n"
                "print(machine.unique_id() == network.WLAN(0).config('mac'))\n"
                "print(machine.unique_id().hex())")
    same, uid = out.split()
    assert same == "True" and len(uid) == 12
    assert (vboard.dir / ".vboard" / "uid").read_text().strip() == uid


def test_adc_reads_the_world_voltage_per_attenuation(vboard):
    vboard.control.set_world({"adc_mv": {34: 1200}})
    out = mp_ok(vboard.port, "exec",
                "from machine import ADC, Pin\n"
                "a = ADC(Pin(34), atten=ADC.ATTN_11DB)\n"
                "print(a.read_uv(), a.read_u16())\n"
                "a.atten(ADC.ATTN_0DB)\nprint(a.read())")  # 0 dB tops out at 950 mV
    uv, u16, raw = (int(x) for x in out.split())
    assert uv == 1_200_000
    assert u16 == round(1200 / 2450 * 65535)
    assert raw == 4095


def test_pins_read_the_world_and_outputs_are_reported(vboard):
    vboard.control.set_world({"pins": {5: 1}})
    out = mp_ok(vboard.port, "exec",
                "from machine import Pin\n"
                "print(Pin(5, Pin.IN).value(), Pin(18, Pin.IN, Pin.PULL_UP).value())\n"
                "Pin(2, Pin.OUT).value(1)")
    assert out.split() == ["1", "1"]
    assert vboard.control.state()["world"]["pin_out"] == {"2": 1}


def test_uart_receives_fed_bytes_and_reports_what_it_sends(vboard):
    fed = b"$GPGGA,1*00\r\nrest"
    vboard.control.feed_uart(2, fed)
    out = mp_ok(vboard.port, "exec",
                "from machine import UART\nu = UART(2, 9600)\n"
                "print(u.any(), u.readline(), u.read())\nu.write(b'AT\\r\\n')")
    assert out.split() == [str(len(fed)), "b'$GPGGA,1*00\\r\\n'", "b'rest'"]
    assert vboard.control.state()["world"]["uart_tx"] == {"2": "AT\r\n"}


def test_log_and_power_cycle_cli(vboard):
    mp_ok(vboard.port, "exec", "print('visible-in-log')")
    r = _vboard_cli("log", "--dir", str(vboard.dir))
    assert r.returncode == 0 and "visible-in-log" in r.stdout
    boots = vboard.control.state()["boots"]
    assert _vboard_cli("power-cycle", "--dir", str(vboard.dir)).returncode == 0
    st = vboard.control.wait_booted(boots)
    assert st["reset_cause"] == 1


def test_cli_on_a_board_that_is_not_running_says_so(tmp_path):
    r = _vboard_cli("wifi", "down", "--dir", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.startswith("vboard: no virtual board is running in")
