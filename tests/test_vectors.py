"""The committed wire vectors (tests/vectors) against cbor2 and against a fresh VM run.

The vectors come from the firmware encoder in the MicroPython VM; cbor2 is what the edge agent
decodes with. If either side changes the contract, one of these tests fails.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest

VECTORS = Path(__file__).resolve().parent / "vectors"
INDEX: dict[str, dict[str, Any]] = json.loads((VECTORS / "index.json").read_text())
NAMES = sorted(INDEX)


def strict(data: bytes) -> Any:
    """cbor2 as the edge agent decodes: no indefinite lengths, no duplicate keys, depth 16."""
    return cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False,
                       max_depth=16)


def micropython() -> str:
    """The VM the firmware tests use: $FWTEST_MICROPYTHON, else next to this Python."""
    exe = os.environ.get("FWTEST_MICROPYTHON") or str(Path(sys.executable).with_name("micropython"))
    found = shutil.which(exe)
    if not found:
        pytest.fail(f"MicroPython VM not found at {exe}")
    return found


def from_json(x: Any) -> Any:
    """The JSON form of tests/vectors/README.md back to the value cbor2 decodes."""
    if isinstance(x, list):
        return [from_json(v) for v in x]
    if isinstance(x, dict):
        if set(x) == {"$bytes"}:
            return bytes.fromhex(x["$bytes"])
        if set(x) == {"$map"}:
            return {from_json(k): from_json(v) for k, v in x["$map"]}
        if set(x) == {"$tag", "$value"}:
            return cbor2.CBORTag(x["$tag"], from_json(x["$value"]))
        return {k: from_json(v) for k, v in x.items()}
    return x


def same(a: Any, b: Any) -> bool:
    """Equality that tells int, float and bool apart (JSON `1` vs `1.0` matters here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def doc_alarm(pack: list[dict[int, Any]]) -> bool:
    """The alarm rule of docs/wire-format.md, written independently of wire.is_alarm."""
    events = [r.get(3) for r in pack if r.get(0) == "event"]
    zones = [r.get(3) for r in pack if r.get(0) == "zone"]
    if {"flood_alert", "zone_exit", "off_hours"} & set(events):
        return True
    return "dwell" in events and (not zones or zones[0] == "")


def test_index_lists_every_vector() -> None:
    files = {p.stem for p in VECTORS.glob("*.cbor")}
    assert files == set(NAMES)
    assert {p.stem for p in VECTORS.glob("*.json")} == set(NAMES) | {"index"}
    kinds = {INDEX[n]["topic"].rsplit("/", 1)[1] for n in NAMES}
    assert kinds == {"up", "status", "down"}


@pytest.mark.parametrize("name", NAMES)
def test_cbor2_strictly_decodes_vector_to_its_json_form(name: str) -> None:
    data = (VECTORS / f"{name}.cbor").read_bytes()
    decoded = strict(data)
    want = from_json(json.loads((VECTORS / f"{name}.json").read_text()))
    assert same(decoded, want)
    prefix, dev, kind = INDEX[name]["topic"].split("/")
    if kind == "up":
        assert decoded[1] == dev  # envelope dev equals the topic's device
        assert INDEX[name]["alarm"] == doc_alarm(decoded[5])
    elif kind == "status":
        assert decoded["dev"] == dev
    else:
        assert decoded[1] == dev


@pytest.mark.parametrize("name", NAMES)
def test_cbor2_canonical_reencoding_gives_the_same_bytes(name: str) -> None:
    data = (VECTORS / f"{name}.cbor").read_bytes()
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data


@pytest.mark.timeout(60)
def test_vm_run_reproduces_the_committed_files(tmp_path: Path) -> None:
    out = subprocess.run(
        [micropython(), str(VECTORS / "generate.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=50, check=False,
    )
    assert out.returncode == 0, out.stderr
    fresh = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in VECTORS.iterdir() if p.suffix in (".cbor", ".json"))
    assert fresh == committed
    for fname in fresh:
        assert (tmp_path / fname).read_bytes() == (VECTORS / fname).read_bytes(), fname
