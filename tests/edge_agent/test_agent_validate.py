"""Validation of uplink envelopes and status maps (docs/wire-format.md), hostile input."""

from __future__ import annotations

import os
import tracemalloc
from typing import Any

import cbor2
import pytest
from edge_helpers import boat_pack, envelope, truck_pack, water_level_pack
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.errors import Rejected
from edge_agent.validate import DeviceInfo, Reading, decode_strict, validate_status, validate_up

REGISTRY = {"wl-0007": DeviceInfo("water_level"), "bt-0001": DeviceInfo("boat"),
            "tr-0001": DeviceInfo("truck"), "wl-keyed": DeviceInfo("water_level", keyless=False)}


def up(dev: str, payload: bytes, **kw: Any) -> Reading:
    return validate_up(dev, payload, REGISTRY.get, **kw)


def reason(dev: str, payload: bytes, **kw: Any) -> Rejected:
    with pytest.raises(Rejected) as e:
        up(dev, payload, **kw)
    return e.value


# --- good envelopes, one per role and event ---

@pytest.mark.parametrize("dev, role, pack, alarm", [
    ("wl-0007", "water_level", water_level_pack(), False),
    ("wl-0007", "water_level", water_level_pack(alert=True), True),
    ("wl-0007", "water_level", water_level_pack(clear=True), False),
    ("bt-0001", "boat", boat_pack(), False),
    ("bt-0001", "boat", boat_pack(zone="", event="zone_exit"), True),
    ("bt-0001", "boat", boat_pack(event="zone_enter"), False),
    ("bt-0001", "boat", boat_pack(event="off_hours"), True),
    ("bt-0001", "boat", boat_pack(zone="", event="dwell"), True),   # dwell outside every zone
    ("bt-0001", "boat", boat_pack(zone="Z3", event="dwell"), False),  # dwell inside a zone
    ("bt-0001", "boat", [r for r in boat_pack(event="dwell") if r.get(0) != "zone"], True),
    ("bt-0001", "boat", boat_pack(event="fix_lost"), False),
    ("tr-0001", "truck", truck_pack(), False),
    ("tr-0001", "truck", truck_pack(event="trip_start"), False),
    ("tr-0001", "truck", truck_pack(event="stop"), False),
    ("tr-0001", "truck", truck_pack(event="fix_lost"), False),
])
def test_good_envelopes_are_accepted_with_their_alarm_flag(dev: str, role: str,
                                                           pack: list[Any], alarm: bool) -> None:
    payload = envelope(dev, 3, 17, role, pack)
    r = up(dev, payload)
    assert r == Reading(dev, 3, 17, role, alarm, payload, None)


def test_payload_is_kept_byte_for_byte_and_extensions_are_ignored() -> None:
    payload = envelope("wl-0007", 1, 1, k16="future", k99=[1, 2])
    assert up("wl-0007", payload).payload == payload


def test_uptime_instead_of_base_time() -> None:
    pack = water_level_pack()
    del pack[0][-3]
    assert up("wl-0007", envelope("wl-0007", 1, 2, pack=pack, k6=123456)).seq == 2
    assert reason("wl-0007", envelope("wl-0007", 1, 2, pack=pack)).reason == \
        "pack[0]: no bt and no ut"
    assert reason("wl-0007", envelope("wl-0007", 1, 2, k6=5)).reason == \
        "pack[0]: bt and ut together"


def test_lo_is_read() -> None:
    assert up("wl-0007", envelope("wl-0007", 2, 9, k7=4)).lo == 4
    assert reason("wl-0007", envelope("wl-0007", 2, 9, k7=10)).reason.startswith("lo: ")


def test_unknown_devices_need_accept_unknown() -> None:
    payload = envelope("wl-9999", 1, 1)
    assert reason("wl-9999", payload).reason == "unknown device"
    assert up("wl-9999", payload, accept_unknown=True).device == "wl-9999"


