"""Firmware level, per role: the readings on the broker are plausible for the board's world.

On a virtual board the world is the kind's `virtual` section in boards.yaml,
so the values are known: a 2.0 m echo, a 3.9 V battery, a boat moored at
Can Tho, a truck driving east at 8 m/s. On an attached board only physical
ranges and the relations between values can be checked.
"""

from __future__ import annotations

import math

import cbor2
import pytest

from hil_tests.kind_world import battery_volts, gps_sensor
from hil_tests.node_config import HIL_ZONE

WAIT_S = 30
M_PER_DEG = 111_320.0


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    dx = (lon2 - lon1) * M_PER_DEG * math.cos(math.radians(lat1))
    return math.hypot((lat2 - lat1) * M_PER_DEG, dx)


def _virtual_value(kind, sensor: str, key: str):
    return kind.virtual.sensors[sensor][key]


def _status_battery_ok(node, virtual: bool) -> None:
    st = node.watch.wait(lambda w: w.online_statuses(), WAIT_S, "an online status")[0]
    if virtual:
        assert st["batt"] == pytest.approx(battery_volts(node.kind), abs=0.05)
    else:
        assert st["batt"] > 0


@pytest.mark.role("water_level")
def test_water_level_readings_follow_the_echo_and_the_datum(deployed_board, hil_slot):
    node = deployed_board
    ups = node.watch.wait(lambda w: len(w.unique()) >= 3 and w.unique(), WAIT_S,
                          "three water-level readings")
    wl = node.config["water_level"]
    readings = [u.values() for u in ups.values()]
    for v in readings:
        assert "distance" in v and "level" in v and "battery" in v, v
        assert wl["min_m"] <= v["distance"] <= wl["max_m"]
        assert v["level"] == pytest.approx(wl["datum_m"] - v["distance"], abs=0.002)
    if hil_slot.virtual:
        distance = _virtual_value(node.kind, "level", "distance_m")
        assert readings[-1]["distance"] == pytest.approx(distance, abs=0.01)
        assert readings[-1]["battery"] == pytest.approx(battery_volts(node.kind), abs=0.05)
        # the level is above the alert line: the first reading is the flood alert, an alarm
        assert wl["datum_m"] - distance > wl["alert_m"]
        first = ups[min(ups)]
        assert "flood_alert" in first.events() and first.reading.alarm
        assert not any("flood_alert" in u.events() for k, u in ups.items() if k != min(ups))
    _status_battery_ok(node, hil_slot.virtual)


@pytest.mark.role("boat")
def test_boat_reports_its_position_fix_and_zone(deployed_board, hil_slot):
    node = deployed_board
    ups = node.watch.wait(
        lambda w: [u for u in w.unique().values() if "fix" in u.values()], WAIT_S,
        "a boat position report")
    v = ups[0].values()
    assert v["fix"] is True
    assert -90 <= v["lat"] <= 90 and -180 <= v["lon"] <= 180
    assert 0 <= v["speed"] < 30
    if hil_slot.virtual:
        s = gps_sensor(node.kind)[1]
        assert _metres(s["lat"], s["lon"], v["lat"], v["lon"]) < 5
        sats = [u.values()["sats"] for u in ups if "sats" in u.values()]  # GGA may come later
        assert all(n == 9 for n in sats)
        assert v["zone"] == HIL_ZONE  # the licensed zone the HIL config puts around it
        enter = [u for u in node.watch.unique().values() if "zone_enter" in u.events()]
        assert enter and enter[0].values()["zone"] == HIL_ZONE and not enter[0].reading.alarm
    _status_battery_ok(node, hil_slot.virtual)


@pytest.mark.role("truck")
def test_truck_starts_a_trip_and_reports_a_track_and_odometer(deployed_board, hil_slot):
    node = deployed_board
    def tracks(w):
        found = [u for u in w.unique().values() if "track" in u.values()]
        return found[:2] if len(found) >= 2 else None

    ups = node.watch.wait(tracks, WAIT_S, "two truck track reports")
    starts = [u for u in node.watch.unique().values() if "trip_start" in u.events()]
    assert starts, "no trip_start event"
    first, second = (u.values() for u in ups)
    assert first["ignition"] is True
    assert second["odometer"] >= first["odometer"] >= 0
    # track: [dt0, lat0, lon0, dt1, dlat1, dlon1, ...] in seconds and micro-degrees
    points = cbor2.loads(first["track"])
    assert len(points) % 3 == 0 and len(points) >= 3
    assert all(isinstance(x, int) for x in points)
    lat, lon = points[1] / 1e6, points[2] / 1e6
    assert -90 <= lat <= 90 and -180 <= lon <= 180
    if hil_slot.virtual:
        s = gps_sensor(node.kind)[1]
        assert _metres(s["lat"], s["lon"], lat, lon) < 500  # it drives at 8 m/s from there
        # driving east: every later point is east of the one before
        assert all(points[i] >= 0 for i in range(5, len(points), 3))
        speed = float(s["speed_mps"])
        t1, t2 = ups[0].envelope[5][0][-3], ups[1].envelope[5][0][-3]
        if t2 > t1:
            assert second["odometer"] - first["odometer"] == pytest.approx(
                speed * (t2 - t1), rel=0.5, abs=10)
    _status_battery_ok(node, hil_slot.virtual)
