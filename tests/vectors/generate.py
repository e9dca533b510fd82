# Wire-contract test vectors, produced by the firmware encoder itself.
#
#   .venv/bin/micropython tests/vectors/generate.py [outdir]
#
# Writes <name>.cbor (the payload), <name>.json (its decoded form, see
# README.md) and index.json (topic and alarm flag of each vector) into outdir,
# by default this script's own folder. Runs on MicroPython (the reference) and
# CPython; tests/test_vectors.py checks that a VM run reproduces the committed
# files byte for byte.

import json
import os
import sys
from binascii import hexlify

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, _HERE + "/../../firmware/lib")

import cbor  # noqa: E402
import wire  # noqa: E402
from wire import rec  # noqa: E402

BT = 1750000000  # 2025-06-15 15:06:40 UTC
PREFIX = "nodes"
WL, BOAT, TRUCK = "wl-0007", "bt-0012", "tr-0031"

# Can Tho, on the Hau river.
LAT, LON = 10.045162, 105.746857


def position(lat, lon, bt=None):
    return [rec("lat", v=lat, u="lat", bt=bt), rec("lon", v=lon, u="lon")]


def vectors():
    """(name, topic kind, device, payload bytes) for each vector."""
    wl_reading = [
        rec("level", v=2.34, u="m", bt=BT),
        rec("distance", v=1.91, u="m"),
        rec("rise", v=0.0004, u="m/s"),
        rec("temp", v=29.5, u="Cel"),
        rec("battery", v=3.92, u="V"),
    ]
    wl_no_clock = [rec("level", v=2.31, u="m"), rec("battery", v=3.9, u="V")]
    wl_alert = [
        wire.event("flood_alert", bt=BT + 60),
        rec("level", v=3.05, u="m"),
        rec("rise", v=0.0021, u="m/s"),
    ]
    boat_pos = position(LAT, LON, BT) + [
        rec("speed", v=1.8, u="m/s"),
        rec("course", v=212.5, u="deg"),
        rec("fix", vb=True),
        rec("sats", v=9),
        rec("zone", vs="Z-04"),
        rec("battery", v=12.6, u="V"),
    ]
    boat_exit = [wire.event("zone_exit", bt=BT + 120)] + position(10.051203, 105.739911) + [
        rec("zone", vs=""),
    ]
    boat_dwell = [wire.event("dwell", bt=BT + 900)] + position(10.051344, 105.739502) + [
        rec("duration", v=900, u="s"),
        rec("zone", vs=""),
    ]
    boat_dwell_zone = [wire.event("dwell", bt=BT + 900)] + position(LAT, LON) + [
        rec("duration", v=1200, u="s"),
        rec("zone", vs="Z-04"),
    ]
    track = [
        (BT + 0, 10.029431, 105.768721),
        (BT + 10, 10.029512, 105.768803),
        (BT + 20, 10.029618, 105.768894),
        (BT + 30, 10.029735, 105.768950),
        (BT + 45, 10.029801, 105.768947),
        (BT + 60, 10.029801, 105.768947),
    ]
    truck_track = [
        rec("track", vd=wire.track_bytes(track, BT), bt=BT),
        rec("speed", v=0.0, u="m/s", t=60),
        rec("odometer", v=48211, u="m", t=60),
    ]
    truck_start = [wire.event("trip_start", bt=BT - 600)] + position(10.031002, 105.770115) + [
        rec("ignition", vb=True),
    ]
    truck_stop = [wire.event("stop", bt=BT + 300)] + position(10.029801, 105.768947) + [
        rec("duration", v=185, u="s"),
    ]
    up = [
        ("water_level_reading", WL, 7, 120, "water_level", wl_reading, None),
        ("water_level_no_clock", WL, 8, 1, "water_level", wl_no_clock, 5123),
        ("water_level_flood_alert", WL, 7, 121, "water_level", wl_alert, None),
        ("boat_position", BOAT, 3, 4410, "boat", boat_pos, None),
        ("boat_zone_exit", BOAT, 3, 4411, "boat", boat_exit, None),
        ("boat_dwell", BOAT, 3, 4412, "boat", boat_dwell, None),
        ("boat_dwell_in_zone", BOAT, 3, 4413, "boat", boat_dwell_zone, None),
        ("truck_track", TRUCK, 12, 87, "truck", truck_track, None),
        ("truck_trip_start", TRUCK, 12, 86, "truck", truck_start, None),
        ("truck_stop", TRUCK, 12, 88, "truck", truck_stop, None),
    ]
    out = []
    for name, dev, boot, seq, role, pack, ut in up:
        out.append((name, "up", dev, wire.envelope(dev, boot, seq, role, pack, ut),
                    wire.is_alarm(pack)))
    out.append(("status", "status", WL, wire.status(
        WL, 7, "0.1.0", "deepsleep", 97312, "wifi", 3.92, 2, 0, 3, 300, rssi=-71, cmd_id=5
    ), None))
    out.append(("status_offline", "status", WL, wire.status_offline(WL), None))
    out.append(("down_ack", "down", WL, wire.down(WL, ack={6: 310, 7: 120}), None))
    out.append(("down_command", "down", BOAT, wire.down(
        BOAT, cmd="set_interval", args={"normal": 600, "fast": 30}, cid=5
    ), None))
    return out


