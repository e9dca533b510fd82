"""Shared fixtures: real processes on free loopback ports."""

from __future__ import annotations

import pytest

from hil_tests.mosquitto import Mosquitto


@pytest.fixture
def mosquitto(tmp_path):
    """A real mosquitto broker on 127.0.0.1, anonymous access, persistence on."""
    with Mosquitto(tmp_path / "broker") as broker:
        yield broker
