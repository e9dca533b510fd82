"""Fixtures for nodectl against virtual boards and a real mosquitto."""

from __future__ import annotations

import pytest
from provision_env import ProvisionEnv, have_vm


@pytest.fixture
def penv(tmp_path):
    """A bench: boards.yaml with pinned fake images, a site, a broker with ACLs; boards on
    demand with `penv.board(kind)`."""
    if not have_vm():
        pytest.skip("MicroPython unix VM not installed")
    with ProvisionEnv(tmp_path / "bench") as env:
        yield env
