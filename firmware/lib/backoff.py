# Retry delays: exponential backoff with full jitter, capped, reset on success.
#
# Delay for attempt k (0-based) is uniform in [0, min(cap, base * 2**k)] ms
# ("full jitter"): dozens of nodes that lost the same gateway come back
# spread over the window instead of reconnecting in lockstep.
#
# Randomness: random.getrandbits() only. Both runtimes have it; MicroPython
# builds without MICROPY_PY_RANDOM_EXTRA_FUNCS lack random.random()/randint().
# On the ESP32 the generator is seeded from the hardware RNG at boot.

import random
import time

try:
    from time import sleep_ms
except ImportError:  # CPython

    def sleep_ms(ms):
        time.sleep(ms / 1000)


class Backoff:
    def __init__(self, base_ms=500, cap_ms=60000, rand=None):
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.attempt = 0  # failures since the last success
        self._rand = rand or random.getrandbits

    def ceiling(self):
        """The upper bound of the next delay, ms."""
        c = self.base_ms
        for _ in range(self.attempt):  # doubling stops at the cap: no big ints on 32-bit ports
            if c >= self.cap_ms:
                break
            c <<= 1
        return min(c, self.cap_ms)

    def next_ms(self):
        """Delay before the next attempt, ms; each call counts one more failure."""
        hi = self.ceiling()
        self.attempt += 1
        # 30 random bits folded into 0..hi: a small int on every port; the modulo
        # bias is below hi / 2**30 (0.06 % for a 10-minute cap).
        return self._rand(30) % (hi + 1)

    def reset(self):
        """Call on success: the next failure starts again from base_ms."""
        self.attempt = 0


def retry(fn, backoff, tries=0, sleep=sleep_ms):
    """Call fn() until it returns without OSError; sleep backoff.next_ms() between
    failures. tries=0 retries forever; otherwise the last OSError is raised after
    `tries` calls. Resets backoff on success and returns fn's result."""
    n = 0
    while True:
        try:
            r = fn()
        except OSError:
            n += 1
            if tries and n >= tries:
                raise
            sleep(backoff.next_ms())
            continue
        backoff.reset()
        return r
