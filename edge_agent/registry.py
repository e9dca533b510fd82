"""The device registry: the table the provisioning CLI writes and the agent reads.

One row per provisioned node. The agent accepts readings only from devices listed here
(unless `accept_unknown`), checks that a reading's role matches, and accepts a bare
(un-MACed) envelope only from a device without a key. Provisioning may write the same
table through `add_device()` on the agent's database, or on a copy of the schema in a
database of its own that is later merged: the DDL below is the contract.

The file holding this table holds MAC keys: the store creates it with mode 0600.

The provisioning CLI keeps its own record of each board in `provisioning` (same
file): which board a device id is (MAC, chip, flash), what it runs (MicroPython,
firmware manifest, config hash, key id) and which provisioning steps are done.
The agent never reads that table; a device is live for the agent only while it
has a `devices` row (`remove_device()` is how a device is retired).
"""

from __future__ import annotations

import sqlite3
import time

from .validate import DeviceInfo
from .wire import DEVICE_RE, ROLES

REGISTRY_DDL = """
CREATE TABLE IF NOT EXISTS devices (
    device_id     TEXT PRIMARY KEY,   -- ^[a-z0-9][a-z0-9-]{0,31}$, also MQTT client id/username
    role          TEXT NOT NULL CHECK (role IN ('water_level', 'boat', 'truck')),
    board         TEXT,               -- boards.yaml name, e.g. 'esp32-devkitc'
    mac_key       BLOB,               -- per-device COSE_Mac0 key; NULL: keyless (bare envelopes)
    password_hash TEXT,               -- mosquitto password-file hash of the node's MQTT password
    created_at    REAL NOT NULL,      -- unix seconds
    updated_at    REAL NOT NULL
);
"""


PROVISIONING_DDL = """
CREATE TABLE IF NOT EXISTS provisioning (
    device_id     TEXT PRIMARY KEY,   -- as in devices; kept after retirement
    mac           TEXT NOT NULL,      -- the board's base MAC, 'aa:bb:cc:dd:ee:ff'
    role          TEXT NOT NULL,
    board         TEXT NOT NULL,      -- boards.yaml kind
    chip          TEXT,               -- as the ROM reported it: 'esp32', 'esp32s3', ...
    flash_id      TEXT,               -- flash manufacturer + device id, e.g. 'ef4016'
    flash_size    TEXT,               -- e.g. '4MB'
    micropython   TEXT,               -- MicroPython version on the board
    image_sha256  TEXT,               -- the image flashed
    fw_version    TEXT,               -- firmware/lib/version.py VERSION deployed
    fw_manifest   TEXT,               -- sha256 over the deployed files (paths and contents)
    config_hash   TEXT,               -- sha256 of /config.json as written
    key_id        TEXT,               -- fingerprint of the payload key (never the key)
    steps         TEXT NOT NULL DEFAULT '',  -- done steps, comma-separated, in step order
    last_error    TEXT,               -- '<step>: <message>' of the last failed step
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    retired_at    REAL                -- set by `nodectl devices retire`
);
-- A board (MAC) is at most one live device; a retired device keeps its row.
CREATE UNIQUE INDEX IF NOT EXISTS provisioning_live_mac ON provisioning (mac)
    WHERE retired_at IS NULL;
"""


def ensure_registry(conn: sqlite3.Connection) -> None:
    conn.executescript(REGISTRY_DDL)


def ensure_provisioning(conn: sqlite3.Connection) -> None:
    """The provisioning CLI's table (see PROVISIONING_DDL); the agent does not need it."""
    conn.executescript(PROVISIONING_DDL)


def remove_device(conn: sqlite3.Connection, device_id: str) -> bool:
    """Delete a device: the agent stops accepting its readings. True if it was there."""
    with conn:
        cur = conn.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))
    return cur.rowcount > 0


def device_ids(conn: sqlite3.Connection) -> list[str]:
    """Every registered device id, sorted (the broker ACL is written from this)."""
    return [r[0] for r in conn.execute("SELECT device_id FROM devices ORDER BY device_id")]


def add_device(conn: sqlite3.Connection, device_id: str, role: str, *, board: str | None = None,
               mac_key: bytes | None = None, password_hash: str | None = None,
               now: float | None = None) -> None:
    """Insert or update one device (re-running provisioning for a board is not an error)."""
    if not DEVICE_RE.fullmatch(device_id):
        raise ValueError(f"bad device id {device_id!r}: must match [a-z0-9][a-z0-9-]{{0,31}}")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: must be one of {', '.join(sorted(ROLES))}")
    now = time.time() if now is None else now
    with conn:
        conn.execute(
            "INSERT INTO devices (device_id, role, board, mac_key, password_hash, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
            " role = excluded.role, board = excluded.board, mac_key = excluded.mac_key,"
            " password_hash = excluded.password_hash, updated_at = excluded.updated_at",
            (device_id, role, board, mac_key, password_hash, now, now))


def load_devices(conn: sqlite3.Connection) -> dict[str, DeviceInfo]:
    rows = conn.execute("SELECT device_id, role, mac_key IS NULL FROM devices").fetchall()
    return {d: DeviceInfo(role, bool(keyless)) for d, role, keyless in rows}
