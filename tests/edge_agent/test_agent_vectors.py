"""The firmware encoder's test vectors (tests/vectors/) through the agent's validator."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest

from edge_agent.ingress import encode_ack
from edge_agent.validate import validate_status, validate_up

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
INDEX = json.loads((VECTORS / "index.json").read_text()) if (VECTORS / "index.json").exists() \
    else {}


def by_kind(kind: str) -> list[str]:
    return sorted(n for n, v in INDEX.items() if v["topic"].endswith("/" + kind))


@pytest.mark.skipif(not INDEX, reason="no tests/vectors/index.json")
@pytest.mark.parametrize("name", by_kind("up"))
def test_uplink_vectors_validate_with_the_alarm_flag(name: str) -> None:
    payload = (VECTORS / f"{name}.cbor").read_bytes()
    device = INDEX[name]["topic"].split("/")[1]
    r = validate_up(device, payload, lambda d: None, accept_unknown=True)
    assert (r.device, r.alarm, r.payload) == (device, INDEX[name]["alarm"], payload)


@pytest.mark.skipif(not INDEX, reason="no tests/vectors/index.json")
@pytest.mark.parametrize("name", by_kind("status"))
def test_status_vectors_validate(name: str) -> None:
    payload = (VECTORS / f"{name}.cbor").read_bytes()
    device = INDEX[name]["topic"].split("/")[1]
    s = validate_status(device, payload, lambda d: None, accept_unknown=True)
    assert s is not None and s.online == cbor2.loads(payload)["online"]


@pytest.mark.skipif("down_ack" not in INDEX, reason="no down_ack vector")
def test_the_agent_encodes_acks_like_the_vector() -> None:
    want = (VECTORS / "down_ack.cbor").read_bytes()
    msg = cbor2.loads(want)
    assert encode_ack(msg[1], dict(msg[8])) == want
