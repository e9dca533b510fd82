# 4-20 mA loop arithmetic, NAMUR NE43 fault bands, battery divider.

import current_loop as cl


def _close(a, b, tol=1e-9):
    return abs(a - b) <= tol


def test_loop_current_from_shunt_microvolts():
    assert _close(cl.ma_from_uv(1200000, 100), 12.0)  # 1.2 V across 100 ohm
    assert _close(cl.ma_from_uv(600000, 150), 4.0)
    assert _close(cl.ma_from_uv(2000000, 100), 20.0)


def test_level_spans_4_to_20_ma_over_the_range_from_the_offset():
    rng, off = 5.0, -0.5
    assert _close(cl.level_from_ma(4.0, rng, off), off)
    assert _close(cl.level_from_ma(20.0, rng, off), off + rng)
    assert _close(cl.level_from_ma(12.0, rng, off), off + rng / 2)
    assert _close(cl.level_from_ma(7.2, rng, off), off + 3.2 / 16 * rng)
    assert _close(cl.level_from_ma(8.0, 10.0), 2.5)  # offset defaults to 0


def test_ne43_failure_bands_give_none():
    for ma in (0.0, 2.0, 3.5, 3.6, 21.0, 22.5, None):
        assert cl.is_fault(ma), ma
        assert cl.level_from_ma(ma, 5.0, 0.0) is None, ma
    for ma in (3.61, 3.8, 4.0, 12.0, 20.0, 20.9):
        assert not cl.is_fault(ma), ma
        assert cl.level_from_ma(ma, 5.0, 0.0) is not None, ma


def test_saturation_bands_clamp_to_the_span():
    assert _close(cl.level_from_ma(3.7, 5.0, 1.0), 1.0)  # below 4 mA: no negative depth
    assert _close(cl.level_from_ma(20.7, 5.0, 1.0), 6.0)  # above 20 mA: top of the span


def test_shunt_to_level_end_to_end():
    # 10 mA through 100 ohm = 1.0 V; (10 - 4) / 16 of a 4 m range = 1.5 m depth
    ma = cl.ma_from_uv(1000000, 100)
    assert _close(cl.level_from_ma(ma, 4.0, 0.2), 1.7)
    # a broken wire reads ~0 V
    assert cl.level_from_ma(cl.ma_from_uv(1500, 100), 4.0, 0.2) is None


def test_battery_voltage_through_the_divider():
    assert _close(cl.battery_v(1900000, 2.0), 3.8)
    assert _close(cl.battery_v(1000000, 4.3), 4.3)
    assert cl.battery_v(0, 2.0) == 0
