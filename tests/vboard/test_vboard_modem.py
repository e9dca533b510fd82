"""The simulated SIM7600 (hil_tests/vboard/modem.py) and network.PPP (rom/vb_ppp.py).

Host level: the modem's byte-level AT exchanges against a clock the test moves.
Board level: the firmware's own CellLink (firmware/lib/board_cell.py, through
board.Board.link()) on a real virtual board, dialling the simulated modem.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hil_tests.capabilities import capabilities, missing_reason
from hil_tests.deployed import VIRTUAL_APN, VIRTUAL_MODEM, link_for, modem_world
from hil_tests.serial_board import SerialBoard
from hil_tests.slots import VIRTUAL, BoardSlot
from hil_tests.target import Settings
from hil_tests.vboard import VirtualBoard
from hil_tests.vboard.errors import VBoardError
from hil_tests.vboard.modem import Sim7600, cell_defaults, update_cell
from hil_tests.vboard.vm import find_micropython
from hil_tests.vboard.world import World
from provisioning.boards import default_boards_path, load_boards

FIRMWARE_LIB = Path(__file__).resolve().parents[2] / "firmware" / "lib"

# ---------------------------------------------------------------- host level


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000

    def __call__(self) -> int:
        return self.t


class Wire:
    """The modem's surroundings: a world's cell/pins, and the board's receive side."""

    def __init__(self, **cell: Any) -> None:
        self.cell = cell_defaults()
        self.cell.update(uart=1, **cell)
        self.pins: dict[int, int] = {}
        self.rx = bytearray()

    def feed_uart(self, uart: int, data: bytes) -> None:
        assert uart == 1
        self.rx.extend(data)

    def take(self) -> bytes:
        data = bytes(self.rx)
        self.rx.clear()
        return data


def modem(boot_ms: int = 1000, **cell: Any) -> tuple[Sim7600, Wire, Clock]:
    w = Wire(boot_ms=boot_ms, **cell)
    clock = Clock()
    return Sim7600(w, 1, clock), w, clock


def booted(**cell: Any) -> tuple[Sim7600, Wire, Clock]:
    m, w, clock = modem(**cell)
    clock.t += 1000
    m.poll()
    clock.t += 200  # past RDY, +CPIN: READY, SMS DONE, PB DONE
    m.poll()
    w.take()
    return m, w, clock


def say(m: Sim7600, w: Wire, data: bytes) -> bytes:
    m.receive(data)
    return w.take()


def test_silent_while_booting_then_rdy_and_sim_urcs():
    m, w, clock = modem(boot_ms=3000, status=36)
    assert say(m, w, b"AT\r") == b""  # not listening yet: lost
    clock.t += 2999
    m.poll()
    assert w.take() == b"" and w.pins.get(36) is None
    clock.t += 1
    m.poll()
    assert w.take() == b"\r\nRDY\r\n\r\n+CPIN: READY\r\n" and w.pins[36] == 1
    clock.t += 200
    m.poll()
    assert w.take() == b"\r\nSMS DONE\r\n\r\nPB DONE\r\n"


def test_echo_until_ate0_and_final_result_codes():
    m, w, _ = booted()
    assert say(m, w, b"AT\r") == b"AT\r\r\nOK\r\n"
    assert say(m, w, b"ATE0\r") == b"ATE0\r\r\nOK\r\n"  # echoed: echo was still on
    assert say(m, w, b"AT\r") == b"\r\nOK\r\n"
    assert say(m, w, b"AT+NOSUCH\r") == b"\r\nERROR\r\n"
    assert say(m, w, b"ATE1\r") == b"\r\nOK\r\n"
    assert say(m, w, b"at+csq\r") == b"at+csq\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"


