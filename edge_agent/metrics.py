"""Prometheus metrics of the agent, served on http://127.0.0.1:<metrics_port>/metrics.

One registry of our own (not the process-global one), so two agents in one process (the
tests) do not collide. Counters count since the process started (Prometheus handles the
resets); the totals since the store was created are in `edge-agent status`. Label
values are pre-set to 0 so a dashboard sees every series from the first scrape.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .errors import EdgeAgentError

log = logging.getLogger(__name__)

REJECT_REASONS = ("topic", "bad_device_id", "unknown_device", "too_large", "bad_cbor", "auth",
                  "envelope", "dev_mismatch", "role", "pack", "status")
DROP_POLICIES = ("overflow", "age", "disk_full")
OUTCOMES = ("stored", "duplicate", "dead", "dead_duplicate", "status", "ignored")
DEVICE_STATES = ("online", "offline")
COMMIT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.received = Counter("edge_agent_messages_received", "Messages taken from the local"
                                " broker, by topic kind", ["kind"], registry=r)
        self.committed = Counter("edge_agent_messages_committed", "Messages committed to disk"
                                 " (fsync) in group commits, by outcome", ["outcome"],
                                 registry=r)
        self.rejected = Counter("edge_agent_messages_rejected", "Messages that failed"
                                " validation (kept in the dead-letter queue), by reason",
                                ["reason"], registry=r)
        self.duplicates = Counter("edge_agent_duplicates", "Readings received again (acked"
                                  " again, not stored again)", registry=r)
        self.dropped = Counter("edge_agent_readings_dropped", "Committed readings dropped by"
                               " a queue policy", ["policy"], registry=r)
        self.forwarded = Counter("edge_agent_readings_forwarded", "Readings acknowledged by"
                                 " the upstream and deleted", registry=r)
        self.commit_seconds = Histogram("edge_agent_commit_seconds", "Duration of one group"
                                        " commit, fsync included", buckets=COMMIT_BUCKETS,
                                        registry=r)
        self.queue_readings = Gauge("edge_agent_queue_readings", "Readings waiting to be"
                                    " forwarded", registry=r)
        self.queue_bytes = Gauge("edge_agent_queue_bytes", "Payload bytes waiting to be"
                                 " forwarded", registry=r)
        self.queue_alarms = Gauge("edge_agent_queue_alarms", "Alarms waiting to be forwarded",
                                  registry=r)
        self.oldest_age = Gauge("edge_agent_queue_oldest_age_seconds", "Age of the oldest"
                                " reading waiting (0 when the queue is empty)", registry=r)
        self.dead_letters = Gauge("edge_agent_dead_letters", "Messages in the dead-letter"
                                  " queue", registry=r)
        self.upstream_connected = Gauge("edge_agent_upstream_connected", "1 while connected"
                                        " to the upstream broker", registry=r)
        self.local_connected = Gauge("edge_agent_local_connected", "1 while subscribed on the"
                                     " local broker", registry=r)
        self.devices = Gauge("edge_agent_devices", "Devices by state (offline: silent for"
                             " more than offline_multiple intervals, or its last will)",
                             ["state"], registry=r)
        self.device_events = Counter("edge_agent_device_events", "Devices that went offline"
                                     " or came back", ["kind"], registry=r)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        for policy in DROP_POLICIES:
            self.dropped.labels(policy)
        for outcome in OUTCOMES:
            self.committed.labels(outcome)
        for kind in ("up", "status"):
            self.received.labels(kind)
        for state in DEVICE_STATES:
            self.devices.labels(state)
        for kind in ("offline", "online"):
            self.device_events.labels(kind)
        self.server: Any = None

    def serve(self, port: int) -> None:
        """Listen on 127.0.0.1 only: a gateway's metrics are for its local scraper (or an
        SSH tunnel), not for the nodes' LAN."""
        try:
            self.server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        except OSError as e:
            raise EdgeAgentError(f"metrics: cannot listen on 127.0.0.1:{port}: "
                                 f"{e.strerror or e}") from e
        log.info("metrics on http://127.0.0.1:%d/metrics", port)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
