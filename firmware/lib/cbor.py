# CBOR (RFC 8949) for the firmware: the subset the wire contract uses.
#
# Types: None, bool, int in [-2**64, 2**64-1] (major types 0 and 1, no
# bignums), float, str, bytes/bytearray, list/tuple, dict, and Tag(tag, value)
# for tagged items (COSE_Mac0 is tag 17).
#
# dumps() writes RFC 8949 deterministic encoding (section 4.2.1): preferred
# serialization (shortest heads, definite lengths, each float in the shortest
# of half/single/double that holds its value exactly, NaN as f97e00) and map
# keys sorted by their encoded bytes. Sorting makes the bytes the same on
# MicroPython, whose dicts do not keep insertion order, and on CPython.
#
# loads() accepts any well-formed definite-length item in that type set (it
# does not insist on preferred heads) and raises ValueError("<what> at <byte
# offset>") for truncated or malformed input, trailing bytes, indefinite
# lengths, reserved additional info 28-30, a stray break, invalid UTF-8,
# duplicate or unhashable map keys, simple values other than false/true/null,
# and nesting deeper than MAX_DEPTH containers.
#
# RAM: dumps encodes into one bytearray (map keys other than one-byte ints
# are encoded once more on their own to sort them); loads walks the input
# with an index and copies only string contents. Recursion is bounded by
# MAX_DEPTH both ways.

import math
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


MAX_DEPTH = const(16)  # nested arrays/maps/tags allowed, as cbor2's max_depth
_U64 = 0xFFFFFFFFFFFFFFFF  # not const(): a big int on 32-bit ports
_F32_MAX = 3.4028234663852886e38
_INF = float("inf")
_NAN = float("nan")


