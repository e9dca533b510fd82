# truck.TruckTracker on a generated garbage-collection round in Can Tho, fed
# through real NMEA text and nmea.parse. Runs on CPython and MicroPython.

import cbor
import nmea
import wire
from gpssim import Sim, flat_m, rmc, val
from truck import TruckTracker, heading_diff

T0 = nmea.to_unix((2024, 3, 1), 0) + 3600  # 08:00 in Can Tho
DEPOT = (10.0300, 105.7700)
C1 = (10.0350, 105.7800)  # collection points
C2 = (10.0380, 105.7700)


def check_pack(t, p):
    assert p[0][wire.BT] <= t
    for r in p[1:]:
        assert wire.BT not in r
    kind = val(p, "event", wire.VS)
    if kind is not None:
        assert p[0][wire.BT] == t and "truck" in wire.EVENTS[kind]
        assert not wire.is_alarm(p)
    assert cbor.loads(wire.envelope("trk-0001", 1, 1, "truck", p))[5] == p


def decode_tracks(packs):
    """All track points of the packs as (t, lat6, lon6), decoded with cbor.loads."""
    pts = []
    for _t, p in packs:
        if p[0].get(wire.N) != "track":
            continue
        bt = p[0][wire.BT]
        a = cbor.loads(p[0][wire.VD])
        assert len(a) % 3 == 0 and a[0] == 0  # the first point is at bt
        tt = bt
        la = lo = 0
        mine = []
        for i in range(0, len(a), 3):
            tt += a[i]
            la += a[i + 1]
            lo += a[i + 2]
            mine.append((tt, la, lo))
        assert wire.track_points(p[0][wire.VD], bt) == mine  # the wire module agrees
        pts.append(mine)
    return pts


def round_trip(**kw):
    """The morning round: depot -> C1 -> C2 -> depot, ignition wired."""
    args = {
        "min_dist_m": 50,
        "max_interval_s": 60,
        "heading_change_deg": 30,
        "stop_min_s": 60,
        "points_per_payload": 10,
        "flush_s": 100000,
    }
    args.update(kw)
    s = Sim(TruckTracker(**args), T0, DEPOT[0], DEPOT[1], step=1, wired=True, keep=True)
    marks = {}
    s.stay(60)  # parked, engine off
    s.ign = True
    marks["on"] = s.t
    s.stay(30)  # engine warming: a 30 s stop, too short to report
    s.go(DEPOT[0], C1[1], 8.0)  # east
    marks["corner"] = s.t
    s.go(C1[0], C1[1], 8.0)  # north
    marks["c1"] = s.t
    s.stay(120)  # collection
    s.go(10.0380, C1[1], 6.0)
    s.stay(20)  # traffic light
    s.go(C2[0], C2[1], 8.0)  # west
    marks["c2"] = s.t
    s.stay(90)  # collection
    s.go(DEPOT[0], DEPOT[1], 8.0)  # south, home
    s.stay(30)
    s.ign = False
    marks["off"] = s.t
    s.stay(30)  # parked again
    return s, marks


def test_round_events_stops_and_odometer():
    s, m = round_trip()
    for t, p in s.packs:
        check_pack(t, p)
    ev = [(t, p[0][wire.VS]) for t, p in s.events()]
    assert [k for t, k in ev] == ["trip_start", "stop", "stop", "trip_end"], ev
    assert ev[0][0] == m["on"] and ev[3][0] == m["off"]
    (t1, s1), (t2, s2) = s.events("stop")
    # the 120 s stop: reported when it drives on (25 m away at 6 m/s: ~4 s later)
    assert 120 <= val(s1, "duration") <= 128
    assert flat_m(val(s1, "lat"), val(s1, "lon"), C1[0], C1[1]) < 10
    assert 90 <= val(s2, "duration") <= 96
    assert flat_m(val(s2, "lat"), val(s2, "lon"), C2[0], C2[1]) < 10
    # odometer: the driven path, parked jitter not counted
    end = s.events("trip_end")[0][1]
    odo = val(end, "odometer")
    assert abs(odo - s.path_m) <= 0.005 * s.path_m + 10, (odo, s.path_m)
    assert val(end, "ignition", wire.VB) is False
    assert val(s.events("trip_start")[0][1], "ignition", wire.VB) is True
    assert s.b.odometer == odo  # nothing added while parked after the trip


def test_jitter_is_not_driven_distance():
    b = TruckTracker(jitter_m=10)
    s = Sim(b, T0, DEPOT[0], DEPOT[1], step=1, wired=True)
    s.ign = True
    s.stay(1800, jitter_m=4)
    assert b.odometer == 0
    # with the filter off the same jitter would have added hundreds of metres
    b2 = TruckTracker(jitter_m=0)
    s2 = Sim(b2, T0, DEPOT[0], DEPOT[1], step=1, wired=True)
    s2.ign = True
    s2.stay(1800, jitter_m=4)
    assert b2.odometer > 1000


