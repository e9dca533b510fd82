# firmware/lib/cbor.py on CPython and inside the MicroPython VM.
# Vectors from RFC 8949 Appendix A unless noted.

import math
import struct
from binascii import hexlify, unhexlify

import cbor
from cbor import Tag
from fwtest import raises

# Run in the VM with an ESP32-sized heap (read by the pytest plugin).
HEAPSIZE = "110K"

INF = float("inf")


def h(s):
    return unhexlify(s.replace(" ", ""))


def same(a, b):
    # Equality that also tells int from float from bool, -0.0 from 0.0, and NaN from NaN.
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if a != a:
            return b != b
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(a[i], b[i]) for i in range(len(a)))
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and same(a[k], b[k]) for k in a)
    if isinstance(a, Tag):
        return a.tag == b.tag and same(a.value, b.value)
    return a == b


# (value, preferred encoding): every Appendix A example of a supported type.
APPENDIX_A = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (0.0, "f90000"),
    (-0.0, "f98000"),
    (1.0, "f93c00"),
    (1.1, "fb3ff199999999999a"),
    (1.5, "f93e00"),
    (65504.0, "f97bff"),
    (100000.0, "fa47c35000"),
    (3.4028234663852886e38, "fa7f7fffff"),
    (1.0e300, "fb7e37e43c8800759c"),
    (5.960464477539063e-8, "f90001"),
    (0.00006103515625, "f90400"),
    (-4.0, "f9c400"),
    (-4.1, "fbc010666666666666"),
    (INF, "f97c00"),
    (float("nan"), "f97e00"),
    (-INF, "f9fc00"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (Tag(0, "2013-03-21T20:04:00Z"), "c074323031332d30332d32315432303a30343a30305a"),
    (Tag(1, 1363896240), "c11a514b67b0"),
    (Tag(1, 1363896240.5), "c1fb41d452d9ec200000"),
    (Tag(23, b"\x01\x02\x03\x04"), "d74401020304"),
    (Tag(24, b"dIETF"), "d818456449455446"),
    (Tag(32, "http://www.example.com"), "d82076687474703a2f2f7777772e6578616d706c652e636f6d"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
     "a56161614161626142616361436164614461656145"),
]


def test_appendix_a_encodes_preferred_and_decodes_back():
    for value, hx in APPENDIX_A:
        got = cbor.dumps(value)
        assert got == h(hx), "%r -> %s, want %s" % (value, hexlify(got), hx)
        assert same(cbor.loads(h(hx)), value), hx


def test_appendix_a_non_preferred_floats_decode():
    for hx, want in [
        ("fa7f800000", INF),
        ("faff800000", -INF),
        ("fb7ff0000000000000", INF),
        ("fbfff0000000000000", -INF),
        ("fa3fc00000", 1.5),
        ("fb3ff8000000000000", 1.5),
    ]:
        assert same(cbor.loads(h(hx)), want), hx
    for hx in ("fa7fc00000", "fb7ff8000000000000", "f97e01"):
        assert math.isnan(cbor.loads(h(hx)))
        # any NaN re-encodes as the preferred one
        assert cbor.dumps(cbor.loads(h(hx))) == h("f97e00")


def test_non_preferred_heads_are_accepted():
    assert cbor.loads(h("1800")) == 0
    assert cbor.loads(h("1b0000000000000001")) == 1
    assert cbor.loads(h("3900ff")) == -256
    assert cbor.loads(h("5801ff")) == b"\xff"
    assert cbor.loads(h("9a0000000101")) == [1]


def test_input_may_be_bytearray_or_memoryview():
    data = cbor.dumps({1: [b"ab", "c", 2.5]})
    want = {1: [b"ab", "c", 2.5]}
    assert cbor.loads(bytearray(data)) == want
    assert cbor.loads(memoryview(data)) == want


def test_int_head_widths_at_every_boundary():
    for n, size in [(23, 1), (24, 2), (255, 2), (256, 3), (65535, 3), (65536, 5),
                    (2 ** 32 - 1, 5), (2 ** 32, 9), (2 ** 64 - 1, 9)]:
        for v in (n, -1 - n):
            b = cbor.dumps(v)
            assert len(b) == size, (v, hexlify(b))
            assert b[0] >> 5 == (0 if v >= 0 else 1)
            assert cbor.loads(b) == v


def test_int_range_is_major_types_0_and_1_only():
    assert cbor.loads(cbor.dumps(2 ** 64 - 1)) == 2 ** 64 - 1
    assert cbor.loads(cbor.dumps(-(2 ** 64))) == -(2 ** 64)
    for v in (2 ** 64, -(2 ** 64) - 1, 2 ** 100, -(2 ** 100)):
        e = raises(ValueError, cbor.dumps, v)
        assert "range" in str(e)
    # a bignum (tag 2/3) decodes as a plain tag, never as an int
    assert cbor.loads(h("c249010000000000000000")) == Tag(2, h("010000000000000000"))


