# firmware/lib/bootcount.py on CPython and inside the MicroPython VM.

import os
from binascii import crc32

import bootcount
from bootcount import Seq, next_boot, peek, write_atomic
from fwtest import read, scratch, write


def test_counts_up_from_one_and_persists():
    with scratch() as d:
        p = d + "/boot"
        assert peek(p) == 0
        assert [next_boot(p) for _ in range(3)] == [1, 2, 3]
        assert peek(p) == 3
        assert sorted(os.listdir(d)) == ["boot", "boot.bak"]


def test_a_torn_write_of_either_copy_never_lets_the_counter_go_back():
    with scratch() as d:
        p = d + "/boot"
        for _ in range(41):
            next_boot(p)
        good = read(p)
        for name in ("boot", "boot.bak"):
            for cut in range(len(good)):
                write(p, good)
                write(p + ".bak", good)
                write(d + "/" + name, good[:cut])
                n = next_boot(p)
                assert n == 42, (name, cut, n)


def test_a_cut_between_backup_and_rename_skips_a_value_but_never_repeats():
    with scratch() as d:
        p = d + "/boot"
        assert next_boot(p) == 1
        # next_boot wrote boot.bak = 2, then died while writing boot.tmp.
        write(p + ".bak", b"2 %08x\n" % crc32(b"2"))
        write(p + ".tmp", b"2 0")
        assert next_boot(p) == 3
        assert "boot.tmp" not in os.listdir(d)


def test_damaged_copies_are_ignored():
    with scratch() as d:
        p = d + "/boot"
        for _ in range(5):
            next_boot(p)
        write(p, b"9999 00000000\n")  # CRC does not match
        assert next_boot(p) == 6
        write(p, b"garbage")
        assert next_boot(p) == 7  # from boot.bak
        write(p + ".bak", b"")
        assert next_boot(p) == 8  # from boot


def test_write_atomic_replaces_whole_file():
    with scratch() as d:
        p = d + "/f"
        write_atomic(p, b"one")
        write_atomic(p, b"two")
        assert read(p) == b"two"
        assert os.listdir(d) == ["f"]


def test_replace_falls_back_when_rename_refuses_an_existing_target():
    # FAT refuses to rename onto an existing name; emulate it on this filesystem.
    calls = []
    with scratch() as d:

        def fat_rename(a, b):
            calls.append(b)
            if b[len(d) + 1 :] in os.listdir(d):
                raise OSError(17)
            os.rename(a, b)

        write(d + "/x", b"old")
        write(d + "/x.tmp", b"new")
        bootcount._rename = fat_rename
        try:
            bootcount.replace(d + "/x.tmp", d + "/x")
        finally:
            bootcount._rename = os.rename
        assert calls == [d + "/x", d + "/x"]
        assert read(d + "/x") == b"new"
        assert os.listdir(d) == ["x"]


def test_seq_restarts_at_one_per_boot():
    s = Seq()
    assert [s.next(), s.next(), s.next()] == [1, 2, 3]
    assert Seq().next() == 1