class Tag:
    """A tagged data item: tag number (uint) and the item it tags."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


# ---------------------------------------------------------------- encoding


def dumps(obj):
    """Encode obj as deterministic CBOR; ValueError for out-of-range ints or
    too deep nesting, TypeError for unsupported types."""
    buf = bytearray()
    _enc(buf, obj, 0)
    return bytes(buf)


def _head(buf, mt, n):
    # Initial byte: major type in the top 3 bits, then the argument in the
    # low 5 bits (< 24) or in the 1/2/4/8 bytes that follow (ai 24..27).
    mt <<= 5
    if n < 24:
        buf.append(mt | n)
    elif n < 0x100:
        buf.append(mt | 24)
        buf.append(n)
    elif n < 0x10000:
        buf.append(mt | 25)
        buf.extend(struct.pack(">H", n))
    elif n < 0x100000000:
        buf.append(mt | 26)
        buf.extend(struct.pack(">I", n))
    else:
        buf.append(mt | 27)
        buf.extend(struct.pack(">Q", n))


def _key0(item):
    return item[0]


def _small(k):
    return isinstance(k, int) and k is not True and k is not False and -24 <= k < 24


def _small_byte(k):
    return k if k >= 0 else 31 - k  # 0x00..0x17, or 0x20 | (-1 - k)


def _enc(buf, obj, depth):
    # bool before int: on CPython bool is an int subclass.
    if obj is None:
        buf.append(0xF6)
    elif obj is False:
        buf.append(0xF4)
    elif obj is True:
        buf.append(0xF5)
    elif isinstance(obj, int):
        if obj >= 0:
            if obj > _U64:
                raise ValueError("int out of range")
            _head(buf, 0, obj)
        else:
            obj = -1 - obj  # major type 1 carries -1 - n
            if obj > _U64:
                raise ValueError("int out of range")
            _head(buf, 1, obj)
    elif isinstance(obj, float):
        _float(buf, obj)
    elif isinstance(obj, str):
        b = obj.encode()
        _head(buf, 3, len(b))
        buf.extend(b)
    elif isinstance(obj, (bytes, bytearray)):
        _head(buf, 2, len(obj))
        buf.extend(obj)
    else:
        depth += 1
        if depth > MAX_DEPTH:
            raise ValueError("nesting deeper than %d" % MAX_DEPTH)
        if isinstance(obj, (list, tuple)):
            _head(buf, 4, len(obj))
            for x in obj:
                _enc(buf, x, depth)
        elif isinstance(obj, dict):
            _head(buf, 5, len(obj))
            keys = list(obj)
            if all(_small(k) for k in keys):
                # Fast path for the contract's maps (keys -24..23, one byte
                # each): sort by that byte without encoding keys twice.
                keys.sort(key=_small_byte)
                for k in keys:
                    buf.append(_small_byte(k))
                    _enc(buf, obj[k], depth)
                return
            items = []
            for k in keys:
                kb = bytearray()
                _enc(kb, k, depth)
                items.append((kb, k))
            items.sort(key=_key0)
            for kb, k in items:
                buf.extend(kb)
                _enc(buf, obj[k], depth)
        elif isinstance(obj, Tag):
            t = obj.tag
            if not isinstance(t, int) or t is True or t is False or t < 0 or t > _U64:
                raise ValueError("bad tag number")
            _head(buf, 6, t)
            _enc(buf, obj.value, depth)
        else:
            raise TypeError("cannot encode %s" % type(obj).__name__)


def _float(buf, x):
    if x != x:
        buf.extend(b"\xf9\x7e\x00")  # the one NaN of preferred serialization
        return
    h = _to_half(x)
    if h is not None:
        buf.append(0xF9)
        buf.extend(struct.pack(">H", h))
        return
    if -_F32_MAX <= x <= _F32_MAX:
        s = struct.pack(">f", x)
        if struct.unpack(">f", s)[0] == x:
            buf.append(0xFA)
            buf.extend(s)
            return
    buf.append(0xFB)
    buf.extend(struct.pack(">d", x))


def _to_half(x):
    # IEEE 754 binary16 bits of x, or None when x is not exactly a half.
    # Done by hand: struct's 'e' format is optional in MicroPython builds.
    if x == 0:
        return 0x8000 if math.copysign(1.0, x) < 0 else 0  # -0.0 keeps its sign
    sign = 0x8000 if x < 0 else 0
    a = -x if sign else x
    if a == _INF:
        return sign | 0x7C00
    m, e = math.frexp(a)  # a = m * 2**e, 0.5 <= m < 1
    if e > 16:  # >= 65536
        return None
    if e >= -13:  # normal half: 11 significant bits, exponent field e + 14
        f = m * 2048.0
        if f != int(f):
            return None
        return sign | ((e + 14) << 10) | (int(f) - 1024)
    f = math.ldexp(m, e + 24)  # subnormal half: a multiple of 2**-24
    if f != int(f):
        return None
    return sign | int(f)


def _from_half(h):
    e = (h >> 10) & 0x1F
    f = h & 0x3FF
    if e == 0:
        v = math.ldexp(f, -24)
    elif e == 31:
        v = _NAN if f else _INF
    else:
        v = math.ldexp(f + 1024, e - 25)
    return -v if h & 0x8000 else v


# ---------------------------------------------------------------- decoding


def loads(data):
    """Decode exactly one CBOR item filling all of data (bytes, bytearray or
    memoryview); ValueError naming the problem and its byte offset."""
    n = len(data)
    v, i = _dec(data, 0, n, 0)
    if i != n:
        raise ValueError("trailing bytes at %d" % i)
    return v


def _err(what, at):
    return ValueError("%s at %d" % (what, at))


_UNPACK = (">B", ">H", ">I", ">Q")


def _dec(d, i, n, depth):
    if i >= n:
        raise _err("truncated", i)
    start = i
    ib = d[i]
    i += 1
    mt = ib >> 5
    ai = ib & 0x1F
    if mt == 7:
        return _simple(d, i, n, ai, start)
    if ai < 24:
        arg = ai
    elif ai < 28:
        k = 1 << (ai - 24)
        if i + k > n:
            raise _err("truncated", start)
        arg = struct.unpack_from(_UNPACK[ai - 24], d, i)[0]
        i += k
    elif ai == 31:
        raise _err("indefinite length" if 2 <= mt <= 5 else "bad additional info 31", start)
    else:
        raise _err("reserved additional info %d" % ai, start)
    if mt == 0:
        return arg, i
    if mt == 1:
        return -1 - arg, i
    if mt <= 3:
        if arg > n - i:
            raise _err("length %d beyond data" % arg, start)
        b = bytes(d[i : i + arg])
        i += arg
        if mt == 2:
            return b, i
        try:
            s = b.decode()
        except UnicodeError:
            raise _err("invalid UTF-8", start)
        if len(s) != len(b) and not _utf8_strict(b):  # only non-ASCII text
            raise _err("invalid UTF-8", start)
        return s, i
    depth += 1
    if depth > MAX_DEPTH:
        raise _err("nesting deeper than %d" % MAX_DEPTH, start)
    if mt == 4:
        if arg > n - i:  # every item takes at least one byte
            raise _err("length %d beyond data" % arg, start)
        out = []
        for _ in range(arg):
            v, i = _dec(d, i, n, depth)
            out.append(v)
        return out, i
    if mt == 5:
        if arg > (n - i) // 2:  # every pair takes at least two bytes
            raise _err("length %d beyond data" % arg, start)
        out = {}
        for _ in range(arg):
            at = i
            k, i = _dec(d, i, n, depth)
            if isinstance(k, (list, dict, Tag)):
                raise _err("unhashable key", at)
            if k in out:
                raise _err("duplicate key", at)
            v, i = _dec(d, i, n, depth)
            out[k] = v
        return out, i
    v, i = _dec(d, i, n, depth)  # mt == 6
    return Tag(arg, v), i


def _simple(d, i, n, ai, start):
    # Major type 7: simple values and floats.
    if ai == 20:
        return False, i
    if ai == 21:
        return True, i
    if ai == 22:
        return None, i
    if 25 <= ai <= 27:
        k = 1 << (ai - 24)
        if i + k > n:
            raise _err("truncated", start)
        if ai == 25:
            v = _from_half(struct.unpack_from(">H", d, i)[0])
        else:
            v = struct.unpack_from(">f" if ai == 26 else ">d", d, i)[0]
        return v, i + k
    if ai == 24:
        if i >= n:
            raise _err("truncated", start)
        if d[i] < 32:  # RFC 8949 3.3: not well-formed
            raise _err("bad simple value", start)
    elif ai == 31:
        raise _err("break outside indefinite", start)
    elif ai > 27:
        raise _err("reserved additional info %d" % ai, start)
    raise _err("unsupported simple value", start)  # undefined, 0..19, 32..255


def _utf8_strict(b):
    # MicroPython's decoder checks only the byte structure; reject what it
    # lets through: overlong forms, surrogates, code points above U+10FFFF.
    # The structure is already known valid, so b[j + 1] exists after a lead.
    for j in range(len(b)):
        c = b[j]
        if c < 0xC2:
            if c >= 0xC0:
                return False
            continue
        if c >= 0xF5:
            return False
        c2 = b[j + 1]
        if (
            (c == 0xE0 and c2 < 0xA0)
            or (c == 0xED and c2 >= 0xA0)
            or (c == 0xF0 and c2 < 0x90)
            or (c == 0xF4 and c2 >= 0x90)
        ):
            return False
    return True