def test_float_width_is_the_shortest_exact_one():
    cases = [
        (0.5, 3), (2048.0, 3), (1.0009765625, 3),    # half: 11 significant bits
        (2.0 ** -14, 3), (2.0 ** -24, 3), (-(2.0 ** -20), 3),  # normal / subnormal half
        (2049.0, 5), (1.00048828125, 5),              # 12 bits: single
        (65505.0, 5), (65536.0, 5), (2.0 ** -25, 5),  # out of half range: single
        (2.0 ** -149, 5),                             # smallest single subnormal
        (0.1, 9), (1.0 / 3, 9), (2.0 ** -150, 9),     # need double
        (3.4028235677973366e38, 9), (1e39, 9),        # just above single range
    ]
    for v, size in cases:
        b = cbor.dumps(v)
        assert len(b) == size, (v, hexlify(b))
        assert b[0] == {3: 0xF9, 5: 0xFA, 9: 0xFB}[size]
        assert same(cbor.loads(b), v), v
    # a float stays a float even when integral
    assert cbor.dumps(1.0) != cbor.dumps(1)
    assert cbor.dumps(True) != cbor.dumps(1)


def test_every_half_value_round_trips_through_the_hand_made_conversion():
    # Decode each of the 65536 half bit patterns and re-encode it: every
    # finite half must come back as the same 3 bytes, every NaN as f97e00.
    for bits in range(0, 0x10000, 7):  # a stride keeps the VM run short
        b = bytes((0xF9, bits >> 8, bits & 0xFF))
        v = cbor.loads(b)
        want = h("f97e00") if (bits & 0x7C00 == 0x7C00 and bits & 0x3FF) else b
        assert cbor.dumps(v) == want, hexlify(b)
    for bits in (0x0001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0x7C00, 0x8001, 0xFBFF, 0xFC00):
        b = bytes((0xF9, bits >> 8, bits & 0xFF))
        assert cbor.dumps(cbor.loads(b)) == b


def test_map_keys_sorted_by_encoded_bytes():
    # 10 -> 0a, -1 -> 20, "b" -> 6162, "aa" -> 626161, None -> f6
    # (no bytes keys beside str ones: MicroPython warns when comparing them)
    want = {"aa": 4, "b": 3, -1: 2, 10: 1, None: 5}
    got = cbor.dumps(want)
    assert got == h("a5 0a01 2002 616203 62616104 f605")
    # the same however the dict was built
    for order in ((None, 10, "aa", -1, "b"), ("b", -1, "aa", 10, None)):
        d = {}
        for k in order:
            d[k] = want[k]
        assert cbor.dumps(d) == got
    assert cbor.loads(got) == want
    # one-byte int keys: 0..23 first, then -1..-24
    assert cbor.dumps({-24: 0, 23: 0, -1: 0, 0: 0}) == h("a4 0000 1700 2000 3700")
    assert cbor.dumps({24: 0, -1: 0, True: 0}) == h("a3 1818 00 2000 f500")


def test_round_trip_nested_structure():
    obj = {
        0: 1,
        1: "wl-0007",
        5: [{0: "level", 2: 1.234, -3: 1717171717}, {0: "fix", 4: True}],
        "blob": b"\x00\xff" * 40,
        "none": None,
        "neg": [-1, -24, -25, -(2 ** 40)],
        "tuple": (1, 2),
        -2: Tag(17, [b"", {}, b"x", b"y"]),
        "text": "x" * 300,
    }
    back = cbor.loads(cbor.dumps(obj))
    obj["tuple"] = [1, 2]  # tuples come back as lists
    assert same(back, obj)
    assert bytearray(b"ab") == cbor.loads(cbor.dumps(bytearray(b"ab")))


def test_tag_round_trip_and_cose_mac0_shape():
    mac0 = Tag(17, [h("a10105"), {}, b"payload", b"\x00" * 8])
    b = cbor.dumps(mac0)
    assert b[:2] == h("d184")  # tag 17, array of 4
    back = cbor.loads(b)
    assert isinstance(back, Tag) and back == mac0 and not (back != mac0)
    assert back != Tag(18, mac0.value)
    assert cbor.loads(h("db ffffffffffffffff 00")) == Tag(2 ** 64 - 1, 0)
    for bad in (-1, 2 ** 64, "17", True):
        raises(ValueError, cbor.dumps, Tag(bad, 0))


def test_dumps_rejects_unsupported_types_and_cycles():
    raises(TypeError, cbor.dumps, {1, 2})
    raises(TypeError, cbor.dumps, object())
    raises(TypeError, cbor.dumps, [1, {"x": object()}])
    loop = []
    loop.append(loop)
    e = raises(ValueError, cbor.dumps, loop)
    assert "nesting" in str(e)


def nested(n, leaf=b"\x00"):
    return b"\x81" * n + leaf


