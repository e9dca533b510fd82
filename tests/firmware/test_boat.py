# boat.BoatTracker on generated tracks through a licensed sand-mining zone on
# the Hau river at Can Tho, fed through real NMEA text and nmea.parse.
# Runs on CPython and MicroPython.

import cbor
import nmea
import wire
from boat import BoatTracker
from geofence import Zone
from gpssim import M_LAT, Sim, rmc, val

VN = 7 * 3600  # Vietnam, UTC+7
DAY = nmea.to_unix((2024, 3, 1), 0)

# The licensed zone: a rectangle aligned on lat/lon, so the test can tell
# inside from outside without geofence.
Z_LAT = (10.040, 10.050)
Z_LON = (105.780, 105.800)
ZONE = Zone(
    "hau-07",
    [(Z_LAT[0], Z_LON[0]), (Z_LAT[0], Z_LON[1]), (Z_LAT[1], Z_LON[1]), (Z_LAT[1], Z_LON[0])],
    [(6 * 60, 18 * 60)],
)


def local(h, m=0):
    """Unix time of hh:mm local time on 2024-03-01 in Can Tho."""
    return DAY + (h * 60 + m) * 60 - VN


def inside(lat, lon):
    return Z_LAT[0] <= lat <= Z_LAT[1] and Z_LON[0] <= lon <= Z_LON[1]


def check_pack(t, p):
    # The wire contract: bt on the first record, known names, an envelope that encodes.
    assert p[0][wire.BT] == t
    for r in p[1:]:
        assert wire.BT not in r
    if val(p, "event", wire.VS) is not None:
        assert "boat" in wire.EVENTS[val(p, "event", wire.VS)]
    env = wire.envelope("boat-0001", 1, 1, "boat", p)
    assert cbor.loads(env)[5] == p


def test_zone_enter_exit_and_one_dwell_per_episode():
    b = BoatTracker([ZONE], dwell_s=600, dwell_radius_m=50, tz_offset_s=VN, report_interval_s=60)
    s = Sim(b, local(8), 10.030, 105.790)
    s.go(10.045, 105.790, 3.0)  # upstream into the zone
    s.stay(900)  # dredging inside: a dwell, not an alarm
    s.go(10.045, 105.812, 3.0)  # out through the eastern edge
    s.stay(1800)  # dredging outside: a dwell alarm, once
    s.go(10.045, 105.790, 3.0)  # back in
    for t, p in s.packs:
        check_pack(t, p)
    kinds = [p[0][wire.VS] for t, p in s.events()]
    assert kinds == ["zone_enter", "dwell", "zone_exit", "dwell", "zone_enter"], kinds

    (t_in, enter), (t_out, exit_), (t_back, _) = (
        s.events("zone_enter")[0],
        s.events("zone_exit")[0],
        s.events("zone_enter")[1],
    )
    # at once: the first fix inside / outside, not later
    fixes = [(t, val(p, "lat"), val(p, "lon")) for t, p in s.packs if val(p, "lat") is not None]
    assert inside(val(enter, "lat"), val(enter, "lon")) and val(enter, "zone", wire.VS) == "hau-07"
    assert not inside(val(exit_, "lat"), val(exit_, "lon"))
    assert val(exit_, "zone", wire.VS) == ""
    assert not wire.is_alarm(enter) and wire.is_alarm(exit_)
    assert t_in < t_out < t_back
    for t, lat, lon in fixes:  # every report before entering was outside
        if t < t_in:
            assert not inside(lat, lon)

    (t1, d1), (t2, d2) = s.events("dwell")
    # inside: not an alarm; duration just over dwell_s; position where the still
    # spell began (within the radius of the stop: the last approach fixes count)
    assert val(d1, "zone", wire.VS) == "hau-07" and not wire.is_alarm(d1)
    assert 600 < val(d1, "duration") <= 600 + s.step
    assert abs(val(d1, "lat") - 10.045) * M_LAT < 50 and abs(val(d1, "lon") - 105.790) < 1e-4
    # outside: alarm
    assert val(d2, "zone", wire.VS) == "" and wire.is_alarm(d2)
    assert 600 < val(d2, "duration") <= 600 + s.step
    assert abs(val(d2, "lon") - 105.812) * M_LAT < 50 and t2 > t_out


def test_slow_drift_beyond_the_radius_is_a_new_episode():
    b = BoatTracker([ZONE], dwell_s=300, dwell_radius_m=30, tz_offset_s=VN)
    s = Sim(b, local(9), 10.045, 105.790)
    s.stay(400)
    s.go(10.045, 105.7905, 0.2)  # ~55 m at 0.2 m/s: out of the first radius
    s.stay(400)
    d = s.events("dwell")
    assert len(d) == 2
    assert abs(val(d[1][1], "lon") - val(d[0][1], "lon")) > 30 / M_LAT


