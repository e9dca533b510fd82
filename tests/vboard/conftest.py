"""Fixtures for the virtual-board tests: a `vboard run` per test, and mpremote as a CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil_tests.vboard import VirtualBoard
from hil_tests.vboard.errors import VBoardError
from hil_tests.vboard.vm import find_micropython


def _have_vm() -> bool:
    try:
        return Path(find_micropython()).exists()
    except VBoardError:
        return False


@pytest.fixture
def vboard(tmp_path):
    """A running virtual ESP32 whose flash is tmp_path/board."""
    if not _have_vm():
        pytest.skip("MicroPython unix VM not installed")
    with VirtualBoard(tmp_path / "board") as vb:
        yield vb


@pytest.fixture
def start_vboard(tmp_path):
    """Start a board whose flash already holds `files` ({name: text}) at power-on.

    (Files written after the `vboard` fixture started may or may not be seen by
    the first boot: the board is "up" as soon as its ROM runs, before boot.py.)
    """
    if not _have_vm():
        pytest.skip("MicroPython unix VM not installed")
    boards: list[VirtualBoard] = []

    def start(files: dict[str, str] | None = None) -> VirtualBoard:
        root = tmp_path / f"board{len(boards)}"
        root.mkdir()
        for name, text in (files or {}).items():
            (root / name).write_text(text)
        boards.append(VirtualBoard(root).start())
        return boards[-1]

    yield start
    for vb in boards:
        vb.stop()
