"""The virtual board's port as pyserial and mpremote's SerialTransport see it."""

from __future__ import annotations

import os
import re
import time

import pytest
import serial
from mpremote.transport import TransportExecError
from mpremote.transport_serial import SerialTransport
from vboard_helpers import mpremote, read_until, sync_friendly, wait_for


@pytest.fixture
def transport(vboard):
    t = SerialTransport(vboard.port, timeout=10)
    t.enter_raw_repl()
    yield t
    t.exit_raw_repl()
    t.close()


def test_serial_transport_execs_evals_and_writes_files(transport, vboard):
    assert transport.eval("[i * i for i in range(4)]") == [0, 1, 4, 9]
    transport.fs_writefile("/data.bin", bytes(range(256)) * 4)
    assert (vboard.dir / "data.bin").read_bytes() == bytes(range(256)) * 4
    assert transport.fs_readfile("/data.bin") == bytes(range(256)) * 4
    with pytest.raises(TransportExecError, match="NameError"):
        transport.exec("undefined_name")


@pytest.mark.parametrize("code", ["while True: pass", "import time; time.sleep(100)"])
def test_ctrl_c_interrupts_running_code_in_the_raw_repl(transport, code):
    transport.exec_raw_no_follow(code)
    time.sleep(0.3)
    transport.serial.write(b"\x03")
    out, err = transport.follow(timeout=10)
    assert b"KeyboardInterrupt" in err
    assert transport.eval("'alive'") == "alive"  # the REPL is usable afterwards


def test_mpremote_reaches_a_board_stuck_in_main_py(vboard):
    (vboard.dir / "main.py").write_text("import time\nwhile True:\n    time.sleep_ms(5)\n")
    vboard.control.power_cycle()
    r = mpremote(vboard.port, "exec", "print('got in')")
    assert r.returncode == 0 and r.stdout.strip() == "got in"


def test_ctrl_c_stops_main_py_in_the_friendly_repl(start_vboard):
    vb = start_vboard({"main.py": "import time\nprint('main-loop')\nwhile True:\n"
                                  "    time.sleep_ms(5)\n"})
    # The board is up once its ROM runs, before main.py: a ^C sent then would stop
    # main.py before its first line (a queued ^C interrupts user code at once), so
    # wait until the loop runs (the log keeps what it printed while nobody listened).
    wait_for(lambda: "main-loop" in vb.control.console_log(), what="main.py's loop")
    with serial.Serial(vb.port, exclusive=True) as ser:
        ser.write(b"\x03")
        out = read_until(ser, b">>> ")
    assert b"KeyboardInterrupt" in out
    assert re.search(rb'File "main\.py", line [34], in <module>', out), out[-300:]


def test_friendly_repl_echoes_and_prints_with_crlf(vboard):
    with serial.Serial(vboard.port, exclusive=True) as ser:
        sync_friendly(ser)
        ser.write(b"6*7\r")
        assert read_until(ser, b">>> ") == b"6*7\r\n42\r\n>>> "
        ser.write(b"for i in range(2):\r")
        read_until(ser, b"... ")
        ser.write(b"    print('n', i)\r\r")
        assert read_until(ser, b">>> ").endswith(b"n 0\r\nn 1\r\n>>> ")


def test_a_second_opener_is_refused_while_the_port_is_held(vboard):
    with serial.Serial(vboard.port, exclusive=True):
        with pytest.raises(serial.SerialException):
            serial.Serial(vboard.port, exclusive=True)
        r = mpremote(vboard.port, "exec", "print(1)", timeout=10)
        assert r.returncode != 0 and "failed to access" in r.stdout + r.stderr


def test_output_while_nobody_listens_is_dropped_but_logged(vboard):
    (vboard.dir / "main.py").write_text("print('early-bird')\n")
    vboard.control.power_cycle()
    wait_for(lambda: "early-bird" in vboard.control.console_log(), what="main.py output")
    with serial.Serial(vboard.port, exclusive=True) as ser:
        ser.write(b"\r")
        got = read_until(ser, b">>> ")
    assert b"early-bird" not in got
    assert "early-bird" in (vboard.dir / ".vboard" / "console.log").read_text()


def test_a_slow_reader_loses_no_output(transport):
    # ~200 KB, far more than the pty buffers: the board must wait for the host
    out = transport.exec("for i in range(2000):\n    print('%04d' % i + 'x' * 95)")
    lines = out.split(b"\r\n")[:-1]
    assert len(lines) == 2000
    assert all(ln == b"%04d" % i + b"x" * 95 for i, ln in enumerate(lines))


def test_sigterm_unplugs_the_board(tmp_path):
    from hil_tests.vboard import VirtualBoard

    vb = VirtualBoard(tmp_path / "b").start()
    pid = vb.control.state()["pid"]
    assert vb.stop() == 0
    with pytest.raises(ProcessLookupError):
        for _ in range(100):  # the VM may take a moment to be reaped
            os.kill(pid, 0)
            time.sleep(0.01)
    assert not (tmp_path / "b" / ".vboard" / "run.json").exists()
