"""The firmware's CBOR codec against cbor2, the agent's decoder: both directions, and strictness.

The firmware writes RFC 8949 deterministic encoding (map keys sorted by their encoded bytes);
cbor2's ``canonical=True`` sorts keys length-first (RFC 7049). The two orders agree whenever
every key of a map has the same major type, which holds for every map of the wire contract,
so byte equality is checked on such maps and value equality on all maps.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firmware" / "lib"))
import cbor  # noqa: E402  (firmware/lib, put on the path above)

# The recursive strategies' own repr is large; hypothesis warns about it on every run.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Tag numbers cbor2 leaves as plain CBORTag (no semantic decoding).
PLAIN_TAGS = [17, 18, 61, 1234, 40000, 2**40, 2**64 - 1]

INTS = st.integers(min_value=-(2**64), max_value=2**64 - 1)
SCALARS = (st.none() | st.booleans() | INTS | st.floats() | st.text(max_size=40)
           | st.binary(max_size=40))


def strict(data: bytes) -> Any:
    """cbor2 as the edge agent decodes: no indefinite lengths, no duplicate keys, depth 16."""
    return cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False,
                       max_depth=cbor.MAX_DEPTH)


def key_sets() -> list[st.SearchStrategy[Any]]:
    """Map key kinds of one major type each: the wire contract's maps are all like this."""
    return [st.text(max_size=30), st.integers(0, 2**64 - 1), st.integers(-(2**64), -1),
            st.binary(max_size=30)]


def containers(children: st.SearchStrategy[Any], mixed: bool) -> st.SearchStrategy[Any]:
    keys = [st.one_of(*key_sets())] if mixed else key_sets()
    maps = [st.dictionaries(k, children, max_size=6) for k in keys]
    tags = st.builds(cbor.Tag, st.sampled_from(PLAIN_TAGS), children)
    return st.one_of(st.lists(children, max_size=6), st.tuples(children, children), tags, *maps)


SAME_KIND_KEYS = st.recursive(SCALARS, lambda c: containers(c, False), max_leaves=25)
ANY_KEYS = st.recursive(SCALARS, lambda c: containers(c, True), max_leaves=25)


def depth(x: Any) -> int:
    if isinstance(x, (list, tuple)):
        return 1 + max((depth(v) for v in x), default=0)
    if isinstance(x, dict):
        return 1 + max((max(depth(k), depth(v)) for k, v in x.items()), default=0)
    if isinstance(x, cbor.Tag):
        return 1 + depth(x.value)
    return 0


def to_cbor2(x: Any) -> Any:
    """The firmware's value model as cbor2 objects (Tag -> CBORTag)."""
    if isinstance(x, (list, tuple)):
        return [to_cbor2(v) for v in x]
    if isinstance(x, dict):
        return {k: to_cbor2(v) for k, v in x.items()}
    if isinstance(x, cbor.Tag):
        return cbor2.CBORTag(x.tag, to_cbor2(x.value))
    return x


