"""Firmware level, per role, on a virtual board: the shipped scenarios' events reach the broker.

Each test holds its scenario at t = 0 (speed 0) while the firmware is deployed
and boots, until the node is online, then plays it faster than real time
through the relay's scenario engine (hil_tests/scenarios/*.yaml,
vboard/scenario.py): a flood passes the alert line and recedes, a boat crosses
its licensed zone, a truck makes a round between ignition on and off.
Attached boards skip: their world is real.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hil_tests.deploy import runtime_present
from hil_tests.deployed import DeployedNode, NotDeployable, deploy_node
from hil_tests.plugin import NO_RUNTIME, HilBroker
from hil_tests.target import Target
from hil_tests.vboard.scenario import interp, load

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
WAIT_S = 20
BOOT_S = 30  # deploy to online, with room for a slow bench
FLOOD_SPEED = 40  # 600 s of flood in 15 s; readings every 2 s (1 s in alert) of wall time
BOAT_SPEED = 30  # the zone is entered after ~37 s and left after ~120 s of the track
TRUCK_SPEED = 40  # ignition on at 10 s, off at 390 s


Play = Callable[[str, float], tuple[DeployedNode, dict[str, Any], float]]


@pytest.fixture
def play(hil_target: Target, hil_broker: HilBroker) -> Iterator[Play]:
    """play(name, speed): deploy the node with scenario `name` held at its start, then run
    it; returns the node, the scenario and the monotonic time it started."""
    if not runtime_present():
        pytest.skip(NO_RUNTIME)
    slot = hil_target.slot
    if hil_target.vboard is None or hil_target.vboard.control is None or slot.kind is None:
        pytest.skip(f"{slot.describe()}: scenarios play on virtual boards only")
    ctl = hil_target.vboard.control
    kind = slot.kind
    nodes: list[DeployedNode] = []

    def start(name: str, speed: float) -> tuple[DeployedNode, dict[str, Any], float]:
        data = yaml.safe_load((SCENARIOS / name).read_text())
        assert data["board"] == kind.name, f"{name} is written for {data['board']}"
        ctl.load_scenario(data, speed=0, board=kind.name, name=name)  # held at t = 0
        try:
            node = deploy_node(hil_target, kind, hil_broker.node, hil_broker.host,
                               hil_broker.port)
        except NotDeployable as e:
            pytest.skip(str(e))
        nodes.append(node)
        # The node reads its sensors from its first loop on, but a cellular node's loop
        # waits for the dial-up; a scenario running meanwhile fills the GPS UART faster
        # than it is read (its 1 KiB buffer drops fixes): play once the node is online.
        node.watch.wait(lambda w: w.online_statuses(), BOOT_S, "the node online")
        t0 = time.monotonic()
        ctl.load_scenario(data, speed=speed, board=kind.name, name=name)
        return node, data, t0

    yield start
    for n in nodes:
        n.watch.stop()


def _events(node: DeployedNode, kind: str) -> list[Any]:
    return [u for u in node.watch.unique().values() if kind in u.events()]


@pytest.mark.role("water_level")
def test_flood_scenario_raises_the_flood_alert_when_the_level_passes_the_line(play):
    node, sc, t0 = play("flood.yaml", FLOOD_SPEED)
    wl = node.config["water_level"]
    clear = node.watch.wait(lambda w: _events(node, "flood_clear"), WAIT_S,
                            "flood_clear after the flood peak")[0]
    ups = sorted(node.watch.unique().values(), key=lambda u: u.key)
    levels = [(u, u.values()["level"]) for u in ups if "level" in u.values()]
    assert len(levels) >= 6, f"only {len(levels)} readings during the flood"

    # every reading is the profile's level at a moment between its base time (the board's
    # clock, whole seconds, read before the 5 pings) and 1.5 s later or its arrival
    wall0 = time.time() - (time.monotonic() - t0)  # the scenario's start, on the wall clock
    for u, level in levels:
        bt = u.pack[0][-3]
        end = min(bt + 1.5, u.at - t0 + wall0)
        ts = [(bt + k / 10 - wall0) * FLOOD_SPEED for k in range(16) if bt + k / 10 <= end]
        profile = [(a, b) for a, b in sc["level"]]
        around = [interp(profile, max(t, 0.0)) for t in ts] or [profile[0][1]]
        assert min(around) - 0.01 <= level <= max(around) + 0.01, (level, around)

    alerts = _events(node, "flood_alert")
    assert len(alerts) == 1 and alerts[0].reading.alarm and not clear.reading.alarm
    i = next(k for k, (u, _) in enumerate(levels) if u is alerts[0])
    assert levels[i][1] >= wl["alert_m"] > levels[i - 1][1]  # the first reading past the line
    j = next(k for k, (u, _) in enumerate(levels) if u is clear)
    assert levels[j][1] < wl["alert_m"] - wl["hyst_m"] <= levels[j - 1][1]
    assert max(lv for _, lv in levels) > 2.2  # it saw the peak (2.4 m) coming


@pytest.mark.role("boat")
def test_boat_leaving_its_licensed_zone_raises_the_zone_exit_alarm(play):
    node, sc, t0 = play("boat_zone.yaml", BOAT_SPEED)
    exit_ = node.watch.wait(lambda w: _events(node, "zone_exit"), WAIT_S,
                            "zone_exit as the boat leaves hau-07")[0]
    enter = _events(node, "zone_enter")
    assert enter and enter[0].values()["zone"] == "hau-07" and not enter[0].reading.alarm
    assert enter[0].key < exit_.key
    v = exit_.values()
    assert exit_.reading.alarm and v["zone"] == ""
    # northbound along lon 105.744, the zone's edges cross it at lat 10.051129 (in) and
    # 10.054824 (out): each event comes from the first fix past its edge (fixes 5 m apart)
    # or a later one (within about 200 m)
    assert v["lon"] == pytest.approx(105.744, abs=1e-5)
    assert 10.054824 <= v["lat"] <= 10.054824 + 0.002
    assert 10.051129 <= enter[0].values()["lat"] <= 10.051129 + 0.002
    took = exit_.at - t0
    assert took < 130 / BOAT_SPEED + 3, f"zone_exit {took:.1f} s after the start"


@pytest.mark.role("truck")
def test_truck_round_starts_a_trip_on_ignition_and_ends_it_on_ignition_off(play):
    node, sc, t0 = play("truck_round.yaml", TRUCK_SPEED)
    end = node.watch.wait(lambda w: _events(node, "trip_end"), WAIT_S,
                          "trip_end after the ignition goes off")[0]
    starts = _events(node, "trip_start")
    assert len(starts) == 1 and starts[0].key < end.key
    assert starts[0].values()["ignition"] is True and end.values()["ignition"] is False
    on, off = load(SCENARIOS / "truck_round.yaml").ignition[0][0]  # (YAML reads `on:` as true)
    assert starts[0].at - t0 >= on / TRUCK_SPEED  # not before the ignition came on
    assert end.at - t0 >= off / TRUCK_SPEED
    tracks = [u for u in node.watch.unique().values()
              if "track" in u.values() and starts[0].key < u.key <= end.key]
    assert tracks, "no track points during the trip"
    # the round drove about 1.4 km: the odometer counted most of it
    assert end.values()["odometer"] > 1000
    depot = sc["gps"]["track"]["waypoints"][0]
    assert end.values()["lat"] == pytest.approx(depot[0], abs=0.001)
    assert end.values()["lon"] == pytest.approx(depot[1], abs=0.001)
