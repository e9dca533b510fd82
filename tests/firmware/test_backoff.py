# firmware/lib/backoff.py on CPython and inside the MicroPython VM.

import random

from backoff import Backoff, retry
from fwtest import raises


def always(value):
    # A fake random source that always draws `value` (asked for 30 bits).
    def rand(k):
        assert k == 30
        return value

    return rand


def test_ceiling_doubles_from_base_up_to_the_cap():
    b = Backoff(base_ms=100, cap_ms=1000, rand=always(0))
    ceilings = []
    for _ in range(7):
        ceilings.append(b.ceiling())
        b.next_ms()
    assert ceilings == [100, 200, 400, 800, 1000, 1000, 1000]
    assert b.attempt == 7


def test_full_jitter_spans_zero_to_the_ceiling():
    lo = Backoff(base_ms=100, cap_ms=1000, rand=always(0))
    assert [lo.next_ms() for _ in range(5)] == [0, 0, 0, 0, 0]
    # rand = hi exactly gives the ceiling itself (the window is inclusive).
    b = Backoff(base_ms=100, cap_ms=1000)
    seen = []
    for hi in (100, 200, 400, 800, 1000):
        b._rand = always(hi)
        seen.append(b.next_ms())
    assert seen == [100, 200, 400, 800, 1000]


def test_delays_are_random_and_bounded():
    random.seed(7)
    b = Backoff(base_ms=1000, cap_ms=1000)
    vals = [b.next_ms() for _ in range(300)]
    assert min(vals) >= 0 and max(vals) <= 1000
    assert len(set(vals)) > 200  # not a constant or a short cycle
    assert min(vals) < 100 and max(vals) > 900  # the whole window is used


def test_reset_starts_again_from_base():
    b = Backoff(base_ms=50, cap_ms=10000)
    for _ in range(6):
        b.next_ms()
    assert b.ceiling() == 3200
    b.reset()
    assert b.attempt == 0 and b.ceiling() == 50


def test_huge_attempt_counts_stay_at_the_cap():
    b = Backoff(base_ms=500, cap_ms=60000)
    b.attempt = 10000
    assert b.ceiling() == 60000
    assert 0 <= b.next_ms() <= 60000


def test_retry_sleeps_between_failures_and_resets_on_success():
    b = Backoff(base_ms=10, cap_ms=40, rand=always(0))
    slept = []
    calls = [0]

    def flaky():
        calls[0] += 1
        if calls[0] < 4:
            raise OSError(104)
        return "up"

    assert retry(flaky, b, sleep=slept.append) == "up"
    assert calls[0] == 4 and len(slept) == 3
    assert b.attempt == 0


def test_retry_gives_up_after_tries_with_the_last_error():
    b = Backoff(base_ms=10, cap_ms=40)
    slept = []

    def down():
        raise OSError(111)

    e = raises(OSError, retry, down, b, 3, slept.append)
    assert e.args[0] == 111
    assert len(slept) == 2  # no sleep after the final failure
    assert b.attempt == 2


def test_retry_does_not_swallow_other_errors():
    def bug():
        raise ValueError("not a network problem")

    raises(ValueError, retry, bug, Backoff(), 0, lambda ms: None)
