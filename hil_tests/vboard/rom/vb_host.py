# MicroPython code: the side channel from the virtual board to its relay.
#
# Two pipes carry one JSON object per line.  The board sends events
# ({"op": "feed"}) and requests with a sequence number; the relay answers a
# request with {"seq": n, "v": value}.  A reply to a request that a
# KeyboardInterrupt abandoned arrives later with an older seq and is skipped.
import json
import os
import time

_tx = open(int(os.getenv("VBOARD_FD_TX")), "wb")
_rx = open(int(os.getenv("VBOARD_FD_RX")), "rb")
_seq = 0


def send(msg):
    _tx.write(json.dumps(msg).encode() + b"\n")


def ask(op, **kw):
    """One request/reply round trip with the relay's world model."""
    global _seq
    _seq += 1
    kw["op"] = op
    kw["seq"] = _seq
    send(kw)
    while True:
        line = _rx.readline()
        if not line:
            raise OSError(5)  # EIO: the relay is gone
        reply = json.loads(line)
        if reply.get("seq") == _seq:
            return reply.get("v")


def halt(msg):
    """Tell the relay to take the chip down (reset, deep sleep) and never return.

    The relay kills this process; until then nothing, not even a bare
    `except:` in firmware, gets control back, as on the chip.
    """
    send(msg)
    while True:
        try:
            time.sleep(1)
        except BaseException:  # noqa: B036 - KeyboardInterrupt must not escape either
            pass
