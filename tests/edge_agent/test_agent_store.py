"""The SQLite store: dedup, gap-free ack high-water, overflow policy, forward order."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.registry import add_device
from edge_agent.store import DeadLetter, Limits, Store
from edge_agent.validate import Reading, Status


def R(seq: int, boot: int = 1, dev: str = "wl-1", alarm: bool = False, size: int = 10,
      lo: int | None = None) -> Reading:
    return Reading(dev, boot, seq, "water_level", alarm, bytes([seq % 256]) * size, lo)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "data" / "agent.db")
    yield s
    s.close()


def stored_keys(s: Store) -> list[tuple[str, int, int]]:
    return s.conn.execute("SELECT device, boot, seq FROM readings ORDER BY id").fetchall()


def test_database_is_private_and_in_wal_mode(store: Store) -> None:
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_in_order_batch_acks_the_last_seq(store: Store) -> None:
    res = store.insert_batch([R(1), R(2), R(3)])
    assert res.outcomes == ["stored"] * 3
    assert res.acks == {"wl-1": {1: 3}}
    assert stored_keys(store) == [("wl-1", 1, 1), ("wl-1", 1, 2), ("wl-1", 1, 3)]


def test_duplicates_are_acked_but_stored_once(store: Store) -> None:
    store.insert_batch([R(1), R(2)])
    res = store.insert_batch([R(2), R(1), R(2), R(3)])
    assert res.outcomes == ["duplicate", "duplicate", "duplicate", "stored"]
    assert res.acks == {"wl-1": {1: 3}}
    assert len(stored_keys(store)) == 3
    assert store.counters()["duplicates"] == 3


def test_duplicates_of_forwarded_rows_are_still_recognised(store: Store) -> None:
    store.insert_batch([R(1), R(2)])
    store.delete([r[0] for r in store.conn.execute("SELECT id FROM readings")])
    assert store.queue_depth() == (0, 0)
    res = store.insert_batch([R(2)])
    assert res.outcomes == ["duplicate"] and res.acks == {"wl-1": {1: 2}}
    assert store.queue_depth() == (0, 0)


def test_ack_stops_below_a_gap_and_moves_when_it_fills(store: Store) -> None:
    res = store.insert_batch([R(1), R(3), R(4)])
    assert res.acks == {"wl-1": {1: 1}}
    res = store.insert_batch([R(6)])
    assert res.acks == {"wl-1": {1: 1}}
    res = store.insert_batch([R(2)])
    assert res.acks == {"wl-1": {1: 4}}
    res = store.insert_batch([R(5)])
    assert res.acks == {"wl-1": {1: 6}}
    assert store.conn.execute("SELECT count(*) FROM ack_ahead").fetchone()[0] == 0


def test_seq_starts_at_one(store: Store) -> None:
    res = store.insert_batch([R(2), R(3)])
    assert res.acks == {}  # nothing gap-free yet: no ack at all
    res = store.insert_batch([R(1)])
    assert res.acks == {"wl-1": {1: 3}}


def test_out_of_order_within_a_batch_and_duplicates_above_the_gap(store: Store) -> None:
    res = store.insert_batch([R(5), R(3), R(5), R(2), R(1)])
    assert res.outcomes == ["stored", "stored", "duplicate", "stored", "stored"]
    assert res.acks == {"wl-1": {1: 3}}
    res = store.insert_batch([R(5), R(4)])
    assert res.outcomes == ["duplicate", "stored"]
    assert res.acks == {"wl-1": {1: 5}}


def test_boots_and_devices_are_independent(store: Store) -> None:
    res = store.insert_batch([R(1, boot=1), R(1, boot=2), R(3, boot=1), R(2, boot=2),
                              R(1, dev="bt-1")])
    assert res.acks == {"wl-1": {1: 1, 2: 2}, "bt-1": {1: 1}}


def test_ack_state_survives_reopening(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    s.insert_batch([R(1), R(2), R(4)])
    s.close()
    s = Store(tmp_path / "a.db")
    res = s.insert_batch([R(4), R(2), R(3)])
    assert res.outcomes == ["duplicate", "duplicate", "stored"]
    assert res.acks == {"wl-1": {1: 4}}
    s.close()


def test_lo_closes_a_gap_the_node_gave_up(store: Store) -> None:
    store.insert_batch([R(1), R(2), R(5), R(7)])
    res = store.insert_batch([R(8, lo=5)])  # the node no longer holds 3 and 4
    assert res.acks == {"wl-1": {1: 5}}
    res = store.insert_batch([R(6, lo=6)])
    assert res.acks == {"wl-1": {1: 8}}
    assert store.insert_batch([R(4)]).outcomes == ["duplicate"]


def test_rejected_reading_closes_its_seq_and_is_kept_once(store: Store) -> None:
    dl = DeadLetter("nodes/wl-1/up", b"\xa0", "pack[0]: no name", ("wl-1", 1, 2))
    res = store.insert_batch([R(1), dl, R(3)])
    assert res.outcomes == ["stored", "dead", "stored"]
    assert res.acks == {"wl-1": {1: 3}}
    res = store.insert_batch([dl])
    assert res.outcomes == ["dead_duplicate"]
    assert store.conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 1
    assert store.conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 2


def test_dead_letters_without_identity_are_capped(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db", Limits(max_dead_letters=3))
    dls = [DeadLetter("nodes/x/up", bytes([i]), f"bad {i}") for i in range(5)]
    res = s.insert_batch(dls)
    assert res.outcomes == ["dead"] * 5 and res.acks == {}
    assert [d["reason"] for d in s.dead_letters()] == ["bad 4", "bad 3", "bad 2"]
    c = s.counters()
    assert (c["dead_letters"], c["dead_letters_dropped"]) == (5, 2)
    got = s.dead_letter(s.dead_letters()[0]["id"])
    assert got is not None and got["payload"] == b"\x04" and got["topic"] == "nodes/x/up"
    s.close()


def test_overflow_drops_oldest_normal_rows_never_alarms(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db", Limits(max_rows=5))
    s.insert_batch([R(1, alarm=True), R(2), R(3), R(4, alarm=True), R(5)])
    res = s.insert_batch([R(6), R(7), R(8, alarm=True)])
    assert res.dropped == 3
    assert [k[2] for k in stored_keys(s)] == [1, 4, 6, 7, 8]  # 2, 3, 5 went: oldest normal
    assert s.counters()["dropped_overflow"] == 3
    assert res.acks == {"wl-1": {1: 8}}  # drops are policy, not gaps
    # Only alarms left to keep: the queue goes over its limit rather than lose one.
    res = s.insert_batch([R(9, alarm=True), R(10, alarm=True), R(11, alarm=True)])
    assert [k[2] for k in stored_keys(s)] == [1, 4, 8, 9, 10, 11]
    assert s.counters()["dropped_overflow"] == 5
    s.close()


def test_overflow_by_bytes(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db", Limits(max_bytes=1000))
    s.insert_batch([R(i, size=100) for i in range(1, 11)])
    assert s.queue_depth() == (10, 1000)
    s.insert_batch([R(11, size=250)])
    assert s.queue_depth() == (8, 950)  # 1250 bytes: the 3 oldest rows went
    assert [k[2] for k in stored_keys(s)][0] == 4
    assert s.counters()["dropped_overflow"] == 3
    s.close()


def test_max_age_drops_old_normal_rows_only(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db", Limits(max_age=100))
    s.insert_batch([R(1), R(2, alarm=True), R(3)], now=1000.0)
    s.insert_batch([R(4)], now=1080.0)
    assert s.expire(now=1150.0) == 2
    assert [k[2] for k in stored_keys(s)] == [2, 4]
    assert s.expire(now=1150.0) == 0
    assert s.counters()["dropped_age"] == 2
    assert s.oldest_received_at() == 1000.0
    s.close()


def test_ack_state_of_old_boots_is_pruned_with_max_age(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db", Limits(max_age=100))
    s.insert_batch([R(1, boot=1), R(3, boot=1)], now=1000.0)
    s.insert_batch([R(1, boot=2)], now=1080.0)
    s.expire(now=1150.0)
    assert s.conn.execute("SELECT device, boot FROM ack_state").fetchall() == [("wl-1", 2)]
    assert s.conn.execute("SELECT count(*) FROM ack_ahead").fetchone()[0] == 0
    s.close()


def test_recent_acks_for_the_announce_on_connect(store: Store) -> None:
    store.insert_batch([R(1, boot=b) for b in range(1, 12)], now=1000.0)
    store.insert_batch([R(2, boot=11), R(1, dev="bt-1"), R(2, dev="tr-1")], now=2000.0)
    assert store.recent_acks(since=1500.0) == {"wl-1": {11: 2}, "bt-1": {1: 1}}
    assert store.recent_acks(since=0.0, per_device=3) == {"wl-1": {9: 1, 10: 1, 11: 2},
                                                           "bt-1": {1: 1}}


def test_queue_stats_match_the_table(store: Store) -> None:
    store.insert_batch([R(i, size=i) for i in range(1, 50)])
    store.delete([i for (i,) in store.conn.execute("SELECT id FROM readings WHERE seq % 3 = 0")])
    rows, size = store.conn.execute("SELECT count(*), sum(length(payload)) FROM readings") \
        .fetchone()
    assert store.queue_depth() == (rows, size)
    assert store.counters()["forwarded"] == 16
    assert store.integrity_check() == "ok"


def test_forward_order_alarms_first_then_oldest(store: Store) -> None:
    store.insert_batch([R(1), R(2), R(3, alarm=True), R(1, dev="bt-1"), R(4)])
    rows = store.next_rows(0, 0, 3)
    assert [(r.device, r.seq, r.alarm) for r in rows] == \
        [("wl-1", 3, True), ("wl-1", 1, False), ("wl-1", 2, False)]
    # Cursors: what is in flight is not handed out again; a new alarm jumps the backlog.
    store.insert_batch([R(5, alarm=True)])
    rows2 = store.next_rows(rows[0].id, rows[2].id, 10)
    assert [(r.device, r.seq) for r in rows2] == [("wl-1", 5), ("bt-1", 1), ("wl-1", 4)]


def test_status_updates_device_state(store: Store) -> None:
    add_device(store.conn, "wl-1", "water_level", board="esp32-devkitc")
    store.insert_batch([Status("wl-1", True, {"interval": 300, "fw": "0.3.1", "boot": 7},
                               b"\xa0")], now=500.0)
    store.insert_batch([R(1, boot=7)], now=600.0)
    (d,) = store.device_states()
    assert (d["device"], d["role"], d["online"], d["interval"], d["fw"], d["last_seen"],
            d["boot"]) == ("wl-1", "water_level", 1, 300, "0.3.1", 600.0, 7)
    store.insert_batch([Status("wl-1", False, {}, b"\xa0")], now=700.0)
    (d,) = store.device_states()
    assert (d["online"], d["last_seen"], d["interval"]) == (0, 600.0, 300)


def test_registry_lists_known_devices_and_keys(store: Store) -> None:
    add_device(store.conn, "wl-1", "water_level")
    add_device(store.conn, "bt-1", "boat", mac_key=b"k" * 16)
    devs = store.devices()
    assert devs["wl-1"].role == "water_level" and devs["wl-1"].keyless
    assert devs["bt-1"].role == "boat" and not devs["bt-1"].keyless
    add_device(store.conn, "bt-1", "boat")  # re-provisioning updates, no error
    assert store.devices()["bt-1"].keyless
    with pytest.raises(ValueError, match="bad device id"):
        add_device(store.conn, "BT_1", "boat")


def test_failed_batch_leaves_nothing_behind(store: Store) -> None:
    store.insert_batch([R(1)])
    bad = Reading("wl-1", 1, 2, "water_level", False, None, None)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):  # payload NOT NULL
        store.insert_batch([R(3), bad])
    assert stored_keys(store) == [("wl-1", 1, 1)]
    assert store.insert_batch([R(3), R(2)]).acks == {"wl-1": {1: 3}}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(1, 2), st.integers(1, 30)), max_size=25),
                max_size=8))
def test_ack_high_water_matches_a_model(tmp_path_factory: pytest.TempPathFactory,
                                        batches: list[list[tuple[int, int]]]) -> None:
    s = Store(tmp_path_factory.mktemp("h") / "a.db")
    seen: set[tuple[int, int]] = set()
    try:
        for batch in batches:
            res = s.insert_batch([R(seq, boot=boot) for boot, seq in batch])
            for (boot, seq), outcome in zip(batch, res.outcomes, strict=True):
                assert outcome == ("duplicate" if (boot, seq) in seen else "stored")
                seen.add((boot, seq))
            for boot in {b for b, _ in batch}:
                hw = 0
                while (boot, hw + 1) in seen:
                    hw += 1
                assert res.acks.get("wl-1", {}).get(boot, 0) == hw
        assert sorted((b, q) for _, b, q in stored_keys(s)) == sorted(seen)
    finally:
        s.close()


def test_full_database_makes_room_from_the_oldest_normal_rows(tmp_path: Path) -> None:
    from edge_agent.diskspace import is_disk_full
    limits = Limits(max_db_bytes=256 << 10, wal_bytes=64 << 10)
    s = Store(tmp_path / "a.db", limits)

    def batches() -> Iterator[list[Reading]]:
        seq = 0
        while True:
            yield [R(seq := seq + 1, alarm=seq % 10 == 0, size=200) for _ in range(20)]

    gen = batches()
    batch = next(gen)
    with pytest.raises(sqlite3.Error) as full:
        for _ in range(10_000):
            s.insert_batch(batch)
            batch = next(gen)
    assert is_disk_full(full.value)
    size_before = s.queue_depth()[1]
    alarms = s.alarm_rows()
    dropped, dead = s.make_room(size_before // 10)
    assert dropped > 0 and dead == 0
    assert s.disk_cap == s.queue_depth()[1] <= size_before - size_before // 10
    assert s.alarm_rows() == alarms
    s.insert_batch(batch)  # the batch that failed now fits
    # From now on each batch drops what it adds: the database does not grow.
    for _ in range(50):
        s.insert_batch(next(gen))
    assert s.queue_depth()[1] <= s.disk_cap
    assert s.alarm_rows() == alarms + 2 + 100  # every alarm kept, the new ones too
    normal = [r[0] for r in s.conn.execute("SELECT seq FROM readings WHERE alarm = 0"
                                           " ORDER BY seq")]
    every_normal = [q for q in range(1, normal[-1] + 1) if q % 10]
    assert normal == every_normal[-len(normal):]  # the newest normal rows, none missing
    c = s.counters()
    assert c["dropped_disk"] > dropped and c.get("dropped_overflow", 0) == 0
    assert s.integrity_check() == "ok"
    cap = s.disk_cap
    s.close()
    s = Store(tmp_path / "a.db", limits)  # a restart keeps the cap it learnt
    assert s.disk_cap == cap
    s.set_disk_cap(None)
    s.close()
    s = Store(tmp_path / "a.db", limits)
    assert s.disk_cap is None
    s.close()


def _hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another writer (its own thread and connection) holding the write lock a while."""
    locked = threading.Event()

    def hold() -> None:
        c = sqlite3.connect(path, isolation_level=None)
        c.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        c.execute("COMMIT")
        c.close()

    t = threading.Thread(target=hold)
    t.start()
    assert locked.wait(10)
    return t


