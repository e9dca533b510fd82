"""A technician's bench for tests and benchmarks: virtual boards, a real mosquitto, nodectl.

`ProvisionEnv(root)` lays out everything `nodectl provision` needs in one
directory and runs the real `nodectl` console script with it (NODECTL_*
environment variables, as a bench laptop would be set up):

- boards.yaml: the repository's, with the image hashes pinned to the fake
  images made here, and boat-gps-cell's flash at 4MB: a virtual board is a
  4 MB ESP32 (`esp.flash_size()`), and nodectl refuses a flash size that is
  not the kind's;
- an image cache with one fake image per image file (a virtual board does
  not run the image; the cache, hash and flash steps are exercised anyway);
- a copy of firmware/ (NODECTL_FIRMWARE), so runs compare while it is edited;
- a site file (Wi-Fi, the test broker, thresholds, a boat zone, tuning knobs
  so every role publishes within seconds) and the zone file;
- mosquitto with a password file and an ACL, no anonymous access, the agent's
  user already in the password file;
- virtual boards started with the world their kind's `virtual:` section
  describes (hil_tests/kind_world.py), GPS fed for boats and trucks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from hil_tests.kind_world import GpsFeeder, world_for
from hil_tests.mosquitto import Mosquitto
from hil_tests.vboard import VirtualBoard
from hil_tests.vboard.errors import VBoardError
from hil_tests.vboard.vm import find_micropython
from provisioning.boards import load_boards
from provisioning.mosquitto_auth import set_password, write_acl

REPO = Path(__file__).resolve().parents[2]
NODECTL = str(Path(sys.executable).parent / "nodectl")
AGENT_USER, AGENT_PASS = "edge-agent", "agent-password-for-tests"
# Registry columns that differ between two correct runs: times, and what derives
# from a random secret (the key's fingerprint, the salted password hash).
VOLATILE = {"created_at", "updated_at", "key_id", "password_hash"}
ZONE = {"type": "FeatureCollection", "features": [{
    "type": "Feature", "properties": {"name": "can-tho-dock", "hours": ["00:00-23:59"]},
    "geometry": {"type": "Polygon", "coordinates": [[
        [105.785, 10.031], [105.791, 10.031], [105.791, 10.037], [105.785, 10.037],
        [105.785, 10.031]]]}}]}


def have_vm() -> bool:
    """The MicroPython unix VM virtual boards run on is installed."""
    try:
        return Path(find_micropython()).exists()
    except VBoardError:
        return False


def pinned_boards_text(images: dict[str, bytes]) -> str:
    text = (REPO / "boards.yaml").read_text()
    for name, data in images.items():
        digest = hashlib.sha256(data).hexdigest()
        text = re.sub(rf'(file: {re.escape(name)}\n(?:\s+\S.*\n)*?\s+sha256: )"0{{64}}"',
                      rf'\g<1>"{digest}"', text)
    return re.sub(r"(  boat-gps-cell:\n(?:.*\n)*?    flash_size: )8MB", r"\g<1>4MB", text, count=1)


class ProvisionEnv:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.boards_file = self.root / "boards.yaml"
        self.registry = self.root / "gateway" / "agent.db"
        self.images = self.root / "images"
        self.secrets = self.root / "secrets"
        self.site = self.root / "site.yaml"
        self.zones = self.root / "zones.geojson"
        self.firmware = self.root / "firmware"
        self.passwd = self.root / "mosquitto" / "passwd"
        self.acl = self.root / "mosquitto" / "acl"
        self.broker: Mosquitto | None = None
        self.boards_started: list[VirtualBoard] = []
        self.feeders: list[GpsFeeder] = []

    # ---- set-up ----

    def start(self) -> ProvisionEnv:
        # A snapshot of the firmware: runs compared with each other deploy the same files
        # even while the repository's firmware is being edited.
        shutil.copytree(REPO / "firmware", self.firmware,
                        ignore=shutil.ignore_patterns("__pycache__", "*.mpy", "examples"))
        self.images.mkdir(parents=True, exist_ok=True)
        kinds = load_boards(REPO / "boards.yaml")
        made: dict[str, bytes] = {}
        for kind in kinds:
            if kind.image.file not in made:
                # a stand-in image: deterministic, so benchmark runs compare
                seed = kind.image.file.encode()
                made[kind.image.file] = b"".join(
                    hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(4096))
                (self.images / kind.image.file).write_bytes(made[kind.image.file])
        self.boards_file.write_text(pinned_boards_text(made))
        self.passwd.parent.mkdir(parents=True, exist_ok=True)
        set_password(self.passwd, AGENT_USER, AGENT_PASS)
        write_acl(self.acl, [], AGENT_USER, "nodes")
        self.broker = Mosquitto(self.root / "broker",
                                extra=f"password_file {self.passwd}\nacl_file {self.acl}\n",
                                allow_anonymous=False).start()
        self.zones.write_text(json.dumps(ZONE))
        self.write_site()
        return self

    def write_site(self, **changes: Any) -> None:
        assert self.broker is not None
        site: dict[str, Any] = {
            "link": {"ssid": "bench-ap", "apn": "m3-world"},
            "broker": {"host": "127.0.0.1", "port": self.broker.port},
            "secrets": {"wifi_pass": "bench-passphrase"},
            "intervals": {"normal_s": 10, "fast_s": 5},
            "watchdog_s": 120,
            "tz_offset_s": 25200,
            "water_level": {"datum_m": 4.5, "alert_m": 1.9, "deep_sleep": False},
            "boat": {"zones_file": self.zones.name},
            "truck": {"max_interval_s": 1, "points_per_payload": 1, "min_dist_m": 5},
        }
        site.update(changes)
        self.site.write_text(yaml.safe_dump(site))

    def board(self, kind: str, name: str | None = None, feed_gps: bool = True) -> VirtualBoard:
        """A running virtual board of `kind` (its world from boards.yaml's virtual section)."""
        k = load_boards(self.boards_file).get(kind)
        root = self.root / "boards" / (name or f"{kind}-{len(self.boards_started)}")
        root.mkdir(parents=True, exist_ok=True)
        world = root.parent / f"{root.name}.world.json"
        world.write_text(json.dumps(world_for(k)))
        vb = VirtualBoard(root, scenario=world).start()
        self.boards_started.append(vb)
        if feed_gps:
            assert vb.control is not None
            feeder = GpsFeeder.for_kind(k, vb.control)
            if feeder is not None:
                self.feeders.append(feeder.start())
        return vb

    def stop(self) -> None:
        for f in self.feeders:
            f.stop()
        for vb in self.boards_started:
            vb.stop()
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> ProvisionEnv:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- running nodectl ----

    def env(self, **extra: str) -> dict[str, str]:
        assert self.broker is not None and self.broker.proc is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODECTL_")}
        env.update(
            NODECTL_BOARDS=str(self.boards_file), NODECTL_REGISTRY=str(self.registry),
            NODECTL_IMAGES=str(self.images), NODECTL_SECRETS=str(self.secrets),
            NODECTL_SITE=str(self.site), NODECTL_BROKER_PASSWD=str(self.passwd),
            NODECTL_BROKER_ACL=str(self.acl), NODECTL_BROKER_PID=str(self.broker.proc.pid),
            NODECTL_AGENT_PASS=AGENT_PASS, NODECTL_FIRMWARE=str(self.firmware),
        )
        env.update(extra)
        return env

    def nodectl(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([NODECTL, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env(**env))

    def popen(self, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen([NODECTL, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env(**env))

    # ---- looking at the result ----

    def registry_state(self, *, volatile: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Both tables, rows as dicts; without the VOLATILE columns unless asked."""
        if not self.registry.exists():
            return {}
        conn = sqlite3.connect(self.registry)
        conn.row_factory = sqlite3.Row
        out: dict[str, list[dict[str, Any]]] = {}
        try:
            for table, key in (("devices", "device_id"), ("provisioning", "device_id")):
                try:
                    rows = conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
                except sqlite3.OperationalError:
                    continue
                out[table] = [{k: r[k] for k in r.keys() if volatile or k not in VOLATILE}
                              for r in rows]
        finally:
            conn.close()
        return out

    def secrets_of(self, device: str) -> dict[str, str]:
        return json.loads((self.secrets / f"{device}.json").read_text())


def board_files(root: Path) -> dict[str, str]:
    """Every file of a virtual board's flash with its sha256 (the relay's folder left out)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] == ".vboard" or not p.is_file():
            continue
        out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
