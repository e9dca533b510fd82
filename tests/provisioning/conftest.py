"""Fixtures for nodectl against virtual boards and a real mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest
from provision_env import ProvisionEnv

from hil_tests.vboard.errors import VBoardError
from hil_tests.vboard.vm import find_micropython


def _have_vm() -> bool:
    try:
        return Path(find_micropython()).exists()
    except VBoardError:
        return False


@pytest.fixture
def penv(tmp_path):
    """A bench: boards.yaml with pinned fake images, a site, a broker with ACLs; boards on
    demand with `penv.board(kind)`."""
    if not _have_vm():
        pytest.skip("MicroPython unix VM not installed")
    with ProvisionEnv(tmp_path / "bench") as env:
        yield env
