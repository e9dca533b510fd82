# firmware/lib/outbox.py on CPython and inside the MicroPython VM.
# Each test works in its own directory under /tmp and removes it.

import os
import struct
import time
from binascii import crc32

from fwtest import raises, read, scratch, write
from outbox import Outbox


def segs(d):
    return sorted(nm for nm in os.listdir(d) if nm.endswith(".seg"))


def record(boot, seq, payload, alarm=False):
    # The on-flash format, written out independently of outbox.py.
    hdr = struct.pack("<BBHII", 0xD5, 1 if alarm else 0, len(payload), boot, seq)
    return hdr + payload + struct.pack("<I", crc32(hdr + payload))


def keys(recs):
    return [(b, s) for b, s, _p, _a in recs]


def test_records_round_trip_with_exact_bytes_on_flash():
    with scratch() as d:
        ob = Outbox(d, 4096, batch=8)
        ob.append(1, 1, b"first")
        ob.append(1, 2, b"", alarm=True)
        ob.append(2, 1, b"\x00\xff\xd5binary")
        ob.flush()
        assert segs(d) == ["00000001.seg"]
        want = record(1, 1, b"first") + record(1, 2, b"", True)
        want += record(2, 1, b"\x00\xff\xd5binary")
        assert read(d + "/00000001.seg") == want
        assert ob.bytes_used() == len(want)
        again = Outbox(d, 4096)
        assert again.pending(10) == [
            (1, 2, b"", True),
            (1, 1, b"first", False),
            (2, 1, b"\x00\xff\xd5binary", False),
        ]
        assert again.depth() == 3


def test_appends_stay_in_ram_until_batch_or_flush():
    with scratch() as d:
        ob = Outbox(d, 4096, batch=3)
        ob.append(1, 1, b"a")
        ob.append(1, 2, b"b")
        assert segs(d) == []  # a power cut now loses both: the runtime flushes before sending
        assert Outbox(d, 4096).depth() == 0
        assert ob.depth() == 2
        ob.append(1, 3, b"c")  # third record: the batch is written
        assert keys(Outbox(d, 4096).pending(10)) == [(1, 1), (1, 2), (1, 3)]
        ob.append(1, 4, b"d")
        ob.flush()
        assert keys(Outbox(d, 4096).pending(10)) == [(1, 1), (1, 2), (1, 3), (1, 4)]


def test_a_failed_flush_keeps_the_records_for_the_next_one():
    with scratch() as d:
        ob = Outbox(d, 4096, batch=8)
        ob.append(1, 1, b"a")
        ob.append(1, 2, b"b")
        os.rmdir(d)  # the write fails (a stand-in for a full or failing filesystem)
        raises(OSError, ob.flush)
        assert ob.depth() == 2
        os.mkdir(d)
        ob.flush()
        assert keys(Outbox(d, 4096).pending(10)) == [(1, 1), (1, 2)]


def test_flush_due_writes_old_buffered_records():
    with scratch() as d:
        ob = Outbox(d, 4096, batch=100, max_age_ms=20)
        ob.append(1, 1, b"a")
        ob.flush_due()
        assert Outbox(d, 4096).depth() == 0
        time.sleep(0.05)
        ob.flush_due()
        assert Outbox(d, 4096).depth() == 1


def test_pending_puts_alarms_first_and_honours_limit_and_skip():
    with scratch() as d:
        ob = Outbox(d, 8192, batch=1, seg_bytes=40)  # several segments
        for s in range(1, 13):
            ob.append(3, s, b"r%d" % s, alarm=(s % 5 == 0))
        got = ob.pending(20)
        assert keys(got) == [(3, 5), (3, 10)] + [(3, s) for s in range(1, 13) if s % 5]
        assert [a for _b, _s, _p, a in got] == [True, True] + [False] * 10
        assert keys(ob.pending(3)) == [(3, 5), (3, 10), (3, 1)]
        assert keys(ob.pending(3, skip={(3, 5), (3, 1)})) == [(3, 10), (3, 2), (3, 3)]
        assert len(segs(d)) > 2