def same(a: Any, b: Any) -> bool:
    """Equality that tells int/float/bool apart, -0.0 from 0.0, NaN equal to NaN;
    lists equal tuples, firmware Tags equal cbor2 CBORTags."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (cbor.Tag, cbor2.CBORTag)) and isinstance(b, (cbor.Tag, cbor2.CBORTag)):
        return a.tag == b.tag and same(a.value, b.value)
    if isinstance(a, Mapping) and isinstance(b, Mapping):  # cbor2 has frozendict in tags
        # pair keys with same() rather than ==: a NaN key never equals itself
        return len(a) == len(b) and all(
            any(same(ka, kb) and same(va, vb) for kb, vb in b.items()) for ka, va in a.items()
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack(">d", a) == struct.pack(">d", b)
    return bool(a == b)


@SETTINGS
@given(SAME_KIND_KEYS)
def test_firmware_bytes_equal_cbor2_canonical(x: Any) -> None:
    assume(depth(x) <= cbor.MAX_DEPTH)
    assert cbor.dumps(x) == cbor2.dumps(to_cbor2(x), canonical=True)


@SETTINGS
@given(ANY_KEYS)
def test_cbor2_strictly_decodes_firmware_output_to_the_same_value(x: Any) -> None:
    assume(depth(x) <= cbor.MAX_DEPTH)
    data = cbor.dumps(x)
    assert same(strict(data), x)
    assert same(cbor.loads(data), x)


@SETTINGS
@given(ANY_KEYS, st.booleans())
def test_firmware_decodes_cbor2_output_to_the_same_value(x: Any, canonical: bool) -> None:
    assume(depth(x) <= cbor.MAX_DEPTH)
    # cbor2 without canonical writes every float as a double and keys in insertion order
    assert same(cbor.loads(cbor2.dumps(to_cbor2(x), canonical=canonical)), x)


@SETTINGS
@given(st.floats(width=16) | st.floats(width=32) | st.floats())
def test_float_width_matches_cbor2_minimal_float(f: float) -> None:
    assert cbor.dumps(f) == cbor2.dumps(f, canonical=True)
    if not math.isnan(f):
        # on CPython the hand-made half conversion agrees with struct's 'e'
        try:
            exact_half = struct.unpack(">e", struct.pack(">e", f))[0] == f
        except OverflowError:
            exact_half = False
        assert (cbor.dumps(f)[0] == 0xF9) == exact_half


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A valid encoding with one to three bytes cut, flipped, inserted or deleted."""
    x = draw(ANY_KEYS.filter(lambda v: depth(v) <= cbor.MAX_DEPTH))
    data = bytearray(cbor.dumps(x))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["cut", "flip", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "cut":
            del data[at:]
        elif op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data.insert(at, draw(st.integers(0, 255)))
        elif data:
            del data[at]
    return bytes(data)


def has_tag(x: Any) -> bool:
    if isinstance(x, cbor.Tag):
        return True
    if isinstance(x, list):
        return any(has_tag(v) for v in x)
    if isinstance(x, dict):
        return any(has_tag(k) or has_tag(v) for k, v in x.items())
    return False


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mangled() | st.binary(max_size=40))
def test_firmware_rejects_what_cbor2_strict_rejects(data: bytes) -> None:
    try:
        theirs = strict(data)
        ok_theirs = True
    except (cbor2.CBORDecodeError, ValueError, TypeError):
        ok_theirs = False
    try:
        ours = cbor.loads(data)
    except ValueError:
        return  # rejecting is always allowed: the firmware is the stricter of the two
    # Accepted by the firmware: cbor2 must accept it too, with the same value. The one
    # exception: cbor2 also checks the meaning of tags it knows (e.g. tag 0 must be text).
    if has_tag(ours):
        return
    assert ok_theirs, data.hex()
    assert same(theirs, ours), data.hex()


MALFORMED = {
    "empty": "",
    "truncated uint": "1901",
    "truncated text": "6261",
    "truncated array": "820118",
    "truncated double": "fb000000",
    "truncated tag": "c1",
    "indefinite bytes": "5f42010243030405ff",
    "indefinite text": "7f657374726561646d696e67ff",
    "indefinite array": "9f018202039f0405ffff",
    "indefinite map": "bf61610161629f0203ffff",
    "reserved ai 28": "1c",
    "reserved ai 29 in a map": "a1011d",
    "reserved ai 30 float": "fe",
    "bad ai 31 on uint": "1f",
    "break alone": "ff",
    "break in an array": "8201ff",
    "invalid UTF-8": "61ff",
    "overlong UTF-8": "62c080",
    "surrogate": "63eda080",
    "two-byte simple below 32": "f810",
    "nesting 17 deep": "81" * 17 + "00",
    "duplicate key": "a2010201 03",
    "array longer than the data": "9b00000000ffffffff00",
    "bytes longer than the data": "5affffffff00",
}


@pytest.mark.parametrize("hexdata", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_rejected_by_both(hexdata: str) -> None:
    data = bytes.fromhex(hexdata.replace(" ", ""))
    with pytest.raises(cbor2.CBORDecodeError):
        strict(data)
    with pytest.raises(ValueError):
        cbor.loads(data)


@pytest.mark.parametrize("hexdata", ["0000", "f7", "f0", "f8ff"],
                         ids=["trailing bytes", "undefined", "simple 16", "simple 255"])
def test_firmware_is_stricter_than_cbor2_here(hexdata: str) -> None:
    """cbor2.loads ignores trailing bytes and knows undefined/simple values; the wire contract
    has no use for either, so the firmware rejects them."""
    data = bytes.fromhex(hexdata)
    strict(data)
    with pytest.raises(ValueError):
        cbor.loads(data)
