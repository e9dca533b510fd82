"""The per-node config a HIL test deploys: firmware/examples/<role>.json fitted to the bench.

The example config of the kind's role is the starting point (so the HIL
suite runs what provisioning writes), with the bench's facts put in: a
device id of its own per test, the broker under test, the kind's pin map
from boards.yaml, and short intervals and a 10 s watchdog so a test sees
several readings and a watchdog reset in seconds. The result is checked
with the firmware's own config.py before it goes to the board.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from provisioning.boards import BoardKind

from .errors import HILError

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
EXAMPLES = FIRMWARE / "examples"
ROLE_PREFIX = {"water_level": "wl", "boat": "boat", "truck": "trk"}

# /tune.json knobs of firmware/lib/node.py: each configured second lasts
# 200 ms (a 5 s fast interval is 1 s), resends and reconnects come quickly.
HIL_TUNE = {"ms_per_s": 200, "ack_timeout_ms": 4000, "backoff_base_ms": 200,
            "backoff_cap_ms": 2000, "link_timeout_ms": 3000, "awake_ms": 4000}
HIL_WATCHDOG_S = 10  # the schema's minimum
VIRTUAL_SSID = "hil-ap"
VIRTUAL_WIFI_PASS = "hil-wifi-passphrase"  # any key is accepted by a virtual AP
HIL_ZONE = "hil-dock"  # a licensed zone put around a virtual boat's start position
ZONE_HALF_DEG = 0.003  # about 330 m


@dataclass(frozen=True)
class Broker:
    """Where the nodes publish: host and port as the board reaches them."""

    host: str
    port: int


def new_device_id(kind: BoardKind) -> str:
    """A device id no earlier test used, so retained status and ACLs never mix tests."""
    return f"hil-{ROLE_PREFIX.get(kind.role, 'node')}-{secrets.token_hex(3)}"


def firmware_config_module() -> ModuleType:
    """firmware/lib/config.py, loaded under its own name (it imports `wire`)."""
    lib = str(FIRMWARE / "lib")
    if lib not in sys.path:
        sys.path.append(lib)
    spec = importlib.util.spec_from_file_location("hil_fw_config", FIRMWARE / "lib" / "config.py")
    if spec is None or spec.loader is None:
        raise HILError(f"cannot load {FIRMWARE / 'lib' / 'config.py'}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _ratio(kind: BoardKind) -> float | None:
    for sensor in kind.sensors:
        if sensor.type == "adc-divider":
            return float(sensor.params["ratio"])
    return None


def node_config(kind: BoardKind, device: str, broker: Broker, link: dict[str, Any],
                virtual: bool, start: tuple[float, float] | None = None) -> dict[str, Any]:
    """A valid config for `kind`'s role; ValueError names the field if the result is not."""
    path = EXAMPLES / f"{kind.role}.json"
    try:
        cfg: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise HILError(f"cannot read the example config {path}: {e}") from e
    cfg.update(device=device, role=kind.role, link=link, pins=dict(kind.pins),
               broker={"host": broker.host, "port": broker.port, "tls": False})
    cfg["intervals"] = {"normal_s": 10, "fast_s": 5}
    cfg["watchdog_s"] = HIL_WATCHDOG_S
    ratio = _ratio(kind)
    if ratio is not None:
        cfg["battery_ratio"] = ratio
    if kind.role == "water_level":
        wl = cfg["water_level"]
        wl["deep_sleep"] = False  # always on: the REPL stays reachable between readings
        fitted = {s.name for s in kind.sensors if not s.optional}
        if virtual:
            fitted |= set(kind.virtual.sensors if kind.virtual else {})
        if "pressure" not in fitted:
            wl.pop("pressure", None)  # an optional sensor this board does not have
    elif kind.role == "boat" and start is not None:
        lat, lon = start
        d = ZONE_HALF_DEG
        cfg["boat"]["zones"].insert(0, {
            "name": HIL_ZONE,
            "polygon": [[lat - d, lon - d], [lat + d, lon - d], [lat + d, lon + d],
                        [lat - d, lon + d]],
            "hours": [[0, 1440]],
        })
    elif kind.role == "truck":
        cfg["truck"].update(max_interval_s=1, points_per_payload=2, min_dist_m=5)
    errors = firmware_config_module().validate(cfg)
    if errors:
        raise HILError(f"the HIL config for {kind.name} is invalid: {errors[0]}")
    return cfg