def test_off_hours_when_moving_or_dwelling_once_per_span():
    b = BoatTracker([ZONE], dwell_s=600, dwell_radius_m=50, tz_offset_s=VN, report_interval_s=300)
    s = Sim(b, local(17, 40), 10.045, 105.790)
    s.stay(900)  # dwell detected at 17:50, in hours: no off_hours yet
    assert s.events("dwell") and not s.events("off_hours")
    s.stay(900)  # 18:00 passes while dredging: off_hours at the first fix after
    oh = s.events("off_hours")
    assert len(oh) == 1 and oh[0][0] == local(18)
    assert wire.is_alarm(oh[0][1]) and val(oh[0][1], "zone", wire.VS) == "hau-07"
    s.go(10.035, 105.790, 3.0)  # sails away at night: the same span, no second alarm
    assert len(s.events("off_hours")) == 1
    # next morning it works in hours: nothing; that evening it moves again: a new alarm
    s.t = local(30)  # 06:00 next day
    s.go(10.045, 105.790, 3.0)
    assert len(s.events("off_hours")) == 1
    s.t = local(24 + 19)
    s.go(10.046, 105.795, 3.0)
    oh = s.events("off_hours")
    assert len(oh) == 2 and oh[1][0] == local(24 + 19)
    assert val(oh[1][1], "speed") > 2.9  # m/s on the wire


def test_moving_at_night_outside_the_zone_is_off_hours_too():
    b = BoatTracker([ZONE], dwell_s=600, dwell_radius_m=50, tz_offset_s=VN)
    s = Sim(b, local(2), 10.020, 105.790)
    s.stay(60, jitter_m=1)  # still, not yet a dwell: no alarm
    assert not s.events("off_hours")
    s.go(10.025, 105.790, 2.0)
    oh = s.events("off_hours")
    assert len(oh) == 1 and val(oh[0][1], "zone", wire.VS) == ""
    # a zone without hours limits licenses the night
    b2 = BoatTracker([Zone("any", [(10, 105), (10, 106), (11, 106)], None), ZONE], tz_offset_s=VN)
    s2 = Sim(b2, local(2), 10.020, 105.790)
    s2.go(10.025, 105.790, 2.0)
    assert not s2.events("off_hours")


def test_fix_loss_is_flagged_once_per_loss():
    b = BoatTracker(
        [ZONE],
        dwell_s=600,
        dwell_radius_m=50,
        tz_offset_s=VN,
        report_interval_s=60,
        lost_after_s=10,
    )
    s = Sim(b, local(10), 10.045, 105.790, step=1)
    s.stay(30)
    for _ in range(40):  # the receiver says V, then goes silent
        s.feed(rmc(s.t, 10.045, 105.790, status="V"))
    for _ in range(40):
        s.feed(None)
    lost = s.events("fix_lost")
    assert len(lost) == 1
    t_last = local(10) + 29
    assert lost[0][0] == t_last + 10
    assert val(lost[0][1], "fix", wire.VB) is False
    assert abs(val(lost[0][1], "lat") - 10.045) < 1e-4  # where it was last seen
    # reports during the loss say fix = false and carry no position
    during = [p for t, p in s.packs if t > t_last + 10 and val(p, "event", wire.VS) is None]
    assert during and all(val(p, "fix", wire.VB) is False and val(p, "lat") is None for p in during)
    s.stay(20)  # back
    for _ in range(20):
        s.feed(None)
    assert len(s.events("fix_lost")) == 2
    # a GGA alone (no RMC) is not a fix either, and a short gap is no loss
    s.stay(20)
    for _ in range(5):
        s.feed({"type": "GGA", "sats": 4})
    s.stay(20)
    assert len(s.events("fix_lost")) == 2
    for t, p in s.packs:
        check_pack(t, p)


def test_reports_every_interval_with_position_zone_and_sats():
    b = BoatTracker([ZONE], dwell_s=600, dwell_radius_m=50, tz_offset_s=VN, report_interval_s=60)
    s = Sim(b, local(7), 10.030, 105.790, step=1)
    s.feed({"type": "GGA", "sats": 9, "quality": 1})
    s.go(10.045, 105.790, 3.0)
    reps = [(t, p) for t, p in s.packs if val(p, "event", wire.VS) is None]
    times = [t for t, p in reps]
    assert times[0] == local(7)  # at once on the first call
    assert [times[i + 1] - times[i] for i in range(len(times) - 1)] == [60] * (len(times) - 1)
    assert len(times) == (s.t - 1 - local(7)) // 60 + 1
    for t, p in reps[1:]:
        check_pack(t, p)
        assert val(p, "fix", wire.VB) is True and val(p, "sats") == 9
        assert abs(val(p, "speed") - 3.0) < 0.01 and val(p, "course", wire.V) == 0.0
        assert val(p, "zone", wire.VS) == ("hau-07" if inside(val(p, "lat"), val(p, "lon")) else "")
    assert val(reps[0][1], "fix", wire.VB) is False  # the GGA came before any RMC


def test_start_inside_reports_enter_and_adjacent_zones_do_not_breach():
    west = Zone(
        "hau-06", [(10.040, 105.760), (10.040, 105.780), (10.050, 105.780), (10.050, 105.760)], None
    )
    b = BoatTracker([west, ZONE], dwell_s=600, dwell_radius_m=50, tz_offset_s=VN)
    s = Sim(b, local(9), 10.045, 105.770)
    s.feed(rmc(s.t, 10.045, 105.770))
    assert [val(p, "zone", wire.VS) for t, p in s.events()] == ["hau-06"]
    s.go(10.045, 105.790, 3.0)  # across the shared edge into hau-07
    kinds = [(p[0][wire.VS], val(p, "zone", wire.VS)) for t, p in s.events()]
    assert kinds == [("zone_enter", "hau-06"), ("zone_enter", "hau-07")]
    # starting outside: no event until it enters
    b2 = BoatTracker([ZONE], tz_offset_s=VN)
    s2 = Sim(b2, local(9), 10.0, 105.790)
    s2.stay(60)
    assert not s2.events()