def test_split_and_concatenated_writes():
    m, w, _ = booted(reg_after_ms=0)
    say(m, w, b"ATE0\r")
    assert say(m, w, b"A") == b"" and say(m, w, b"T+CS") == b""
    assert say(m, w, b"Q\r") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    both = say(m, w, b"AT\rAT+CGREG?\rAT+BAD\r")
    assert both == b"\r\nOK\r\n\r\n+CGREG: 0,1\r\n\r\nOK\r\n\r\nERROR\r\n"
    # V.250: extended commands chained with ';' share one final result code
    assert say(m, w, b"AT+CSQ;+CGREG?\r") == b"\r\n+CSQ: 20,99\r\n\r\n+CGREG: 0,1\r\n\r\nOK\r\n"
    # noise before the AT prefix is dropped; backspace edits the line
    assert say(m, w, b"\x00\xffAT+CSX\x08Q\r") == b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"


def test_csq_follows_the_world_signal_and_the_network():
    m, w, _ = booted(csq=7)
    say(m, w, b"ATE0\r")
    assert say(m, w, b"AT+CSQ\r") == b"\r\n+CSQ: 7,99\r\n\r\nOK\r\n"
    update_cell(w.cell, {"csq": 31})
    assert b"+CSQ: 31,99" in say(m, w, b"AT+CSQ\r")
    update_cell(w.cell, {"up": False})
    assert b"+CSQ: 99,99" in say(m, w, b"AT+CSQ\r")


def test_sim_pin_flow_wrong_then_right():
    m, w, clock = booted(sim_pin="4321")
    say(m, w, b"ATE0\r")
    assert say(m, w, b"AT+CPIN?\r") == b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
    assert say(m, w, b"ATD*99#\r") == b"\r\n+CME ERROR: SIM PIN required\r\n"
    assert say(m, w, b'AT+CPIN="0000"\r') == b"\r\n+CME ERROR: incorrect password\r\n"
    assert say(m, w, b'AT+CPIN="4321"\r') == b"\r\nOK\r\n"
    clock.t += 1
    m.poll()
    assert w.take() == b"\r\n+CPIN: READY\r\n"  # the URC, after the OK
    assert say(m, w, b"AT+CPIN?\r") == b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert say(m, w, b'AT+CPIN="4321"\r') == b"\r\n+CME ERROR: operation not allowed\r\n"


def test_three_wrong_pins_lock_the_sim_and_cmee_sets_the_error_form():
    m, w, _ = booted(sim_pin="4321")
    say(m, w, b"ATE0\r")
    for _ in range(3):
        say(m, w, b'AT+CPIN="1111"\r')
    assert b"+CPIN: SIM PUK" in say(m, w, b"AT+CPIN?\r")
    assert say(m, w, b"AT+CMEE=1\r") == b"\r\nOK\r\n"
    assert say(m, w, b'AT+CPIN="4321"\r') == b"\r\n+CME ERROR: 12\r\n"
    say(m, w, b"AT+CMEE=0\r")
    assert say(m, w, b'AT+CPIN="4321"\r') == b"\r\nERROR\r\n"
    assert say(m, w, b"AT+CMEE=7\r") == b"\r\nERROR\r\n"


def test_no_sim_inserted():
    m, w, _ = booted(sim=False)
    say(m, w, b"ATE0\r")
    assert say(m, w, b"AT+CPIN?\r") == b"\r\n+CME ERROR: SIM not inserted\r\n"


def test_registration_goes_0_then_2_then_1_and_follows_the_network():
    m, w, clock = modem(boot_ms=1000, sim_pin="1234", reg_after_ms=1500)
    clock.t += 1000
    m.poll()
    say(m, w, b"ATE0\r")

    def stat() -> bytes:  # the reply line (SMS DONE / PB DONE URCs may come first)
        return [ln for ln in say(m, w, b"AT+CGREG?\r").split(b"\r\n")
                if ln.startswith(b"+CGREG:")][0]

    assert stat() == b"+CGREG: 0,0"  # SIM locked: not searching
    say(m, w, b'AT+CPIN="1234"\r')
    clock.t += 1
    m.poll()
    assert w.take() == b"\r\n+CPIN: READY\r\n"
    assert stat() == b"+CGREG: 0,2"
    clock.t += 1498  # 1 ms went by for the URC above
    assert stat() == b"+CGREG: 0,2"
    clock.t += 1
    assert stat() == b"+CGREG: 0,1"
    assert say(m, w, b"AT+CGREG=1\r") == b"\r\nOK\r\n"
    update_cell(w.cell, {"up": False})
    m.poll()
    assert w.take() == b"\r\n+CGREG: 2\r\n"  # the URC AT+CGREG=1 asked for
    assert stat() == b"+CGREG: 1,2"


