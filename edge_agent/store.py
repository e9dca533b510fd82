"""The agent's durable queue: SQLite in WAL mode, one fsync per group commit.

Invariants the rest of the agent relies on:
- `insert_batch` writes a whole batch (readings, dead letters, statuses, ack state,
  overflow drops) in one transaction; when it returns, the batch is on disk
  (synchronous=FULL on the ingress connection), so PUBACKs and end-to-end acks may go.
- A (device, boot, seq) is stored at most once: `ack_state.hw` is the highest seq of the
  boot committed with no gap below it, `ack_ahead` holds the seqs committed above it;
  a seq in either is a duplicate (acked again, not stored again).
- `readings.id` is AUTOINCREMENT: ids grow with arrival order and are never reused, so
  the forwarder's cursors never skip a row.
- Alarms are never dropped by the overflow, age or disk-full policy; every drop is counted.
- A status that differs from the device's last one is queued for upstream (`status_out`)
  in the same transaction as `device_state`; the queue holds the latest unsent status per
  device (a newer one replaces it), so no drop policy touches it: it is bounded by the
  number of devices.
- A full disk (SQLITE_FULL, or the `max_db_bytes` page cap) is handled by the caller
  with `make_room()`, which drops the oldest non-alarm readings in a transaction of its
  own and lowers `disk_cap`, so later batches drop as much as they add and SQLite reuses
  the freed pages instead of growing the file.

Each thread opens its own Store (sqlite3 connections are per thread).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StoreError
from .registry import REGISTRY_DDL, load_devices
from .validate import DeviceInfo, Reading, Status

SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 30_000  # how long a connection waits for another one's write lock

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device      TEXT NOT NULL,
    boot        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    alarm       INTEGER NOT NULL,
    received_at REAL NOT NULL,
    payload     BLOB NOT NULL,          -- the node's envelope, byte for byte
    UNIQUE (device, boot, seq)
);
CREATE INDEX IF NOT EXISTS readings_queue ON readings (alarm, id);

CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    reason      TEXT NOT NULL,
    device      TEXT,                   -- identity, when the envelope got that far
    boot        INTEGER,
    seq         INTEGER
);

CREATE TABLE IF NOT EXISTS device_state (
    device      TEXT PRIMARY KEY,
    last_seen   REAL,                   -- last reading or online status
    boot        INTEGER,                -- latest boot seen
    online      INTEGER,                -- from the retained status / last will
    interval    INTEGER,                -- reporting interval from the status, seconds
    fw          TEXT,
    status      BLOB,                   -- last status payload
    status_at   REAL,
    seen_interval REAL,                 -- observed spacing of its messages (EWMA), seconds
    seen_samples INTEGER,               -- how many gaps taught seen_interval
    offline_since REAL                  -- set when the agent declared it offline
);

-- Statuses to forward upstream: the latest unsent one per device (a newer one replaces
-- it and gets a new, higher id); deleted on the upstream's PUBACK of that id.
CREATE TABLE IF NOT EXISTS status_out (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device      TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    payload     BLOB NOT NULL           -- the node's status, byte for byte
);

CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          REAL NOT NULL,
    device      TEXT NOT NULL,
    kind        TEXT NOT NULL,          -- 'offline' or 'online'
    detail      TEXT NOT NULL,
    published   INTEGER NOT NULL DEFAULT 0  -- 1 once the upstream acknowledged it
);
CREATE INDEX IF NOT EXISTS events_unpublished ON events (published, id);

CREATE TABLE IF NOT EXISTS agent_state (
    name        TEXT PRIMARY KEY,       -- 'upstream', 'local', 'pid', ...
    value       TEXT NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS ack_state (
    device      TEXT NOT NULL,
    boot        INTEGER NOT NULL,
    hw          INTEGER NOT NULL,       -- highest seq committed with no gap below it
    updated_at  REAL NOT NULL,
    PRIMARY KEY (device, boot)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS ack_ahead (
    device      TEXT NOT NULL,
    boot        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,       -- committed, above a gap: not acked yet
    PRIMARY KEY (device, boot, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS counters (
    name        TEXT PRIMARY KEY,
    value       INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS queue_stats (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    rows        INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    dead        INTEGER NOT NULL DEFAULT 0  -- rows in dead_letters
);
INSERT OR IGNORE INTO queue_stats (id, rows, bytes) VALUES (1, 0, 0);

-- Kept by triggers so the overflow check never scans the table.
CREATE TRIGGER IF NOT EXISTS readings_count_ins AFTER INSERT ON readings BEGIN
    UPDATE queue_stats SET rows = rows + 1, bytes = bytes + length(NEW.payload) WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS readings_count_del AFTER DELETE ON readings BEGIN
    UPDATE queue_stats SET rows = rows - 1, bytes = bytes - length(OLD.payload) WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS dead_letters_count_ins AFTER INSERT ON dead_letters BEGIN
    UPDATE queue_stats SET dead = dead + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS dead_letters_count_del AFTER DELETE ON dead_letters BEGIN
    UPDATE queue_stats SET dead = dead - 1 WHERE id = 1;
END;
"""

