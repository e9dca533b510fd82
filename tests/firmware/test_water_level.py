# The water-level role on a simulated flood: alert/clear events with
# hysteresis, interval switching, rate of rise, and state across deep sleep.

import json

import config
from fwtest import data_path
from water_level import HIST, WaterLevel

BT, N, U, V, VS = -3, 0, 1, 2, 3  # SenML labels, RFC 8428

T0 = 1700000000
DATUM = 5.0
ALERT = 2.0
HYST = 0.05
UP = 0.9 / 3600  # m/s on the rising limb: 0.9 m/h
DOWN = 0.6 / 3600  # m/s on the falling limb
RISE_AT = T0 + 6 * 3600
PEAK_AT = RISE_AT + 6400  # 1.6 m above the base level


def _cfg(**wl):
    c = {
        "water_level": {"datum_m": DATUM, "alert_m": ALERT, "hyst_m": HYST,
                        "rise_mps": 0.0001, "rise_window_s": 3600},
        "intervals": {"normal_s": 900, "fast_s": 60},
    }
    c["water_level"].update(wl)
    return c


def _true_level(t):
    """Flat at 1 m, up at 0.9 m/h to 2.6 m, down at 0.6 m/h back to 1 m."""
    if t < RISE_AT:
        return 1.0
    if t < PEAK_AT:
        return 1.0 + UP * (t - RISE_AT)
    return max(1.0, 1.0 + UP * (PEAK_AT - RISE_AT) - DOWN * (t - PEAK_AT))


class Noise:
    """Deterministic +-amp metres (a linear congruential generator)."""

    def __init__(self, amp, seed=12345):
        self.amp = amp
        self.x = seed

    def __call__(self):
        self.x = (self.x * 1103515245 + 12345) % 2147483648
        return (self.x / 2147483648 - 0.5) * 2 * self.amp


def _get(pack, name):
    for r in pack:
        if r[N] == name:
            return r.get(V, r.get(VS))
    return None


def _events(pack):
    return [r[VS] for r in pack if r[N] == "event"]


def _flood(wl_factory, noise=0.008, hours=24):
    """Run a node through the hydrograph, sleeping what step() asks each time.
    wl_factory(prev) gives the object for each wake. Returns [(t, true, pack, next_s)]."""
    n = Noise(noise)
    out = []
    t = T0
    wl = None
    while t < T0 + hours * 3600:
        wl = wl_factory(wl)
        true = _true_level(t)
        pack, nxt = wl.step(DATUM - true + n(), None, 3.91, 28.4, t)
        out.append((t, true, pack, nxt))
        t += nxt
    return out


def _continuous():
    cfg = _cfg()
    return lambda prev: prev or WaterLevel(cfg)


def test_flood_gives_one_alert_and_one_clear_with_hysteresis():
    run = _flood(_continuous())
    ev = [(t, e, _get(p, "level")) for t, _, p, _ in run for e in _events(p)]
    assert [e for _, e, _ in ev] == ["flood_alert", "flood_clear"]
    (ta, _, la), (tc, _, lc) = ev
    assert RISE_AT < ta < PEAK_AT < tc
    assert la >= ALERT
    assert lc < ALERT - HYST
    # the alert fired on the first reading at or above the line, not later
    before = [_get(p, "level") for t, _, p, _ in run if t < ta]
    assert max(before) < ALERT
    # ... and the clear on the first one below the band after the peak
    after_peak = [_get(p, "level") for t, _, p, _ in run if PEAK_AT < t < tc]
    assert after_peak and min(after_peak) >= ALERT - HYST
    # the alarm's pack says what crossed: the level and the rate
    alert_pack = [p for t, _, p, _ in run if t == ta][0]
    assert alert_pack[0][N] == "event" and alert_pack[0][BT] == ta
    assert _get(alert_pack, "rise") > 0


def test_noise_around_the_alert_line_does_not_chatter():
    wl = WaterLevel(_cfg())
    n = Noise(0.03, seed=7)  # +-3 cm, wider than half the 5 cm band
    seen = []
    t = T0
    for level in [1.9] * 3 + [ALERT] * 200 + [ALERT - HYST - 0.04] * 3 + [ALERT - 0.035] * 100:
        pack, _ = wl.step(DATUM - level - n(), None, None, None, t)
        seen += _events(pack)
        t += 60
    assert seen == ["flood_alert", "flood_clear"]


