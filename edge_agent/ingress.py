"""Ingress: local broker -> validation -> group commit (fsync) -> PUBACK -> end-to-end ack.

Design: one thread owns the local paho client and its own SQLite connection. paho's
callbacks run inside `Link.step()` on this thread, so on_message only validates and
appends to `pending`; the same loop commits as soon as the socket has nothing more to
read (the broker sent all it had, or all its inflight window allows before our PUBACKs),
when `pending` reaches `commit_at_pending`, or when the oldest pending message has
waited `commit_interval`. Under load, messages pile up in the socket while a commit
runs, so batches grow with the load by themselves; at a trickle each message is
committed at once. After the commit, all its PUBACKs and end-to-end acks (one per device
in the batch) leave in one write. No locks, no queue between threads, and a PUBACK can
never overtake its commit.

End-to-end acks are coalesced per device: a device that had no ack in the last
`ack.min_interval` seconds gets its ack right after the commit; one acked more recently
gets a single ack, covering every commit since, once the interval has passed. A node
keeps its records until acked, so a later ack loses nothing; a fast device gets a few
acks a second instead of one per commit, a slow one sees no change.

The broker session is persistent (fixed client id, clean_session False) and acks are
manual, so a message the agent has not committed stays at the broker and is delivered
again after a crash or a reconnect; the store deduplicates it and it is acked again.

A full disk: the commit fails with SQLITE_FULL, nothing is acked. The agent then deletes
its reserve file (space kept for this moment), drops the oldest non-alarm readings in a
transaction of their own (counted as `dropped_disk`), caps the queue where it stands so
that later commits drop what they add, recreates the reserve when it can, and commits
again. Alarms are never dropped; with only alarms left, commits wait and retry, and the
broker keeps what is not acked.
"""

from __future__ import annotations

import heapq
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import paho.mqtt.client as mqtt

from . import wire
from .config import Config
from .diskspace import Reserve, is_disk_full
from .errors import Rejected
from .hooks import Hooks
from .mqttlink import Backoff, Link, make_client
from .store import BatchResult, DeadLetter, Item, Store
from .validate import DeviceInfo, Lookup, reason_class, validate_status, validate_up

log = logging.getLogger(__name__)

REGISTRY_REFRESH = 5.0  # seconds between registry reloads (new devices from provisioning)
EXPIRE_EVERY = 60.0  # seconds between max_age sweeps
ANNOUNCE_WINDOW = 3600.0  # on connect, resend the acks of devices active this recently


@dataclass(slots=True)
class Pending:
    mid: int
    qos: int
    epoch: int  # the connection the message came on: its mid means nothing on another
    item: Item


def encode_ack(device: str, acks: dict[int, int]) -> bytes:
    """Downlink end-to-end ack: {0: 1, 1: dev, 8: {boot: seq}}, deterministic encoding."""
    return cbor2.dumps({wire.D_V: wire.VERSION, wire.D_DEV: device, wire.D_ACK: acks},
                       canonical=True)


def check_message(cfg: Config, topic: str, payload: bytes, lookup: Lookup) -> Item:
    """Validate one message from `<prefix>/<device>/<kind>` into a Reading or Status, a
    DeadLetter (with the reason), or None (a cleared retained status). Also used to
    replay dead letters."""
    prefix = cfg.local.topic_prefix
    rest = topic[len(prefix) + 1:] if topic.startswith(prefix + "/") else ""
    device, _, kind = rest.partition("/")
    try:
        if kind == "up":
            return validate_up(device, payload, lookup, accept_unknown=cfg.accept_unknown,
                               max_bytes=cfg.max_message_bytes)
        if kind == "status":
            return validate_status(device, payload, lookup, accept_unknown=cfg.accept_unknown,
                                   max_bytes=cfg.max_message_bytes)
        raise Rejected("unexpected topic")
    except Rejected as e:
        return DeadLetter(topic, payload, e.reason, e.identity)


