# Outbox on flash: every reading stays here until the edge agent's end-to-end ack.
#
# Contract for the runtime: append(boot, seq, payload, alarm) -> flush() ->
# publish. A record leaves the outbox only through ack(boot, seq), called on a
# `down` message's `ack` map (docs/wire-format.md), never on a PUBACK: the
# gateway broker persists only periodically, so a PUBACK is not durability.
#
# Files, all in one directory:
#   00000001.seg ...  segment files, records appended in order, never edited
#                     in place; a segment is deleted whole once every record
#                     in it is acknowledged, or rewritten (copy to .tmp, rename)
#                     when the size limit forces an eviction;
#   state             acks {boot: highest acked seq} and the counters, JSON,
#                     written atomically (state.tmp + rename).
#
# Record (little-endian), 16 bytes of overhead:
#   0  u8   magic 0xD5
#   1  u8   flags: bit 0 = alarm, other bits 0
#   2  u16  payload length
#   4  u32  boot
#   8  u32  seq
#   12 ...  payload
#   -4 u32  CRC-32 (binascii.crc32) of the 12 header bytes + payload
#
# Damage, checked for every segment when the outbox is opened:
#   - torn tail (power cut mid-write): the bytes after the last record whose
#     CRC checks are dropped (the segment is rewritten without them: MicroPython
#     files have no truncate()). Good records are never dropped.
#   - damage in the middle (a record whose header or CRC is wrong, with good
#     records after it): the scan moves forward one byte at a time to the next
#     offset holding the magic byte, a sane header and a matching CRC, and
#     carries on from there; the skipped region is lost and counted in
#     `corrupt` (regions, not records: their count is unknowable). A false
#     resync needs a 32-bit CRC match inside the damaged bytes.
#   On littlefs (the ESP32 default) a cut write reverts to the last sync, so
#   these paths are for FAT, POSIX and real flash faults.
#
# Write batching (flash wear): append() buffers records in RAM and writes them
# with one write + sync when `batch` records are waiting, when the oldest is
# `max_age_ms` old (checked by append() and flush_due()), or on flush().
# Buffered records are lost on a power cut: the runtime calls flush() before
# sending anything, so nothing is sent that is not on flash. pending(), ack()
# and low() flush first.
#
# Order: pending() returns live alarms first, then the other records, each
# group in file order (append order; acked records never reappear).
#
# Size bound: bytes_used() (segment bytes + RAM buffer; `state` not counted)
# stays <= max_bytes. When an append would exceed it, the current segment is
# sealed and space is reclaimed from the oldest segments, in this order:
#   1. the oldest segment holding acknowledged records is rewritten without them;
#   2. else the oldest segment holding non-alarm records is rewritten keeping
#      only its alarms; the non-alarm records are counted in `dropped`;
#   3. else (only alarms left) the oldest segment is deleted whole; its alarms
#      are counted in `dropped` and `dropped_alarms`. The newest alarm wins.
# The counters are written to `state` after the segment is changed, so a cut
# in between may under-count by one eviction, never lose a record silently.
#
# Records dropped by eviction leave gaps the agent waits on forever when it
# acks "the highest seq with no gap below it". low(boot) gives the lowest seq
# of a boot the outbox still holds: the agent can treat every missing seq
# below it as settled (it can no longer arrive).
#
# RAM: one summary list per segment (a dict of the boots in it), the write
# buffer (up to `batch` records), a 256-byte scratch buffer. Nothing per record.

import json
import os
import struct
from binascii import crc32

from bootcount import replace, sync, write_atomic

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b


_MAGIC = const(0xD5)
_MAGIC_B = b"\xd5"
_HDR = "<BBHII"
_HLEN = const(12)
_OVER = const(16)  # header + CRC
_ALARM = const(1)
_MAXN = const(0xFFFF)
_MAXU32 = 0xFFFFFFFF  # not const(): a big int on 32-bit ports

# Segment summary: a list, indexed by these.
_NUM = const(0)  # file number
_SIZE = const(1)  # bytes on flash
_COUNT = const(2)  # records in the file, acked or not
_LIVE = const(3)  # records not yet acked
_ALARMS = const(4)  # live alarm records
_BOOTS = const(5)  # {boot: [min live seq, max live seq, live, live alarms]}
_FIRST = const(6)  # offset <= that of the first live record


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _mkdirs(path):
    p = None
    for part in path.split("/"):
        p = part if p is None else p + "/" + part
        if part:
            try:
                os.mkdir(p)
            except OSError:
                pass  # exists (errno differs per port); a real failure shows on first write