def test_interval_goes_fast_on_a_fast_rise_or_in_alert_and_back():
    run = _flood(_continuous())
    iv = [(t, true, nxt, _get(p, "level")) for t, true, p, nxt in run]
    assert all(nxt == 900 for t, _, nxt, _ in iv if t < RISE_AT)
    # the rise alone switches to fast before the water reaches the line
    fast_below = [t for t, _, nxt, lvl in iv if nxt == 60 and lvl < ALERT]
    assert fast_below and min(fast_below) < RISE_AT + 3600
    # never slow while the water is above the line
    assert all(nxt == 60 for _, true, nxt, _ in iv if true > ALERT + 0.02)
    # normal again once cleared and flat
    assert all(nxt == 900 for t, _, nxt, _ in iv if t > PEAK_AT + 4 * 3600)
    # no flapping: one fast spell
    flips = sum(1 for i in range(1, len(iv)) if iv[i][2] != iv[i - 1][2])
    assert flips == 2, flips


def test_a_rise_rate_wobbling_under_the_threshold_keeps_the_fast_interval():
    wl = WaterLevel(_cfg(rise_mps=0.0001))
    t, level, seen = T0, 1.0, []
    for slope, n in ((0.00012, 12), (0.00007, 12), (0.00003, 12)):
        # above the threshold, then between half of it and it, then below half
        for _ in range(n):
            pack, nxt = wl.step(DATUM - level, None, None, None, t)
            t += 60
            level += slope * 60
        seen.append((round(_get(pack, "rise") / slope, 1), nxt))
    assert seen == [(1.0, 60), (1.0, 60), (1.0, 900)], seen


def test_rate_of_rise_tracks_the_true_slope():
    run = _flood(_continuous())
    # once the history holds no readings from before the bend (40 min in)
    up = [_get(p, "rise") for t, _, p, _ in run if RISE_AT + 2400 < t < PEAK_AT]
    down = [_get(p, "rise") for t, _, p, _ in run if PEAK_AT + 1800 < t < PEAK_AT + 9000]
    flat = [_get(p, "rise") for t, _, p, _ in run if T0 + 3 * 3600 < t < RISE_AT]
    assert len(up) > 20 and len(down) > 5 and len(flat) > 3
    for r in up:
        assert abs(r / UP - 1) < 0.2, r
    for r in down:
        assert abs(r / -DOWN - 1) < 0.2, r
    for r in flat:
        assert abs(r) < UP / 10, r


def test_rate_ignores_one_outlier():
    wl = WaterLevel(_cfg())
    slope = 0.0002
    levels = [1.0 + slope * 60 * i for i in range(6)]
    levels[3] += 0.5  # one bad echo (a leaf, a bird) half a metre off
    rises = []
    for i, lvl in enumerate(levels):
        pack, _ = wl.step(DATUM - lvl, None, None, None, T0 + 60 * i)
        rises.append(_get(pack, "rise"))
    assert rises[:2] == [None, None]  # too few points yet
    assert abs(rises[-1] / slope - 1) < 0.02, rises
    # a falling series gives the same magnitude with a negative sign
    wl = WaterLevel(_cfg())
    for i in range(6):
        pack, _ = wl.step(DATUM - (3.0 - slope * 60 * i), None, None, None, T0 + 60 * i)
    assert abs(_get(pack, "rise") / -slope - 1) < 0.02


def test_rate_forgets_readings_older_than_the_window():
    wl = WaterLevel(_cfg(rise_window_s=600))
    for i in range(4):  # a fast rise, then the sensor goes quiet for an hour
        wl.step(DATUM - (1.0 + 0.1 * i), None, None, None, T0 + 60 * i)
    pack, nxt = wl.step(DATUM - 1.3, None, None, None, T0 + 3600)
    assert _get(pack, "rise") is None and len(wl.hist) == 1
    # still fast: no rate yet says the rise is over
    assert nxt == 60
    for i in (1, 2):
        pack, nxt = wl.step(DATUM - 1.3, None, None, None, T0 + 3600 + 60 * i)
    assert _get(pack, "rise") == 0 and nxt == 900


def test_records_follow_the_wire_contract():
    wl = WaterLevel(_cfg())
    pack, nxt = wl.step(3.2004, 1.79, 3.9123, 29.06, T0)
    assert pack[0][BT] == T0 and all(BT not in r for r in pack[1:])
    got = dict((r[N], (r.get(U), r[V])) for r in pack)
    assert got == {
        "level": ("m", 1.8),  # 5.0 - 3.2004, to the millimetre
        "distance": ("m", 3.2),
        "plevel": ("m", 1.79),
        "temp": ("Cel", 29.1),
        "battery": ("V", 3.912),
    }
    assert nxt == 900


