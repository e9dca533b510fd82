"""Fixtures for the edge agent tests: a second (upstream) broker, nodes and a subscriber."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from edge_helpers import AgentThread, SimNode, Upstream, agent_config
from fleet_sim import FleetSim
from status_watch import StatusWatcher
from stream_helpers import AgentProcess

from hil_tests.mosquitto import Mosquitto


@pytest.fixture
def upstream_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """The IOC's broker: a second real mosquitto."""
    broker = Mosquitto(tmp_path / "upstream-broker")
    with broker:
        yield broker


@pytest.fixture
def nodes() -> Iterator[list[SimNode]]:
    """Append SimNodes here; they are disconnected after the test."""
    made: list[SimNode] = []
    yield made
    for n in made:
        n.close()


@pytest.fixture
def subscribers() -> Iterator[list[Upstream]]:
    made: list[Upstream] = []
    yield made
    for s in made:
        s.close()


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentThread]]:
    """start_agent(local_url, upstream_url, **settings): the agent in a thread, subscribed;
    stopped at teardown even when the test failed."""
    made: list[AgentThread] = []

    def start(local_url: str, upstream_url: str | None, hooks: list[Any] | None = None,
              **settings: Any) -> AgentThread:
        a = AgentThread(agent_config(tmp_path / "data", local_url, upstream_url, **settings),
                        hooks)
        made.append(a)
        return a

    yield start
    for a in made:
        a.stop()


@pytest.fixture
def procs() -> Iterator[list[AgentProcess]]:
    """Append AgentProcesses here; any still running is killed after the test."""
    made: list[AgentProcess] = []
    yield made
    for p in made:
        p.close()


@pytest.fixture
def sims() -> Iterator[list[FleetSim]]:
    """Append FleetSims here; they are closed after the test."""
    made: list[FleetSim] = []
    yield made
    for s in made:
        s.close()


@pytest.fixture
def watchers() -> Iterator[list[StatusWatcher]]:
    """Append StatusWatchers here; they are disconnected after the test."""
    made: list[StatusWatcher] = []
    yield made
    for w in made:
        w.close()