# ---------------------------------------------------------------- JSON form


def _key_order(m):
    # Keys in the order they are on the wire (cbor.dumps sorts by encoded bytes).
    return sorted(m, key=cbor.dumps)


def _is_scalar(x):
    return not isinstance(x, (list, dict, bytes, cbor.Tag))


def to_json(x, ind=""):
    """Decoded CBOR value as indented JSON text (README.md describes the mapping)."""
    if isinstance(x, float):
        if x != x or x in (float("inf"), float("-inf")):
            raise ValueError("no JSON for NaN or infinity")
        return repr(x)  # round-trips on both runtimes, always with "." or "e"
    if _is_scalar(x):
        return json.dumps(x)
    if isinstance(x, bytes):
        return '{"$bytes": "' + hexlify(x).decode() + '"}'
    if isinstance(x, cbor.Tag):
        return '{"$tag": ' + str(x.tag) + ', "$value": ' + to_json(x.value, ind) + "}"
    inner = ind + "  "
    if isinstance(x, list):
        if all(_is_scalar(v) for v in x):
            return "[" + ", ".join(to_json(v) for v in x) + "]"
        return "[\n" + ",\n".join(inner + to_json(v, inner) for v in x) + "\n" + ind + "]"
    keys = _key_order(x)
    if all(isinstance(k, str) and not k.startswith("$") for k in keys):
        items = [inner + json.dumps(k) + ": " + to_json(x[k], inner) for k in keys]
        return "{\n" + ",\n".join(items) + "\n" + ind + "}" if items else "{}"
    pairs = [inner + "[" + to_json(k, inner) + ", " + to_json(x[k], inner) + "]" for k in keys]
    return '{"$map": [\n' + ",\n".join(pairs) + "\n" + ind + "]}" if pairs else '{"$map": []}'


def write(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else _HERE
    try:
        os.mkdir(outdir)
    except OSError:  # already there
        pass
    index = {}
    for name, kind, dev, payload, alarm in vectors():
        write(outdir + "/" + name + ".cbor", payload)
        write(outdir + "/" + name + ".json", to_json(cbor.loads(payload)) + "\n", "w")
        entry = {"topic": PREFIX + "/" + dev + "/" + kind}
        if alarm is not None:
            entry["alarm"] = alarm
        index[name] = entry
    write(outdir + "/index.json", to_json(index) + "\n", "w")
    print("wrote", len(index), "vectors to", outdir)


main()
