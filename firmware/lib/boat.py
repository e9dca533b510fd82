# The boat role's logic: a pure state machine, fed parsed NMEA sentences and
# the time, returning SenML packs to enqueue. No machine, network or I/O.
#
# update(fix, now) -> list of packs; a pack is a list of SenML record dicts
# with RFC 8428 integer labels (docs/wire-format.md), the first carrying bt
# (-3) = now. The runtime wraps each pack in one envelope (one message), so an
# alarm event travels alone with its context (position, zone, duration).
#
# fix: a dict from nmea.parse (RMC moves the machine, GGA gives the satellite
# count, VTG is ignored) or None for a tick with no sentence. now: int unix
# seconds UTC (the RTC, or nmea.to_unix of the RMC's date and time).

from geofence import distance6_m, in_hours
from nmea import FixTracker
from wire import BT, VB, VS, N, U, V

KN = 0.514444  # m/s per knot


def _event(now, kind):
    return {BT: now, N: "event", VS: kind}


class BoatTracker(FixTracker):
    """Zone enter/exit, dwell, off-hours, fix loss and periodic reports for one boat.

    zones: list of geofence.Zone (the boat's licence: inside any of them is
    licensed); dwell_s / dwell_radius_m: a dwell is staying within the radius
    of where it began for longer than dwell_s; tz_offset_s: local time offset
    for the zones' hours (Vietnam: 7 * 3600); report_interval_s: position
    report period. moving_kn: speed above which the boat counts as moving (for
    off_hours); lost_after_s: no valid fix for this long is a fix loss.
    """

    def __init__(
        self,
        zones,
        dwell_s=600,
        dwell_radius_m=50,
        tz_offset_s=7 * 3600,
        report_interval_s=60,
        moving_kn=1.0,
        lost_after_s=10,
    ):
        super().__init__(lost_after_s)
        self.zones = zones
        self.dwell_s = dwell_s
        self.dwell_radius_m = dwell_radius_m
        self.tz_offset_s = tz_offset_s
        self.report_interval_s = report_interval_s
        self.moving_kn = moving_kn
        self.zone = None  # name of the zone we are in, "" outside all, None unknown
        self.speed_kn = None
        self.course = None
        self._next_report = None
        self._anchor = None  # (lat6, lon6, t) where the current still spell began
        self._dwelling = False  # dwell reported for the current still spell
        self._off_armed = True  # an off_hours alarm may fire (re-armed when licensed)

    def update(self, fix, now):
        out = []
        if self._fix_ok(fix, now):
            self._position(fix, now, out)
        elif self._fix_lost(now):
            p = [_event(now, "fix_lost")]
            self._where(p)
            p.append({N: "fix", VB: False})
            out.append(p)
        if self._next_report is None or now >= self._next_report:
            self._next_report = now + self.report_interval_s
            out.append(self._report(now))
        return out

    def _position(self, fix, now, out):
        lat6 = self.lat6
        lon6 = self.lon6
        self.speed_kn = fix["speed_kn"]
        self.course = fix["course"]
        zone = None
        for z in self.zones:
            if z.contains6(lat6, lon6):
                zone = z
                break
        name = zone.name if zone else ""
        if name != self.zone:
            if name:
                out.append(self._pack(now, "zone_enter", name))
            elif self.zone is not None:  # unknown -> outside: no breach seen
                out.append(self._pack(now, "zone_exit", name))
            self.zone = name
        a = self._anchor
        if a is None or distance6_m(a[0], a[1], lat6, lon6) > self.dwell_radius_m:
            self._anchor = (lat6, lon6, now)
            self._dwelling = False
        elif not self._dwelling and now - a[2] > self.dwell_s:
            self._dwelling = True
            p = self._pack(now, "dwell", name, a[0], a[1])
            p.append({N: "duration", U: "s", V: now - a[2]})
            out.append(p)
        if self._licensed(zone, now):
            self._off_armed = True
        elif self._off_armed and (self._dwelling or (self.speed_kn or 0) > self.moving_kn):
            self._off_armed = False
            out.append(self._pack(now, "off_hours", name))

    def _report(self, now):
        # A fix counts until it is older than lost_after_s, so a report made
        # on a GGA or VTG call right after a valid RMC still says fix = true.
        fresh = self._fresh(now)
        p = []
        if fresh:
            self._where(p)
            if self.speed_kn is not None:
                p.append({N: "speed", U: "m/s", V: self.speed_kn * KN})
            if self.course is not None:
                p.append({N: "course", U: "deg", V: self.course})
        p.append({N: "fix", VB: fresh})
        if self.sats is not None:
            p.append({N: "sats", V: self.sats})
        if fresh:
            p.append({N: "zone", VS: self.zone or ""})
        p[0][BT] = now
        return p

    def _licensed(self, zone, now):
        # Inside a zone: that zone's hours. Outside all (already a zone_exit
        # alarm): the licence's hours, i.e. any zone's.
        if zone is not None:
            return in_hours(zone, now, self.tz_offset_s)
        for z in self.zones:
            if in_hours(z, now, self.tz_offset_s):
                return True
        return False

    def _where(self, p, lat6=None, lon6=None):
        if lat6 is None:
            lat6, lon6 = self.lat6, self.lon6
        if lat6 is not None:
            p.append({N: "lat", U: "lat", V: lat6 / 1000000})
            p.append({N: "lon", U: "lon", V: lon6 / 1000000})
        return p

    def _pack(self, now, kind, zone, lat6=None, lon6=None):
        p = self._where([_event(now, kind)], lat6, lon6)
        if self.speed_kn is not None:
            p.append({N: "speed", U: "m/s", V: self.speed_kn * KN})
        p.append({N: "zone", VS: zone})
        return p