# Schema 1 -> 2: the fleet view (device silence, events, the agent's reported state).
MIGRATE_1_2 = """
ALTER TABLE device_state ADD COLUMN seen_interval REAL;
ALTER TABLE device_state ADD COLUMN seen_samples INTEGER;
ALTER TABLE device_state ADD COLUMN offline_since REAL;
ALTER TABLE queue_stats ADD COLUMN dead INTEGER NOT NULL DEFAULT 0;
UPDATE queue_stats SET dead = (SELECT count(*) FROM dead_letters);
"""

# A gap between two messages of a device shorter than this is a burst (an outbox being
# resent), not its reporting interval: it does not teach the observed interval.
MIN_INTERVAL_SAMPLE = 1.0
# Gaps needed before the observed interval is trusted to call a device silent.
MIN_INTERVAL_SAMPLES = 3

# Counter names.
DROPPED_OVERFLOW = "dropped_overflow"
DROPPED_AGE = "dropped_age"
DROPPED_DISK = "dropped_disk"
DEAD_LETTERS = "dead_letters"
DEAD_LETTERS_DROPPED = "dead_letters_dropped"
DUPLICATES = "duplicates"
STORED = "stored"
FORWARDED = "forwarded"
STATUSES_FORWARDED = "statuses_forwarded"
STATUSES_REPLACED = "statuses_replaced"  # a newer status replaced an unsent one


@dataclass(frozen=True)
class Limits:
    max_rows: int = 1_000_000
    max_bytes: int = 1 << 30
    max_age: float = 30 * 86400.0
    max_dead_letters: int = 10_000
    max_db_bytes: int = 0  # 0: no cap beyond the disk itself (PRAGMA max_page_count)
    wal_bytes: int = 4 << 20  # the WAL is checkpointed, and truncated back, at this size


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    payload: bytes
    reason: str
    identity: tuple[str, int, int] | None = None  # closes this seq for the ack when set


@dataclass(frozen=True)
class Row:
    id: int
    device: str
    boot: int
    seq: int
    alarm: bool
    payload: bytes


@dataclass(frozen=True)
class StatusRow:
    id: int
    device: str
    payload: bytes


@dataclass
class BatchResult:
    outcomes: list[str] = field(default_factory=list)  # one per item, in order
    acks: dict[str, dict[int, int]] = field(default_factory=dict)  # device -> {boot: hw}
    dropped: int = 0  # readings dropped by the size policies, the disk's included
    dropped_disk: int = 0  # of which because the disk is full (disk_cap)


Item = Reading | DeadLetter | Status | None


@dataclass
class _Boot:
    """Ack state of one (device, boot) during a batch."""

    hw: int
    has_ahead: bool
    dirty: bool = False


