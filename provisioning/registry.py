"""The device registry as nodectl sees it: the edge agent's database, two tables.

`devices` (edge_agent/registry.py) is what the agent reads: a device is live
there once registered. `provisioning` is nodectl's record of each board: MAC,
chip, flash, what it runs, and which steps are done, so a re-run continues
from the step that failed. One connection per thread (sqlite3's rule); WAL
and a busy timeout let the agent and several boards' threads share the file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edge_agent import registry as agent_registry
from provisioning.errors import RegistryError

STEPS = ("flash", "deploy", "configure", "register", "verify")
# Redoing a step makes these later steps untrue: flashing empties the board's files.
INVALIDATES = {
    "flash": ("deploy", "configure", "verify"),
    "deploy": ("verify",),
    "configure": ("verify",),
    "register": ("verify",),
    "verify": (),
}
ROLE_PREFIX = {"water_level": "wl", "boat": "boat", "truck": "trk"}


def auto_device_id(role: str, mac: str) -> str:
    """`wl-a1b2c3`: the role's prefix and the MAC's last three bytes (stable per board)."""
    return f"{ROLE_PREFIX[role]}-{mac.replace(':', '')[-6:]}"


def ordered_steps(steps: Iterable[str]) -> tuple[str, ...]:
    chosen = set(steps)
    return tuple(s for s in STEPS if s in chosen)


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    mac: str
    role: str
    board: str
    chip: str | None
    flash_id: str | None
    flash_size: str | None
    micropython: str | None
    image_sha256: str | None
    fw_version: str | None
    fw_manifest: str | None
    config_hash: str | None
    key_id: str | None
    steps: tuple[str, ...]
    last_error: str | None
    created_at: float
    updated_at: float
    retired_at: float | None

    @property
    def retired(self) -> bool:
        return self.retired_at is not None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["steps"] = list(self.steps)
        return d


_COLUMNS = [f.name for f in fields(DeviceRow)]
UPDATABLE = frozenset(_COLUMNS) - {"device_id", "created_at", "updated_at", "steps"}


def _row(r: sqlite3.Row | tuple) -> DeviceRow:
    values = dict(zip(_COLUMNS, r, strict=True))
    values["steps"] = tuple(s for s in str(values["steps"]).split(",") if s)
    return DeviceRow(**values)


_open_lock = threading.Lock()
OPEN_TRIES = 50  # x 0.1 s: switching a new file to WAL does not wait on the busy timeout


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # it will hold MAC keys: owner only, as the agent does
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except OSError as e:
            raise RegistryError(f"{self.path}: cannot open: {e.strerror or e}") from e
        except sqlite3.Error as e:
            raise RegistryError(f"{self.path}: cannot open the registry: {e}") from e
        # Several boards' threads (and the agent) open the file at once; changing the
        # journal mode answers "database is locked" at once instead of waiting, so the
        # set-up is serialised here and retried against other processes.
        for attempt in range(OPEN_TRIES):
            try:
                with _open_lock:
                    self._set_up()
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == OPEN_TRIES - 1:
                    self.conn.close()
                    raise RegistryError(f"{self.path}: cannot open the registry: {e}") from e
                time.sleep(0.1)
            except sqlite3.Error as e:
                self.conn.close()
                raise RegistryError(f"{self.path}: cannot open the registry: {e}") from e

    def _set_up(self) -> None:
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self.conn.execute("PRAGMA journal_mode=WAL")
        agent_registry.ensure_registry(self.conn)
        agent_registry.ensure_provisioning(self.conn)

    @classmethod
    def existing(cls, path: Path) -> Registry | None:
        """The registry if its file exists, else None: reading must not create it."""
        return cls(path) if Path(path).exists() else None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading ----

    def _one(self, where: str, args: tuple) -> DeviceRow | None:
        cols = ", ".join(_COLUMNS)
        r = self.conn.execute(f"SELECT {cols} FROM provisioning WHERE {where}", args).fetchone()
        return _row(r) if r else None

    def live_by_mac(self, mac: str) -> DeviceRow | None:
        return self._one("mac = ? AND retired_at IS NULL", (mac,))

    def by_id(self, device_id: str) -> DeviceRow | None:
        return self._one("device_id = ?", (device_id,))

    def rows(self, *, include_retired: bool = False) -> list[DeviceRow]:
        cols = ", ".join(_COLUMNS)
        where = "" if include_retired else " WHERE retired_at IS NULL"
        cur = self.conn.execute(f"SELECT {cols} FROM provisioning{where} ORDER BY device_id")
        return [_row(r) for r in cur]

    def registered(self, device_id: str) -> bool:
        """Whether the agent sees this device (it has a `devices` row)."""
        q = "SELECT 1 FROM devices WHERE device_id = ?"
        return self.conn.execute(q, (device_id,)).fetchone() is not None

    def agent_row(self, device_id: str) -> dict[str, Any] | None:
        r = self.conn.execute(
            "SELECT role, board, mac_key IS NOT NULL, password_hash IS NOT NULL, created_at,"
            " updated_at FROM devices WHERE device_id = ?", (device_id,)).fetchone()
        if r is None:
            return None
        keys = ("role", "board", "mac_required", "has_password", "created_at", "updated_at")
        return dict(zip(keys, r, strict=True))

    # ---- writing ----

    def create(self, device_id: str, mac: str, role: str, board: str,
               now: float | None = None) -> DeviceRow:
        """A new live device for a board; a retired row with the same id is replaced."""
        now = time.time() if now is None else now
        try:
            with self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                self.conn.execute(
                    "DELETE FROM provisioning WHERE device_id = ? AND retired_at IS NOT NULL",
                    (device_id,))
                self.conn.execute(
                    "INSERT INTO provisioning (device_id, mac, role, board, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (device_id, mac, role, board, now, now))
        except sqlite3.IntegrityError as e:
            raise RegistryError(
                f"device id {device_id!r} or board {mac} is already in the registry ({e})"
            ) from e
        row = self.by_id(device_id)
        assert row is not None
        return row

    def update(self, device_id: str, now: float | None = None, **values: Any) -> None:
        unknown = set(values) - UPDATABLE
        if unknown:
            raise ValueError(f"not registry fields: {', '.join(sorted(unknown))}")
        now = time.time() if now is None else now
        sets = ", ".join(f"{k} = ?" for k in values)
        sep = ", " if sets else ""
        self.conn.execute(
            f"UPDATE provisioning SET {sets}{sep}updated_at = ? WHERE device_id = ?",
            (*values.values(), now, device_id))

    def set_steps(self, device_id: str, steps: Iterable[str], **values: Any) -> None:
        self.update(device_id, **values)
        self.conn.execute("UPDATE provisioning SET steps = ? WHERE device_id = ?",
                          (",".join(ordered_steps(steps)), device_id))

    def step_done(self, device_id: str, step: str, **values: Any) -> DeviceRow:
        """Record a finished step with what it learned, in one transaction; the later
        steps it makes untrue (INVALIDATES) are no longer done."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            row = self.by_id(device_id)
            if row is None:
                raise RegistryError(f"device {device_id!r} is not in the registry")
            steps = (set(row.steps) - set(INVALIDATES[step])) | {step}
            self.set_steps(device_id, steps, last_error=None, **values)
        done = self.by_id(device_id)
        assert done is not None
        return done

    def step_failed(self, device_id: str, step: str, message: str) -> None:
        self.update(device_id, last_error=f"{step}: {message}")

    def retire(self, device_id: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            agent_registry.remove_device(self.conn, device_id)
            self.conn.execute(
                "UPDATE provisioning SET retired_at = ?, updated_at = ? WHERE device_id = ?",
                (now, now, device_id))

    def add_agent_device(self, device_id: str, role: str, board: str, *,
                         mac_key: bytes | None, password_hash: str) -> None:
        """The agent's `devices` row (edge_agent.registry.add_device)."""
        try:
            agent_registry.add_device(self.conn, device_id, role, board=board, mac_key=mac_key,
                                      password_hash=password_hash)
        except ValueError as e:
            raise RegistryError(str(e)) from e

    def agent_device_ids(self) -> list[str]:
        return agent_registry.device_ids(self.conn)
