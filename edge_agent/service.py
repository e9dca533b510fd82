"""The agent as a service: metrics, sd_notify (ready, status, watchdog, stopping) and the
fleet view, all behind the agent's Hooks.

Threads: link/received/committed/dropped/forwarded come from the workers and only touch
thread-safe things (prometheus metrics, a few attributes, one datagram); heartbeat,
ready, stopping and stopped come from the thread that runs `Agent.wait()`, which owns
this module's SQLite connection (queue gauges, fleet check, the agent's reported state).

READY=1 goes out once the local broker has the agent's subscription and the upstream
is connected (or none is configured), or READY_GRACE seconds after the start whatever
the links' state (STATUS then says which is down): systemd must not fail the start
because the uplink is down at boot, which is when the agent is needed most.

The watchdog pings (WATCHDOG=1, every WatchdogSec/2) only while both worker loops keep
turning: a worker stuck for WatchdogSec/2 stops the pings, and systemd restarts the
agent WatchdogSec later.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

from .config import Config
from .fleet import FleetRow, judge
from .hooks import Hooks
from .metrics import Metrics
from .sdnotify import Notifier
from .store import BatchResult, Store

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger(__name__)

READY_GRACE = 10.0  # seconds: READY=1 at the latest this long after the start
QUEUE_EVERY = 1.0  # seconds between queue gauge updates
STATE_EVERY = 5.0  # seconds between writes of the agent's state into the store
FLEET_EVERY = 1.0  # seconds between fleet checks (FLEET_EVERY_BIG above BIG_FLEET devices)
FLEET_EVERY_BIG = 5.0
BIG_FLEET = 2000


class ServiceHooks(Hooks):
    def __init__(self, cfg: Config, metrics: Metrics | None = None,
                 notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.notifier = notifier or Notifier({})
        self.agent: Agent | None = None
        self.started = time.monotonic()
        self.links: dict[str, tuple[bool, float]] = {"local": (False, time.time())}
        if cfg.upstream is not None:
            self.links["upstream"] = (False, time.time())
        self.listening_since: float | None = None  # wall clock, local link subscribed
        self._ready_lock = threading.Lock()
        self.ready_sent = False
        self.store: Store | None = None
        self.next_queue = self.next_state = self.next_fleet = 0.0
        self.last_ping = -1e9
        self.last_status = ""
        self.queue: tuple[int, int, float | None] = (0, 0, None)
        self.fleet_counts = (0, 0)

    # --- worker threads ---

    def bind(self, agent: Agent) -> None:
        self.agent = agent

    def link(self, name: str, up: bool) -> None:
        self.links[name] = (up, time.time())
        if name == "local":
            self.listening_since = time.time() if up else None
        if self.metrics:
            gauge = (self.metrics.local_connected if name == "local"
                     else self.metrics.upstream_connected)
            gauge.set(1 if up else 0)
        self._maybe_ready()
        self.next_state = 0.0  # report the change at the next heartbeat

    def received(self, kind: str, rejected: str | None) -> None:
        if self.metrics:
            self.metrics.received.labels(kind if kind in ("up", "status") else "other").inc()
            if rejected:
                self.metrics.rejected.labels(rejected).inc()

    def committed(self, result: BatchResult, messages: int, seconds: float) -> None:
        if not self.metrics:
            return
        m = self.metrics
        m.commit_seconds.observe(seconds)
        counts: dict[str, int] = {}
        for o in result.outcomes:
            counts[o] = counts.get(o, 0) + 1
        for outcome, n in counts.items():
            m.committed.labels(outcome).inc(n)
        dup = counts.get("duplicate", 0) + counts.get("dead_duplicate", 0)
        if dup:
            m.duplicates.inc(dup)

    def dropped(self, policy: str, rows: int) -> None:
        if self.metrics:
            self.metrics.dropped.labels(policy).inc(rows)

    def forwarded(self, rows: int) -> None:
        if self.metrics:
            self.metrics.forwarded.inc(rows)

    # --- the main thread ---

    def ready(self) -> None:
        self.started = time.monotonic()
        self._maybe_ready()

    def _links_up(self) -> bool:
        return all(up for up, _ in self.links.values())

    def _maybe_ready(self, force: bool = False) -> None:
        with self._ready_lock:
            if self.ready_sent or not (force or self._links_up()):
                return
            self.ready_sent = True
        status = self.status_line()
        log.info("ready: %s", status)
        self.notifier.ready(status)
        self.last_status = status

    def heartbeat(self) -> None:
        now = time.monotonic()
        if not self.ready_sent and now - self.started >= READY_GRACE:
            self._maybe_ready(force=True)
        self._watchdog(now)
        if self.store is None:
            self._open()
        if self.store is not None:
            try:
                self._tick(now)
            except sqlite3.Error as e:  # a full disk or a busy database: next time
                log.debug("service heartbeat: %s", e)
        if self.ready_sent:
            status = self.status_line()
            if status != self.last_status:
                self.notifier.status(status)
                self.last_status = status

    def _watchdog(self, now: float) -> None:
        every = self.notifier.watchdog
        if every is None or now - self.last_ping < every / 2:
            return
        stalled = self.agent.stalled(every / 2) if self.agent else []
        if stalled:
            log.error("watchdog: %s stalled; not pinging systemd", ", ".join(stalled))
            return
        self.notifier.ping()
        self.last_ping = now

    def _open(self) -> None:
        try:
            self.store = Store(self.cfg.db_path, self.agent.limits if self.agent else None,
                               durable=False)
            self.store.conn.execute("PRAGMA busy_timeout=2000")  # never hold the watchdog
        except Exception as e:  # the workers report store errors; this is only a view
            log.debug("service: cannot open the store: %s", e)
            self.store = None

    def _tick(self, now: float) -> None:
        assert self.store is not None
        store = self.store
        if now >= self.next_queue:
            self.next_queue = now + QUEUE_EVERY
            rows, size = store.queue_depth()
            oldest = store.oldest_received_at()
            self.queue = (rows, size, oldest)
            if self.metrics:
                m = self.metrics
                m.queue_readings.set(rows)
                m.queue_bytes.set(size)
                m.queue_alarms.set(store.alarm_rows())
                m.oldest_age.set(max(0.0, time.time() - oldest) if oldest else 0.0)
                m.dead_letters.set(store.dead_letter_count())
        if now >= self.next_fleet:
            fleet = store.fleet()
            self.next_fleet = now + (FLEET_EVERY if len(fleet) <= BIG_FLEET else FLEET_EVERY_BIG)
            self._check_fleet(fleet)
        if now >= self.next_state:
            self.next_state = now + STATE_EVERY
            store.set_agent_state(self._state_values())

    def _check_fleet(self, fleet: list[FleetRow]) -> None:
        assert self.store is not None
        j = judge(fleet, time.time(), self.cfg.offline_multiple, self.listening_since)
        if j.events:
            self.store.record_events(j.events)
            for device, kind, detail in j.events:
                if kind == "offline":
                    log.warning("device %s offline: %s", device, detail)
                else:
                    log.info("device %s online: %s", device, detail)
                if self.metrics:
                    self.metrics.device_events.labels(kind).inc()
        self.fleet_counts = (j.online, j.offline)
        if self.metrics:
            self.metrics.devices.labels("online").set(j.online)
            self.metrics.devices.labels("offline").set(j.offline)

    def _state_values(self) -> dict[str, str]:
        values = {"state": "running", "pid": str(os.getpid()), "heartbeat": f"{time.time():.3f}"}
        for name in ("local", "upstream"):
            if name in self.links:
                up, since = self.links[name]
                values[name] = f"{'connected' if up else 'disconnected'} {since:.3f}"
            else:
                values[name] = "none"
        return values

    def status_line(self) -> str:
        """One line for `systemctl status`."""
        rows, _, oldest = self.queue
        parts = []
        for name, (up, _) in self.links.items():
            parts.append(f"{name} {'up' if up else 'DOWN'}")
        age = f", oldest {time.time() - oldest:.0f} s" if oldest and rows else ""
        parts.append(f"queue {rows}{age}")
        online, offline = self.fleet_counts
        parts.append(f"devices {online} online, {offline} offline")
        return "; ".join(parts)

    def stopping(self) -> None:
        self.notifier.stopping("stopping: committing and acking what is in flight")

    def stopped(self) -> None:
        if self.store is not None:
            try:
                now = time.time()
                for name in self.links:
                    self.links[name] = (False, now)
                values = self._state_values()
                values["state"] = "stopped"
                self.store.set_agent_state(values)
            except sqlite3.Error as e:
                log.debug("service: cannot record the stop: %s", e)
            self.store.close()
            self.store = None
        if self.metrics:
            self.metrics.close()
        self.notifier.close()


def service_hooks(cfg: Config, env: dict[str, str] | None = None) -> ServiceHooks:
    """The hooks `edge-agent run` uses: metrics served when `metrics_port` is set (raises
    EdgeAgentError when the port is taken), sd_notify when $NOTIFY_SOCKET is set."""
    metrics = None
    if cfg.metrics_port:
        metrics = Metrics()
        metrics.serve(cfg.metrics_port)
    return ServiceHooks(cfg, metrics, Notifier(os.environ if env is None else env))
