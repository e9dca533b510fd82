"""Byte sizes of one reading per role: CBOR/SenML (the wire contract) vs JSON SenML.

Run: .venv/bin/python bench/wire_sizes.py [--no-write]

Prints a Markdown table and writes it into docs/wire-format.md between the
``<!-- sizes:begin -->`` and ``<!-- sizes:end -->`` markers. The CBOR bytes come from the
firmware encoder (firmware/lib/wire.py); the JSON form is the same content as RFC 8428 JSON
SenML (labels bt/n/u/v/vs/vb/vd/t, vd in base64url) inside the same envelope written as a
JSON object with short names, without spaces. The counts do not depend on the machine; the
run line records where they were taken anyway.
"""

from __future__ import annotations

import base64
import datetime
import json
import platform
import struct
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "firmware" / "lib"))
import wire  # noqa: E402  (firmware/lib, put on the path above)
from wire import rec  # noqa: E402

DOC = ROOT / "docs" / "wire-format.md"
BEGIN, END = "<!-- sizes:begin -->", "<!-- sizes:end -->"
BT = 1750000000
JSON_LABELS = {wire.BT: "bt", wire.N: "n", wire.U: "u", wire.V: "v", wire.VS: "vs",
               wire.VB: "vb", wire.VD: "vd", wire.T: "t"}
Reading = tuple[str, str, str, list[dict[int, Any]]]


def readings() -> list[Reading]:
    """(label, device, role, pack): a typical periodic reading of each role."""
    water = [
        rec("level", v=2.34, u="m", bt=BT),
        rec("distance", v=1.91, u="m"),
        rec("rise", v=0.0004, u="m/s"),
        rec("temp", v=29.5, u="Cel"),
        rec("battery", v=3.92, u="V"),
    ]
    moving = [
        rec("lat", v=10.045162, u="lat", bt=BT),
        rec("lon", v=105.746857, u="lon"),
        rec("speed", v=1.8, u="m/s"),
        rec("course", v=212.5, u="deg"),
        rec("fix", vb=True),
        rec("sats", v=9),
    ]
    boat = moving + [rec("zone", vs="Z-04"), rec("battery", v=12.6, u="V")]
    truck = moving + [rec("odometer", v=48211, u="m"), rec("ignition", vb=True),
                      rec("battery", v=12.4, u="V")]
    # one minute of driving, a point every 5 s, about 1 m/s north-east
    pts = [(BT + 5 * i, 10.029431 + 9e-6 * i + 1e-6 * (i % 3), 105.768721 + 8e-6 * i)
           for i in range(12)]
    track = [rec("track", vd=wire.track_bytes(pts, BT), bt=BT),
             rec("odometer", v=48211, u="m", t=55)]
    # the same points as plain SenML records, for comparison with the delta-encoded track
    plain: list[dict[int, Any]] = []
    for t, lat, lon in pts:
        plain += [rec("lat", v=lat, u="lat", t=t - BT), rec("lon", v=lon, u="lon", t=t - BT)]
    plain[0][wire.BT] = BT
    plain.append(rec("odometer", v=48211, u="m", t=55))
    return [
        ("water_level reading", "wl-0007", "water_level", water),
        ("boat position", "bt-0012", "boat", boat),
        ("truck position", "tr-0031", "truck", truck),
        ("truck track, 12 points", "tr-0031", "truck", track),
        ("same 12 points as lat/lon records", "tr-0031", "truck", plain),
    ]


def single(pack: list[dict[int, Any]]) -> list[dict[int, Any]]:
    """The pack as an ESP32 holds it: MicroPython there has single-precision floats."""
    def f32(x: Any) -> Any:
        return struct.unpack(">f", struct.pack(">f", x))[0] if isinstance(x, float) else x
    return [{k: f32(v) for k, v in r.items()} for r in pack]


def json_senml(dev: str, role: str, pack: list[dict[int, Any]]) -> bytes:
    """Same content as RFC 8428 JSON SenML in a JSON envelope with short names."""
    recs = []
    for r in pack:
        j: dict[str, Any] = {}
        for k, v in r.items():
            if k == wire.VD:
                v = base64.urlsafe_b64encode(v).rstrip(b"=").decode()
            j[JSON_LABELS[k]] = v
        recs.append(j)
    env = {"v": 1, "dev": dev, "boot": 7, "seq": 120, "role": role, "pack": recs}
    return json.dumps(env, separators=(",", ":")).encode()


def table() -> str:
    rows = [
        "| reading | records | CBOR/SenML, B | CBOR/SenML on ESP32 (float32), B"
        " | JSON SenML, B | JSON / CBOR | JSON / CBOR on ESP32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, dev, role, pack in readings():
        c64 = len(wire.envelope(dev, 7, 120, role, pack))
        c32 = len(wire.envelope(dev, 7, 120, role, single(pack)))
        js = len(json_senml(dev, role, pack))
        rows.append(f"| {label} | {len(pack)} | {c64} | {c32} | {js} | {js / c64:.2f} "
                    f"| {js / c32:.2f} |")
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    note = (
        f"Measured {when} by `bench/wire_sizes.py` on CPython {platform.python_version()}"
        f" ({platform.system()} {platform.machine()}); the counts are deterministic and the"
        " MicroPython VM encodes the same bytes (see `tests/test_vectors.py`). Readings use"
        " seq 120, boot 7 and ids like `wl-0007`. CPython and the unix VM have double floats,"
        " so a value such as 2.34 takes 9 bytes; on an ESP32, MicroPython floats are"
        " single precision and take 5 bytes (3 when exact as a half), which the float32"
        " column shows. JSON numbers are the shortest decimal of each value; `vd` is"
        " base64url in JSON."
    )
    return "\n".join(rows) + "\n\n" + textwrap.fill(note, 78)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main() -> None:
    text = table()
    print(text)
    if "--no-write" not in sys.argv[1:]:
        write_doc(text)
        print(f"\nwritten to {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