def test_depth_cap_both_ways():
    assert cbor.loads(nested(cbor.MAX_DEPTH)) is not None
    e = raises(ValueError, cbor.loads, nested(cbor.MAX_DEPTH + 1))
    assert str(e) == "nesting deeper than 16 at 16"
    # maps and tags count too
    raises(ValueError, cbor.loads, b"\xa1\x00" * 17 + b"\x00")
    raises(ValueError, cbor.loads, b"\xc1" * 17 + b"\x00")
    assert cbor.loads(b"\xa1\x00" * 16 + b"\x00") is not None
    v = 0
    for _ in range(cbor.MAX_DEPTH):
        v = [v]
    assert cbor.loads(cbor.dumps(v)) == v
    raises(ValueError, cbor.dumps, [v])


def bad(hx, msg):
    e = raises(ValueError, cbor.loads, h(hx))
    assert str(e) == msg, "%s: %r, want %r" % (hx, str(e), msg)


def test_rejects_truncated_input():
    bad("", "truncated at 0")
    bad("19 01", "truncated at 0")
    bad("1b 00000000", "truncated at 0")
    bad("82 01 18", "truncated at 2")
    bad("a1 01 19 00", "truncated at 2")
    bad("c1", "truncated at 1")
    bad("f9 00", "truncated at 0")
    bad("fb 000000", "truncated at 0")
    bad("f8", "truncated at 0")
    # every proper prefix of a real item is rejected, never decoded short
    whole = cbor.dumps({0: 1, 5: [{0: "x", 2: 1.1, 8: b"ab"}, -1000], 6: Tag(17, "z")})
    for cut in range(len(whole)):
        raises(ValueError, cbor.loads, whole[:cut])


def test_rejects_declared_lengths_beyond_the_data():
    bad("62 61", "length 2 beyond data at 0")
    bad("5a ffffffff 00", "length 4294967295 beyond data at 0")
    bad("9b ffffffffffffffff 00", "length 18446744073709551615 beyond data at 0")
    bad("83 01 02", "length 3 beyond data at 0")
    bad("a2 01 02 03", "length 2 beyond data at 0")  # two pairs need >= 4 bytes
    bad("81 7a 00010000", "length 65536 beyond data at 1")


def test_rejects_trailing_bytes():
    bad("00 00", "trailing bytes at 1")
    bad("82 01 02 03", "trailing bytes at 3")


def test_rejects_indefinite_lengths_appendix_a():
    for hx in ("5f42010243030405ff", "7f657374726561646d696e67ff", "9fff",
               "9f018202039f0405ffff", "bf61610161629f0203ffff",
               "bf6346756ef563416d7421ff"):
        bad(hx, "indefinite length at 0")
    bad("83018202039f0405ff", "indefinite length at 5")
    bad("826161bf61626163ff", "indefinite length at 3")


def test_rejects_reserved_and_invalid_additional_info():
    for mt in range(8):
        for ai in (28, 29, 30):
            bad("%02x" % (mt << 5 | ai), "reserved additional info %d at 0" % ai)
    for ib in ("1f", "3f", "df"):
        bad(ib, "bad additional info 31 at 0")


def test_rejects_break_outside_indefinite():
    bad("ff", "break outside indefinite at 0")
    bad("82 01 ff", "break outside indefinite at 2")
    bad("a1 ff 00", "break outside indefinite at 1")


def test_rejects_invalid_utf8():
    bad("61 ff", "invalid UTF-8 at 0")
    bad("62 e2 82", "invalid UTF-8 at 0")       # cut multi-byte sequence
    bad("61 80", "invalid UTF-8 at 0")          # stray continuation byte
    bad("62 c0 80", "invalid UTF-8 at 0")       # overlong NUL
    bad("63 e0 80 80", "invalid UTF-8 at 0")    # overlong 3-byte
    bad("64 f0 80 80 80", "invalid UTF-8 at 0")  # overlong 4-byte
    bad("63 ed a0 80", "invalid UTF-8 at 0")    # UTF-16 surrogate
    bad("64 f4 90 80 80", "invalid UTF-8 at 0")  # above U+10FFFF
    bad("82 00 61 fe", "invalid UTF-8 at 2")
    # the edges just inside the valid ranges still decode
    assert cbor.loads(h("63 ed 9f bf")) == "\ud7ff"
    assert cbor.loads(h("64 f4 8f bf bf")) == "\U0010ffff"
    assert cbor.loads(h("62 c2 80")) == "\x80"


def test_rejects_duplicate_and_unhashable_keys():
    bad("a2 01 02 01 03", "duplicate key at 3")
    bad("a2 6161 01 6161 02", "duplicate key at 4")
    bad("a1 80 00", "unhashable key at 1")
    bad("a1 a0 00", "unhashable key at 1")
    bad("a1 c100 00", "unhashable key at 1")


def test_rejects_simple_values_other_than_false_true_null():
    for hx in ("f7", "e0", "f0", "f3", "f820", "f8ff"):
        bad(hx, "unsupported simple value at 0")
    bad("f8 10", "bad simple value at 0")  # two-byte form of a value < 32
