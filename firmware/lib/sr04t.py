# JSN-SR04T waterproof ultrasonic ranger (trigger/echo mode, "mode 0").
#
# The driver takes its pins and timing functions as arguments (umqtt style), so
# it imports nothing from `machine`: the board layer passes Pin objects,
# machine.time_pulse_us and time.sleep_us; tests pass fakes with value().
#
# One reading is the median of several pings. A ping is dropped when
# pulse_fn times out (machine.time_pulse_us returns -2 when the echo never went
# high, -1 when it stayed high past the timeout: many modules hold echo high
# for ~tens of ms when no echo returns) or when its distance is outside the
# sensor's working range (blind zone ~0.25 m close in, ~6 m far out). Too few
# valid pings (a quorum, default a majority) gives None rather than a guess.
#
# Speed of sound in air, linear in temperature (m/s, T in degC):
#     c = 331.3 + 0.606 * T
# against the ideal-gas form 331.3 * sqrt(1 + T / 273.15) it reads 0.06 % high
# at 20 degC (343.4 vs 343.2 m/s) and 0.23 % at 40 degC: 9 mm at 4 m, below
# the sensor's ~1 cm resolution, with no sqrt on the chip. Without correction
# a 30 degC swing (night to noon on a canal bank) moves a 4 m reading ~21 cm.
#
# RAM: one small object and a list of `pings` floats per reading.

C0 = 331.3  # speed of sound at 0 degC, m/s
DC_DT = 0.606  # m/s per degC


def sound_speed(temp_c):
    """Speed of sound in air at temp_c degC, m/s (linear approximation above)."""
    return C0 + DC_DT * temp_c


def median(xs):
    """Median of a non-empty list (mean of the middle two for an even count)."""
    s = sorted(xs)
    n = len(s)
    h = n // 2
    if n % 2:
        return s[h]
    return (s[h - 1] + s[h]) / 2


class SR04T:
    """Trigger/echo ultrasonic ranger.

    trig_us: trigger pulse width. The JSN-SR04T needs >= 10 us; some boards and
    modes (e.g. JSN-SR04T 2.0 boards, AJ-SR04M-style low-power modes) need a
    longer pulse, so the board config can set it.
    gap_us: quiet time between pings so the previous burst's echoes die out.
    """

    def __init__(self, trig_pin, echo_pin, pulse_fn, sleep_us_fn,
                 trig_us=10, gap_us=60000, min_m=0.25, max_m=6.0):
        self.trig = trig_pin
        self.echo = echo_pin
        self.pulse = pulse_fn
        self.sleep_us = sleep_us_fn
        self.trig_us = trig_us
        self.gap_us = gap_us
        self.min_m = min_m
        self.max_m = max_m
        trig_pin.value(0)

    def ping_us(self, timeout_us=30000):
        """One ping: the echo pulse width in us, or a negative pulse_fn timeout code."""
        t = self.trig
        t.value(0)
        self.sleep_us(2)  # clean low before the rising edge
        t.value(1)
        self.sleep_us(self.trig_us)
        t.value(0)
        return self.pulse(self.echo, 1, timeout_us)

    def distance_m(self, temp_c=20.0, pings=5, timeout_us=30000, quorum=None):
        """Median distance in metres over `pings` valid pings, or None.

        temp_c None means unknown: 20 degC is assumed. quorum defaults to a
        majority of `pings`. timeout_us=30000 caps the range at about 5.1 m at
        20 degC (c * t / 2); raise it for sensors mounted higher.
        """
        if temp_c is None:
            temp_c = 20.0
        if quorum is None:
            quorum = pings // 2 + 1
        half_c = sound_speed(temp_c) / 2e6  # metres per us of echo, one way
        good = []
        for i in range(pings):
            if i:
                self.sleep_us(self.gap_us)
            us = self.ping_us(timeout_us)
            if us < 0:  # -2 no echo started, -1 echo longer than timeout
                continue
            d = us * half_c
            if self.min_m <= d <= self.max_m:
                good.append(d)
        if len(good) < quorum or not good:
            return None
        return median(good)
