"""Strict decoding and schema checks of what nodes publish (docs/wire-format.md, version 1).

Everything from the network is hostile until proven otherwise: the size is capped before
decoding, cbor2 refuses deep nesting, indefinite lengths, duplicate keys and every
built-in semantic tag (bignums, shared references, dates...), trailing bytes are refused,
and the decoded value is checked key by key. A failure raises Rejected with a short
reason that goes into the dead-letter queue with the payload.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

import cbor2

from . import wire
from .errors import Rejected

MAX_U63 = (1 << 63) - 1  # SQLite INTEGER is a signed 64-bit number
COSE_MAC0_TAG = 17

# Every tag cbor2 6.x decodes by itself, mapped to a refusal: an envelope has no tags
# except the COSE_Mac0 wrapper, and bignums or shared references (cycles) must not sneak
# through as plain ints or lists. Any other tag comes out as a CBORTag, refused below.
_BUILTIN_TAGS = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260,
                 261, 1004, 55799)


def _refuse_tag(decoder: Any, *_: Any) -> Any:
    raise ValueError("tag not allowed")


_NO_SEMANTICS = {tag: _refuse_tag for tag in _BUILTIN_TAGS}


@dataclass(frozen=True)
class DeviceInfo:
    """What the registry says about a device, as the validator needs it."""

    role: str
    keyless: bool = True


@dataclass(frozen=True)
class Reading:
    device: str
    boot: int
    seq: int
    role: str
    alarm: bool
    payload: bytes
    lo: int | None = None  # lowest seq of this boot the node still holds (key 7)


@dataclass(frozen=True)
class Status:
    device: str
    online: bool
    fields: dict[str, Any]
    payload: bytes


Lookup = Callable[[str], DeviceInfo | None]


def decode_strict(data: bytes, max_depth: int) -> Any:
    """One CBOR item, nothing after it; Rejected on anything malformed."""
    fp = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(fp, max_depth=max_depth, allow_indefinite=False,
                                  allow_duplicate_keys=False,
                                  semantic_decoders=_NO_SEMANTICS).decode()
    except cbor2.CBORDecodeEOF:
        raise Rejected("bad CBOR: truncated") from None
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, OverflowError,
            MemoryError) as e:
        cause = e.__cause__ or e
        raise Rejected(f"bad CBOR: {str(e)[:60]}" + (f" ({str(cause)[:40]})"
                                                      if cause is not e else "")) from None
    if fp.tell() != len(data):
        raise Rejected(f"bad CBOR: {len(data) - fp.tell()} trailing bytes")
    return value


def _is_uint(v: object) -> TypeGuard[int]:
    return type(v) is int and 0 <= v <= MAX_U63


def _is_number(v: Any) -> bool:
    if type(v) is int:
        return True
    return type(v) is float and math.isfinite(v)


def _kind(v: Any) -> str:
    return "bool" if isinstance(v, bool) else type(v).__name__


def check_device_id(device: str) -> None:
    if not wire.DEVICE_RE.fullmatch(device):
        raise Rejected(f"bad device id {device[:40]!r} in topic")


def _known(device: str, lookup: Lookup, accept_unknown: bool) -> DeviceInfo | None:
    check_device_id(device)
    info = lookup(device)
    if info is None and not accept_unknown:
        raise Rejected("unknown device")
    return info


def validate_up(device: str, payload: bytes, lookup: Lookup, *, accept_unknown: bool = False,
                max_bytes: int = 16384) -> Reading:
    """Check one uplink message from topic `<prefix>/<device>/up`."""
    info = _known(device, lookup, accept_unknown)
    if len(payload) > max_bytes:
        raise Rejected(f"too large: {len(payload)} bytes > {max_bytes}")
    env = decode_strict(payload, max_depth=4)
    if isinstance(env, cbor2.CBORTag):
        if env.tag == COSE_MAC0_TAG:
            raise Rejected("COSE_Mac0 not supported yet")
        raise Rejected(f"unexpected tag {env.tag}")
    if not isinstance(env, dict):
        raise Rejected(f"envelope is a {_kind(env)}, not a map")
    if info is not None and not info.keyless:
        raise Rejected("bare envelope from a keyed device")
    for k in env:
        if type(k) is not int:
            raise Rejected(f"envelope key {k!r} is not an integer")
        if k < wire.FIRST_EXTENSION_KEY and k not in wire.ENVELOPE_KEYS:
            raise Rejected(f"unknown envelope key {k}")
    if env.get(wire.K_V) != wire.VERSION or type(env.get(wire.K_V)) is not int:
        raise Rejected(f"v: must be {wire.VERSION}, got {env.get(wire.K_V)!r}"[:80])
    dev = env.get(wire.K_DEV)
    if dev != device:
        raise Rejected(f"dev {str(dev)[:40]!r} does not match topic device")
    boot = _counter("boot", env.get(wire.K_BOOT))
    seq = _counter("seq", env.get(wire.K_SEQ))
    ident = (device, boot, seq)
    try:
        return _check_body(env, device, boot, seq, info, payload)
    except Rejected as e:
        raise Rejected(e.reason, ident) from None


def _counter(name: str, v: object) -> int:
    if not _is_uint(v) or v < 1:
        raise Rejected(f"{name}: must be an integer 1..2^63-1, got {str(v)[:30]}")
    return v


def _check_body(env: dict[int, Any], device: str, boot: int, seq: int,
                info: DeviceInfo | None, payload: bytes) -> Reading:
    role = env.get(wire.K_ROLE)
    if role not in wire.ROLES:
        raise Rejected(f"role: unknown role {str(role)[:30]!r}")
    if info is not None and role != info.role:
        raise Rejected(f"role: {role} but the registry says {info.role}")
    ut = env.get(wire.K_UT)
    if wire.K_UT in env and not _is_uint(ut):
        raise Rejected(f"ut: must be an unsigned integer, got {str(ut)[:30]}")
    lo = env.get(wire.K_LO)
    if wire.K_LO in env and (not _is_uint(lo) or not 1 <= lo <= seq):
        raise Rejected(f"lo: must be an integer 1..seq, got {str(lo)[:30]}")
    pack = env.get(wire.K_PACK)
    if not isinstance(pack, list) or not 1 <= len(pack) <= wire.MAX_RECORDS:
        raise Rejected(f"pack: must be an array of 1..{wire.MAX_RECORDS} records")
    alarm = _check_pack(pack, role, has_ut=wire.K_UT in env)
    return Reading(device, boot, seq, role, alarm, payload, lo)


_NUMBER_LABELS = frozenset({wire.BT, wire.T})
_TEXT_LABELS = frozenset({wire.BU, wire.U, wire.N})
_VALUE_LABELS = frozenset(wire.VALUE_LABELS)


def _check_pack(pack: list[Any], role: str, has_ut: bool) -> bool:
    """Check every record; return whether the pack is an alarm."""
    base_unit: str | None = None
    events: list[str] = []
    zone: str | None = None
    labels, number_labels, text_labels = wire.LABELS, _NUMBER_LABELS, _TEXT_LABELS
    value_labels, names = _VALUE_LABELS, wire.NAMES
    for i, rec in enumerate(pack):
        if type(rec) is not dict and not isinstance(rec, dict):
            raise Rejected(f"pack[{i}]: record is a {_kind(rec)}, not a map")
        present = 0
        value_label = 0
        for label, value in rec.items():
            if type(label) is not int or label not in labels:
                raise Rejected(f"pack[{i}]: unknown label {str(label)[:20]}")
            if label in value_labels:
                present += 1
                value_label = label
            elif label == wire.BN:
                raise Rejected(f"pack[{i}]: bn is not sent on the wire")
            elif label in number_labels:
                if not _is_number(value):
                    raise Rejected(f"pack[{i}]: {'bt' if label == wire.BT else 't'}: "
                                   "not a number")
            elif label in text_labels and not isinstance(value, str):
                raise Rejected(f"pack[{i}]: label {label}: not a text string")
        if wire.BT in rec and has_ut:
            raise Rejected(f"pack[{i}]: bt and ut together")
        if i == 0 and wire.BT not in rec and not has_ut:
            raise Rejected("pack[0]: no bt and no ut")
        if wire.BU in rec:
            base_unit = rec[wire.BU]
        name = rec.get(wire.N)
        if name is None:
            raise Rejected(f"pack[{i}]: no name")
        spec = names.get(name)
        if spec is None:
            raise Rejected(f"pack[{i}]: unknown name {name[:20]!r}")
        roles, unit, want = spec
        if role not in roles:
            raise Rejected(f"pack[{i}]: {name} not allowed for {role}")
        if present != 1 or value_label != want:
            raise Rejected(f"pack[{i}]: {name} needs exactly one {_LABEL_NAMES[want]}")
        value = rec[want]
        if want != wire.V or not _is_number(value) or name == "track":
            _check_value(f"pack[{i}]", name, want, value)
        got_unit = rec.get(wire.U, base_unit if unit is not None else None)
        if unit is None and wire.U in rec:
            raise Rejected(f"pack[{i}]: {name} has no unit, got {rec[wire.U][:10]!r}")
        if got_unit is not None and got_unit != unit:
            raise Rejected(f"pack[{i}]: {name} unit must be {unit}, got {got_unit[:10]!r}")
        if name == "event":
            kind = wire.EVENTS.get(value)
            if kind is None:
                raise Rejected(f"pack[{i}]: unknown event {value[:20]!r}")
            if role not in kind[0]:
                raise Rejected(f"pack[{i}]: event {value} not allowed for {role}")
            events.append(value)
        elif name == "zone":
            zone = value
    # dwell: an alarm outside every zone (zone ""), and when the zone is not said (fail safe)
    return any(wire.EVENTS[e][1] or (e == wire.DWELL and not zone) for e in events)


_LABEL_NAMES = {wire.V: "v", wire.VS: "vs", wire.VB: "vb", wire.VD: "vd"}
_VALUE_OK: dict[int, Callable[[Any], bool]] = {
    wire.V: _is_number, wire.VS: lambda x: isinstance(x, str),
    wire.VB: lambda x: isinstance(x, bool), wire.VD: lambda x: isinstance(x, bytes)}


def _check_value(where: str, name: str, label: int, value: Any) -> None:
    if not _VALUE_OK[label](value):
        if isinstance(value, float) and label == wire.V:
            raise Rejected(f"{where}: {name}: v is not finite")
        raise Rejected(f"{where}: {name}: {_LABEL_NAMES[label]} must not be {_kind(value)}")
    if name == "track":
        _check_track(where, value)


def _check_track(where: str, data: bytes) -> None:
    """`vd` of `track`: CBOR of a flat int array, triples (dt, lat, lon)."""
    try:
        points = decode_strict(data, max_depth=1)
    except Rejected as e:
        raise Rejected(f"{where}: track: {e.reason}") from None
    if (not isinstance(points, list) or not points or len(points) % 3
            or not all(type(p) is int for p in points)):
        raise Rejected(f"{where}: track: must be a flat int array of triples")


def validate_status(device: str, payload: bytes, lookup: Lookup, *,
                    accept_unknown: bool = False, max_bytes: int = 16384) -> Status | None:
    """Check a status message; None for an empty retained payload (a cleared status)."""
    _known(device, lookup, accept_unknown)
    if not payload:
        return None
    if len(payload) > max_bytes:
        raise Rejected(f"too large: {len(payload)} bytes > {max_bytes}")
    st = decode_strict(payload, max_depth=1)
    if not isinstance(st, dict):
        raise Rejected(f"status is a {_kind(st)}, not a map")
    fields: dict[str, Any] = {}
    for k, v in st.items():
        if not isinstance(k, str):
            raise Rejected(f"status key {str(k)[:20]} is not text")
        types = wire.STATUS_TYPES.get(k)
        if types is None:
            continue  # newer firmware may add keys: keep them in the payload, ignore here
        if type(v) not in types or (isinstance(v, float) and not math.isfinite(v)):
            raise Rejected(f"status {k}: must not be {_kind(v)}")
        if k in wire.STATUS_UNSIGNED and not _is_uint(v):
            raise Rejected(f"status {k}: must be an unsigned integer")
        fields[k] = v
    if fields.get("v") != wire.VERSION:
        raise Rejected(f"status v: must be {wire.VERSION}")
    if fields.get("dev") != device:
        raise Rejected("status dev does not match topic device")
    if "online" not in fields:
        raise Rejected("status online: missing")
    if "reset" in fields and fields["reset"] not in wire.RESET_CAUSES:
        raise Rejected(f"status reset: unknown cause {fields['reset'][:20]!r}")
    if "link" in fields and fields["link"] not in wire.LINKS:
        raise Rejected(f"status link: unknown link {fields['link'][:20]!r}")
    return Status(device, fields["online"], fields, payload)


# Reason prefix -> a small fixed set of classes, for metric labels (the reasons themselves
# carry values and would make one time series per payload).
_REASON_CLASSES = (
    ("unexpected topic", "topic"),
    ("bad device id", "bad_device_id"),
    ("unknown device", "unknown_device"),
    ("too large", "too_large"),
    ("bad CBOR", "bad_cbor"),
    ("COSE_Mac0", "auth"),
    ("bare envelope", "auth"),
    ("dev ", "dev_mismatch"),
    ("status dev", "dev_mismatch"),
    ("role:", "role"),
    ("status", "status"),
    ("pack", "pack"),
)


def reason_class(reason: str) -> str:
    """The class of a rejection reason: one of the labels above, else "envelope"."""
    for prefix, cls in _REASON_CLASSES:
        if reason.startswith(prefix):
            return cls
    return "envelope"