def test_pressure_level_raises_the_alert_when_the_ultrasonic_is_blind():
    wl = WaterLevel(_cfg())
    pack, nxt = wl.step(None, ALERT + 0.3, 3.9, None, T0)  # water in the blind zone
    assert _events(pack) == ["flood_alert"] and nxt == 60
    assert _get(pack, "level") is None and _get(pack, "plevel") == ALERT + 0.3
    pack, _ = wl.step(None, ALERT - HYST - 0.01, 3.9, None, T0 + 60)
    assert _events(pack) == ["flood_clear"]


def test_no_reading_gives_an_empty_pack_and_keeps_the_alert():
    wl = WaterLevel(_cfg())
    wl.step(DATUM - ALERT - 0.1, None, None, None, T0)
    pack, nxt = wl.step(None, None, None, None, T0 + 60)
    assert pack == [] and nxt == 60 and wl.alert
    pack, nxt = wl.step(None, None, 3.7, None, T0 + 120)
    assert pack == [{N: "battery", U: "V", V: 3.7, BT: T0 + 120}]


def test_state_survives_deep_sleep_between_every_reading():
    cfg = _cfg()
    sizes = []

    def wake(prev):
        wl = WaterLevel(cfg)  # a fresh boot: RAM is gone
        if prev is not None:
            blob = prev.state()  # what the board keeps in RTC memory
            sizes.append(len(blob))
            assert wl.restore(blob)
        return wl

    slept = _flood(wake)
    awake = _flood(_continuous())
    assert [(p, n) for _, _, p, n in slept] == [(p, n) for _, _, p, n in awake]
    assert max(sizes) == 5 + 8 * HIST  # a full history, as the format says


def test_state_round_trip_keeps_alert_rising_and_history():
    wl = WaterLevel(_cfg())
    for i in range(5):
        wl.step(DATUM - (1.5 + 0.03 * i), None, None, None, T0 + 60 * i)
    wl.step(DATUM - 2.2, None, None, None, T0 + 300)
    assert wl.alert and wl.rising
    back = WaterLevel(_cfg())
    assert back.restore(wl.state())
    assert back.alert and back.rising and back.hist == wl.hist
    assert back.rate() == wl.rate()


def test_restore_rejects_what_is_not_a_state():
    good = WaterLevel(_cfg())
    good.step(DATUM - ALERT - 0.1, None, None, None, T0)
    good.step(DATUM - ALERT - 0.2, None, None, None, T0 + 60)
    blob = good.state()
    swapped = blob[:5] + blob[13:21] + blob[5:13]  # times out of order
    for bad in (b"", None, bytes(64), b"XX" + blob[2:], blob[:-1], blob + b"\0", swapped):
        wl = WaterLevel(_cfg())
        wl.alert = True
        assert not wl.restore(bad)
        assert not wl.alert and wl.hist == []


def test_clock_going_back_restarts_the_history():
    wl = WaterLevel(_cfg())
    for i in range(4):
        wl.step(DATUM - (1.0 + 0.05 * i), None, None, None, T0 + 60 * i)
    # power cut: the RTC restarts near the MicroPython epoch, state came from flash
    pack, _ = wl.step(DATUM - 1.2, None, None, None, 120)
    assert _get(pack, "rise") is None and wl.hist == [(120, 1200)]


def test_downlink_thresholds_reach_a_running_role():
    with open(data_path("firmware/examples/water_level.json")) as f:
        cfg = config.parse(json.load(f), {})
    wl = WaterLevel(cfg)
    datum = cfg["water_level"]["datum_m"]
    pack, _ = wl.step(datum - 1.5, None, None, None, T0)
    assert _events(pack) == []
    assert config.apply_command(cfg, "set_thresholds", {"alert": 1.4}) == ["water_level.alert_m"]
    pack, nxt = wl.step(datum - 1.5, None, None, None, T0 + 60)
    assert _events(pack) == ["flood_alert"] and nxt == cfg["intervals"]["fast_s"]
    config.apply_command(cfg, "set_interval", {"fast": 30})
    assert wl.step(datum - 1.5, None, None, None, T0 + 120)[1] == 30