class Ingress:
    def __init__(self, cfg: Config, store: Store, stop: threading.Event,
                 on_commit: Callable[[BatchResult, int, float], None] | None = None,
                 on_link: Callable[[str, bool], None] | None = None,
                 hooks: Hooks | None = None) -> None:
        self.cfg, self.store, self.stop = cfg, store, stop
        self.on_commit = on_commit
        self.on_link = on_link
        self.hooks = hooks or Hooks()
        self.reserve = Reserve(cfg.data_dir / "reserve", cfg.reserve_bytes)
        self.loop_at = time.monotonic()  # the watchdog checks this loop keeps turning
        self.last_room = -1e9
        self.room_chunk = self._room_chunk()
        self._drops = [0, 0]  # (overflow, disk) drops not logged yet
        self._drops_logged = -1e9
        self.prefix = cfg.local.topic_prefix
        self.pending: list[Pending] = []
        self.deadline = 0.0
        self.commit_backoff = Backoff(base=0.2, cap=10.0)
        self.retry_at = 0.0
        self.devices: dict[str, DeviceInfo] = {}
        self.devices_at = 0.0
        self.next_expire = time.monotonic() + 1.0
        self.down_inflight: set[int] = set()
        self.ack_interval = cfg.ack_min_interval
        self.last_ack: dict[str, float] = {}  # device -> monotonic time of its last ack
        self.deferred: dict[str, dict[int, int]] = {}  # device -> acks held back
        self.ack_due: list[tuple[float, str]] = []  # heap: when each deferred one may go
        self._dl_logged: dict[str, float] = {}
        client = make_client(cfg.local, clean_session=False, manual_ack=True)
        # Acks to nodes must not queue behind paho's default window of 20 while the broker
        # is busy sending us a backlog: a node waits on them to free its outbox. 0 is no
        # window (at most one ack per device per commit bounds them), and spares paho a scan of
        # its in-flight messages on every PUBACK.
        client.max_inflight_messages_set(0)
        client.on_fast_message = self._on_message
        client.on_message = lambda c, u, m: self._on_message(m.topic, bytes(m.payload), m.mid,
                                                             m.qos)
        client.on_fast_puback = self.down_inflight.discard
        client.on_subscribe = self._on_subscribe
        self.link = Link("local", cfg.local, client, on_up=self._on_up, on_down=self._on_down)
        self.client = client

    # --- paho callbacks (run inside link.step, on this thread) ---

    def _on_up(self, client: mqtt.Client, session_present: bool) -> None:
        # Subscribe every time: cheap, and right even if the broker lost the session.
        client.subscribe([(f"{self.prefix}/+/up", 1), (f"{self.prefix}/+/status", 1)])
        self.down_inflight.clear()  # the old connection's: their PUBACKs will never come
        self.deferred.clear()  # the announce below sends the current acks of them all
        self.ack_due.clear()
        self._announce_acks()

    def _announce_acks(self) -> None:
        """Send again the acks of recently active devices. An ack published just before a
        crash may never have left; the node would otherwise wait for its next resend.
        A node keeps the highest ack it has seen, so a repeated one is harmless."""
        recent = self.store.recent_acks(time.time() - ANNOUNCE_WINDOW)
        for device, acks in recent.items():
            self._send_ack(device, acks)
        if recent:
            log.info("sent the current acks of %d recently active devices", len(recent))

    def _ack(self, device: str, acks: dict[int, int], now: float) -> None:
        """Send a commit's ack to a device now, or hold it until the device's last ack is
        `ack.min_interval` old (merged with what is held already: the highest seq per
        boot, the store's high-water marks only grow)."""
        held = self.deferred.get(device)
        if held is not None:
            held.update(acks)
            return
        if now - self.last_ack.get(device, -1e9) >= self.ack_interval:
            self.last_ack[device] = now
            self._send_ack(device, acks)
            return
        self.deferred[device] = dict(acks)
        heapq.heappush(self.ack_due, (self.last_ack[device] + self.ack_interval, device))

    def _send_due_acks(self, now: float, everything: bool = False) -> None:
        """Send the held acks whose interval has passed (all of them when stopping)."""
        sent = False
        while self.ack_due and (everything or self.ack_due[0][0] <= now):
            _, device = heapq.heappop(self.ack_due)
            acks = self.deferred.pop(device, None)
            if acks:
                self.last_ack[device] = now
                self._send_ack(device, acks)
                sent = True
        if sent:
            self.link.flush()

    def _send_ack(self, device: str, acks: dict[int, int]) -> None:
        # Built here rather than by paho's publish() (up to one per device per commit: the
        # cheaper the better). paho does not resend it after a reconnect; _announce_acks
        # sends every recent device its current ack then, which supersedes older ones.
        mid = self.client.publish_raw(f"{self.prefix}/{device}/down".encode(),
                                      encode_ack(device, acks))
        self.down_inflight.add(mid)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any,
                      properties: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("local broker refused the subscription: %s", reasons)
            return
        log.info("subscribed to %s/+/up and %s/+/status", self.prefix, self.prefix)
        if self.on_link:
            self.on_link("local", True)

    def _on_down(self) -> None:
        if self.on_link:
            self.on_link("local", False)

    def _on_message(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        if self.stop.is_set():
            return  # not acked: the broker keeps it for the next run
        item = self._check(topic, payload)
        self.hooks.received(topic.rsplit("/", 1)[-1][:16],
                            reason_class(item.reason) if isinstance(item, DeadLetter) else None)
        if not self.pending:
            self.deadline = time.monotonic() + self.cfg.commit_interval
        self.pending.append(Pending(mid, qos, self.link.epoch, item))

    def _check(self, topic: str, payload: bytes) -> Item:
        """Validate into a Reading/Status, or a DeadLetter; None for a cleared status."""
        item = check_message(self.cfg, topic, payload, self._lookup)
        if isinstance(item, DeadLetter):
            self._log_dead_letter(topic, item.reason)
        return item

    def _log_dead_letter(self, topic: str, reason: str) -> None:
        """At most one line per topic per minute: a broken node must not flood journald."""
        now = time.monotonic()
        if now - self._dl_logged.get(topic, -1e9) >= 60.0:
            if len(self._dl_logged) > 10_000:
                self._dl_logged.clear()
            self._dl_logged[topic] = now
            log.warning("dead letter from %s: %s", topic, reason)

    def _lookup(self, device: str) -> DeviceInfo | None:
        now = time.monotonic()
        info = self.devices.get(device)
        stale = now - self.devices_at
        if (info is None and stale > 1.0) or stale > REGISTRY_REFRESH:
            self.devices = self.store.devices()
            self.devices_at = now
            info = self.devices.get(device)
        return info

    # --- the loop ---

    def run(self) -> None:
        if not self.reserve.ensure():
            log.warning("cannot keep %d bytes of reserve in %s: the disk is nearly full",
                        self.cfg.reserve_bytes, self.cfg.data_dir)
        while not self.stop.is_set():
            self.loop_at = time.monotonic()
            timeout = 0.05
            if self.pending:  # wake for the commit deadline (or, after a failure, the retry)
                due = max(self.deadline, self.retry_at)
                timeout = max(0.0, min(timeout, due - time.monotonic()))
            if self.ack_due:  # and for the next held ack
                timeout = max(0.0, min(timeout, self.ack_due[0][0] - time.monotonic()))
            # Read no more than a commit's worth: a bigger batch only makes the forwarder
            # wait longer for its rows.
            self.link.step(timeout, max_packets=self.cfg.commit_at_pending - len(self.pending))
            self._maybe_commit()
            if self.ack_due and self.ack_due[0][0] <= time.monotonic():
                self._send_due_acks(time.monotonic())
            if time.monotonic() >= self.next_expire:
                self.next_expire = time.monotonic() + EXPIRE_EVERY
                self._sweep()
        self.drain()

    def _sweep(self) -> None:
        """Once a minute: the max_age policy, and the disk cap re-checked."""
        try:
            dropped = self.store.expire()
        except sqlite3.Error as e:
            log.error("dropping old readings failed: %s", e)
            return
        if dropped:
            log.warning("dropped %d readings older than %.0f s", dropped, self.cfg.max_age)
            self.hooks.dropped("age", dropped)
        self._relax_disk_cap()
        cutoff = time.monotonic() - self.ack_interval
        self.last_ack = {d: t for d, t in self.last_ack.items() if t > cutoff}

    def _relax_disk_cap(self) -> None:
        """After a full disk the queue is capped; once space is free again (the operator
        cleaned up, or the forwarder drained), let it grow into the space beyond twice the
        reserve."""
        self.reserve.ensure()
        if self.store.disk_cap is None:
            return
        free = self.reserve.free_bytes()
        room = self.store.free_room()
        if room is not None:
            free = min(free, room)
        spare = free - 2 * max(self.cfg.reserve_bytes, 1 << 20)
        if spare > 0 and self.reserve.present():
            cap = self.store.disk_cap + spare
            try:
                self.store.set_disk_cap(None if cap >= self.cfg.max_bytes else cap)
            except sqlite3.Error as e:
                log.error("raising the queue cap failed: %s", e)
                return
            log.info("disk has room again: queue cap %s",
                     "lifted" if self.store.disk_cap is None else f"{cap} bytes")

    def _maybe_commit(self) -> None:
        if not self.pending or time.monotonic() < self.retry_at:
            return
        # The broker has sent all it has, or all its inflight window lets it send before
        # our PUBACKs (the socket is drained): waiting longer only adds latency. Under
        # load, messages pile up while a commit runs, so the batches grow by themselves.
        if (self.client.drained or len(self.pending) >= self.cfg.commit_at_pending
                or time.monotonic() >= self.deadline):
            self.commit()

    def commit(self) -> BatchResult | None:
        """Group commit, then PUBACKs, then one end-to-end ack per device in the batch."""
        batch, self.pending = self.pending, []
        t0 = time.monotonic()
        try:
            res = self.store.insert_batch([p.item for p in batch])
        except sqlite3.Error as e:
            # Nothing is acked, so nothing is lost; make room if the disk is full, retry.
            self.pending = batch + self.pending
            if is_disk_full(e) and self._make_room(batch):
                self.retry_at = time.monotonic()
                return None
            delay = self.commit_backoff.next()
            self.retry_at = time.monotonic() + delay
            log.error("commit of %d messages failed: %s; retrying in %.1f s", len(batch), e,
                      delay)
            return None
        self.commit_backoff.reset()
        elapsed = time.monotonic() - t0
        if res.dropped:
            self._note_drops(res.dropped - res.dropped_disk, res.dropped_disk)
        if self.link.connected:
            epoch = self.link.epoch
            self.client.ack_many([p.mid for p in batch if p.qos and p.epoch == epoch])
        now = time.monotonic()
        for device, acks in res.acks.items():
            self._ack(device, acks, now)
        self.link.flush()  # the PUBACKs and acks in one write
        if self.on_commit:
            self.on_commit(res, len(batch), elapsed)
        return res

    def _note_drops(self, overflow: int, disk: int) -> None:
        """Count drops; log them at most once a minute (a full queue drops on every
        commit, which must not flood journald)."""
        if overflow:
            self.hooks.dropped("overflow", overflow)
        if disk:
            self.hooks.dropped("disk_full", disk)
        self._drops[0] += overflow
        self._drops[1] += disk
        now = time.monotonic()
        if now - self._drops_logged >= 60.0:
            self._drops_logged = now
            log.warning("queue full: dropped %d oldest non-alarm readings (%d over the queue"
                        " limits, %d for the full disk) since the last report",
                        sum(self._drops), *self._drops)
            self._drops = [0, 0]

    def _room_chunk(self) -> int:
        """Payload bytes per drop transaction on a full disk: its WAL frames (the rows'
        pages and their index pages, several times the payload) must fit in the room
        the reserve leaves."""
        return max(16 << 10, self.cfg.reserve_bytes // 16) if self.cfg.reserve_bytes \
            else 64 << 10

    def _make_room(self, batch: list[Pending]) -> bool:
        """The disk is full: free the reserve (room for the next transactions' WAL), drop
        the oldest non-alarm readings (a tenth of the queue, at least four times this
        batch), checkpoint. The reserve is recreated by the sweep once the disk has room.
        False when nothing could be freed: the caller backs off and retries."""
        now = time.monotonic()
        if now - self.last_room < 1.0:
            return False  # made room a moment ago and still full: back off, don't cascade
        self.last_room = now
        size = self.store.queue_depth()[1]
        want = max(size // 10, 4 * sum(len(getattr(p.item, "payload", b"")) for p in batch),
                   64 << 10)
        had_reserve = self.reserve.release()
        try:
            dropped, dead = self.store.make_room(want, self.room_chunk)
        except sqlite3.Error as e:
            # Even a drop did not fit: smaller transactions next time (a few pages each).
            self.room_chunk = max(1, self.room_chunk // 4)
            log.error("disk full, and dropping old readings to make room failed: %s", e)
            return had_reserve
        self.room_chunk = self._room_chunk()
        log.warning("disk full: dropped the %d oldest non-alarm readings (%d dead letters);"
                    " queue capped at %d bytes%s", dropped, dead, self.store.disk_cap or 0,
                    ", reserve released" if had_reserve else "")
        if dropped:
            self.hooks.dropped("disk_full", dropped)
        self.next_expire = min(self.next_expire, now + 5.0)  # see to the reserve soon
        return dropped > 0 or dead > 0 or had_reserve

    def drain(self, timeout: float = 3.0) -> None:
        """On stop: commit what is pending, send its acks, then disconnect cleanly."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            if self.commit() is None:
                time.sleep(min(0.2, max(0.0, self.retry_at - time.monotonic())))
        self._send_due_acks(time.monotonic(), everything=True)
        while (self.link.connected and (self.down_inflight or self.client.want_write())
               and time.monotonic() < deadline):
            self.link.step(0.02)
        self.link.close()
