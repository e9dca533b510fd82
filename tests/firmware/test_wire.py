# firmware/lib/wire.py against docs/wire-format.md, on CPython and in the VM.

from binascii import unhexlify

import cbor
import wire
from fwtest import raises
from wire import BT, VB, VD, VS, N, T, U, V

BT0 = 1717171717


def h(s):
    return unhexlify(s.replace(" ", ""))


def level_pack():
    return [wire.rec("level", v=1.5, u="m", bt=BT0), wire.rec("battery", v=3.75, u="V")]


def test_envelope_layout_byte_for_byte():
    got = wire.envelope("wl-0007", 3, 42, "water_level", level_pack())
    want = h(
        "a6"  # map of 6: keys 0..5, sorted
        "00 01"  # v: 1
        "01 67 776c2d30303037"  # dev: "wl-0007"
        "02 03"  # boot: 3
        "03 182a"  # seq: 42
        "04 6b 77617465725f6c6576656c"  # role: "water_level"
        "05 82"  # pack: 2 records
        "a4 00 656c6576656c 01 616d 02 f93e00 22 1a6659f605"  # n, u, v 1.5 (half), bt
        "a3 00 6762617474657279 01 6156 02 f94380"  # n, u, v 3.75
    )
    assert got == want


def test_envelope_decodes_to_the_documented_keys():
    pack = level_pack()
    m = cbor.loads(wire.envelope("wl-0007", 1, 1, "water_level", pack))
    assert m == {0: 1, 1: "wl-0007", 2: 1, 3: 1, 4: "water_level", 5: pack}
    assert m[5][0][BT] == BT0 and m[5][0][N] == "level" and m[5][0][U] == "m"
    assert (wire.K_V, wire.K_DEV, wire.K_BOOT, wire.K_SEQ) == (0, 1, 2, 3)
    assert (wire.K_ROLE, wire.K_PACK, wire.K_UT) == (4, 5, 6)
    assert (wire.BN, BT, wire.BU, N, U, V, VS, VB, VD, T) == (-2, -3, -4, 0, 1, 2, 3, 4, 8, 6)


def test_envelope_without_clock_carries_ut_and_no_bt():
    recs = [wire.rec("level", v=1.5, u="m"), wire.rec("temp", v=28, u="Cel", t=0)]
    m = cbor.loads(wire.envelope("wl-0007", 2, 9, "water_level", recs, ut=123456))
    assert m[wire.K_UT] == 123456
    assert all(BT not in r for r in m[wire.K_PACK])


def test_envelope_lo_is_key_7_after_the_pack_and_optional():
    pack = level_pack()
    plain = wire.envelope("wl-0007", 3, 42, "water_level", pack)
    got = wire.envelope("wl-0007", 3, 42, "water_level", pack, lo=17)
    # Same map with one more entry: head a6 -> a7 and "07 11" (key 7, lo 17) at the end.
    assert got == b"\xa7" + plain[1:] + h("07 11")
    m = cbor.loads(got)
    assert wire.K_LO == 7 and m[wire.K_LO] == 17
    assert wire.K_LO not in cbor.loads(plain)
    recs = [wire.rec("level", v=1.5, u="m")]
    m = cbor.loads(wire.envelope("wl-0007", 2, 9, "water_level", recs, ut=5, lo=9))
    assert (m[wire.K_UT], m[wire.K_LO]) == (5, 9)  # lo == seq is allowed
    for bad in (0, 43, -1, True, 1.0, "1"):
        raises(ValueError, wire.envelope, "wl-0007", 3, 42, "water_level", pack, None, bad)


def test_envelope_rejects_what_the_contract_forbids():
    ok = level_pack()
    no_bt = [wire.rec("level", v=1.5)]
    cases = [
        ("WL-7", 1, 1, "water_level", ok, None),  # upper case id
        ("-wl", 1, 1, "water_level", ok, None),  # leading dash
        ("a" * 33, 1, 1, "water_level", ok, None),  # too long
        ("", 1, 1, "water_level", ok, None),
        ("wl/7", 1, 1, "water_level", ok, None),  # would break the topic
        ("wl-7", 0, 1, "water_level", ok, None),  # boot starts at 1
        ("wl-7", 1, 0, "water_level", ok, None),  # seq starts at 1
        ("wl-7", True, 1, "water_level", ok, None),
        ("wl-7", 1, 1, "ferry", ok, None),
        ("wl-7", 1, 1, "boat", [], None),
        ("wl-7", 1, 1, "boat", ok * 33, None),  # 66 records
        ("wl-7", 1, 1, "boat", no_bt, None),  # neither bt nor ut
        ("wl-7", 1, 1, "boat", ok, 5),  # both bt and ut
        ("wl-7", 1, 1, "boat", no_bt, -1),
    ]
    for args in cases:
        raises(ValueError, wire.envelope, *args)
    assert wire.envelope("a" * 32, 1, 1, "boat", ok * 32)  # the limits themselves pass