def test_keyed_devices_must_not_send_bare_envelopes_and_mac0_is_not_yet_checked() -> None:
    assert reason("wl-keyed", envelope("wl-keyed", 1, 1)).reason == \
        "bare envelope from a keyed device"
    mac0 = cbor2.dumps(cbor2.CBORTag(17, [b"\xa1\x01\x05", {}, envelope("wl-0007", 1, 1),
                                          b"\x00" * 8]))
    assert reason("wl-0007", mac0).reason == "COSE_Mac0 not supported yet"


def env(**changes: Any) -> bytes:
    """A good water_level envelope with some keys changed (None: removed)."""
    e: dict[int, Any] = {0: 1, 1: "wl-0007", 2: 3, 3: 17, 4: "water_level",
                         5: water_level_pack()}
    for k, v in changes.items():
        key = int(k[1:])
        if v is None:
            e.pop(key)
        else:
            e[key] = v
    return cbor2.dumps(e)


def pack_with(record: dict[int, Any], role_pack: list[Any] | None = None) -> bytes:
    return env(k5=(role_pack or water_level_pack()) + [record])


IDENT = ("wl-0007", 3, 17)


@pytest.mark.parametrize("payload, why, ident", [
    (env(k0=2), "v: must be 1, got 2", None),
    (env(k0=True), "v: must be 1, got True", None),
    (env(k1="wl-0008"), "dev 'wl-0008' does not match topic device", None),
    (env(k2=0), "boot: must be an integer 1..2^63-1, got 0", None),
    (env(k3=-1), "seq: must be an integer 1..2^63-1, got -1", None),
    (env(k3="17"), "seq: must be an integer 1..2^63-1, got 17", None),
    (env(k3=2 ** 64 - 1), "seq: must be an integer 1..2^63-1, got 18446744073709551615", None),
    (env(k3=None), "seq: must be an integer 1..2^63-1, got None", None),
    (env(k9=1), "unknown envelope key 9", None),
    (env(k4="ferry"), "role: unknown role 'ferry'", IDENT),
    (env(k4="boat", k5=boat_pack()), "role: boat but the registry says water_level", IDENT),
    (env(k5=[]), "pack: must be an array of 1..64 records", IDENT),
    (env(k5=water_level_pack() * 11), "pack: must be an array of 1..64 records", IDENT),
    (env(k5={"level": 1}), "pack: must be an array of 1..64 records", IDENT),
    (env(k5=water_level_pack() + [[0, "level"]]), "pack[6]: record is a list, not a map", IDENT),
    (pack_with({0: "depth", 2: 1.0}), "pack[6]: unknown name 'depth'", IDENT),
    (pack_with({0: "zone", 3: ""}), "pack[6]: zone not allowed for water_level", IDENT),
    (pack_with({0: "level", 1: "cm", 2: 231}), "pack[6]: level unit must be m, got 'cm'", IDENT),
    (pack_with({0: "level", 3: "high"}), "pack[6]: level needs exactly one v", IDENT),
    (pack_with({0: "level", 2: 1.0, 4: True}), "pack[6]: level needs exactly one v", IDENT),
    (pack_with({0: "level", 2: True}), "pack[6]: level: v must not be bool", IDENT),
    (pack_with({0: "level", 2: float("nan")}), "pack[6]: level: v is not finite", IDENT),
    (pack_with({0: "level", 2: float("inf")}), "pack[6]: level: v is not finite", IDENT),
    (pack_with({-2: "wl-0007:", 0: "level", 2: 1.0}), "pack[6]: bn is not sent on the wire",
     IDENT),
    (pack_with({0: "level", 2: 1.0, 7: 1}), "pack[6]: unknown label 7", IDENT),
    (pack_with({0: "level", 2: 1.0, 6: "soon"}), "pack[6]: t: not a number", IDENT),
    (pack_with({2: 1.0}), "pack[6]: no name", IDENT),
    (pack_with({0: "event", 3: "tsunami"}), "pack[6]: unknown event 'tsunami'", IDENT),
    (pack_with({0: "event", 3: "zone_exit"}), "pack[6]: event zone_exit not allowed for "
                                              "water_level", IDENT),
])
def test_malformed_envelopes_get_specific_reasons(payload: bytes, why: str,
                                                  ident: tuple[str, int, int] | None) -> None:
    e = reason("wl-0007", payload)
    assert (e.reason, e.identity) == (why, ident)


