"""UART receive lines at the baud rate's pace, and NMEA logs streamed into them.

`UartLine` is the wire plus the chip's RX ring buffer of one UART: bytes fed
travel back to back at baud/10 bytes per second (8N1: a start bit, 8 data
bits, a stop bit) and only those that have fully arrived can be read. A feed
may be dated in the past (a scenario catching up): its bytes then start at
that time, or when the line has finished what was queued before.

`NmeaLog` splits a receiver log (e.g. /work/shared/data/nmea/*.log) into fix
epochs, where the time of an RMC or GGA changes, for `NmeaStream` to play at
line speed, one epoch per (scenario) second, or a factor of that.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from .errors import VBoardError

DEFAULT_BAUD = 115200  # the ESP32's UART before the firmware configures it
BITS_PER_BYTE = 10  # 8N1


class UartLine:
    """One UART's receive side: the wire (fed, in transit) and the RX FIFO (arrived)."""

    def __init__(self, baud: int = DEFAULT_BAUD) -> None:
        self.baud = baud
        self.speed = 1.0  # a factor on the line speed; math.inf: instant
        self.rxbuf: int | None = None  # the ring buffer's size once the board set one
        self.fifo = bytearray()  # arrived, not read yet
        self.wire = bytearray()  # fed, still on its way
        self.clock = 0.0  # when wire[0] starts (monotonic s); when idle, when the last ended
        self.received = 0  # bytes that reached the FIFO
        self.overrun = 0  # bytes lost because the FIFO was full

    @property
    def rate(self) -> float:
        """Bytes per second on the wire."""
        return self.baud / BITS_PER_BYTE * self.speed

    def advance(self, now: float) -> None:
        """Move the bytes whose stop bit has passed by `now` into the FIFO."""
        if not self.wire:
            return
        rate = self.rate
        if math.isinf(rate):
            k = len(self.wire)
        else:
            # byte i ends at clock + (i + 1) / rate; the epsilon keeps exact ends exact
            k = min(len(self.wire), int((now - self.clock) * rate + 1e-6))
            if k <= 0:
                return
            self.clock += k / rate
        chunk = self.wire[:k]
        del self.wire[:k]
        room = k if self.rxbuf is None else max(0, min(k, self.rxbuf - len(self.fifo)))
        self.fifo += chunk[:room]
        self.received += room
        self.overrun += k - room  # a full ring buffer drops what keeps coming, as IDF's does

    def feed(self, data: bytes, now: float, at: float | None = None) -> None:
        """Put bytes on the wire at `at` (default now; never before the line is free)."""
        self.advance(now)
        if not self.wire:
            self.clock = max(now if at is None else at, self.clock)
        self.wire += data
        self.advance(now)

    def configure(self, now: float, baud: int | None = None, rxbuf: int | None = None,
                  speed: float | None = None) -> None:
        """Change the line (the board's UART.init, a test's speed-up) from `now` on."""
        self.advance(now)
        if self.wire:
            self.clock = max(self.clock, now)
        if baud:
            self.baud = int(baud)
        if rxbuf:
            self.rxbuf = int(rxbuf)
        if speed is not None:
            if not speed > 0:
                raise VBoardError(f"UART speed must be > 0 (or 'instant'), got {speed!r}")
            self.speed = float(speed)

    def available(self, now: float) -> int:
        self.advance(now)
        return len(self.fifo)

    def take(self, n: int, now: float) -> bytes:
        """Up to n arrived bytes (n < 0: all of them)."""
        self.advance(now)
        n = len(self.fifo) if n < 0 else min(n, len(self.fifo))
        data = bytes(self.fifo[:n])
        del self.fifo[:n]
        return data

    def take_line(self, now: float) -> bytes:
        """Up to and including the first newline; all arrived bytes when there is none."""
        self.advance(now)
        end = self.fifo.find(b"\n")
        return self.take(end + 1 if end >= 0 else -1, now)

    def snapshot(self) -> dict[str, object]:
        return {"baud": self.baud, "speed": "instant" if math.isinf(self.speed) else self.speed,
                "rxbuf": self.rxbuf, "in_fifo": len(self.fifo), "on_wire": len(self.wire),
                "received": self.received, "overrun": self.overrun}