def test_roaming_and_denied():
    m, w, clock = booted(reg=5, reg_after_ms=0)
    say(m, w, b"ATE0\r")
    assert b"+CGREG: 0,5" in say(m, w, b"AT+CGREG?\r")
    assert b"+CREG: 0,5" in say(m, w, b"AT+CREG?\r")
    update_cell(w.cell, {"reg": 3})
    assert b"+CGREG: 0,3" in say(m, w, b"AT+CGREG?\r")
    say(m, w, b'AT+CGDCONT=1,"IP","x"\r')
    assert say(m, w, b"ATD*99#\r") == b""
    clock.t += 200
    m.poll()
    assert w.take() == b"\r\nNO CARRIER\r\n"  # denied: no data call


def test_cgdcont_is_stored_and_read_back():
    m, w, _ = booted()
    say(m, w, b"ATE0\r")
    assert say(m, w, b'AT+CGDCONT=1,"IP","m3-world"\r') == b"\r\nOK\r\n"
    assert say(m, w, b'AT+CGDCONT=2,"IPV6","a;b?c"\r') == b"\r\nOK\r\n"  # ; and ? quoted
    assert say(m, w, b"AT+CGDCONT?\r") == (
        b'\r\n+CGDCONT: 1,"IP","m3-world","0.0.0.0",0,0\r\n'
        b'\r\n+CGDCONT: 2,"IPV6","a;b?c","0.0.0.0",0,0\r\n\r\nOK\r\n')
    assert say(m, w, b'AT+CGDCONT=99,"IP","x"\r') == b"\r\n+CME ERROR: incorrect parameters\r\n"


def dialled(**cell: Any) -> tuple[Sim7600, Wire, Clock]:
    m, w, clock = booted(reg_after_ms=0, apn="hil.apn", **cell)
    say(m, w, b'ATE0\rAT+CGDCONT=1,"IP","hil.apn"\r')
    assert say(m, w, b"ATD*99#\r") == b""
    clock.t += 199
    m.poll()
    assert w.take() == b""
    clock.t += 1
    m.poll()
    assert w.take() == b"\r\nCONNECT 115200\r\n"
    assert w.cell["call"] == 1 and w.cell["data_mode"] is True
    return m, w, clock


def test_dial_connects_and_data_mode_ignores_at_commands():
    m, w, clock = dialled()
    assert say(m, w, b"AT\r~\xff\x03\xc0\x21") == b""  # PPP's bytes now, not commands
    clock.t += 5000
    m.poll()
    assert w.take() == b"" and w.cell["data_mode"] is True


def test_escape_needs_its_guard_times_then_ato_and_ath():
    m, w, clock = dialled()
    clock.t += 100
    assert say(m, w, b"+++") == b""  # only 100 ms after the last byte: data
    clock.t += 2000
    m.poll()
    assert w.take() == b"" and w.cell["data_mode"] is True
    clock.t += 1000
    say(m, w, b"+++")
    clock.t += 500
    say(m, w, b"x")  # data within the guard after: no escape
    clock.t += 2000
    m.poll()
    assert w.take() == b""
    say(m, w, b"+++")
    clock.t += 1000
    m.poll()
    assert w.take() == b"\r\nOK\r\n" and w.cell["data_mode"] is False and w.cell["call"] == 1
    assert say(m, w, b"ATO\r") == b"\r\nCONNECT 115200\r\n" and w.cell["data_mode"] is True
    clock.t += 1000
    say(m, w, b"+")
    clock.t += 10
    say(m, w, b"++")  # split across writes, still within the guard
    clock.t += 1000
    m.poll()
    assert w.take() == b"\r\nOK\r\n"
    assert say(m, w, b"ATH\r") == b"\r\nOK\r\n" and w.cell["call"] == 0
    assert say(m, w, b"ATO\r") == b"\r\nERROR\r\n"  # no call to go back to


