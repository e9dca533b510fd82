"""Board level: the REPL and the flash, on every bound board (no firmware needed)."""

from __future__ import annotations

import hashlib
import os

import pytest

from hil_tests.errors import BoardExecError


def test_board_runs_code_and_evaluates_expressions(board):
    assert board.exec("print(6 * 7)").strip() == "42"
    assert board.eval("[i * i for i in range(4)]") == [0, 1, 4, 9]
    assert board.eval("__import__('sys').platform") == "esp32"


def test_a_board_exception_carries_the_boards_traceback(board):
    with pytest.raises(BoardExecError) as info:
        board.exec("def f():\n    return 1 / 0\nf()")
    assert info.value.port == board.port
    assert "ZeroDivisionError" in info.value.traceback
    assert ", line 2, in f" in info.value.traceback  # the board's own frames
    assert board.eval("'still usable'") == "still usable"


def test_unique_id_is_a_six_byte_espressif_mac(board):
    mac = board.unique_id()
    assert len(mac) == 12 and int(mac, 16) >= 0
    assert mac == board.unique_id()  # stable


def test_files_round_trip_with_matching_hash(board):
    data = os.urandom(20 * 1024)
    board.makedirs("/hil/tmp")
    board.put(data, "/hil/tmp/blob.bin")
    try:
        assert board.get("/hil/tmp/blob.bin") == data
        assert board.sha256("/hil/tmp/blob.bin") == hashlib.sha256(data).hexdigest()
        entries = {e.name: e for e in board.ls("/hil/tmp")}
        assert entries["blob.bin"].size == len(data) and not entries["blob.bin"].is_dir
        assert any(e.name == "tmp" and e.is_dir for e in board.ls("/hil"))
    finally:
        board.remove("/hil/tmp/blob.bin")
    assert "blob.bin" not in {e.name for e in board.ls("/hil/tmp")}


def test_files_in_lib_are_importable_after_a_soft_reset(board):
    board.makedirs("/lib")
    board.put(b"WORD = 'delta'\n", "/lib/hil_probe.py")
    try:
        board.exec("import hil_probe")
        board.exec("hil_probe.WORD = 'changed'")
        board.soft_reset()  # a fresh heap: the module is imported again from flash
        assert board.eval("__import__('hil_probe').WORD") == "delta"
    finally:
        board.remove("/lib/hil_probe.py")


def test_reading_a_missing_file_is_an_error_naming_the_port_and_path(board):
    from hil_tests.errors import HILError

    with pytest.raises(HILError) as info:
        board.get("/no/such/file.bin")
    assert board.port in str(info.value) and "/no/such/file.bin" in str(info.value)