def parse_speed(value: object) -> float:
    """A UART speed option: a factor > 0, or 'instant'."""
    if value == "instant":
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise VBoardError(f"expected a factor > 0 or 'instant', got {value!r}")
    return float(value)


# ---- NMEA logs ----

_TIMED = ("RMC", "GGA")


def _fix_time(line: bytes) -> bytes | None:
    """The hhmmss[.ss] field of an RMC or GGA sentence (any talker), else None."""
    start = line.find(b"$")
    if start < 0 or line[start + 3:start + 6].decode("latin-1") not in _TIMED:
        return None
    fields = line[start:].split(b",")
    return fields[1] if len(fields) > 1 and fields[1] else None


class NmeaLog:
    """A receiver log as fix epochs: the bytes of each second, in order."""

    def __init__(self, epochs: list[bytes], source: str) -> None:
        if not epochs:
            raise VBoardError(f"{source}: no NMEA sentences")
        self.epochs = epochs
        self.source = source

    @classmethod
    def read(cls, path: Path | str) -> NmeaLog:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise VBoardError(f"cannot read {path}: {e.strerror or e}") from e
        return cls(split_epochs(data), str(path))

    @property
    def size(self) -> int:
        return sum(len(e) for e in self.epochs)


def split_epochs(data: bytes) -> list[bytes]:
    """Split at every RMC/GGA whose time differs from the epoch's so far.

    Lines starting with '#' (the gpsd test logs' headers) are left out; other
    bytes, binary UBX frames included, go out as the receiver sent them.
    Line ends become CR LF, as NMEA 0183 has them.
    """
    epochs: list[bytes] = []
    cur = bytearray()
    cur_t: bytes | None = None
    for raw in data.splitlines():
        if raw.startswith(b"#") or not raw.strip():
            continue
        t = _fix_time(raw)
        if t is not None:
            if cur_t is not None and t != cur_t and cur:
                epochs.append(bytes(cur))
                cur = bytearray()
            cur_t = t
        cur += raw + b"\r\n"
    if cur:
        epochs.append(bytes(cur))
    return epochs


class NmeaStream:
    """Plays an NmeaLog into a UART on the scenario's clock.

    rate "baud": everything back to back at line speed (kept about a second
    ahead of the line, so a looping log does not pile up); "realtime": one
    epoch per scenario second; a number: that many epochs per second.
    """

    def __init__(self, log: NmeaLog, rate: str | float, loop: bool = False,
                 start: float = 0.0) -> None:
        self.log = log
        self.rate = rate
        self.loop = loop
        self.start = start
        self.sent = 0  # epochs fed so far (over all loops)

    def _epoch(self, i: int) -> bytes | None:
        n = len(self.log.epochs)
        if i >= n and not self.loop:
            return None
        return self.log.epochs[i % n]

    def due(self, t: float) -> Iterator[tuple[float, bytes]]:
        """(scenario time, bytes) for the epochs due by scenario time t (for the timed rates)."""
        per_s = 1.0 if self.rate == "realtime" else float(self.rate)
        while True:
            at = self.start + self.sent / per_s
            if at > t:
                return
            data = self._epoch(self.sent)
            if data is None:
                return
            self.sent += 1
            yield at, data

    def next_at(self) -> float | None:
        if self.rate == "baud" or self._epoch(self.sent) is None:
            return None
        per_s = 1.0 if self.rate == "realtime" else float(self.rate)
        return self.start + self.sent / per_s

    def top_up(self, line: UartLine, now: float) -> None:
        """rate 'baud': keep about a second of bytes queued on the line."""
        line.advance(now)
        for _ in self.log.epochs:  # at most one pass of the log per call
            if len(line.wire) >= line.rate:
                return
            data = self._epoch(self.sent)
            if data is None:
                return
            self.sent += 1
            line.feed(data, now)