def test_track_points_decode_to_the_fixes_and_follow_the_rules():
    s, m = round_trip()
    batches = decode_tracks(s.packs)
    assert batches
    for b in batches[:-1]:
        assert len(b) == 10  # points_per_payload
    assert 1 <= len(batches[-1]) <= 10
    pts = []
    for b in batches:
        pts.extend(b)
    for t, la, lo in pts:
        assert s.fixes[t] == (la, lo)  # a point is a fix, exactly
        assert m["on"] <= t <= m["off"]  # only during the trip
    assert pts[0][0] == m["on"] and pts[-1][0] == m["off"]
    for i in range(1, len(pts)):
        t0, a0, o0 = pts[i - 1]
        t1, a1, o1 = pts[i]
        assert 0 < t1 - t0 <= 60  # max_interval_s
        d = flat_m(a0 / 1e6, o0 / 1e6, a1 / 1e6, o1 / 1e6)
        assert d < 50 + 8.5  # min_dist_m, plus one fix at 8 m/s
    # the corner: a point on the first fix heading north (a 90 degree turn)
    ts = [p[0] for p in pts]
    assert m["corner"] in ts
    # on the straight east leg, between corner-free points, spacing is >= 50 m
    east = [p for p in pts if m["on"] + 31 <= p[0] < m["corner"] - 1]
    assert len(east) >= 15
    for i in range(1, len(east)):
        assert (
            flat_m(east[i - 1][1] / 1e6, east[i - 1][2] / 1e6, east[i][1] / 1e6, east[i][2] / 1e6)
            >= 50
        )
    # during the 120 s collection stop, points only every max_interval_s
    # (the course is random noise at 0.1 kn and must not add points)
    still = [t for t in ts if m["c1"] + 5 <= t < m["c1"] + 120]
    assert 1 <= len(still) <= 2
    # compact: small deltas take one to three bytes each
    for _t, p in s.packs:
        if p[0].get(wire.N) == "track":
            n = len(cbor.loads(p[0][wire.VD]))
            assert len(p[0][wire.VD]) <= 2 + 3 * n + 8


def test_heading_changes_add_points_only_when_fast():
    b = TruckTracker(
        min_dist_m=1000,
        max_interval_s=3600,
        heading_change_deg=30,
        points_per_payload=64,
        flush_s=100000,
    )
    s = Sim(b, T0, DEPOT[0], DEPOT[1], step=1, wired=True, keep=True)
    s.ign = True
    s.feed(rmc(s.t, s.lat, s.lon))
    # a zigzag at 8 m/s: every leg turns by 90 degrees -> one point per turn
    turns = []
    lat, lon = DEPOT
    for i in range(6):
        turns.append(s.t)
        lat += 0.0005
        lon += 0.0005 if i % 2 else -0.0005
        s.go(lat, lon, 8.0)
    # the same zigzag crawling at 1 m/s (about 2 kn): no heading points
    crawl_start = s.t
    for i in range(6):
        lat += 0.0002
        lon += 0.0002 if i % 2 else -0.0002
        s.go(lat, lon, 1.0)
    s.ign = False
    s.feed(rmc(s.t, s.lat, s.lon))
    pts = []
    for batch in decode_tracks(s.packs):
        pts.extend(batch)
    ts = [p[0] for p in pts]
    for t in turns[1:]:
        assert t in ts, (t, ts)
    assert len([t for t in ts if crawl_start < t < s.t - 1]) == 0
    assert heading_diff(350, 10) == 20 and heading_diff(10, 350) == 20
    assert heading_diff(0, 180) == 180 and heading_diff(90, 90) == 0


def test_trips_from_motion_without_ignition_wiring():
    b = TruckTracker(stop_min_s=60, start_s=10, end_s=300, flush_s=100000)
    s = Sim(b, T0, DEPOT[0], DEPOT[1], step=1)
    s.stay(60)
    s.feed(rmc(s.t, s.lat, s.lon, 6.0, 45.0))  # one speed spike while parked
    s.stay(30)
    assert not s.events()
    t_go = s.t
    s.go(10.0340, 105.7700, 8.0)
    s.stay(120)  # collection
    s.go(10.0340, 105.7740, 8.0)
    t_park = s.t
    s.stay(400)  # parked for longer than end_s
    ev = [(t, p[0][wire.VS]) for t, p in s.events()]
    assert [k for t, k in ev] == ["trip_start", "stop", "trip_end"], ev
    assert ev[0][0] == t_go + 10  # motion sustained start_s
    assert ev[2][0] == t_park + 300  # still for end_s
    assert val(s.events("trip_end")[0][1], "ignition", wire.VB) is None  # not wired
    for t, p in s.packs:
        check_pack(t, p)
    assert abs(b.odometer - s.path_m) <= 0.005 * s.path_m + 10


def test_partial_batches_are_sent_when_old():
    b = TruckTracker(points_per_payload=64, max_interval_s=10, flush_s=60)
    s = Sim(b, T0, DEPOT[0], DEPOT[1], step=1, wired=True)
    s.ign = True
    s.stay(300)
    tracks = [(t, p) for t, p in s.packs if p[0].get(wire.N) == "track"]
    # a batch holds the points of 0..60 s after its first point, sent at 60 s;
    # the next begins with the following point, 10 s later
    assert [t - T0 for t, p in tracks] == [60, 130, 200, 270]
    for t, p in tracks:
        assert t - p[0][wire.BT] == 60
        assert val(p, "odometer", wire.T) == 60  # its time, relative to bt
        assert len(cbor.loads(p[0][wire.VD])) == 3 * 7  # a point every 10 s


def test_fix_loss_once_per_loss():
    b = TruckTracker(lost_after_s=10)
    s = Sim(b, T0, DEPOT[0], DEPOT[1], step=1, wired=True)
    s.ign = True
    s.go(10.0320, 105.7700, 8.0)
    for _ in range(30):
        s.feed(rmc(s.t, s.lat, s.lon, status="V"))
    for _ in range(30):
        s.feed(None)
    lost = s.events("fix_lost")
    assert len(lost) == 1
    p = lost[0][1]
    assert val(p, "fix", wire.VB) is False and abs(val(p, "lat") - 10.032) < 1e-4
    s.go(10.0340, 105.7700, 8.0)
    for _ in range(20):
        s.feed(None)
    assert len(s.events("fix_lost")) == 2
    # the trip goes on through the losses (ignition stayed on)
    assert len(s.events("trip_start")) == 1 and not s.events("trip_end")
    for t, p in s.packs:
        check_pack(t, p)