def test_rec_needs_exactly_one_typed_value():
    assert wire.rec("fix", vb=False) == {N: "fix", VB: False}
    assert wire.rec("zone", vs="") == {N: "zone", VS: ""}
    assert wire.rec("sats", v=7, t=-2) == {N: "sats", V: 7, T: -2}
    assert wire.rec("track", vd=bytearray(b"\x80")) == {N: "track", VD: b"\x80"}
    raises(ValueError, wire.rec, "x")
    raises(ValueError, wire.rec, "x", v=1, vs="1")
    raises(ValueError, wire.rec, "x", v=True)
    raises(ValueError, wire.rec, "x", v="1")
    raises(ValueError, wire.rec, "x", vb=1)
    raises(ValueError, wire.rec, "x", vd="ab")
    raises(ValueError, wire.rec, "", v=1)
    raises(ValueError, wire.rec, "x", v=1, t="0")
    assert wire.event("stop") == {N: "event", VS: "stop"}
    raises(ValueError, wire.event, "party")


def test_topics():
    assert wire.topic_up("nodes", "wl-0007") == "nodes/wl-0007/up"
    assert wire.topic_status("site/a", "tr-1") == "site/a/tr-1/status"
    assert wire.topic_down("nodes", "bt-22") == "nodes/bt-22/down"


def test_track_delta_layout():
    pts = [(BT0 + 3, 10.045123, 105.781234), (BT0 + 13, 10.0452, 105.7811),
           (BT0 + 23, 10.0452, 105.7811)]
    vd = wire.track_bytes(pts, BT0)
    assert cbor.loads(vd) == [3, 10045123, 105781234, 10, 77, -134, 10, 0, 0]
    # small deltas: one to three bytes each
    assert vd == h("89 03 1a009946c3 1a064e17f2 0a 184d 3885 0a 00 00")


def test_track_round_trip():
    pts = []
    t, lat, lon = BT0 + 0.4, 10.0, 105.7
    for i in range(40):  # a wiggly drive, with a backwards step and a pause
        t += (i % 5) * 7
        lat += ((i * 37) % 11 - 5) * 1.3e-5
        lon -= ((i * 53) % 13 - 6) * 2.1e-5
        pts.append((t, lat, lon))
    back = wire.track_points(wire.track_bytes(pts, BT0), BT0)
    assert len(back) == len(pts)
    for i in range(len(pts)):  # (MicroPython's zip has no strict=)
        (t0, la0, lo0), (t1, la1, lo1) = pts[i], back[i]
        assert t1 == BT0 + round(t0 - BT0)
        assert la1 == round(la0 * 1000000) and lo1 == round(lo0 * 1000000)
    # southern / western hemispheres and a single point
    one = wire.track_bytes([(BT0, -33.8688, -151.2093)], BT0)
    assert wire.track_points(one, BT0) == [(BT0, -33868800, -151209300)]
    raises(ValueError, wire.track_bytes, [], BT0)
    # integer micro-degrees pass through untouched
    ints = [(BT0 + 5, 10045123, 105781234), (BT0 + 9, 10045124, 105781230)]
    assert wire.track_points(wire.track_bytes(ints, BT0, udeg=True), BT0) == ints
    assert wire.track_bytes(ints, BT0, udeg=True) == wire.track_bytes(
        [(t, la / 1e6, lo / 1e6) for t, la, lo in ints], BT0)
    for vd in (cbor.dumps([1, 2]), cbor.dumps({}), cbor.dumps([1, 2, 3.5]), b"\xff"):
        raises(ValueError, wire.track_points, vd, BT0)


def ev(kind):
    return wire.event(kind)


def test_alarm_rule():
    pos = [wire.rec("lat", v=10.0, u="lat", bt=BT0), wire.rec("lon", v=105.7, u="lon")]
    assert wire.is_alarm(pos) is False
    for kind in ("flood_alert", "zone_exit", "off_hours"):
        assert wire.is_alarm(pos + [ev(kind)]), kind
    for kind in ("flood_clear", "zone_enter", "fix_lost", "trip_start", "trip_end", "stop"):
        assert not wire.is_alarm(pos + [ev(kind)]), kind
    assert sorted(wire.ALARM_EVENTS) == ["flood_alert", "off_hours", "zone_exit"]
    # dwell: an alarm only outside every zone (zone ""), and when the zone is unknown
    assert wire.is_alarm(pos + [ev("dwell"), wire.rec("zone", vs="")])
    assert wire.is_alarm([wire.rec("zone", vs=""), ev("dwell")] + pos)
    assert not wire.is_alarm(pos + [ev("dwell"), wire.rec("zone", vs="Z-04")])
    assert wire.is_alarm(pos + [ev("dwell")])
    # a zone of "" without a dwell event is just a position
    assert not wire.is_alarm(pos + [wire.rec("zone", vs="")])
    # works on decoded packs too
    env = wire.envelope("bt-1", 1, 2, "boat", pos + [ev("zone_exit")])
    assert wire.is_alarm(cbor.loads(env)[wire.K_PACK])


