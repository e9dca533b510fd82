"""Forwarder: store -> upstream broker, QoS1, a bounded window, delete only on PUBACK.

One thread owns the upstream paho client and its own SQLite connection (callbacks run
inside `Link.step()` on this thread). Rows go out alarms first, then oldest first, on
`<upstream prefix>/<device>/up` with the node's payload unchanged, so the upstream sees
the same (device, boot, seq) and can drop the duplicates a resend may cause. The
PUBLISH packets are built by `BatchedClient.publish_raw()` (paho's publish() cost more
than the rest of the forwarder), at most `upstream.inflight` unacknowledged at a time,
and leave together in one write per loop turn.

A row stays in the store until the upstream's PUBACK for it; deletes are grouped into
one transaction every `DELETE_EVERY` seconds or `DELETE_AT` rows. After a reconnect the
acked rows are deleted and every row still in the store is sent again from the start
(alarms first), as after a restart. Both may duplicate a reading upstream (at most the
window, plus the acked rows not deleted yet after a crash); neither can lose one.

Node statuses go out ahead of the readings on `<upstream prefix>/<device>/status`, QoS1,
retained (the upstream keeps every device's latest status), byte for byte. The store
holds the latest unsent status per device, each with an id that grows with every new one;
a status is deleted on the PUBACK of that id, so one that a newer status replaced while
in flight stays queued and is sent next: per device, statuses leave in order, and the
last one the upstream retains is the device's latest.

Fleet events (a device went offline or came back, see fleet.py) go out the same way on
`<upstream prefix>/<device>/event`, QoS1, and are marked published on their PUBACK.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

import cbor2
import paho.mqtt.client as mqtt

from .config import BrokerConfig, Config
from .mqttlink import Link, Waker, make_client
from .store import Store

log = logging.getLogger(__name__)

DELETE_EVERY = 0.1  # seconds; also at DELETE_AT acked rows
DELETE_AT = 200
IDLE_POLL = 0.05  # seconds between store polls when there was nothing to send
EVENT_POLL = 1.0  # seconds between looks for unpublished fleet events


def encode_event(event: dict[str, Any]) -> bytes:
    """A fleet event upstream: a CBOR map with text keys, like the status map."""
    return cbor2.dumps({"v": 1, "dev": event["device"], "event": event["kind"],
                        "at": event["at"], "detail": event["detail"]}, canonical=True)


class Forwarder:
    def __init__(self, cfg: Config, upstream: BrokerConfig, store: Store, stop: threading.Event,
                 wake: Waker | None = None,
                 on_forwarded: Callable[[int], None] | None = None,
                 on_link: Callable[[str, bool], None] | None = None) -> None:
        self.cfg, self.store, self.stop = cfg, store, stop
        self.wake = wake or Waker()
        self.on_forwarded = on_forwarded
        self.prefix = upstream.topic_prefix
        self.window = cfg.upstream_inflight
        self.inflight: dict[int, int] = {}  # paho mid -> readings.id
        self.acked: list[int] = []
        self.delete_due = 0.0
        self.alarm_cursor = 0  # highest alarm id handed to paho
        self.normal_cursor = 0  # highest normal id handed to paho
        self.status_inflight: dict[int, int] = {}  # paho mid -> status_out.id
        self.status_cursor = 0  # highest status id handed to paho
        self.status_acked: list[int] = []
        self.next_poll = 0.0
        self.publish_events = cfg.publish_events
        self.event_inflight: dict[int, int] = {}  # paho mid -> events.id
        self.event_cursor = 0
        self.events_acked: list[int] = []
        self.next_event_poll = 0.0
        self.loop_at = time.monotonic()  # the watchdog checks this loop keeps turning
        client = make_client(upstream, clean_session=True)
        # The window is kept here (self.window); paho's own (0: none) would only scan its
        # in-flight messages on every PUBACK.
        client.max_inflight_messages_set(0)
        client.on_publish = self._on_publish
        client.on_fast_puback = self._on_reading_acked
        self.on_link = on_link
        self.link = Link("upstream", upstream, client, on_up=self._on_up,
                         on_down=lambda: on_link and on_link("upstream", False))
        self.client = client

    def _on_up(self, client: mqtt.Client, session_present: bool) -> None:
        """A new connection: the readings in flight on the old one are sent again from the
        store (paho resends the events itself). The acked ones are deleted first, so only
        the unacknowledged ones (at most the window) can reach the upstream twice."""
        self.inflight.clear()
        self.status_inflight.clear()
        self._flush_deletes()
        self.alarm_cursor = self.normal_cursor = self.status_cursor = 0
        self.next_poll = 0.0
        if self.on_link:
            self.on_link("upstream", True)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        eid = self.event_inflight.pop(mid, None)
        if eid is not None:
            self.events_acked.append(eid)

    def _on_reading_acked(self, mid: int) -> None:
        rid = self.inflight.pop(mid, None)
        if rid is not None:
            if not self.acked:
                self.delete_due = time.monotonic() + DELETE_EVERY
            self.acked.append(rid)
            return
        sid = self.status_inflight.pop(mid, None)
        if sid is not None:
            if not self.acked and not self.status_acked:
                self.delete_due = time.monotonic() + DELETE_EVERY
            self.status_acked.append(sid)

    def run(self) -> None:
        while not self.stop.is_set():
            self.loop_at = time.monotonic()
            self.link.step(0.02, self.wake)
            if self.link.connected:
                self._fill()
                self._events()
                self.link.flush()
            self._maybe_delete()
        self._flush_deletes()
        self.link.close()
        self._flush_deletes()

    def _fill(self) -> None:
        free = self.window - len(self.inflight) - len(self.status_inflight)
        if free <= 0:
            return
        now = time.monotonic()
        if now < self.next_poll and not self.wake.is_set():
            return
        self.wake.clear()
        prefix = self.prefix.encode()
        statuses = self.store.next_statuses(self.status_cursor, free)
        for st in statuses:
            mid = self.client.publish_raw(b"%s/%s/status" % (prefix, st.device.encode()),
                                          st.payload, retain=True)
            self.status_inflight[mid] = st.id
            self.status_cursor = max(self.status_cursor, st.id)
        free -= len(statuses)
        rows = self.store.next_rows(self.alarm_cursor, self.normal_cursor, free) if free else []
        if len(rows) < free:
            self.next_poll = now + IDLE_POLL
        for row in rows:
            mid = self.client.publish_raw(b"%s/%s/up" % (prefix, row.device.encode()),
                                          row.payload)
            self.inflight[mid] = row.id
            if row.alarm:
                self.alarm_cursor = max(self.alarm_cursor, row.id)
            else:
                self.normal_cursor = max(self.normal_cursor, row.id)

    def _events(self) -> None:
        now = time.monotonic()
        if not self.publish_events or now < self.next_event_poll:
            return
        self.next_event_poll = now + EVENT_POLL
        try:
            events = self.store.events(limit=50, after=self.event_cursor, unpublished=True)
        except sqlite3.Error as e:
            log.error("reading fleet events failed: %s", e)
            return
        for ev in events:
            info = self.client.publish(f"{self.prefix}/{ev['device']}/event", encode_event(ev),
                                       qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                break
            self.event_inflight[info.mid] = ev["id"]
            self.event_cursor = ev["id"]

    def _maybe_delete(self) -> None:
        acked = len(self.acked) + len(self.status_acked)
        if self.events_acked or (acked and (acked >= DELETE_AT
                                            or time.monotonic() >= self.delete_due)):
            self._flush_deletes(wait=False)

    def _flush_deletes(self, wait: bool = True) -> None:
        """Delete the acked rows. wait=False (the loop): if the ingress is committing, try
        again on the next turn instead of sleeping while PUBACKs and rows wait."""
        if self.events_acked:
            ids, self.events_acked = self.events_acked, []
            try:
                self.store.mark_published(ids)
            except sqlite3.Error as e:
                log.error("marking %d events published failed: %s", len(ids), e)
        if not self.acked and not self.status_acked:
            return
        ids, self.acked = self.acked, []
        sids, self.status_acked = self.status_acked, []
        try:
            self.store.delete(ids, wait=wait, status_ids=sids)
        except sqlite3.Error as e:
            # Keep them: deleting later is fine, a row resent after a restart is a duplicate.
            self.acked = ids + self.acked
            self.status_acked = sids + self.status_acked
            if not wait and getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
                return
            self.delete_due = time.monotonic() + 1.0
            log.error("deleting %d forwarded rows failed: %s", len(ids) + len(sids), e)
            return
        if ids and self.on_forwarded:
            self.on_forwarded(len(ids))