def test_ack_removes_only_records_of_that_boot_up_to_seq():
    with scratch() as d:
        ob = Outbox(d, 8192)
        for boot in (1, 2):
            for s in range(1, 6):
                ob.append(boot, s, b"x")
        assert ob.ack(2, 3) == 3
        assert keys(ob.pending(20)) == [(1, s) for s in range(1, 6)] + [(2, 4), (2, 5)]
        assert ob.ack(2, 3) == 0  # repeated ack
        assert ob.ack(2, 2) == 0  # older ack
        assert ob.ack(7, 9) == 0  # unknown boot
        again = Outbox(d, 8192)
        assert keys(again.pending(20)) == [(1, s) for s in range(1, 6)] + [(2, 4), (2, 5)]
        assert again.ack(1, 1000) == 5  # beyond the newest seq: acks what is there
        assert again.depth() == 2
        again.append(1, 6, b"late record of boot 1")  # not covered by the earlier ack
        assert keys(again.pending(20)) == [(2, 4), (2, 5), (1, 6)]


def test_acked_segments_are_deleted_whole_and_stay_deleted():
    with scratch() as d:
        ob = Outbox(d, 8192, seg_bytes=64)
        for s in range(1, 11):
            ob.append(1, s, b"payload-%02d" % s)
            ob.flush()
        n = len(segs(d))
        assert n >= 4
        used = ob.bytes_used()
        assert ob.ack(1, 6) == 6
        assert len(segs(d)) < n
        assert ob.bytes_used() < used
        assert keys(ob.pending(20)) == [(1, s) for s in range(7, 11)]
        assert ob.ack(1, 10) == 4
        assert ob.depth() == 0
        assert len(segs(d)) <= 1  # at most the segment still being appended to
        assert Outbox(d, 8192, seg_bytes=64).pending(20) == []


def test_partial_ack_inside_a_segment_survives_reopen():
    with scratch() as d:
        ob = Outbox(d, 8192)
        for s in range(1, 9):
            ob.append(4, s, b"x" * 10)
        ob.ack(4, 5)
        assert segs(d) == ["00000001.seg"]  # acked records are still in the file...
        again = Outbox(d, 8192)
        assert keys(again.pending(20)) == [(4, 6), (4, 7), (4, 8)]  # ...but never come back
        assert again.low(4) == 6


def test_torn_tail_at_every_byte_is_dropped_and_earlier_records_kept():
    with scratch() as d:
        ob = Outbox(d, 4096)
        ob.append(1, 1, b"first")
        ob.append(1, 2, b"second", alarm=True)
        ob.append(1, 3, b"third \x00\xff")
        ob.flush()
        path = d + "/" + segs(d)[0]
        full = read(path)
        good = len(record(1, 1, b"first") + record(1, 2, b"second", True))
        for cut in range(good, len(full)):
            write(path, full[:cut])
            ob = Outbox(d, 4096)
            assert ob.pending(10) == [(1, 2, b"second", True), (1, 1, b"first", False)], cut
            assert read(path) == full[:good], cut  # torn bytes gone from flash
            assert ob.corrupt == 0
            ob.append(1, 3, b"third \x00\xff")
            ob.flush()
            assert read(path) == full, cut  # appends continue right after the good records


def test_torn_batch_keeps_the_complete_records_written_before_the_cut():
    with scratch() as d:
        ob = Outbox(d, 4096, batch=4)
        for s in range(1, 5):
            ob.append(1, s, b"batched %d" % s)  # one write of four records
        path = d + "/" + segs(d)[0]
        full = read(path)
        one = len(record(1, 1, b"batched 1"))
        write(path, full[: 2 * one + 3])
        assert keys(Outbox(d, 4096).pending(10)) == [(1, 1), (1, 2)]