def test_cell_down_in_data_mode_ends_the_call_with_no_carrier():
    m, w, _ = dialled()
    update_cell(w.cell, {"up": False})
    m.poll()
    assert w.take() == b"\r\nNO CARRIER\r\n"
    assert w.cell["call"] == 0 and w.cell["data_mode"] is False
    assert say(m, w, b"AT\r") == b"\r\nOK\r\n"  # back in command mode


def test_a_short_outage_between_polls_still_ends_the_call():
    m, w, clock = dialled()
    clock.t += 1
    update_cell(w.cell, {"up": False})
    update_cell(w.cell, {"up": True})  # back before the modem looked
    m.poll()
    assert w.take() == b"\r\nNO CARRIER\r\n"


def test_dial_fails_with_the_wrong_apn_or_unregistered_or_aborted():
    m, w, clock = booted(reg_after_ms=0, apn="hil.apn")
    say(m, w, b'ATE0\rAT+CGDCONT=1,"IP","wrong"\r')
    say(m, w, b"ATD*99#\r")
    clock.t += 200
    m.poll()
    assert w.take() == b"\r\nNO CARRIER\r\n"
    say(m, w, b'AT+CGDCONT=1,"IP","hil.apn"\r')
    say(m, w, b"ATD*99#\r")
    assert say(m, w, b"A") == b"\r\nNO CARRIER\r\n"  # a character aborts the dial
    update_cell(w.cell, {"up": False})
    say(m, w, b"ATD*99***1#\r")
    clock.t += 200
    m.poll()
    assert w.take() == b"\r\nNO CARRIER\r\n"
    assert say(m, w, b"ATD123456;\r") == b"\r\nERROR\r\n"  # voice: not simulated


def test_pwrkey_pulses_power_the_modem_on_and_off():
    m, w, clock = modem(auto_on=False, pwrkey=4, status=36, boot_ms=500)
    clock.t += 5000
    m.poll()
    assert not m.powered and say(m, w, b"AT\r") == b""
    m.event("pin_out", {"id": 4, "v": 1})
    clock.t += 50
    m.event("pin_out", {"id": 4, "v": 0})  # too short
    clock.t += 1000
    m.poll()
    assert not m.powered
    m.event("pin_out", {"id": 4, "v": 1})
    clock.t += 500
    m.event("pin_out", {"id": 4, "v": 0})
    clock.t += 500
    m.poll()
    assert m.powered and w.take().startswith(b"\r\nRDY\r\n") and w.pins[36] == 1
    clock.t += 200
    m.poll()
    assert w.take() == b"\r\nSMS DONE\r\n\r\nPB DONE\r\n"
    m.event("pin_out", {"id": 4, "v": 1})
    clock.t += 2500
    m.event("pin_out", {"id": 4, "v": 0})
    assert not m.powered and w.take().startswith(b"\r\nNORMAL POWER DOWN\r\n")
    assert w.pins[36] == 0


def test_uart_writes_reach_the_modem_through_events():
    m, w, _ = booted()
    m.event("uart_tx", {"id": 2, "data": b"AT\r".hex()})  # another UART: not the modem's
    assert w.take() == b""
    m.event("uart_tx", {"id": 1, "data": b"AT\r".hex()})
    assert w.take() == b"AT\r\r\nOK\r\n"


def test_world_cell_values_are_checked():
    world = World({"cell": {"uart": 1, "csq": 12}})
    assert world.cell["uart"] == 1 and world.cell["csq"] == 12
    with pytest.raises(VBoardError, match="unknown cell key 'cqs'"):
        world.update({"cell": {"cqs": 3}})
    with pytest.raises(VBoardError, match="'call' is the modem's state"):
        world.update({"cell": {"call": 3}})
    world.update({"cell": {"up": False}})
    assert world.link_up("ppp") is False
    world.update({"cell": {"up": True}})
    assert world.cell["up_since_ms"] > 0 and world.snapshot()["cell"]["up"] is True


