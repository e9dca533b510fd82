# Geofences for the boat role: point in polygon, distances, licensed hours.
#
# Coordinates are (lat, lon) in degrees, either floats or integer micro-degrees
# (1e-6 deg, as nmea gives in 'lat6'/'lon6'); contains() does the same
# arithmetic on either, and is exact on ints. Zone keeps its polygon in ints.
# Polygons must not cross the antimeridian (nothing here is near it).

import math

R_EARTH = 6371008.8  # mean Earth radius, m (IUGG)
_M_PER_E6 = R_EARTH * math.pi / 180e6  # metres per micro-degree of arc


def bbox(polygon):
    """(min_lat, min_lon, max_lat, max_lon) of a list of (lat, lon)."""
    lat0, lon0 = polygon[0]
    a, b, c, d = lat0, lon0, lat0, lon0
    for lat, lon in polygon:
        if lat < a:
            a = lat
        elif lat > c:
            c = lat
        if lon < b:
            b = lon
        elif lon > d:
            d = lon
    return a, b, c, d


def contains(polygon, lat, lon):
    """Is (lat, lon) inside the polygon, a list of (lat, lon) vertices?

    Ray casting (a ray from the point towards east, crossings counted with a
    half-open rule on latitude so a ray through a vertex counts once), so
    concave and self-touching polygons work. Boundary convention: the polygon
    is closed, a point on an edge or a vertex is inside. With int coordinates
    the boundary test is exact; with floats it is as exact as the inputs.
    Repeating the first vertex at the end is optional.
    """
    n = len(polygon)
    if n and polygon[0] == polygon[n - 1]:
        n -= 1
    if n < 3:
        return False
    inside = False
    alat, alon = polygon[n - 1]
    for i in range(n):
        blat, blon = polygon[i]
        if (alat > lat) != (blat > lat):
            # The edge spans the point's latitude (half-open: the upper end
            # is excluded). Which side of the edge is the point on?
            d = (lat - alat) * (blon - alon) - (lon - alon) * (blat - alat)
            if d == 0:
                return True  # on the edge
            if (d > 0) == (blat > alat):
                inside = not inside  # the edge crosses the ray east of the point
        elif alat == lat == blat:
            # A horizontal edge on the point's latitude: on it, or no crossing.
            if alon <= lon <= blon or blon <= lon <= alon:
                return True
        elif (lat == alat and lon == alon) or (lat == blat and lon == blon):
            return True  # a vertex (the half-open rule may have skipped its edge)
        alat, alon = blat, blon
    return inside


def distance_m(lat1, lon1, lat2, lon2):
    """Great-circle distance (haversine) in metres between two points in degrees.

    Error against the WGS-84 ellipsoid: up to 0.5 % (spherical Earth). With
    single-precision floats (ESP32) the inputs carry about 1 m of rounding;
    use distance6_m on micro-degrees for short, precise distances.
    """
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    s1 = math.sin((p2 - p1) / 2)
    s2 = math.sin(math.radians(lon2 - lon1) / 2)
    a = s1 * s1 + math.cos(p1) * math.cos(p2) * s2 * s2
    return 2 * R_EARTH * math.asin(min(1.0, math.sqrt(a)))


def distance6_m(lat1, lon1, lat2, lon2):
    """Equirectangular distance in metres between two points in micro-degrees.

    The differences are exact integers, so this stays precise on
    single-precision floats. Against haversine on the same sphere the relative
    error is below 1e-5 up to 10 km away at |lat| < 60 (checked by the tests);
    beyond about 100 km use distance_m.
    """
    x = (lon2 - lon1) * math.cos(math.radians((lat1 + lat2) * 5e-7))
    y = lat2 - lat1
    return math.sqrt(x * x + y * y) * _M_PER_E6


def minute_of_day(unix_time, tz_offset_s):
    """Local minute of the day (0..1439) of a unix time, for a fixed UTC offset."""
    return (unix_time + tz_offset_s) % 86400 // 60


def in_hours(zone, unix_time, tz_offset_s):
    """Is unix_time within the zone's licensed hours (local time)?

    zone.hours is a list of (start, end) minutes of the local day, start
    included, end excluded; start > end wraps past midnight ((22*60, 6*60) is
    22:00-06:00). hours None: always licensed; []: never.
    """
    hours = zone.hours
    if hours is None:
        return True
    m = minute_of_day(unix_time, tz_offset_s)
    for start, end in hours:
        if start <= end:
            if start <= m < end:
                return True
        elif m >= start or m < end:
            return True
    return False


def to_e6(deg):
    """Degrees (float) -> micro-degrees (int), rounded."""
    return int(round(deg * 1000000))


class Zone:
    """A licensed zone: name, polygon [(lat, lon) degrees], hours (see in_hours).

    Keeps the polygon in micro-degrees with its bounding box, so most fixes
    are rejected by four int comparisons and the rest tested exactly.
    """

    def __init__(self, name, polygon, hours=None):
        self.name = name
        self.hours = hours
        self.poly6 = [(to_e6(lat), to_e6(lon)) for lat, lon in polygon]
        self.bbox6 = bbox(self.poly6)

    def contains6(self, lat6, lon6):
        b = self.bbox6
        if lat6 < b[0] or lat6 > b[2] or lon6 < b[1] or lon6 > b[3]:
            return False
        return contains(self.poly6, lat6, lon6)

    def contains(self, lat, lon):
        return self.contains6(to_e6(lat), to_e6(lon))