def test_status_map():
    m = cbor.loads(wire.status("wl-0007", 4, "1.2.0", "wdt", 81234, "wifi", 3.9, 12, 0,
                               3600, 300, rssi=-67, cmd_id=9))
    assert m == {"v": 1, "dev": "wl-0007", "online": True, "fw": "1.2.0", "boot": 4,
                 "reset": "wdt", "heap": 81234, "link": "wifi", "batt": 3.9, "outbox": 12,
                 "dropped": 0, "uptime": 3600, "interval": 300, "rssi": -67, "cmd_id": 9}
    m = cbor.loads(wire.status("wl-0007", 4, "1.2.0", "soft", 1, "cell", 4, 0, 0, 0, 60))
    assert "rssi" not in m and "cmd_id" not in m
    assert isinstance(m["batt"], float)
    assert cbor.loads(wire.status_offline("wl-0007")) == {"v": 1, "dev": "wl-0007",
                                                          "online": False}
    for reset, link in (("crash", "wifi"), ("wdt", "lora")):
        raises(ValueError, wire.status, "wl-0007", 4, "1", reset, 1, link, 4.0, 0, 0, 0, 60)
    raises(ValueError, wire.status, "wl-0007", 4, "1", "wdt", -1, "wifi", 4.0, 0, 0, 0, 60)


def test_decode_down_ack_and_command():
    d = wire.decode_down(wire.down("wl-0007", ack={3: 42, 4: 7}), "wl-0007")
    assert d == {"dev": "wl-0007", "ack": {3: 42, 4: 7}, "cmd": None, "args": {}, "id": None}
    raw = h("a5 00 01 01 67776c2d30303037 09 6c7365745f696e74657276616c"
            " 0a a1 66 6e6f726d616c 190258 0b 05")
    d = wire.decode_down(raw)
    assert d == {"dev": "wl-0007", "ack": {}, "cmd": "set_interval", "args": {"normal": 600},
                 "id": 5}
    # an unknown command still parses, so an ack beside it is kept
    d = wire.decode_down(wire.down("wl-0007", ack={1: 1}, cmd="dance", args={"x": 1}))
    assert d["cmd"] == "dance" and d["ack"] == {1: 1}
    # keys >= 16 are room for extensions
    assert wire.decode_down(cbor.dumps({0: 1, 1: "a", 8: {1: 2}, 16: "x"}))["ack"] == {1: 2}


def test_decode_down_rejects_malformed():
    good = {0: 1, 1: "wl-0007", 8: {3: 42}}
    assert wire.decode_down(cbor.dumps(good))

    def variant(**change):
        m = dict(good)
        for k, v in change.items():
            k = int(k[1:])
            if v is None:
                del m[k]
            else:
                m[k] = v
        return cbor.dumps(m)

    bads = [
        b"",
        b"\xa1",  # truncated
        cbor.dumps(good)[:-1],
        cbor.dumps([1, "wl-0007"]),  # not a map
        cbor.dumps({"v": 1, "dev": "wl-0007"}),  # text keys
        variant(k0=None),
        variant(k0=2),
        variant(k0=True),
        variant(k0=1.0),
        variant(k1=None),
        variant(k1=7),
        variant(k8=[3, 42]),
        variant(k8={3: 0}),
        variant(k8={0: 5}),
        variant(k8={"3": 5}),
        variant(k8={3: -1}),
        variant(k8={}),  # nothing to do
        variant(k12=1),  # unknown key below 16
        variant(k10={}),  # args without cmd
        variant(k11=1),  # id without cmd
        variant(k9=5),
        variant(k9="status", k10=[]),
        variant(k9="status", k10={1: 2}),
        variant(k9="status", k11=-1),
        variant(k9="status", k11="5"),
        cbor.dumps(good) + b"\x00",  # trailing byte
    ]
    for i, raw in enumerate(bads):
        e = raises(ValueError, wire.decode_down, raw)
        assert str(e), i
    # addressed to another node
    raises(ValueError, wire.decode_down, cbor.dumps(good), "wl-0008")
    raises(ValueError, wire.down, "wl-0007")
