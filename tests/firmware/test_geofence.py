# geofence: point in polygon (edges, vertices, concave shapes), distances,
# licensed hours. Runs on CPython and MicroPython.

import math

import geofence
from fwtest import lcg
from nmea import to_unix

SQUARE = [(0, 0), (0, 10), (10, 10), (10, 0)]  # (lat, lon)

# A "C" open to the east: the notch lat 3..7, lon 3..10 is outside.
C_SHAPE = [(0, 0), (0, 10), (3, 10), (3, 3), (7, 3), (7, 10), (10, 10), (10, 0)]


def test_square_inside_outside_and_boundary():
    for poly in (SQUARE, SQUARE + [SQUARE[0]]):  # closing vertex optional
        assert geofence.contains(poly, 5, 5)
        assert not geofence.contains(poly, 11, 5)
        assert not geofence.contains(poly, 5, -1)
        assert not geofence.contains(poly, 5, 10.5)
        assert not geofence.contains(poly, -0.5, 5)
        # boundary is inside: each edge, each vertex
        for lat, lon in ((0, 5), (10, 5), (5, 0), (5, 10), (0, 0), (0, 10), (10, 10), (10, 0)):
            assert geofence.contains(poly, lat, lon), (lat, lon)
        # just outside each edge
        for lat, lon in ((-1e-9, 5), (10 + 1e-9, 5), (5, -1e-9), (5, 10 + 1e-9)):
            assert not geofence.contains(poly, lat, lon), (lat, lon)


def test_concave_polygon_and_rays_through_vertices():
    assert geofence.contains(C_SHAPE, 1, 5)  # lower arm
    assert geofence.contains(C_SHAPE, 9, 9)  # upper arm
    assert geofence.contains(C_SHAPE, 5, 1)  # spine
    assert not geofence.contains(C_SHAPE, 5, 5)  # in the notch
    assert not geofence.contains(C_SHAPE, 5, 9.99)
    # rays east along lat 3 and 7 run along the notch's edges and through vertices
    assert geofence.contains(C_SHAPE, 3, 1) and geofence.contains(C_SHAPE, 7, 1)
    assert geofence.contains(C_SHAPE, 3, 5) and geofence.contains(C_SHAPE, 7, 5)  # on edges
    assert not geofence.contains(C_SHAPE, 3, 11) and not geofence.contains(C_SHAPE, 7, -1)
    # a diamond: rays through its east and west vertices
    diamond = [(0, 5), (5, 10), (10, 5), (5, 0)]
    assert geofence.contains(diamond, 5, 5) and geofence.contains(diamond, 5, 0)
    assert not geofence.contains(diamond, 5, -1) and not geofence.contains(diamond, 5, 11)
    assert geofence.contains(diamond, 2.5, 7.5)  # on a sloped edge
    assert not geofence.contains(diamond, 1, 1)
    # degenerate
    assert not geofence.contains([(0, 0), (1, 1)], 0, 0)
    assert not geofence.contains([], 0, 0)


def _on_segment(a, b, p):
    return (
        (b[1] - a[1]) * (p[0] - a[0]) == (p[1] - a[1]) * (b[0] - a[0])
        and min(a[0], b[0]) <= p[0] <= max(a[0], b[0])
        and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])
    )


def _winding(poly, lat, lon):
    # Independent reference: total turning angle seen from the point.
    total = 0.0
    n = len(poly)
    for i in range(n):
        a = poly[i]
        b = poly[(i + 1) % n]
        a1 = math.atan2(a[0] - lat, a[1] - lon)
        a2 = math.atan2(b[0] - lat, b[1] - lon)
        d = a2 - a1
        while d > math.pi:
            d -= 2 * math.pi
        while d < -math.pi:
            d += 2 * math.pi
        total += d
    return abs(total) > math.pi


def test_random_star_polygons_agree_with_a_winding_reference():
    g = lcg(11)
    for _ in range(12):
        # a concave star of 5..12 integer vertices around (50, 50)
        n = 5 + next(g) % 8
        poly = []
        for i in range(n):
            r = 10 + next(g) % 40
            a = 2 * math.pi * i / n
            poly.append((50 + int(r * math.sin(a)), 50 + int(r * math.cos(a))))
        for lat in range(5, 96, 3):
            for lon in range(5, 96, 3):
                got = geofence.contains(poly, lat, lon)
                edge = False
                for i in range(n):
                    if _on_segment(poly[i], poly[(i + 1) % n], (lat, lon)):
                        edge = True
                want = True if edge else _winding(poly, lat, lon)
                assert got == want, (poly, lat, lon)
                # the same in floats, as the config gives them
                fp = [(a * 1.0, b * 1.0) for a, b in poly]
                assert geofence.contains(fp, lat * 1.0, lon * 1.0) == got


