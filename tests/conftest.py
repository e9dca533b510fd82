"""Shared fixtures: real processes on free loopback ports."""

from __future__ import annotations

import pytest

# The plugin that runs tests/firmware/test_*.py a second time inside the MicroPython VM.
from micropython_vm import *  # noqa: F401,F403

from hil_tests.mosquitto import Mosquitto


@pytest.fixture
def mosquitto(tmp_path):
    """A real mosquitto broker on 127.0.0.1, anonymous access, persistence on."""
    with Mosquitto(tmp_path / "broker") as broker:
        yield broker