# ---------------------------------------------------------------- board level

BOARD_CFG = {"pins": {"modem_rx": 26, "modem_tx": 27}, "link": {"type": "cell",
                                                                 "apn": "hil.apn"}}
MODEM = {"uart": 1, "boot_ms": 800, "reg_after_ms": 500, "csq": 18, "apn": "hil.apn",
         "ppp_ms": 200}
PREP = ("import time, board, network\n"
        "from board_cell import CellLink, CellError\n"
        f"b = board.Board({BOARD_CFG!r})\n"
        "def wait(p, ms=5000):\n"
        "    t = time.ticks_ms()\n"
        "    while not p() and time.ticks_diff(time.ticks_ms(), t) < ms:\n"
        "        time.sleep_ms(20)\n"
        "    return p()\n"
        "def heard(u, token, ms=2000):\n"
        "    got = b''\n"
        "    t = time.ticks_ms()\n"
        "    while token not in got and time.ticks_diff(time.ticks_ms(), t) < ms:\n"
        "        got += u.read() or b''\n"
        "        time.sleep_ms(10)\n"
        "    return got\n"
        "def fails(f):\n"
        "    try:\n"
        "        f()\n"
        "    except CellError as e:\n"
        "        return str(e)\n")


@pytest.fixture
def cell_board(tmp_path):
    """start(**cell): a virtual board whose flash holds the firmware's board layer and
    whose UART 1 has a simulated SIM7600; yields (VirtualBoard, SerialBoard)."""
    try:
        find_micropython()
    except VBoardError:
        pytest.skip("MicroPython unix VM not installed")
    started: list[tuple[VirtualBoard, SerialBoard]] = []

    def start(**cell: Any) -> tuple[VirtualBoard, SerialBoard]:
        root = tmp_path / f"board{len(started)}"
        (root / "lib").mkdir(parents=True)
        for name in ("board.py", "board_cell.py"):
            shutil.copy(FIRMWARE_LIB / name, root / "lib" / name)
        vb = VirtualBoard(root).start()
        assert vb.control is not None
        sb = SerialBoard(vb.port, connect_timeout=10)
        started.append((vb, sb))
        sb.exec(PREP)
        vb.control.set_world({"cell": {**MODEM, **cell}})  # wired and powered on now
        return vb, sb

    yield start
    for vb, sb in started:
        sb.close()
        vb.stop()


def _cell(vb: VirtualBoard) -> dict[str, Any]:
    assert vb.control is not None
    return vb.control.state()["world"]["cell"]


def test_firmware_cell_link_comes_up_on_the_simulated_modem(cell_board):
    vb, b = cell_board()
    b.exec("lk = b.link({})\nt0 = time.ticks_ms()\nlk.up()\nt_up = time.ticks_ms()",
           timeout=30)
    assert b.eval("lk.rssi()") == -77  # +CSQ: 18 -> -113 + 2 * 18 dBm
    assert b.eval("wait(lk.isconnected)") is True
    assert b.eval("lk.ppp.ifconfig()") == ("10.64.12.34", "255.255.255.255", "10.64.64.64",
                                           "8.8.8.8")
    assert b.eval("lk.ppp.ipconfig('addr4')") == ("10.64.12.34", "255.255.255.255")
    assert b.eval("time.ticks_diff(t_up, t0)") >= 800  # the modem's boot silence
    assert vb.control is not None
    log = vb.control.state()["world"]["uart_tx"]["1"]
    assert log.startswith("AT\r") and log.endswith('AT+CGDCONT=1,"IP","hil.apn"\rATD*99#\r')
    assert _cell(vb)["call"] == 1 and _cell(vb)["data_mode"] is True