def test_truck_track_must_be_cbor_triples() -> None:
    for vd, why in [(b"\x00\x01", "bad CBOR: 1 trailing bytes"),
                    (cbor2.dumps([1, 2]), "must be a flat int array of triples"),
                    (cbor2.dumps([1, 2, 3.5]), "must be a flat int array of triples"),
                    (cbor2.dumps([[1, 2, 3]]), "bad CBOR: maximum container nesting depth")]:
        pack = truck_pack()
        pack[3] = {0: "track", 8: vd}
        e = reason("tr-0001", envelope("tr-0001", 1, 1, "truck", pack))
        assert e.reason.startswith("pack[3]: track: " + why), e.reason


def test_unitless_names_must_not_carry_a_unit() -> None:
    pack = boat_pack() + [{0: "fix", 1: "V", 4: True}]
    e = reason("bt-0001", envelope("bt-0001", 3, 17, "boat", pack))
    assert (e.reason, e.identity) == ("pack[8]: fix has no unit, got 'V'", ("bt-0001", 3, 17))


def test_units_from_base_unit() -> None:
    pack = [{-3: 1, -4: "m", 0: "level", 2: 1.0}, {0: "distance", 2: 2.0}]
    assert up("wl-0007", envelope("wl-0007", 1, 1, pack=pack)).seq == 1
    pack = [{-3: 1, -4: "V", 0: "level", 2: 1.0}]
    assert reason("wl-0007", envelope("wl-0007", 1, 1, pack=pack)).reason == \
        "pack[0]: level unit must be m, got 'V'"


def test_topic_device_must_be_a_valid_id() -> None:
    for bad in ("WL-1", "-wl", "", "a" * 33, "wl_1", "wl-1/x"):
        assert reason(bad, envelope("wl-0007", 1, 1), accept_unknown=True).reason \
            .startswith("bad device id")


# --- hostile input ---

def big_head(major: int) -> bytes:
    """A head declaring 2^63 items/bytes with nothing behind it."""
    return bytes([major << 5 | 27]) + (1 << 63).to_bytes(8, "big")


HOSTILE = {
    "nesting 10,000 deep": b"\x81" * 10_000 + b"\x00",
    "map nesting 10,000 deep": b"\xa1\x00" * 10_000 + b"\x00",
    "bstr of 2^63": big_head(2),
    "tstr of 2^63": big_head(3),
    "array of 2^63": big_head(4),
    "map of 2^63": big_head(5),
    "array of 2^32-1 then nothing": b"\x9a\xff\xff\xff\xff\x00",
    "indefinite map": b"\xbf\x00\x01\xff",
    "indefinite bstr": b"\x5f\x41\x00\xff",
    "duplicate keys": b"\xa2\x00\x01\x00\x01",
    "shared reference cycle": b"\xd8\x1c\x81\xd8\x1d\x00",
    "date tag": b"\xc0\x74" + b"2020-01-01T00:00:00Z",
    "self-describe tag": b"\xd9\xd9\xf7" + envelope("wl-0007", 1, 1),
    "reserved info 28": b"\x1c",
    "break outside indefinite": b"\xff",
    "bad utf-8": b"\x62\xff\xfe",
    "undefined": b"\xf7",
    "simple value": b"\xf0",
    "float16 nan": b"\xf9\x7e\x00",
    "empty": b"",
    "random": os.urandom(4096),
    "trailing garbage": envelope("wl-0007", 1, 1) + b"\x00",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_inputs_are_rejected_cheaply(name: str) -> None:
    data = HOSTILE[name]
    tracemalloc.start()
    try:
        with pytest.raises(Rejected):
            up("wl-0007", data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{name}: {peak} bytes allocated"


def test_bignum_is_not_an_integer() -> None:
    e = cbor2.loads(envelope("wl-0007", 1, 1))
    raw = cbor2.dumps({**e, 3: 0}).replace(b"\x03\x00", b"\x03\xc2\x41\x05", 1)
    assert b"\xc2\x41\x05" in raw
    assert reason("wl-0007", raw).reason.startswith("bad CBOR: error decoding semantic tag 2")


def test_every_truncation_of_a_good_envelope_is_rejected() -> None:
    payload = envelope("tr-0001", 4, 99, "truck", truck_pack(event="stop"))
    for n in range(len(payload)):
        with pytest.raises(Rejected):
            up("tr-0001", payload[:n])


def test_size_is_checked_before_decoding() -> None:
    payload = envelope("wl-0007", 1, 1)
    assert up("wl-0007", payload, max_bytes=len(payload)).seq == 1
    e = reason("wl-0007", payload, max_bytes=len(payload) - 1)
    assert e.reason == f"too large: {len(payload)} bytes > {len(payload) - 1}"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        up("wl-0007", data)
    except Rejected:
        pass


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 64), 2 ** 64 - 1) | st.floats()
    | st.text(max_size=8) | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.integers(-5, 20) | st.text(max_size=3), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(-2, 20), cbor_values, max_size=8))