class Outbox:
    """Records (boot, seq, payload, alarm) in directory `path`, at most `max_bytes`
    of segments + buffer; `batch` records per write; segments of about
    `seg_bytes` (default max_bytes // 4); `max_age_ms` bounds how long a record
    waits in RAM (0: until batch or flush())."""

    def __init__(self, path, max_bytes, batch=8, seg_bytes=0, max_age_ms=0):
        self.dir = path.rstrip("/") if len(path) > 1 else path
        self.max_bytes = max_bytes
        self.seg_bytes = seg_bytes or max(max_bytes // 4, 256)
        if self.seg_bytes > max_bytes or batch < 1:
            raise ValueError("outbox: seg_bytes > max_bytes or batch < 1")
        self.batch = batch
        self.max_age_ms = max_age_ms
        self.dropped = 0  # records evicted by the size bound (persisted)
        self.dropped_alarms = 0  # of which alarms (persisted)
        self.corrupt = 0  # damaged regions skipped in the middle of a segment (persisted)
        self._acks = {}
        self._segs = []
        self._buf = bytearray()
        self._nbuf = 0
        self._t0 = 0
        self._sealed = False
        self._next = 1
        self._scratch = memoryview(bytearray(256))
        self._damaged = False
        _mkdirs(self.dir)
        self._load_state()
        self._open_segments()

    # ---- public API ----

    def append(self, boot, seq, payload, alarm=False):
        """Queue one record; it reaches flash at the next flush (see the batching note).
        Within a boot, seq must grow from one append to the next (bootcount.Seq)."""
        n = len(payload)
        need = n + _OVER
        if n > _MAXN or need > self.seg_bytes:
            raise ValueError("outbox: record of %d bytes too big" % n)
        if not (0 < boot <= _MAXU32 and 0 < seq <= _MAXU32):
            raise ValueError("outbox: boot and seq must be in 1..2**32-1")
        if self.bytes_used() + need > self.max_bytes:
            self._make_room(need)
        hdr = struct.pack(_HDR, _MAGIC, _ALARM if alarm else 0, n, boot, seq)
        b = self._buf
        b.extend(hdr)
        b.extend(payload)
        b.extend(struct.pack("<I", crc32(payload, crc32(hdr))))
        self._nbuf += 1
        if self._nbuf == 1:
            self._t0 = ticks_ms()
        if self._nbuf >= self.batch:
            self.flush()
        else:
            self.flush_due()

    def flush_due(self):
        """Flush if the oldest buffered record is max_age_ms old (call from the main loop)."""
        if self._nbuf and self.max_age_ms and ticks_diff(ticks_ms(), self._t0) >= self.max_age_ms:
            self.flush()

    def flush(self):
        """Write the buffered records to flash with one write + sync."""
        if not self._nbuf:
            return
        seg = self._active()
        path = self._path(seg[_NUM])
        try:
            with open(path, "ab") as f:
                f.write(self._buf)
                sync(f)
        except OSError:
            # Part of the buffer may be on flash: repair the segment (drops the
            # torn tail) and keep the buffer, so a retry writes it whole.
            try:
                self._rescan(seg)
            except OSError:
                pass  # repaired on the next open
            raise
        b = self._buf
        off = 0
        base = seg[_SIZE]
        while off < len(b):
            _, fl, n, boot, seq = struct.unpack_from(_HDR, b, off)
            self._note(seg, boot, seq, fl & _ALARM, base + off)
            off += n + _OVER
        seg[_SIZE] += len(b)
        self._buf = bytearray()
        self._nbuf = 0

    def pending(self, limit=8, skip=None):
        """Up to `limit` unacknowledged records as (boot, seq, payload, alarm): alarms
        first, then the rest, oldest first. `skip`: a container of (boot, seq) to
        leave out (e.g. those already sent on this connection). Returns a list."""
        self.flush()
        out = []
        for want in (_ALARM, 0):
            for seg in self._segs:
                if len(out) >= limit:
                    return out
                if (seg[_ALARMS] if want else seg[_LIVE] - seg[_ALARMS]) > 0:
                    self._collect(seg, want, limit, skip, out)
        return out

    def ack(self, boot, seq):
        """End-to-end ack from the agent: remove records of `boot` with seq <= `seq`.
        Returns how many records it removed."""
        self.flush()
        hi = 0
        for seg in self._segs:
            e = seg[_BOOTS].get(boot)
            if e and e[2] and e[1] > hi:
                hi = e[1]
        seq = min(seq, hi)  # never mark records not yet written as acked
        old = self._acks.get(boot, 0)
        if seq <= old:
            return 0
        self._acks[boot] = seq
        before = self.depth()
        active = self._active_seg()
        for seg in self._segs[:]:
            e = seg[_BOOTS].get(boot)
            if e and e[2] and e[0] <= seq:
                if e[1] <= seq:  # every live record of this boot in seg is now acked
                    seg[_LIVE] -= e[2]
                    seg[_ALARMS] -= e[3]
                    e[0] = e[1] = e[2] = e[3] = 0
                else:
                    self._ack_walk(seg, boot, old, seq)
            if seg[_LIVE] == 0 and seg is not active:
                self._drop_seg(seg)
        self._prune_acks()
        self._save_state()
        return before - self.depth()

    def depth(self):
        """Records not yet acknowledged (on flash and in the RAM buffer)."""
        n = self._nbuf
        for seg in self._segs:
            n += seg[_LIVE]
        return n

    def bytes_used(self):
        """Segment bytes on flash + bytes in the RAM buffer (bounded by max_bytes)."""
        n = len(self._buf)
        for seg in self._segs:
            n += seg[_SIZE]
        return n

    def low(self, boot):
        """Lowest unacknowledged seq of `boot` held here, or 0 if none."""
        self.flush()
        lo = 0
        for seg in self._segs:
            e = seg[_BOOTS].get(boot)
            if e and e[2] and (not lo or e[0] < lo):
                lo = e[0]
        return lo

    def close(self):
        self.flush()

    # ---- segments ----

    def _path(self, num):
        return "%s/%08d.seg" % (self.dir, num)

    def _active_seg(self):
        # The segment flush() appends to, or None when the next flush starts one.
        s = self._segs
        if s and not self._sealed and s[-1][_SIZE] < self.seg_bytes:
            return s[-1]
        return None

    def _active(self):
        seg = self._active_seg()
        if seg is None:
            s = self._segs
            if s and s[-1][_LIVE] == 0:  # a fully acked segment kept only for appending
                self._drop_seg(s[-1])
            seg = [self._next, 0, 0, 0, 0, {}, 0]
            self._next += 1
            self._sealed = False
            s.append(seg)
        return seg

    def _drop_seg(self, seg):
        try:
            os.remove(self._path(seg[_NUM]))
        except OSError:
            pass  # never written (a flush that failed before creating it)
        if seg in self._segs:
            self._segs.remove(seg)

    def _note(self, seg, boot, seq, alarm, off):
        # Count one record of seg in its summary. A boot stays in _BOOTS while
        # any record of it (acked or not) is in the file: its ack must be kept.
        seg[_COUNT] += 1
        e = seg[_BOOTS].get(boot)
        if e is None:
            e = seg[_BOOTS][boot] = [0, 0, 0, 0]
        if seq <= self._acks.get(boot, 0):
            return
        if seg[_LIVE] == 0 or off < seg[_FIRST]:
            seg[_FIRST] = off
        seg[_LIVE] += 1
        if not e[2] or seq < e[0]:
            e[0] = seq
        if seq > e[1]:
            e[1] = seq
        e[2] += 1
        if alarm:
            seg[_ALARMS] += 1
            e[3] += 1

    def _ack_walk(self, seg, boot, old, new):
        # Update seg's summary for ack(boot, new) when it acks only part of the
        # boot's records in seg. Reads headers only, from the first live record
        # up to the first record of `boot` above `new`: within a segment a boot's
        # seqs grow in file order (appends come in seq order, rewrites keep it).
        e = seg[_BOOTS][boot]
        size = seg[_SIZE]
        off = seg[_FIRST]
        first = -1
        acks = self._acks
        with open(self._path(seg[_NUM]), "rb") as f:
            while off + _OVER <= size:
                f.seek(off)
                h = f.read(_HLEN)
                if len(h) < _HLEN or h[0] != _MAGIC:
                    first = -2  # not a record boundary: cannot happen in a scanned file
                    break
                _, fl, n, b, s = struct.unpack(_HDR, h)
                if b == boot and old < s <= new:
                    seg[_LIVE] -= 1
                    e[2] -= 1
                    if fl & _ALARM:
                        seg[_ALARMS] -= 1
                        e[3] -= 1
                elif s > acks.get(b, 0):  # a live record
                    if first < 0:
                        first = off
                    if b == boot:
                        e[0] = s
                        break
                off += n + _OVER
        if first == -2:
            self._rescan(seg)  # recount from the file
            return
        seg[_FIRST] = first if first >= 0 else size
        if not e[2]:
            e[0] = e[1] = e[3] = 0

    def _open_segments(self):
        names = os.listdir(self.dir)
        nums = []
        for nm in names:
            if nm.endswith(".tmp") and nm != "state.tmp":
                seg = nm[:-4] + ".seg"
                if seg in names:  # a rewrite cut before its rename: the .seg is whole
                    os.remove(self.dir + "/" + nm)
                else:  # cut inside a FAT-style replace(): the synced .tmp is the segment
                    os.rename(self.dir + "/" + nm, self.dir + "/" + seg)
                    names.append(seg)
        for nm in names:
            if nm.endswith(".seg") and nm[:-4].isdigit():
                nums.append(int(nm[:-4]))
        nums.sort()
        corrupt = self.corrupt
        for num in nums:
            seg = [num, 0, 0, 0, 0, {}, 0]
            self._segs.append(seg)
            self._rescan(seg)
            self._next = num + 1
        last = self._segs[-1] if self._segs else None
        for seg in self._segs[:]:
            if seg[_LIVE] == 0 and (seg is not last or seg[_SIZE] == 0):
                self._drop_seg(seg)
        self._prune_acks()
        if self.corrupt != corrupt:
            self._save_state()

    def _rescan(self, seg):
        """Recount seg from its file; rewrite the file if it holds damage."""
        path = self._path(seg[_NUM])
        size = _size(path)
        if size < 0:
            self._drop_seg(seg)
            return
        self._damaged = False
        self._count(seg, path, size)
        if self._damaged:
            self._rewrite(seg, 1)

    def _rewrite(self, seg, keep, prev=None, cut=0):
        """Rewrite seg's file with its good live records (copy to .tmp, rename).
        keep=2 drops its non-alarm records; cut > 0 drops its oldest live records
        until that many bytes are gone; prev (the segment just before seg) is
        merged in front and deleted. Returns (records dropped, alarms among them)."""
        path = self._path(seg[_NUM])
        tmp = path[:-4] + ".tmp"
        corrupt = self.corrupt  # damage was counted when the file was first scanned
        acks = self._acks
        lost = lost_alarms = 0
        with open(tmp, "wb") as out:
            for s in (prev, seg) if prev else (seg,):
                p = self._path(s[_NUM])
                with open(p, "rb") as f:
                    for off, fl, n, boot, seq in self._records(f, 0, _size(p)):
                        if seq <= acks.get(boot, 0):
                            continue
                        if s is seg and (cut > 0 or (keep == 2 and not fl & _ALARM)):
                            lost += 1
                            lost_alarms += fl & _ALARM
                            cut -= n + _OVER
                            continue
                        f.seek(off)
                        out.write(f.read(n + _OVER))
            sync(out)
        self.corrupt = corrupt
        if _size(tmp) == 0:
            os.remove(tmp)
            self._drop_seg(seg)
        else:
            # A cut between this rename and prev's removal leaves prev's records
            # twice: they are sent twice and the agent deduplicates.
            replace(tmp, path)
            self._count(seg, path, _size(path))
        if prev:
            self._drop_seg(prev)
        return lost, lost_alarms

    def _count(self, seg, path, size):
        seg[_SIZE] = size
        seg[_COUNT] = seg[_LIVE] = seg[_ALARMS] = 0
        seg[_BOOTS] = {}
        seg[_FIRST] = size
        with open(path, "rb") as f:
            for off, fl, _n, boot, seq in self._records(f, 0, size):
                self._note(seg, boot, seq, fl & _ALARM, off)

    def _collect(self, seg, want, limit, skip, out):
        acks = self._acks
        path = self._path(seg[_NUM])
        with open(path, "rb") as f:
            for off, fl, n, boot, seq in self._records(f, seg[_FIRST], seg[_SIZE]):
                if (fl & _ALARM) != want or seq <= acks.get(boot, 0):
                    continue
                if skip and (boot, seq) in skip:
                    continue
                f.seek(off + _HLEN)
                out.append((boot, seq, f.read(n), bool(want)))
                if len(out) >= limit:
                    return

    # ---- record scanning ----

    def _records(self, f, off, size):
        # Yield (offset, flags, length, boot, seq) of each good record in
        # f[off:size], skipping damaged bytes (see the header comment).
        while off + _OVER <= size:
            r = self._check(f, off, size)
            if r is None:
                nxt = self._resync(f, off + 1, size)
                if nxt < 0:
                    break  # torn (or damaged) tail
                self.corrupt += 1
                self._damaged = True
                off = nxt
                continue
            yield (off,) + r
            off += r[1] + _OVER
        if off < size:
            self._damaged = True

    def _check(self, f, off, size):
        # (flags, length, boot, seq) if a good record starts at off, else None.
        f.seek(off)
        h = f.read(_HLEN)
        if len(h) < _HLEN:
            return None
        m, fl, n, boot, seq = struct.unpack(_HDR, h)
        if m != _MAGIC or fl & ~_ALARM or off + n + _OVER > size:
            return None
        crc = crc32(h)
        mv = self._scratch
        left = n
        while left:
            k = f.readinto(mv[: min(left, len(mv))])
            if not k:
                return None
            crc = crc32(mv[:k], crc)
            left -= k
        t = f.read(4)
        if len(t) < 4 or struct.unpack("<I", t)[0] != crc:
            return None
        return fl, n, boot, seq

    def _resync(self, f, off, size):
        # Offset of the next good record at or after off, or -1.
        while off + _OVER <= size:
            f.seek(off)
            chunk = f.read(256)
            if not chunk:
                break
            i = chunk.find(_MAGIC_B)
            while i >= 0:
                if self._check(f, off + i, size):
                    return off + i
                i = chunk.find(_MAGIC_B, i + 1)
            off += len(chunk)
        return -1

    # ---- size bound ----

    def _make_room(self, need):
        self.flush()
        self._sealed = True  # the active segment becomes a candidate; the next flush starts one
        segs = self._segs
        changed = False
        while segs and self.bytes_used() + need > self.max_bytes:
            changed = True
            lost = (0, 0)
            for seg in segs:  # 1. acknowledged records: free, nothing lost
                if seg[_COUNT] > seg[_LIVE]:
                    self._rewrite(seg, 1)
                    break
            else:
                for i in range(len(segs)):  # 2. the oldest non-alarm records
                    seg = segs[i]
                    if seg[_LIVE] > seg[_ALARMS]:
                        # Merge into an alarm-only segment just before it, so
                        # evictions do not leave a trail of small files.
                        prev = segs[i - 1] if i else None
                        if prev and (prev[_SIZE] >= self.seg_bytes or prev[_LIVE] > prev[_ALARMS]):
                            prev = None
                        lost = self._rewrite(seg, 2, prev)
                        break
                else:  # 3. only alarms left: the oldest ones, as few as fit
                    over = self.bytes_used() + need - self.max_bytes
                    lost = self._rewrite(segs[0], 1, None, over)
            self.dropped += lost[0]
            self.dropped_alarms += lost[1]
        if changed:
            self._prune_acks()
            self._save_state()

    # ---- state file ----

    def _prune_acks(self):
        # Forget acks of boots no segment file holds any record of.
        keep = {}
        for seg in self._segs:
            for b in seg[_BOOTS]:
                if b in self._acks:
                    keep[b] = self._acks[b]
        self._acks = keep

    def _load_state(self):
        p = self.dir + "/state"
        names = os.listdir(self.dir)
        if "state.tmp" in names:
            if "state" in names:  # write cut before its rename: state is whole
                os.remove(p + ".tmp")
            else:  # cut inside a FAT-style replace(): the synced tmp is the state
                os.rename(p + ".tmp", p)
        try:
            with open(p) as f:
                d = json.loads(f.read())
            self._acks = {int(k): v for k, v in d["acks"].items()}
            self.dropped = d["dropped"]
            self.dropped_alarms = d["dropped_alarms"]
            self.corrupt = d["corrupt"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            # Missing or unreadable: acked records come back as pending and are
            # sent again (the agent deduplicates); only the counters are lost.
            pass

    def _save_state(self):
        d = {
            "acks": {str(k): v for k, v in self._acks.items()},
            "dropped": self.dropped,
            "dropped_alarms": self.dropped_alarms,
            "corrupt": self.corrupt,
        }
        write_atomic(self.dir + "/state", json.dumps(d).encode())