def test_a_busy_write_lock_is_waited_for_by_commits_and_skipped_by_deletes(
        tmp_path: Path) -> None:
    """Ingress and forwarder write the same file: the forwarder's delete gives up at once
    while another writer holds the lock (it tries again on its next loop turn); a commit
    or a patient delete waits for the lock and goes through once it is free."""
    db = tmp_path / "agent.db"
    ingress = Store(db)
    forwarder = Store(db, durable=False)
    try:
        ingress.insert_batch([R(1), R(2)])
        ids = [r.id for r in forwarder.next_rows(0, 0, 10)]
        holder = _hold_write_lock(db, 0.5)
        t0 = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            forwarder.delete(ids, wait=False)
        assert time.monotonic() - t0 < 0.4
        assert forwarder.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
        assert forwarder.delete(ids) == 2  # patient: waits for the other COMMIT
        assert time.monotonic() - t0 >= 0.4
        holder.join()
        holder = _hold_write_lock(db, 0.5)
        t0 = time.monotonic()
        assert ingress.insert_batch([R(3)]).acks == {"wl-1": {1: 3}}
        assert time.monotonic() - t0 >= 0.4
        holder.join()
        assert stored_keys(ingress) == [("wl-1", 1, 3)]
    finally:
        ingress.close()
        forwarder.close()