def test_damaged_record_in_the_middle_is_skipped_at_every_byte():
    with scratch() as d:
        ob = Outbox(d, 4096)
        ob.append(1, 1, b"first")
        ob.append(1, 2, b"second")
        ob.append(1, 3, b"third")
        ob.flush()
        path = d + "/" + segs(d)[0]
        full = read(path)
        r1 = len(record(1, 1, b"first"))
        r2 = len(record(1, 2, b"second"))
        for i in range(r1, r1 + r2):
            bad = bytearray(full)
            bad[i] ^= 0xFF
            write(path, bad)
            try:
                os.remove(d + "/state")
            except OSError:
                pass
            ob = Outbox(d, 4096)
            assert ob.pending(10) == [(1, 1, b"first", False), (1, 3, b"third", False)], i
            assert ob.corrupt == 1, i
            assert read(path) == record(1, 1, b"first") + record(1, 3, b"third"), i
            assert Outbox(d, 4096).corrupt == 1  # counted once, persisted


def test_damage_in_the_last_record_is_a_torn_tail():
    with scratch() as d:
        ob = Outbox(d, 4096)
        ob.append(1, 1, b"first")
        ob.append(1, 2, b"second")
        ob.flush()
        path = d + "/" + segs(d)[0]
        bad = bytearray(read(path))
        bad[-1] ^= 0x01
        write(path, bad)
        ob = Outbox(d, 4096)
        assert keys(ob.pending(10)) == [(1, 1)]
        assert ob.corrupt == 0


def test_leftover_tmp_files_after_a_cut_rewrite():
    with scratch() as d:
        ob = Outbox(d, 4096)
        ob.append(1, 1, b"kept")
        ob.append(1, 2, b"acked")
        ob.ack(1, 1)
        # A rewrite cut before its rename: the .seg is whole, the .tmp is junk.
        write(d + "/00000001.tmp", b"\xd5junk")
        write(d + "/state.tmp", b"{junk")
        ob = Outbox(d, 4096)
        assert keys(ob.pending(10)) == [(1, 2)]
        assert sorted(os.listdir(d)) == ["00000001.seg", "state"]
        # A FAT-style replace() cut after removing the target: the synced .tmp is promoted.
        os.rename(d + "/00000001.seg", d + "/00000001.tmp")
        os.rename(d + "/state", d + "/state.tmp")
        ob = Outbox(d, 4096)
        assert keys(ob.pending(10)) == [(1, 2)]
        assert sorted(os.listdir(d)) == ["00000001.seg", "state"]


def test_unreadable_state_brings_acked_records_back_never_loses_them():
    with scratch() as d:
        ob = Outbox(d, 4096)
        for s in (1, 2, 3):
            ob.append(1, s, b"x")
        ob.ack(1, 2)
        write(d + "/state", b"not json")
        assert keys(Outbox(d, 4096).pending(10)) == [(1, 1), (1, 2), (1, 3)]


def test_full_outbox_drops_oldest_non_alarms_and_keeps_every_alarm():
    with scratch() as d:
        ob = Outbox(d, 1200, batch=4, seg_bytes=300)
        alarms = []
        for s in range(1, 121):
            alarm = s % 9 == 0
            if alarm:
                alarms.append(s)
            ob.append(5, s, b"reading %03d" % s, alarm)
            assert ob.bytes_used() <= 1200, s
        got = ob.pending(200)
        assert [s for _b, s, _p, a in got if a] == alarms
        normal = [s for _b, s, _p, a in got if not a]
        assert normal == [s for s in range(normal[0], 121) if s % 9]  # the newest survive
        assert ob.dropped == 120 - len(got)
        assert ob.dropped_alarms == 0
        again = Outbox(d, 1200, batch=4, seg_bytes=300)
        assert again.dropped == ob.dropped
        assert again.pending(200) == got
        assert again.low(5) == alarms[0]
        assert len(segs(d)) <= 6  # evictions merge alarm remnants instead of leaving a trail