def test_network_ppp_api_checks_its_arguments(cell_board):
    _, b = cell_board()
    b.exec("p = network.PPP(b.uart('modem_rx', 'modem_tx', 115200, 1))")
    assert b.eval("(p.active(), p.isconnected(), p.status())") == (False, False, 0)
    b.exec("try:\n    p.connect()\nexcept OSError as e:\n    err = str(e)\n")
    assert b.eval("err") == "must be active"
    b.exec("p.active(True)\np.connect()\n"
           "try:\n    p.connect()\nexcept OSError as e:\n    err = e.errno\n")
    assert b.eval("err") == 114  # EALREADY
    assert b.eval("(p.isconnected(), p.status())") == (False, 1)  # no call in data mode: no peer
    b.exec("try:\n    p.config('mtu')\nexcept ValueError as e:\n    err = str(e)\n")
    assert b.eval("err") == "unknown config param"
    assert b.eval("(network.PPP.SEC_PAP, network.PPP.AUTH_CHAP)") == (1, 2)


def test_sim_pin_wrong_then_right(cell_board):
    _, b = cell_board(sim_pin="4321")
    err = b.eval("fails(CellLink(b.uart('modem_rx', 'modem_tx', 115200, 1), 'hil.apn', "
                 "'0000', network.PPP).up)", timeout=30)
    assert err == "modem: AT+CPIN: +CME ERROR: incorrect password"
    b.exec("lk = CellLink(b.uart('modem_rx', 'modem_tx', 115200, 1), 'hil.apn', '4321', "
           "network.PPP)\nlk.up()", timeout=30)
    assert b.eval("wait(lk.isconnected)") is True


def test_registration_denied_is_a_cell_error(cell_board):
    _, b = cell_board(reg=3)
    err = b.eval("fails(CellLink(b.uart('modem_rx', 'modem_tx', 115200, 1), 'hil.apn', None, "
                 "network.PPP, reg_timeout_ms=2500).up)", timeout=30)
    assert err == "modem: not registered (CGREG 3)"


def test_wrong_apn_is_no_carrier(cell_board):
    _, b = cell_board(apn="other.apn")
    err = b.eval("fails(b.link({}).up)", timeout=30)
    assert err == "modem: ATD*99#: NO CARRIER"


def test_cell_down_ends_the_call_then_the_link_redials(cell_board):
    vb, b = cell_board()
    assert vb.control is not None
    b.exec("lk = b.link({})\nlk.up()\nwait(lk.isconnected)\nold = lk.ppp", timeout=30)
    assert b.eval("lk.isconnected()") is True
    cli = subprocess.run([sys.executable, "-m", "hil_tests.vboard.cli", "cell", "down", "--dir",
                          str(vb.dir)], capture_output=True, text=True, timeout=20)
    assert cli.returncode == 0, cli.stderr
    assert b.eval("(lk.isconnected(), old.status())") == (False, 3)  # STAT_LOST
    assert b"\r\nNO CARRIER\r\n" in b.eval("heard(lk.uart, b'NO CARRIER')")
    assert _cell(vb)["call"] == 0 and _cell(vb)["data_mode"] is False
    assert "not registered" in b.eval("fails(CellLink(lk.uart, 'hil.apn', None, network.PPP, "
                                      "reg_timeout_ms=1200).up)", timeout=30)
    vb.control.cell(True)
    b.exec("lk.up()\nwait(lk.isconnected)", timeout=30)
    assert b.eval("(lk.isconnected(), old.isconnected())") == (True, False)
    assert _cell(vb)["call"] == 2


def test_a_board_run_as_a_cellular_kind_has_its_modem_wired(tmp_path):
    try:
        find_micropython()
    except VBoardError:
        pytest.skip("MicroPython unix VM not installed")
    with VirtualBoard(tmp_path / "boat", kind="boat-gps-cell") as vb:
        cell = _cell(vb)
        assert (cell["uart"], cell["pwrkey"], cell["status"]) == (1, 4, 36)  # boards.yaml


