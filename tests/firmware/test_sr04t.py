# JSN-SR04T driver with fake pins, a fake pulse function and a fake sleep;
# on the MicroPython VM also with the real machine.time_pulse_us.

import math
import time

import sr04t


def _speed(temp_c):
    return 331.3 + 0.606 * temp_c


def _us(d_m, temp_c=20.0):
    """Echo width (us) for a target d_m away: there and back at the speed of sound."""
    return int(round(2 * d_m / _speed(temp_c) * 1e6))


def _d(us, temp_c=20.0):
    return us * _speed(temp_c) / 2 / 1e6


class Pin:
    def __init__(self, log=None):
        self.v = 0
        self.log = log

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v
        if self.log is not None:
            self.log.append(("pin", v))


class Bench:
    """Trigger pin, echo pin, pulse and sleep functions sharing one event log."""

    def __init__(self, pulses):
        self.log = []
        self.pulses = list(pulses)
        self.trig = Pin(self.log)
        self.echo = Pin()

    def pulse(self, pin, level, timeout_us):
        assert pin is self.echo
        self.log.append(("pulse", level, timeout_us))
        return self.pulses.pop(0)

    def sleep_us(self, us):
        self.log.append(("sleep", us))

    def sensor(self, **kw):
        return sr04t.SR04T(self.trig, self.echo, self.pulse, self.sleep_us, **kw)


def _close(a, b, tol=1e-9):
    return abs(a - b) <= tol


def test_each_ping_is_a_trig_us_high_pulse_then_an_echo_measurement():
    for trig_us in (10, 20):
        b = Bench([_us(1.0)] * 3)
        s = b.sensor(trig_us=trig_us, gap_us=70000)
        b.log.clear()
        s.distance_m(pings=3, timeout_us=25000)
        pings = [i for i, e in enumerate(b.log) if e[0] == "pulse"]
        assert len(pings) == 3
        for i in pings:
            # low, settle, high for trig_us, low, then time the echo's high pulse
            assert b.log[i - 5:i + 1] == [("pin", 0), ("sleep", 2), ("pin", 1),
                                          ("sleep", trig_us), ("pin", 0), ("pulse", 1, 25000)]
        assert b.log.count(("sleep", 70000)) == 2  # a quiet gap between pings only
        assert b.pulses == []


def test_distance_is_the_median_of_the_pings():
    ds = [1.00, 1.04, 3.50, 0.98, 1.02]  # one stray echo at 3.5 m
    b = Bench([_us(d) for d in ds])
    got = b.sensor().distance_m()
    assert _close(got, _d(_us(1.02)))
    b = Bench([_us(d) for d in (2.0, 2.1, 2.3, 2.2)])
    got = b.sensor().distance_m(pings=4)  # even count: mean of the middle two
    assert _close(got, (_d(_us(2.1)) + _d(_us(2.2))) / 2)


def test_timeouts_are_dropped_not_read_as_distances():
    # -2: echo never went high; -1: echo stayed high past the timeout
    b = Bench([-2, _us(1.5), -1, _us(1.6), _us(1.7)])
    assert _close(b.sensor().distance_m(), _d(_us(1.6)))
    b = Bench([-2, _us(1.5), -1, -1, _us(1.7)])
    assert b.sensor().distance_m() is None  # 2 valid of 5: below the majority
    b = Bench([-2, -2, -2, -1, -1])
    assert b.sensor().distance_m() is None


def test_readings_outside_the_working_range_are_dropped():
    ds = [0.20, 0.24, 6.5, 2.0, 2.1]  # blind zone twice, beyond range once
    b = Bench([_us(d) for d in ds])
    assert b.sensor().distance_m() is None
    b = Bench([_us(d) for d in ds])
    assert _close(b.sensor().distance_m(quorum=2), (_d(_us(2.0)) + _d(_us(2.1))) / 2)
    b = Bench([_us(d) for d in (0.30, 0.26, 0.28)])  # just outside the blind zone
    assert _close(b.sensor().distance_m(pings=3), _d(_us(0.28)))
    b = Bench([_us(d) for d in (0.30, 0.26, 0.28)])
    assert b.sensor(min_m=0.29).distance_m(pings=3) is None


def test_speed_of_sound_follows_air_temperature():
    us = 20000
    ds = {}
    for t in (-10.0, 0.0, 20.0, 35.0):
        ds[t] = Bench([us] * 5).sensor().distance_m(temp_c=t)
        assert _close(ds[t], us * (331.3 + 0.606 * t) / 2e6)
    assert _close(ds[0.0], 3.313)  # 20 ms of echo at 331.3 m/s
    # same echo, warmer air: farther, by 0.606/331.3 per degree
    assert _close(ds[35.0] / ds[0.0] - 1, 35 * 0.606 / 331.3)
    assert Bench([us] * 5).sensor().distance_m(temp_c=None) == ds[20.0]


def test_linear_speed_of_sound_is_within_a_quarter_percent_of_the_ideal_gas_law():
    for t in range(-20, 41, 5):
        exact = 331.3 * math.sqrt(1 + t / 273.15)
        assert abs(sr04t.sound_speed(t) / exact - 1) < 0.0025


def test_median():
    assert sr04t.median([3]) == 3
    assert sr04t.median([5, 1, 3]) == 3
    assert sr04t.median([4, 1, 3, 2]) == 2.5


def _machine():
    try:
        import machine
    except ImportError:
        return None
    if hasattr(machine, "PinBase") and hasattr(machine, "time_pulse_us"):
        return machine
    return None


def test_with_the_real_time_pulse_us_on_the_vm():
    machine = _machine()
    if machine is None:  # CPython: no machine module
        return

    class Trig(machine.PinBase):
        def __init__(self):
            self.v = 0
            self.fell = None

        def value(self, v=None):
            if v is None:
                return self.v
            if self.v and not v:
                self.fell = time.ticks_us()
            self.v = v

    trig = Trig()

    class Echo(machine.PinBase):
        """High from 150 us after the trigger's falling edge, for `width` us."""

        def __init__(self, width):
            self.width = width

        def value(self, v=None):
            dt = time.ticks_diff(time.ticks_us(), trig.fell)
            return 1 if 150 <= dt < 150 + self.width else 0

    def sensor(width):
        return sr04t.SR04T(trig, Echo(width), machine.time_pulse_us, time.sleep_us, gap_us=1000)

    d = sensor(_us(1.5)).distance_m(pings=3)
    assert d is not None and abs(d - 1.5) < 0.03, d
    # echo never rises within the timeout (-2), or stays high past it (-1)
    assert sensor(0).distance_m(pings=3, timeout_us=100) is None
    assert sensor(10 ** 9).distance_m(pings=3, timeout_us=2000) is None
