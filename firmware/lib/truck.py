# The truck role's logic: a pure state machine, fed parsed NMEA sentences, the
# ignition input and the time, returning SenML packs to enqueue. No I/O.
#
# update(fix, now, ignition=None) -> list of packs (lists of SenML record dicts
# with RFC 8428 integer labels, the first record carrying bt (-3)); the
# runtime wraps each pack in one envelope. fix: a dict from nmea.parse (RMC
# moves the machine, GGA gives the satellite count) or None for a tick;
# now: int unix seconds UTC; ignition: the input's level, or None when the
# truck has no ignition wiring (trips then follow sustained motion).
#
# Track points are kept already delta-encoded as small ints (the wire's
# `track` array), never as floats or absolute unix times, so a batch costs a
# few bytes per point in RAM (on ESP32 a unix time is a heap-allocated int).

import cbor
from geofence import distance6_m
from nmea import FixTracker
from wire import BT, VB, VD, VS, N, T, U, V


def heading_diff(a, b):
    """Absolute difference of two courses in degrees, 0..180."""
    d = (a - b) % 360
    return 360 - d if d > 180 else d


class TruckTracker(FixTracker):
    """Trips, stops, track points, odometer and fix loss for one truck.

    min_dist_m / max_interval_s: a track point every min_dist_m metres or
    max_interval_s seconds, whichever comes first, during a trip;
    heading_change_deg: also a point when the course turned by more than this
    since the last point (only at heading_min_kn or faster, where the course
    means something); stop_min_s: a stop shorter than this is not reported;
    points_per_payload: points per `track` record.
    moving_kn: speed below which the truck is stopped; stop_radius_m: a stop
    ends when the truck is this far from where it stopped; start_s / end_s:
    without ignition wiring, motion sustained start_s starts a trip and a stop
    of end_s ends it; jitter_m: when slower than moving_kn, moves below this
    are GPS jitter and not added to the odometer; flush_s: send a partial
    batch once its first point is this old; odometer_m: the persisted value.
    """

    def __init__(
        self,
        min_dist_m=50,
        max_interval_s=60,
        heading_change_deg=30,
        stop_min_s=60,
        points_per_payload=10,
        moving_kn=2.0,
        heading_min_kn=5.0,
        stop_radius_m=25,
        start_s=10,
        end_s=600,
        jitter_m=10,
        lost_after_s=10,
        flush_s=300,
        odometer_m=0,
    ):
        super().__init__(lost_after_s)
        self.min_dist_m = min_dist_m
        self.max_interval_s = max_interval_s
        self.heading_change_deg = heading_change_deg
        self.stop_min_s = stop_min_s
        self.points_per_payload = points_per_payload
        self.moving_kn = moving_kn
        self.heading_min_kn = heading_min_kn
        self.stop_radius_m = stop_radius_m
        self.start_s = start_s
        self.end_s = end_s
        self.jitter_m = jitter_m
        self.flush_s = flush_s
        self.odometer = int(odometer_m)  # whole metres: exact as a small int
        self._odo_frac = 0.0  # the fraction, kept apart so single floats do not swallow steps
        self._odo_at = None  # (lat6, lon6) the odometer last counted from
        self.in_trip = False
        self.ignition = None
        self._moving_since = None  # motion start (trips without ignition)
        self._stop = None  # [lat6, lon6, t] where and when the current stop began
        self._pts = []  # the batch: [dt0, lat0, lon0, dt, dlat, dlon, ...]
        self._t0 = None  # unix time of the batch's first point (its bt)
        self._prev = None  # (t, lat6, lon6) of the last point
        self._ref_course = None  # course at the last point, None if too slow

    def update(self, fix, now, ignition=None):
        out = []
        ok = self._fix_ok(fix, now)
        speed = 0.0
        if ok:
            speed = fix["speed_kn"] or 0.0
            self._odometer(speed)
        elif self._fix_lost(now):
            out.append(self._pack(now, "fix_lost"))
        self.ignition = ignition

        # Trips: the ignition edge when wired, else sustained motion / a long stop.
        if ignition is not None:
            if ignition and not self.in_trip:
                self._start(now, out)
            elif not ignition and self.in_trip:
                self._end(now, out)
        elif ok:
            if speed >= self.moving_kn:
                if self._moving_since is None:
                    self._moving_since = now
                if not self.in_trip and now - self._moving_since >= self.start_s:
                    self._start(now, out)
            else:
                self._moving_since = None
                s = self._stop
                if self.in_trip and s is not None and now - s[2] >= self.end_s:
                    self._end(now, out)

        if ok and self.in_trip:
            self._stops(speed, now, out)
            self._track(fix, speed, now)
        if self._pts and (
            len(self._pts) >= 3 * self.points_per_payload or now - self._t0 >= self.flush_s
        ):
            out.append(self._flush(now))
        return out

    def _odometer(self, speed):
        a = self._odo_at
        if a is None:
            self._odo_at = (self.lat6, self.lon6)
            return
        d = distance6_m(a[0], a[1], self.lat6, self.lon6)
        if speed < self.moving_kn and d < self.jitter_m:
            return  # still: jitter around the same point, keep the reference
        f = self._odo_frac + d
        whole = int(f)
        self.odometer += whole
        self._odo_frac = f - whole
        self._odo_at = (self.lat6, self.lon6)

    def _start(self, now, out):
        self.in_trip = True
        self._stop = None
        self._prev = None
        self._ref_course = None
        out.append(self._pack(now, "trip_start"))
        if self._fresh(now):
            self._point(now)

    def _end(self, now, out):
        # A stop still open when the trip ends is the parking, not a collection
        # stop: it is not reported (trip_end carries the place and time).
        if self._fresh(now) and (self._prev is None or self._prev[0] != now):
            self._point(now)
        if self._pts:
            out.append(self._flush(now))
        self.in_trip = False
        self._stop = None
        self._moving_since = None
        out.append(self._pack(now, "trip_end"))

    def _stops(self, speed, now, out):
        s = self._stop
        if s is None:
            if speed < self.moving_kn:
                self._stop = [self.lat6, self.lon6, now]
        elif distance6_m(s[0], s[1], self.lat6, self.lon6) > self.stop_radius_m:
            self._stop = None
            if now - s[2] >= self.stop_min_s:
                p = self._pack(now, "stop", s[0], s[1])
                p.append({N: "duration", U: "s", V: now - s[2]})
                out.append(p)
            if speed < self.moving_kn:  # slow, and already away: a new stop begins
                self._stop = [self.lat6, self.lon6, now]

    def _track(self, fix, speed, now):
        prev = self._prev
        course = fix["course"] if speed >= self.heading_min_kn else None
        take = prev is None or now - prev[0] >= self.max_interval_s
        if not take:
            take = distance6_m(prev[1], prev[2], self.lat6, self.lon6) >= self.min_dist_m
        if not take and course is not None:
            if self._ref_course is None:
                self._ref_course = course  # first usable course since the last point
            else:
                take = heading_diff(course, self._ref_course) > self.heading_change_deg
        if take:
            self._point(now)
            self._ref_course = course

    def _point(self, now):
        # Append one point to the batch, delta-encoded against the previous.
        lat6, lon6 = self.lat6, self.lon6
        if not self._pts:
            self._t0 = now
            self._pts.extend((0, lat6, lon6))
        else:
            p = self._prev
            self._pts.extend((now - p[0], lat6 - p[1], lon6 - p[2]))
        self._prev = (now, lat6, lon6)

    def _flush(self, now):
        t0 = self._t0
        vd = cbor.dumps(self._pts)
        self._pts = []
        p = [
            {BT: t0, N: "track", VD: vd},
            {N: "odometer", U: "m", V: self.odometer, T: now - t0},
        ]
        if self.ignition is not None:
            p.append({N: "ignition", VB: self.ignition, T: now - t0})
        return p

    def _pack(self, now, kind, lat6=None, lon6=None):
        p = [{BT: now, N: "event", VS: kind}]
        if lat6 is None and (kind == "fix_lost" or self._fresh(now)):
            lat6, lon6 = self.lat6, self.lon6  # fix_lost: where it was last seen
        if lat6 is not None:
            p.append({N: "lat", U: "lat", V: lat6 / 1000000})
            p.append({N: "lon", U: "lon", V: lon6 / 1000000})
        p.append({N: "odometer", U: "m", V: self.odometer})
        if self.ignition is not None:
            p.append({N: "ignition", VB: self.ignition})
        if kind == "fix_lost" or not self._fresh(now):
            p.append({N: "fix", VB: False})
        return p