def test_zone_uses_micro_degrees_and_a_bbox():
    poly = [[10.03, 105.77], [10.03, 105.79], [10.05, 105.79], [10.05, 105.77]]  # as config
    z = geofence.Zone("hau-1", poly, [[360, 1080]])
    assert z.bbox6 == (10030000, 105770000, 10050000, 105790000)
    assert z.contains(10.04, 105.78)
    assert z.contains(10.03, 105.78)  # on the southern edge, exactly in micro-degrees
    for lat, lon in ((10.05, 105.78), (10.04, 105.79), (10.05, 105.79), (10.03, 105.77)):
        assert z.contains(lat, lon), (lat, lon)  # the bbox precheck keeps its edges
    assert not z.contains(10.029999, 105.78)
    assert not z.contains6(-10040000, 105780000)
    assert not z.contains6(10040000, -105780000)
    assert geofence.bbox(C_SHAPE) == (0, 0, 10, 10)


def test_distance_known_values():
    q = geofence.R_EARTH * math.pi / 2
    assert abs(geofence.distance_m(0, 0, 0, 90) - q) < 1e-3
    assert abs(geofence.distance_m(0, 0, 90, 0) - q) < 1e-3
    assert abs(geofence.distance_m(0, 0, 0, 180) - 2 * q) < 1e-3
    assert geofence.distance_m(10.03, 105.78, 10.03, 105.78) == 0
    # one arc-minute of latitude is a nautical mile on this sphere (1853.25 m)
    nm = geofence.R_EARTH * math.pi / 180 / 60
    assert abs(geofence.distance_m(10, 105, 10 + 1 / 60, 105) - nm) < 1e-3
    # a degree of longitude shrinks with cos(lat)
    d60 = geofence.distance_m(60, 10, 60, 10.001)
    assert abs(d60 - 0.5 * geofence.distance_m(0, 10, 0, 10.001)) < 1e-3


def test_equirectangular_error_is_as_documented():
    g = lcg(5)
    for lat in (10.03, -33.9, 59.0):
        for _ in range(50):
            # offsets up to about 10 km in both directions
            dlat = (next(g) % 180001) - 90000
            dlon = (next(g) % 180001) - 90000
            lat6 = int(lat * 1000000)
            lon6 = 105780000
            h = geofence.distance_m(
                lat6 / 1e6, lon6 / 1e6, (lat6 + dlat) / 1e6, (lon6 + dlon) / 1e6
            )
            e = geofence.distance6_m(lat6, lon6, lat6 + dlat, lon6 + dlon)
            assert abs(e - h) <= 1e-5 * h + 1e-6, (lat, dlat, dlon, e, h)
    assert geofence.distance6_m(0, 0, 1, 0) > 0.11  # one micro-degree, about 11 cm


def test_in_hours_local_time_and_wrapping_windows():
    day = geofence.Zone("z", SQUARE, [(6 * 60, 18 * 60)])
    night = geofence.Zone("n", SQUARE, [(22 * 60, 6 * 60)])
    split = geofence.Zone("s", SQUARE, [[5 * 60, 11 * 60], [13 * 60, 17 * 60]])
    vn = 7 * 3600  # Vietnam, UTC+7
    base = to_unix((2024, 1, 1), 0)  # midnight UTC = 07:00 in Can Tho

    def at(h, m=0):  # local hh:mm on 2024-01-01 as a unix time
        return base + (h * 60 + m) * 60 - vn

    assert geofence.minute_of_day(base, vn) == 7 * 60
    assert geofence.in_hours(day, at(6), vn)  # start included
    assert not geofence.in_hours(day, at(5, 59), vn)
    assert geofence.in_hours(day, at(17, 59), vn)
    assert not geofence.in_hours(day, at(18), vn)  # end excluded
    assert not geofence.in_hours(day, base, 0)  # 00:00 in UTC
    assert geofence.in_hours(night, at(23), vn) and geofence.in_hours(night, at(2), vn)
    assert not geofence.in_hours(night, at(12), vn) and not geofence.in_hours(night, at(6), vn)
    assert geofence.in_hours(split, at(10), vn) and geofence.in_hours(split, at(14), vn)
    assert not geofence.in_hours(split, at(12), vn)
    assert geofence.in_hours(geofence.Zone("a", SQUARE, None), at(3), vn)
    assert geofence.in_hours(geofence.Zone("c", SQUARE, [[0, 1440]]), at(23, 59), vn)
    assert not geofence.in_hours(geofence.Zone("x", SQUARE, []), at(12), vn)
