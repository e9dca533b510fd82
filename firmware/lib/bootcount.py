# Boot counter on flash, and the small-file helpers the outbox shares.
#
# Every reading is identified by (device, boot, seq) (docs/wire-format.md):
# `boot` must never repeat, or the agent would take new readings for
# duplicates of old ones and drop them. next_boot() therefore keeps two copies
# of the counter, each line "<n> <crc32 of n, hex>":
#
#   1. <path>.bak is written with the new value n (plain write, may tear);
#   2. <path>.tmp is written with n and renamed over <path> (atomic on
#      littlefs and POSIX; on FAT rename is remove + rename, see replace()).
#
# Reading takes the largest value among the copies whose CRC checks, so a
# cut at any byte of step 1 or 2 leaves at least one good copy >= the last
# value returned: the counter never goes back. A value may be skipped (cut
# after step 1), which the contract allows. If no copy is readable at all
# (flash wiped or every copy damaged) the counter restarts at 1; the agent
# sees the boot go back and must treat it as a re-provisioned node.
#
# The per-boot sequence is not persisted: it restarts at 1 on every boot,
# which is safe because the boot counter changed.
#
# RAM: a few small strings per call; nothing kept between calls.

import os
from binascii import crc32

_fsync = getattr(os, "fsync", None)  # CPython; MicroPython's flush() already syncs littlefs
_rename = os.rename  # a module attribute, so tests can play a FAT volume (os is read-only there)


def sync(f):
    """Push a file's written bytes to the medium (flush; fsync where the runtime has it)."""
    f.flush()
    if _fsync:
        _fsync(f.fileno())


def replace(src, dst):
    """Rename src over dst. Atomic where rename replaces (POSIX, littlefs); on a
    filesystem that refuses to rename onto an existing name (FAT) dst is
    removed first, so a cut in between leaves only src: readers must then use
    src (it was synced before this call)."""
    try:
        _rename(src, dst)
    except OSError:
        try:
            os.remove(dst)
        except OSError:
            pass
        _rename(src, dst)


def write_atomic(path, data):
    """Write data to path all-or-nothing: path.tmp, sync, rename over path."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        sync(f)
    replace(tmp, path)


def _line(n):
    return ("%d %08x\n" % (n, crc32(str(n).encode()))).encode()


def _read(path):
    # The value stored in one copy, or 0 when it is missing, torn or damaged.
    try:
        with open(path, "rb") as f:
            parts = f.read(40).split()
    except OSError:
        return 0
    if len(parts) != 2 or len(parts[1]) != 8:
        return 0
    try:
        n = int(parts[0])
        c = int(parts[1], 16)
    except ValueError:
        return 0
    if n < 1 or n > 0xFFFFFFFF or crc32(parts[0]) != c:
        return 0
    return n


def peek(path):
    """The last boot number next_boot() returned (0 if none), without changing it."""
    return max(_read(path), _read(path + ".bak"), _read(path + ".tmp"))


def next_boot(path):
    """Increment the persisted boot counter and return the new value (first boot: 1)."""
    n = peek(path) + 1
    if n > 0xFFFFFFFF:
        raise OSError("boot counter exhausted")
    line = _line(n)
    with open(path + ".bak", "wb") as f:
        f.write(line)
        sync(f)
    write_atomic(path, line)
    return n


class Seq:
    """Sequence numbers within one boot: 1, 2, 3, ... (the wire contract's `seq`)."""

    def __init__(self):
        self.last = 0

    def next(self):
        self.last += 1
        return self.last