class Store:
    def __init__(self, path: Path, limits: Limits | None = None, *, durable: bool = True) -> None:
        """Open (and create) the database. durable=False (synchronous=NORMAL) is for the
        forwarder's connection: a delete lost in a power cut only means a duplicate."""
        self.path = Path(path)
        self.limits = limits or Limits()
        self.disk_cap: int | None = None  # queue bytes the disk has room for, once it filled
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.conn = sqlite3.connect(self.path, isolation_level=None,
                                        timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=True)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._migrate()
            page = self.conn.execute("PRAGMA page_size").fetchone()[0]
            # A bounded WAL: on a full disk, the room it may need is known (the reserve).
            self.conn.execute(f"PRAGMA wal_autocheckpoint={max(16, self.limits.wal_bytes // page)}")
            self.conn.execute(f"PRAGMA journal_size_limit={self.limits.wal_bytes}")
            if self.limits.max_db_bytes:
                self.conn.execute(f"PRAGMA max_page_count={self.limits.max_db_bytes // page}")
            row = self.conn.execute("SELECT value FROM agent_state WHERE name = 'disk_cap'"
                                    ).fetchone()
            self.disk_cap = int(row[0]) if row else None
        except OSError as e:
            raise StoreError(f"{self.path}: cannot open: {e.strerror}") from e
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open database: {e}") from e

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version} is newer than this agent")
        if version < SCHEMA_VERSION:
            # Idempotent DDL in one transaction: two threads opening at once is harmless
            # (the loser of a 1 -> 2 race fails on the ALTER and finds version 2).
            alter = MIGRATE_1_2 if version == 1 else ""
            try:
                # The ALTERs first: the schema's new triggers use the new columns.
                self.conn.executescript("BEGIN IMMEDIATE;" + REGISTRY_DDL + alter + SCHEMA
                                        + f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
            except sqlite3.OperationalError:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                if self.conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    raise
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self.conn.close()

    def _begin(self, patient: bool = True) -> None:
        """BEGIN IMMEDIATE, waiting for another connection's write lock in steps of 0.2 ms
        to 5 ms: SQLite's own busy handler sleeps 1, 2, 5, 10 ms..., which made the ingress
        and the forwarder stall on each other's short transactions. patient=False: raise
        SQLITE_BUSY at once."""
        c = self.conn
        c.execute("PRAGMA busy_timeout = 0")
        try:
            delay = 0.0002
            deadline = time.monotonic() + (BUSY_TIMEOUT_MS / 1000 if patient else 0.0)
            while True:
                try:
                    c.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as e:
                    if (getattr(e, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY
                            or time.monotonic() >= deadline):
                        raise
                time.sleep(delay)
                delay = min(delay * 2, 0.005)
        finally:
            c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction (the connection is in autocommit mode)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    # --- ingress ---

    def insert_batch(self, items: Sequence[Item], now: float | None = None) -> BatchResult:
        """Commit one group of messages in one transaction; see the module invariants.

        Outcomes: "stored", "duplicate", "dead", "dead_duplicate", "status", "ignored".
        """
        now = time.time() if now is None else now
        res = BatchResult()
        boots: dict[tuple[str, int], _Boot] = {}
        counts: dict[str, int] = {}
        c = self.conn
        self._begin()
        try:
            self._prefetch_boots(boots, items)
            latest_boot: dict[str, int] = {}
            rows: list[tuple[str, int, int, int, float, bytes]] = []
            for item in items:
                if isinstance(item, Reading):
                    if item.lo is not None:
                        self._raise_floor(boots, item.device, item.boot, item.lo - 1)
                    if self._close(boots, item.device, item.boot, item.seq):
                        # Inserted together below, in this order: ids follow arrival.
                        rows.append((item.device, item.boot, item.seq, int(item.alarm), now,
                                     item.payload))
                        res.outcomes.append("stored")
                    else:
                        res.outcomes.append("duplicate")
                    latest_boot[item.device] = max(latest_boot.get(item.device, 0), item.boot)
                elif isinstance(item, DeadLetter):
                    if item.identity is not None and not self._close(boots, *item.identity):
                        res.outcomes.append("dead_duplicate")
                        continue
                    dev, boot, seq = item.identity or (None, None, None)
                    c.execute("INSERT INTO dead_letters (received_at, topic, payload, reason,"
                              " device, boot, seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (now, item.topic, item.payload, item.reason, dev, boot, seq))
                    res.outcomes.append("dead")
                elif isinstance(item, Status):
                    self._status(item, now)
                    res.outcomes.append("status")
                else:
                    res.outcomes.append("ignored")
            c.executemany("INSERT INTO readings (device, boot, seq, alarm, received_at, payload)"
                          " VALUES (?, ?, ?, ?, ?, ?)", rows)
            out = res.outcomes
            counts[STORED] = out.count("stored")
            counts[DUPLICATES] = out.count("duplicate") + out.count("dead_duplicate")
            counts[DEAD_LETTERS] = out.count("dead")
            res.acks = self._save_boots(boots, now)
            self._seen_many(list(latest_boot.items()), now)
            counts[DROPPED_OVERFLOW], counts[DROPPED_DISK] = self._enforce_size()
            res.dropped = counts[DROPPED_OVERFLOW] + counts[DROPPED_DISK]
            res.dropped_disk = counts[DROPPED_DISK]
            if counts[DEAD_LETTERS]:
                counts[DEAD_LETTERS_DROPPED] = self._enforce_dead_letters()
            self._count(counts)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return res

    def _save_boots(self, boots: dict[tuple[str, int], _Boot], now: float
                    ) -> dict[str, dict[int, int]]:
        """Write the ack state the batch changed; return the acks to send."""
        acks: dict[str, dict[int, int]] = {}
        dirty = []
        for (dev, boot), st in boots.items():
            if st.dirty:
                dirty.append((dev, boot, st.hw, now))
            if st.hw >= 1:
                acks.setdefault(dev, {})[boot] = st.hw
        self.conn.executemany(
            "INSERT INTO ack_state (device, boot, hw, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (device, boot) DO UPDATE SET hw = excluded.hw,"
            " updated_at = excluded.updated_at", dirty)
        return acks

    def _prefetch_boots(self, boots: dict[tuple[str, int], _Boot], items: Sequence[Item]
                        ) -> None:
        """The ack state of every (device, boot) in a batch, in a few queries rather than
        two per pair (a batch of 200 devices would otherwise cost 400 lookups)."""
        pairs = {(it.device, it.boot) for it in items if isinstance(it, Reading)}
        pairs.update(it.identity[:2] for it in items
                     if isinstance(it, DeadLetter) and it.identity is not None)
        pairs.difference_update(boots)
        todo = list(pairs)
        for i in range(0, len(todo), 400):
            part = todo[i:i + 400]
            values = ",".join("(?, ?)" for _ in part)
            args = [x for pair in part for x in pair]
            hw = {(d, b): h for d, b, h in self.conn.execute(
                f"SELECT device, boot, hw FROM ack_state WHERE (device, boot) IN"
                f" (VALUES {values})", args)}
            ahead = set(self.conn.execute(
                f"SELECT DISTINCT device, boot FROM ack_ahead WHERE (device, boot) IN"
                f" (VALUES {values})", args).fetchall())
            for pair in part:
                boots[pair] = _Boot(hw.get(pair, 0), pair in ahead)

    def _boot(self, boots: dict[tuple[str, int], _Boot], device: str, boot: int) -> _Boot:
        st = boots.get((device, boot))
        if st is None:
            row = self.conn.execute("SELECT hw FROM ack_state WHERE device = ? AND boot = ?",
                                    (device, boot)).fetchone()
            ahead = self.conn.execute("SELECT 1 FROM ack_ahead WHERE device = ? AND boot = ?"
                                      " LIMIT 1", (device, boot)).fetchone()
            st = boots[(device, boot)] = _Boot(row[0] if row else 0, ahead is not None)
        return st

    def _close(self, boots: dict[tuple[str, int], _Boot], device: str, boot: int,
               seq: int) -> bool:
        """Mark (device, boot, seq) committed; False when it already was (a duplicate)."""
        st = self._boot(boots, device, boot)
        if seq <= st.hw:
            return False
        if seq != st.hw + 1:
            cur = self.conn.execute("INSERT OR IGNORE INTO ack_ahead (device, boot, seq)"
                                    " VALUES (?, ?, ?)", (device, boot, seq))
            st.has_ahead = True
            return cur.rowcount == 1
        # ack_ahead never holds hw + 1 (_advance would have taken it): this seq is new.
        st.hw = seq
        st.dirty = True
        self._advance(st, device, boot)
        return True

    def _raise_floor(self, boots: dict[tuple[str, int], _Boot], device: str, boot: int,
                     floor: int) -> None:
        """The node no longer holds seqs <= floor (envelope key `lo`): close the gap."""
        st = self._boot(boots, device, boot)
        if floor > st.hw:
            st.hw = floor
            st.dirty = True
            self._advance(st, device, boot)

    def _advance(self, st: _Boot, device: str, boot: int) -> None:
        """Move hw over the committed seqs right above it, and forget them in ack_ahead."""
        if not st.has_ahead:
            return
        c = self.conn
        while True:
            seqs = [r[0] for r in c.execute(
                "SELECT seq FROM ack_ahead WHERE device = ? AND boot = ? AND seq > ?"
                " ORDER BY seq LIMIT 512", (device, boot, st.hw))]
            for s in seqs:
                if s != st.hw + 1:
                    break
                st.hw = s
            else:
                if len(seqs) == 512:
                    continue
            break
        c.execute("DELETE FROM ack_ahead WHERE device = ? AND boot = ? AND seq <= ?",
                  (device, boot, st.hw))
        st.has_ahead = c.execute("SELECT 1 FROM ack_ahead WHERE device = ? AND boot = ?"
                                 " LIMIT 1", (device, boot)).fetchone() is not None

    def _seen(self, dev: str, boot: int, now: float) -> None:
        self._seen_many([(dev, boot)], now)

    def _seen_many(self, devices: list[tuple[str, int]], now: float) -> None:
        """last_seen, and the observed interval: an EWMA of the gaps between messages, each
        gap capped at twice the estimate so one outage does not make the device look slow
        for hours; bursts (gaps < MIN_INTERVAL_SAMPLE) are ignored."""
        self.conn.executemany(
            "INSERT INTO device_state (device, last_seen, boot) VALUES (?1, ?2, ?3)"
            " ON CONFLICT (device) DO UPDATE SET"
            " seen_interval = CASE WHEN last_seen IS NULL OR ?2 - last_seen < ?4"
            "   THEN seen_interval WHEN seen_interval IS NULL THEN ?2 - last_seen"
            "   ELSE 0.75 * seen_interval + 0.25 * min(?2 - last_seen, 2 * seen_interval) END,"
            " seen_samples = coalesce(seen_samples, 0)"
            "   + (last_seen IS NOT NULL AND ?2 - last_seen >= ?4),"
            " last_seen = ?2, boot = max(coalesce(boot, 0), ?3)",
            [(dev, now, boot, MIN_INTERVAL_SAMPLE) for dev, boot in devices])

    def _status(self, st: Status, now: float) -> None:
        f = st.fields
        c = self.conn
        row = c.execute("SELECT status FROM device_state WHERE device = ?",
                        (st.device,)).fetchone()
        if row is None or row[0] != st.payload:
            # A change (not the retained copy the broker sends again on every subscribe):
            # queue it for upstream, replacing an unsent older one (a new, higher id).
            replaced = c.execute("DELETE FROM status_out WHERE device = ?",
                                 (st.device,)).rowcount
            c.execute("INSERT INTO status_out (device, received_at, payload) VALUES (?, ?, ?)",
                      (st.device, now, st.payload))
            self._count({STATUSES_REPLACED: replaced})
        c.execute(
            "INSERT INTO device_state (device, last_seen, boot, online, interval, fw, status,"
            " status_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET"
            " last_seen = coalesce(excluded.last_seen, last_seen),"
            " boot = coalesce(excluded.boot, boot), online = excluded.online,"
            " interval = coalesce(excluded.interval, interval), fw = coalesce(excluded.fw, fw),"
            " status = excluded.status, status_at = excluded.status_at",
            (st.device, now if st.online else None, f.get("boot"), int(st.online),
             f.get("interval"), f.get("fw"), st.payload, now))

    def _enforce_size(self) -> tuple[int, int]:
        """Drop the oldest non-alarm readings while over max_rows or max_bytes, then while
        over the smaller `disk_cap` a full disk set. Returns (overflow, disk) drops."""
        rows, size = self.conn.execute("SELECT rows, bytes FROM queue_stats").fetchone()
        n, freed = self._drop_oldest(rows - self.limits.max_rows, size - self.limits.max_bytes)
        disk = 0
        if self.disk_cap is not None and size - freed > self.disk_cap:
            disk, _ = self._drop_oldest(0, size - freed - self.disk_cap)
        return n, disk

    def _drop_oldest(self, over_rows: int, over_bytes: int) -> tuple[int, int]:
        """Delete the oldest non-alarm readings until both excesses are <= 0; returns
        (rows, payload bytes) deleted."""
        dropped = freed = 0
        while over_rows > 0 or over_bytes > 0:
            chunk = self.conn.execute(
                "SELECT id, length(payload) FROM readings WHERE alarm = 0 ORDER BY id LIMIT 512"
            ).fetchall()
            if not chunk:
                break  # only alarms left: they stay, over the limit
            ids = []
            for rid, n in chunk:
                if over_rows <= 0 and over_bytes <= 0:
                    break
                ids.append(rid)
                over_rows -= 1
                over_bytes -= n
                freed += n
            self._delete_ids(ids)
            dropped += len(ids)
        return dropped, freed

    def _enforce_dead_letters(self) -> int:
        extra = self.dead_letter_count() - self.limits.max_dead_letters
        if extra <= 0:
            return 0
        self.conn.execute("DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters"
                          " ORDER BY id LIMIT ?)", (extra,))
        return extra

    def _count(self, counts: dict[str, int]) -> None:
        for name, n in counts.items():
            if n:
                self.conn.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT"
                                  " (name) DO UPDATE SET value = value + excluded.value",
                                  (name, n))

    def _delete_ids(self, ids: Sequence[int]) -> int:
        n = 0
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            cur = self.conn.execute(
                f"DELETE FROM readings WHERE id IN ({','.join('?' * len(part))})", part)
            n += cur.rowcount
        return n

    def expire(self, now: float | None = None) -> int:
        """Drop non-alarm readings older than max_age; walks from the oldest id and stops
        at the first young one (ids follow arrival time), so it costs what it drops."""
        cutoff = (time.time() if now is None else now) - self.limits.max_age
        total = 0
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            while True:
                chunk = c.execute("SELECT id, received_at FROM readings WHERE alarm = 0"
                                  " ORDER BY id LIMIT 512").fetchall()
                ids = [rid for rid, at in _takewhile_old(chunk, cutoff)]
                total += self._delete_ids(ids)
                if len(ids) < len(chunk) or len(chunk) < 512:
                    break
            self._count({DROPPED_AGE: total})
            # Ack state of boots untouched for max_age: a sleeping node starts a boot per
            # wake-up, so this table would grow forever. A replay older than that would be
            # stored again: a duplicate upstream, recognisable by (device, boot, seq).
            c.execute("DELETE FROM ack_ahead WHERE (device, boot) IN (SELECT device, boot"
                      " FROM ack_state WHERE updated_at < ?)", (cutoff,))
            c.execute("DELETE FROM ack_state WHERE updated_at < ?", (cutoff,))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return total

    # --- a full disk ---

    def make_room(self, nbytes: int, chunk: int = 64 << 10) -> tuple[int, int]:
        """The disk is full: drop the oldest non-alarm readings (at least `nbytes` of
        payload) and cap the queue where it then stands, so each later batch drops what
        it adds. The drops go in transactions of at most `chunk` payload bytes, each
        followed by a TRUNCATE checkpoint: a transaction's WAL frames must fit in the room
        there is (the reserve), and the checkpoint gives that room back for the next one.
        With no non-alarm reading left, the oldest dead letters go instead. Returns
        (readings, dead letters) dropped."""
        c = self.conn
        dropped = dead = freed = 0
        self.checkpoint(truncate=True)  # the WAL's pages into the database, its file freed
        while freed < nbytes:
            with self._tx():
                n, size = self._drop_oldest(0, max(1, min(chunk, nbytes - freed)))
                self._count({DROPPED_DISK: n})
            self.checkpoint(truncate=True)
            dropped, freed = dropped + n, freed + size
            if not n:
                break
        with self._tx():
            if not dropped:
                dead = c.execute("DELETE FROM dead_letters WHERE id IN (SELECT id FROM"
                                 " dead_letters ORDER BY id LIMIT 64)").rowcount
                self._count({DEAD_LETTERS_DROPPED: dead})
            cap = self.queue_depth()[1]
            self._save_disk_cap(cap)
        self.disk_cap = cap
        self.checkpoint(truncate=True)
        return dropped, dead

    def set_disk_cap(self, cap: int | None) -> None:
        """Raise or lift the cap (the disk has room again)."""
        with self._tx():
            self._save_disk_cap(cap)
        self.disk_cap = cap

    def _save_disk_cap(self, cap: int | None) -> None:
        """Kept in agent_state so a restart does not learn it again by filling the disk
        (and dropping another tenth of the queue)."""
        if cap is None:
            self.conn.execute("DELETE FROM agent_state WHERE name = 'disk_cap'")
        else:
            self.conn.execute("INSERT INTO agent_state (name, value, updated_at) VALUES"
                              " ('disk_cap', ?, ?) ON CONFLICT (name) DO UPDATE SET"
                              " value = excluded.value, updated_at = excluded.updated_at",
                              (str(cap), time.time()))

    def checkpoint(self, truncate: bool = False) -> None:
        """Copy the WAL into the database so the next writer starts the WAL over;
        truncate=True also gives the WAL file's space back to the filesystem."""
        try:
            mode = "TRUNCATE" if truncate else "PASSIVE"
            self.conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.Error:
            pass  # best effort: the next commit's autocheckpoint tries again

    def free_room(self) -> int | None:
        """Bytes the page cap (`max_db_bytes`) still allows, free pages included; None
        without a cap."""
        if not self.limits.max_db_bytes:
            return None
        page = self.conn.execute("PRAGMA page_size").fetchone()[0]
        used = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int(max(0, self.limits.max_db_bytes // page - used + free) * page)

    # --- dead letters: replay ---

    def replay(self, dl_id: int, item: Item) -> str:
        """Ingest dead letter `dl_id` again as `item` (validated anew by the caller) and
        remove it, in one transaction. A dead letter that named its (device, boot, seq)
        closed that seq when it was kept, so its reading is stored outright; one that did
        not (an unknown device) goes through the usual dedup. Returns the outcome:
        "stored", "duplicate" or "status"."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            row = c.execute("SELECT device, boot, seq FROM dead_letters WHERE id = ?",
                            (dl_id,)).fetchone()
            if row is None:
                raise StoreError(f"no dead letter {dl_id}")
            now = time.time()
            outcome = "status"
            if isinstance(item, Reading):
                fresh = True
                if row[0] is None:
                    boots: dict[tuple[str, int], _Boot] = {}
                    fresh = self._close(boots, item.device, item.boot, item.seq)
                    self._save_boots(boots, now)
                elif (row[0], row[1], row[2]) != (item.device, item.boot, item.seq):
                    raise StoreError(f"dead letter {dl_id}: its identity changed")
                if fresh:
                    c.execute("INSERT OR IGNORE INTO readings (device, boot, seq, alarm,"
                              " received_at, payload) VALUES (?, ?, ?, ?, ?, ?)",
                              (item.device, item.boot, item.seq, int(item.alarm), now,
                               item.payload))
                    self._seen(item.device, item.boot, now)
                    self._count({STORED: 1})
                    outcome = "stored"
                else:
                    self._count({DUPLICATES: 1})
                    outcome = "duplicate"
            elif isinstance(item, Status):
                self._status(item, now)
            c.execute("DELETE FROM dead_letters WHERE id = ?", (dl_id,))
            self._count({"dead_letters_replayed": 1})
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return outcome

    def dead_letter_ids(self, reason_like: str | None = None) -> list[int]:
        if reason_like is None:
            return [r[0] for r in self.conn.execute("SELECT id FROM dead_letters ORDER BY id")]
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM dead_letters WHERE reason LIKE ? ORDER BY id", (reason_like,))]

    def dead_letter_count(self) -> int:
        """Kept by triggers: no scan of a table of payloads up to 16 kB each."""
        return int(self.conn.execute("SELECT dead FROM queue_stats").fetchone()[0])

    # --- fleet view: device silence, events, the agent's reported state ---

    def fleet(self, min_samples: int = MIN_INTERVAL_SAMPLES
              ) -> list[tuple[str, float | None, int | None, int | None, float | None,
                              float | None]]:
        """(device, last_seen, online, interval, seen_interval, offline_since) per device;
        seen_interval only once `min_samples` gaps have taught it."""
        return self.conn.execute(
            "SELECT device, last_seen, online, interval, CASE WHEN seen_samples >= ?"
            " THEN seen_interval END, offline_since FROM device_state",
            (min_samples,)).fetchall()

    def record_events(self, events: Sequence[tuple[str, str, str]],
                      now: float | None = None, keep: int = 10_000) -> None:
        """Record (device, kind, detail) events and set or clear each device's
        offline_since, in one transaction; keep the newest `keep` events."""
        if not events:
            return
        now = time.time() if now is None else now
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for device, kind, detail in events:
                c.execute("INSERT INTO events (at, device, kind, detail) VALUES (?, ?, ?, ?)",
                          (now, device, kind, detail))
                if kind == "offline":
                    c.execute("UPDATE device_state SET offline_since = ? WHERE device = ?",
                              (now, device))
                else:  # heard from again: whatever its last will said is past
                    c.execute("UPDATE device_state SET offline_since = NULL, online = 1"
                              " WHERE device = ?", (device,))
            c.execute("DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?",
                      (keep,))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def events(self, limit: int = 20, after: int = 0,
               unpublished: bool = False) -> list[dict[str, Any]]:
        """The newest `limit` events, or (unpublished=True) the oldest unpublished ones
        with id > after."""
        if unpublished:
            cur = self.conn.execute("SELECT id, at, device, kind, detail FROM events"
                                    " WHERE published = 0 AND id > ? ORDER BY id LIMIT ?",
                                    (after, limit))
        else:
            cur = self.conn.execute("SELECT id, at, device, kind, detail, published FROM"
                                    " events ORDER BY id DESC LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def mark_published(self, ids: Sequence[int]) -> None:
        with self._tx():
            self.conn.executemany("UPDATE events SET published = 1 WHERE id = ?",
                                  [(i,) for i in ids])

    def set_agent_state(self, values: dict[str, str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._tx():
            self.conn.executemany(
                "INSERT INTO agent_state (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                [(k, v, now) for k, v in values.items()])

    def agent_state(self) -> dict[str, tuple[str, float]]:
        return {n: (v, at) for n, v, at in
                self.conn.execute("SELECT name, value, updated_at FROM agent_state")}

    # --- forwarder ---

    def next_rows(self, after_alarm: int, after_normal: int, limit: int) -> list[Row]:
        """Up to `limit` rows to forward: alarms first, then the oldest normal rows.

        Two cursors (the last alarm id and normal id handed out) so an alarm that arrives
        during a backlog goes ahead of it, and in-flight rows are not handed out twice.
        """
        rows = self.conn.execute(
            "SELECT id, device, boot, seq, alarm, payload FROM readings WHERE alarm = 1"
            " AND id > ? ORDER BY id LIMIT ?", (after_alarm, limit)).fetchall()
        if len(rows) < limit:
            rows += self.conn.execute(
                "SELECT id, device, boot, seq, alarm, payload FROM readings WHERE alarm = 0"
                " AND id > ? ORDER BY id LIMIT ?", (after_normal, limit - len(rows))).fetchall()
        return [Row(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]

    def next_statuses(self, after: int, limit: int) -> list[StatusRow]:
        """Up to `limit` queued statuses with id > after, oldest first (a device has at
        most one: its latest unsent status)."""
        return [StatusRow(*r) for r in self.conn.execute(
            "SELECT id, device, payload FROM status_out WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit))]

    def pending_statuses(self) -> dict[str, bytes]:
        """device -> the status waiting to be forwarded."""
        return dict(self.conn.execute("SELECT device, payload FROM status_out").fetchall())

    def delete(self, ids: Sequence[int], wait: bool = True,
               status_ids: Sequence[int] = ()) -> int:
        """Delete forwarded rows and statuses (acknowledged upstream) in one transaction.
        A status replaced since it was sent has a new id and stays. wait=False: raise
        sqlite3.OperationalError (SQLITE_BUSY) at once if the ingress holds the write
        lock, rather than sleep in SQLite's busy handler (1 ms, 2 ms, 5 ms...)."""
        if not ids and not status_ids:
            return 0
        c = self.conn
        self._begin(patient=wait)
        try:
            n = self._delete_ids(ids)
            sent = c.executemany("DELETE FROM status_out WHERE id = ?",
                                 [(i,) for i in status_ids]).rowcount if status_ids else 0
            self._count({FORWARDED: n, STATUSES_FORWARDED: max(0, sent)})
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return n

    # --- reading the state (CLI, tests, metrics) ---

    def devices(self) -> dict[str, DeviceInfo]:
        return load_devices(self.conn)

    def counters(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, value FROM counters").fetchall())

    def queue_depth(self) -> tuple[int, int]:
        rows, size = self.conn.execute("SELECT rows, bytes FROM queue_stats").fetchone()
        return rows, size

    def oldest_received_at(self) -> float | None:
        row = self.conn.execute("SELECT min(received_at) FROM (SELECT received_at FROM readings"
                                " ORDER BY id LIMIT 1)").fetchone()
        return row[0]

    def alarm_rows(self) -> int:
        return self.conn.execute("SELECT count(*) FROM readings WHERE alarm = 1").fetchone()[0]

    def recent_acks(self, since: float, per_device: int = 8) -> dict[str, dict[int, int]]:
        """Ack state changed since `since`: the latest `per_device` boots of each device."""
        rows = self.conn.execute(
            "SELECT device, boot, hw FROM (SELECT device, boot, hw, row_number() OVER"
            " (PARTITION BY device ORDER BY updated_at DESC, boot DESC) AS n FROM ack_state"
            " WHERE updated_at >= ?) WHERE n <= ? ORDER BY device, boot",
            (since, per_device)).fetchall()
        out: dict[str, dict[int, int]] = {}
        for dev, boot, hw in rows:
            if hw >= 1:
                out.setdefault(dev, {})[boot] = hw
        return out

    def ack_levels(self, device: str) -> dict[int, int]:
        return dict(self.conn.execute("SELECT boot, hw FROM ack_state WHERE device = ?",
                                      (device,)).fetchall())

    def device_states(self) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT d.device_id AS device, d.role, s.last_seen, s.online, s.interval, s.fw,"
            " s.boot, s.seen_interval FROM devices d LEFT JOIN device_state s"
            " ON s.device = d.device_id UNION SELECT s.device, NULL, s.last_seen, s.online,"
            " s.interval, s.fw, s.boot, s.seen_interval FROM device_state s"
            " WHERE s.device NOT IN (SELECT device_id FROM devices)"
            " ORDER BY 1")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def dead_letters(self, limit: int = 50) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT id, received_at, topic, reason, length(payload) AS size"
                                " FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def dead_letter(self, dl_id: int) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM dead_letters WHERE id = ?", (dl_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row,
                                                 strict=True))

    def integrity_check(self) -> str:
        return ", ".join(r[0] for r in self.conn.execute("PRAGMA integrity_check"))


def _takewhile_old(chunk: Iterable[tuple[int, float]], cutoff: float) -> Iterable[tuple[int,
                                                                                       float]]:
    for rid, at in chunk:
        if at >= cutoff:
            return
        yield rid, at
