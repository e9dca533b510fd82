# Generated GPS tracks for the boat and truck tests: real NMEA text parsed by
# nmea.parse, fed to a tracker at a fixed step. Plain code for both runtimes.

import gc
import math
import sys

import nmea
import wire
from fwtest import lcg

# The VM's heap is small and not compacting: the surviving fixes of a long run
# sit between each step's garbage until no large block is left for a growing
# dict. Collecting often keeps the survivors packed (CPython does not need it).
_COLLECT = 64 if sys.implementation.name == "micropython" else 0

M_LAT = 6371008.8 * math.pi / 180  # metres per degree of latitude
KN = 0.514444  # m/s per knot


def cs(body):
    """'$' + body + '*' + its checksum."""
    c = 0
    for b in body.encode():
        c ^= b
    return "$%s*%02X" % (body, c)


def _dm(v, width):
    a = abs(v)
    d = int(a)
    m = round((a - d) * 60, 5)
    if m >= 60:
        d, m = d + 1, 0.0
    return ("%0" + str(width) + "d%08.5f") % (d, m)


def rmc(t, lat, lon, kn=0.0, course=0.0, status="A"):
    """An RMC for unix time t, parsed by nmea as the UART's would be."""
    s = t % 86400
    body = "GNRMC,%02d%02d%02d.00,%s,%s,%s,%s,%s,%.2f,%.1f,010324,,,%s" % (
        s // 3600,
        s // 60 % 60,
        s % 60,
        status,
        _dm(lat, 2),
        "N" if lat >= 0 else "S",
        _dm(lon, 3),
        "E" if lon >= 0 else "W",
        kn,
        course,
        "A" if status == "A" else "N",
    )
    d = nmea.parse(cs(body))
    assert d is not None, body
    return d


def flat_m(lat1, lon1, lat2, lon2):
    """Flat-earth metres between two nearby points (the test's own yardstick)."""
    dy = (lat2 - lat1) * M_LAT
    dx = (lon2 - lon1) * M_LAT * math.cos(math.radians((lat1 + lat2) / 2))
    return math.sqrt(dx * dx + dy * dy)


def val(pack, name, label=wire.V):
    """The value (label) of the first record named name in a pack, or None."""
    for r in pack:
        if r.get(wire.N) == name:
            return r[label]
    return None


class Sim:
    """Drives a tracker every `step` seconds and keeps the (time, pack) pairs.

    wired: pass self.ign as the truck's ignition argument on every update.
    keep: fill self.fixes, each time -> the (lat6, lon6) the tracker was given.
    """

    def __init__(self, tracker, t, lat, lon, step=5, wired=False, keep=False):
        self.b = tracker
        self.t = t
        self.lat = lat
        self.lon = lon
        self.step = step
        self.wired = wired
        self.ign = False
        self.packs = []
        self.fixes = {} if keep else None
        self.path_m = 0.0  # true distance sailed/driven
        self.g = lcg(1)

    def feed(self, fix):
        if _COLLECT and self.t % _COLLECT == 0:
            gc.collect()
        if self.fixes is not None and fix is not None and fix.get("lat6") is not None:
            self.fixes[self.t] = (fix["lat6"], fix["lon6"])
        if self.wired:
            out = self.b.update(fix, self.t, self.ign)
        else:
            out = self.b.update(fix, self.t)
        for p in out:
            self.packs.append((self.t, p))
        self.t += self.step

    def go(self, lat, lon, mps):
        """Straight to (lat, lon) at mps, one RMC per step; returns the course."""
        dy = (lat - self.lat) * M_LAT
        dx = (lon - self.lon) * M_LAT * math.cos(math.radians(self.lat))
        n = max(1, int(math.sqrt(dx * dx + dy * dy) / (mps * self.step)))
        course = math.degrees(math.atan2(dx, dy)) % 360
        self.path_m += flat_m(self.lat, self.lon, lat, lon)
        lat0, lon0 = self.lat, self.lon
        for i in range(1, n + 1):
            self.lat = lat0 + (lat - lat0) * i / n
            self.lon = lon0 + (lon - lon0) * i / n
            self.feed(rmc(self.t, self.lat, self.lon, mps / KN, course))
        return course

    def stay(self, seconds, jitter_m=3.0, kn=0.1):
        """Stand still with GPS jitter (and a small, noisy speed)."""
        end = self.t + seconds
        while self.t < end:
            j = jitter_m / M_LAT
            dlat = ((next(self.g) % 2001) - 1000) / 1000 * j
            dlon = ((next(self.g) % 2001) - 1000) / 1000 * j
            self.feed(rmc(self.t, self.lat + dlat, self.lon + dlon, kn, next(self.g) % 360))

    def events(self, kind=None):
        out = []
        for t, p in self.packs:
            if p[0].get(wire.N) == "event" and (kind is None or p[0][wire.VS] == kind):
                out.append((t, p))
        return out