def test_random_maps_never_crash(env: dict[int, Any]) -> None:
    env.setdefault(1, "wl-0007")
    try:
        r = up("wl-0007", cbor2.dumps(env))
    except Rejected:
        return
    assert isinstance(r, Reading)


def test_decode_strict_reports_truncation() -> None:
    with pytest.raises(Rejected, match="^bad CBOR: truncated$"):
        decode_strict(b"\xa1\x01", max_depth=4)


# --- status ---

def status(**fields: Any) -> bytes:
    base: dict[str, Any] = {"v": 1, "dev": "wl-0007", "online": True, "fw": "0.3.1", "boot": 4,
                            "reset": "deepsleep", "heap": 81234, "rssi": -71, "link": "wifi",
                            "batt": 3.91, "outbox": 0, "dropped": 2, "uptime": 31,
                            "interval": 300}
    base.update(fields)
    return cbor2.dumps({k: v for k, v in base.items() if v is not None})


def test_status_and_last_will() -> None:
    s = validate_status("wl-0007", status(), REGISTRY.get)
    assert s is not None and s.online and s.fields["interval"] == 300
    will = cbor2.dumps({"v": 1, "dev": "wl-0007", "online": False})
    s = validate_status("wl-0007", will, REGISTRY.get)
    assert s is not None and not s.online
    assert validate_status("wl-0007", b"", REGISTRY.get) is None  # a cleared retained status
    s = validate_status("wl-0007", status(extra_key="ok"), REGISTRY.get)
    assert s is not None


@pytest.mark.parametrize("payload, why", [
    (status(v=2), "status v: must be 1"),
    (status(dev="wl-0008"), "status dev does not match topic device"),
    (status(online=None), "status online: missing"),
    (status(online=1), "status online: must not be int"),
    (status(reset="meteor"), "status reset: unknown cause 'meteor'"),
    (status(link="lora"), "status link: unknown link 'lora'"),
    (status(heap=-1), "status heap: must be an unsigned integer"),
    (status(batt=float("nan")), "status batt: must not be float"),
    (cbor2.dumps([1]), "status is a list, not a map"),
    (cbor2.dumps({1: 1}), "status key 1 is not text"),
    (cbor2.dumps({"v": {"deep": 1}}), "bad CBOR: maximum container nesting depth (1) exceeded"),
])
def test_bad_status(payload: bytes, why: str) -> None:
    with pytest.raises(Rejected) as e:
        validate_status("wl-0007", payload, REGISTRY.get)
    assert e.value.reason == why
