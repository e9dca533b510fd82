"""The device registry: the table the provisioning CLI writes and the agent reads.

One row per provisioned node. The agent accepts readings only from devices listed here
(unless `accept_unknown`), checks that a reading's role matches, and accepts a bare
(un-MACed) envelope only from a device without a key. Provisioning may write the same
table through `add_device()` on the agent's database, or on a copy of the schema in a
database of its own that is later merged: the DDL below is the contract.

The file holding this table holds MAC keys: the store creates it with mode 0600.
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


def ensure_registry(conn: sqlite3.Connection) -> None:
    conn.executescript(REGISTRY_DDL)


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