def test_full_of_alarms_drops_the_oldest_alarms_and_counts_them():
    with scratch() as d:
        ob = Outbox(d, 600, batch=1, seg_bytes=200)
        for s in range(1, 61):
            ob.append(2, s, b"alarm %02d" % s, alarm=True)
            assert ob.bytes_used() <= 600
        seqs = [s for _b, s, _p, _a in ob.pending(100)]
        assert seqs == list(range(seqs[0], 61))
        assert ob.dropped == ob.dropped_alarms == seqs[0] - 1
        assert Outbox(d, 600, seg_bytes=200).dropped_alarms == seqs[0] - 1


def test_acked_space_is_reclaimed_before_anything_is_dropped():
    with scratch() as d:
        ob = Outbox(d, 1000, batch=1, seg_bytes=500)
        s = 0
        for _ in range(200):
            s += 1
            ob.append(1, s, b"x" * 30)
            ob.ack(1, s - 2)  # the agent keeps up, two records behind
            assert ob.bytes_used() <= 1000
        assert ob.dropped == 0
        assert keys(ob.pending(10)) == [(1, 199), (1, 200)]


def test_rejects_records_that_cannot_be_stored():
    with scratch() as d:
        ob = Outbox(d, 1000, seg_bytes=200)
        raises(ValueError, ob.append, 1, 1, b"x" * 185)
        raises(ValueError, ob.append, 0, 1, b"x")
        raises(ValueError, ob.append, 1, 0, b"x")
        raises(ValueError, ob.append, 1 << 32, 1, b"x")
        ob.append(1, 1, b"x" * 184)  # exactly one segment
        assert ob.depth() == 1
        raises(ValueError, Outbox, d, 100, 8, 200)


def test_directory_is_created_with_parents():
    with scratch() as d:
        ob = Outbox(d + "/a/b", 1000)
        ob.append(1, 1, b"x")
        ob.flush()
        assert keys(Outbox(d + "/a/b", 1000).pending(1)) == [(1, 1)]


def test_matches_a_simple_model_through_appends_acks_and_reboots():
    # Deterministic pseudo-random operations (an LCG: the same on both runtimes),
    # checked after each step against a dict of the records that must be pending.
    x = [12345]

    def rnd(n):
        x[0] = (x[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (x[0] >> 8) % n

    with scratch() as d:
        ob = Outbox(d, 1 << 20, batch=3, seg_bytes=120)
        model = {}
        boot, seq = 1, 0
        for step in range(400):
            op = rnd(10)
            if op < 6:
                seq += 1
                alarm = rnd(7) == 0
                ob.append(boot, seq, b"%d.%d" % (boot, seq), alarm)
                model[(boot, seq)] = alarm
            elif op < 8:
                b = boot if rnd(3) else max(1, boot - 1)
                top = max([s for (bb, s) in model if bb == b] or [0])
                upto = rnd(top + 2)
                ob.ack(b, upto)
                for k in [k for k in model if k[0] == b and k[1] <= upto]:
                    del model[k]
            elif op < 9:
                ob.flush()
                ob = Outbox(d, 1 << 20, batch=3, seg_bytes=120)
            else:
                ob.flush()
                ob = Outbox(d, 1 << 20, batch=3, seg_bytes=120)
                boot, seq = boot + 1, 0
            got = ob.pending(1000)
            want = sorted(k for k in model if model[k]) + sorted(k for k in model if not model[k])
            assert keys(got) == want, step
            assert [p for _b, _s, p, _a in got] == [b"%d.%d" % k for k in want], step
            assert ob.depth() == len(model), step
            for b in range(1, boot + 1):
                held = [s for (bb, s) in model if bb == b]
                assert ob.low(b) == (min(held) if held else 0), step
        assert ob.dropped == 0 and ob.corrupt == 0