def test_a_modem_wired_over_the_control_socket_powers_on_at_once(tmp_path):
    """It boots on its own clock, while the board sits in its REPL saying nothing (the
    HIL deployment waits for its STATUS pin before it starts the node)."""
    try:
        find_micropython()
    except VBoardError:
        pytest.skip("MicroPython unix VM not installed")
    with VirtualBoard(tmp_path / "b") as vb:
        assert vb.control is not None
        t0 = time.monotonic()
        vb.control.set_world({"cell": {"uart": 1, "status": 36, "boot_ms": 300}})
        world = vb.control.state()["world"]
        assert world["pins"].get("36") != 1, "STATUS high before the boot time"
        while world["pins"].get("36") != 1:
            assert time.monotonic() - t0 < 10, "the modem never booted"
            time.sleep(0.02)
            world = vb.control.state()["world"]
        assert time.monotonic() - t0 >= 0.29  # boot_ms (the modem counts whole ms)
        while "1" not in world["uart_rx"]:  # RDY and +CPIN: READY follow on the UART
            assert time.monotonic() - t0 < 10, "no RDY from the modem"
            time.sleep(0.02)
            world = vb.control.state()["world"]


def test_link_down_escapes_and_hangs_up(cell_board):
    vb, b = cell_board()
    b.exec("lk = b.link({})\nlk.up()\nwait(lk.isconnected)", timeout=30)
    # "+++" between 1 s guards: command mode with the call kept; ATO resumes PPP
    b.exec("time.sleep_ms(1000)\nlk.uart.write(b'+++')\ntime.sleep_ms(1000)\n"
           "got = heard(lk.uart, b'OK')", timeout=30)
    assert b.eval("got") == b"\r\nOK\r\n"
    assert b.eval("lk.isconnected()") is False and _cell(vb)["call"] == 1
    assert b.eval("lk.uart.write(b'ATO\\r') and heard(lk.uart, b'CONNECT')") == \
        b"\r\nCONNECT 115200\r\n"
    assert b.eval("wait(lk.isconnected)") is True
    t0 = time.monotonic()
    b.exec("lk.down()", timeout=30)
    assert time.monotonic() - t0 >= 2.0  # the two guard times around "+++"
    assert _cell(vb)["call"] == 0 and _cell(vb)["data_mode"] is False
    assert vb.control is not None
    assert vb.control.state()["world"]["uart_tx"]["1"].endswith("+++ATH\r")


# ---------------------------------------------------------------- HIL wiring


def _slot(kind: str, port: str = VIRTUAL) -> BoardSlot:
    return BoardSlot(0, port, load_boards(default_boards_path()).kinds[kind])


def test_cellular_kinds_get_the_simulated_modem_and_a_cell_link_on_virtual_boards():
    boat = _slot("boat-gps-cell")
    assert modem_world(boat.kind) == {"uart": 1, "apn": VIRTUAL_APN, **VIRTUAL_MODEM,
                                      "pwrkey": 4, "status": 36}  # boards.yaml's wiring
    target = SimpleNamespace(slot=boat, settings=Settings())
    assert link_for(target, boat.kind) == ({"type": "cell", "apn": VIRTUAL_APN}, {})
    caps = capabilities(boat)
    assert {"cell_control", "link_cell", "modem"} <= caps and "link_wifi" not in caps
    wl = _slot("water-level-devkitc")
    assert modem_world(wl.kind) is None
    assert link_for(SimpleNamespace(slot=wl, settings=Settings()), wl.kind)[0]["type"] == "wifi"
    assert "cell_control" not in capabilities(wl) and "link_wifi" in capabilities(wl)


def test_attached_cellular_boards_have_no_cell_control():
    truck = _slot("truck-gps-cell", "/dev/ttyUSB0")
    caps = capabilities(truck, power_cmd="x", wifi_cmd="y")
    assert "cell_control" not in caps and "wifi_control" not in caps
    reason = missing_reason(truck, ("cell_control",), caps)
    assert reason is not None and "cellular network" in reason
