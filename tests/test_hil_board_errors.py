"""The HIL board layer's errors: each is one line naming the port (issue 3, "bad input").

A port that does not exist, a port another program holds, a board that does
not answer the raw REPL, and a board that raises: checked against real
ptys and a real virtual board, not mocks.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import pytest
import serial

from hil_tests.errors import (
    BoardExecError,
    BoardNotResponding,
    HILError,
    PortBusy,
    PortNotFound,
)
from hil_tests.serial_board import SerialBoard
from hil_tests.vboard import VirtualBoard


@pytest.fixture
def vboard(tmp_path):
    with VirtualBoard(tmp_path / "board") as vb:
        yield vb


def _one_line(e: Exception) -> str:
    text = str(e)
    assert "\n" not in text, f"not one line: {text!r}"
    return text


def test_a_port_that_does_not_exist_is_port_not_found():
    with pytest.raises(PortNotFound) as info:
        SerialBoard("/dev/ttyHIL-does-not-exist")
    assert _one_line(info.value).startswith("/dev/ttyHIL-does-not-exist: no such serial port")


def test_a_port_another_program_holds_is_port_busy(vboard):
    with serial.Serial(vboard.port, exclusive=True):  # a serial monitor left open
        with pytest.raises(PortBusy) as info:
            SerialBoard(vboard.port)
    assert _one_line(info.value).startswith(f"{vboard.port}: busy")
    with SerialBoard(vboard.port) as board:  # released: usable again
        assert board.eval("1 + 1") == 2


def test_a_second_harness_on_the_same_board_is_refused(vboard):
    with SerialBoard(vboard.port):
        with pytest.raises(PortBusy):
            SerialBoard(vboard.port)


def test_a_board_that_never_answers_is_board_not_responding_within_the_timeout():
    master, slave = os.openpty()  # nobody reads the other end: a dead board
    try:
        port = os.ttyname(slave)
        t0 = time.monotonic()
        with pytest.raises(BoardNotResponding) as info:
            SerialBoard(port, connect_timeout=1.0)
        waited = time.monotonic() - t0
    finally:
        os.close(master)
        os.close(slave)
    text = _one_line(info.value)
    assert text.startswith(f"{port}: no answer to the raw REPL")
    assert waited < 10, "the connect timeout bounds the wait"


def test_a_board_that_prints_garbage_says_what_it_printed():
    master, slave = os.openpty()
    stop = threading.Event()

    def chatter():  # another firmware logging away, deaf to Ctrl-A
        while not stop.wait(0.1):
            os.write(master, b"garbage from another firmware\r\n")
            with contextlib.suppress(BlockingIOError, OSError):
                os.set_blocking(master, False)
                os.read(master, 4096)  # what the harness sent: ignored

    t = threading.Thread(target=chatter, daemon=True)
    t.start()
    try:
        with pytest.raises(BoardNotResponding) as info:
            SerialBoard(os.ttyname(slave), connect_timeout=1.0)
    finally:
        stop.set()
        t.join()
        os.close(master)
        os.close(slave)
    assert "garbage from another firmware" in _one_line(info.value)


def test_a_board_exception_carries_the_traceback_and_names_the_port(vboard):
    with SerialBoard(vboard.port) as board:
        with pytest.raises(BoardExecError) as info:
            board.exec("import json\njson.loads('{')")
        assert info.value.port == vboard.port
        assert str(info.value).splitlines()[0] == f"{vboard.port}: board raised ValueError: " \
            f"{info.value.traceback.strip().splitlines()[-1].split(': ', 1)[1]}"
        assert "Traceback" in info.value.traceback and 'File "<stdin>"' in info.value.traceback
        assert board.eval("'alive'") == "alive"


def test_a_vanished_board_fails_with_the_port_named(vboard):
    board = SerialBoard(vboard.port)
    try:
        vboard.stop()  # unplugged: the pty goes away
        with pytest.raises(HILError) as info:
            board.exec("print(1)", timeout=2)
        assert vboard.port in _one_line(info.value)
    finally:
        board.close()
