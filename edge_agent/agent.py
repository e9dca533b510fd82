"""The agent: an ingress thread and a forwarder thread around one SQLite store.

Threads: each worker owns one MQTT connection and one SQLite connection and runs its
paho client's loop itself (see ingress.py); the main thread only waits for a signal,
calls the hooks' heartbeat, and stops the workers in order. Workers talk through the
database and one Waker (`wake`: new rows committed, which also cuts the forwarder's
network wait short).

Hooks (hooks.py) are where metrics, sd_notify and the systemd watchdog plug in: subclass
Hooks, pass it to Agent; the calls come from the worker threads, so keep them quick and
thread-safe. `stalled()` tells the watchdog whether both worker loops are still turning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .config import Config
from .errors import EdgeAgentError
from .forward import Forwarder
from .hooks import HookChain, Hooks
from .ingress import Ingress
from .mqttlink import Waker
from .store import BatchResult, Limits, Store

__all__ = ["Agent", "HookChain", "Hooks"]

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, cfg: Config, hooks: Hooks | None = None) -> None:
        self.cfg = cfg
        self.hooks = hooks or Hooks()
        self.stop_ingress = threading.Event()
        self.stop_forward = threading.Event()
        self.wake = Waker()
        self.error: BaseException | None = None
        self._opened = threading.Semaphore(0)
        # The WAL stays within half the reserve: freeing the reserve on a full disk always
        # leaves room for the transactions that make room.
        wal = max(64 << 10, cfg.reserve_bytes // 2) if cfg.reserve_bytes else 4 << 20
        self.limits = Limits(cfg.max_rows, cfg.max_bytes, cfg.max_age, cfg.max_dead_letters,
                             cfg.max_db_bytes, wal)
        self.threads: list[threading.Thread] = []
        self.ingress: Ingress | None = None
        self.forwarder: Forwarder | None = None
        self.hooks.bind(self)

    def _worker(self, name: str, body: Callable[[Store], None], durable: bool) -> None:
        store: Store | None = None
        try:
            store = Store(self.cfg.db_path, self.limits, durable=durable)
            self._opened.release()
            body(store)
        except BaseException as e:  # reported by run(); the other worker is stopped
            if self.error is None:
                self.error = e
            log.debug("%s worker failed", name, exc_info=True)
            self._opened.release()
            self.stop()
        finally:
            if store is not None:
                store.close()

    def _run_ingress(self, store: Store) -> None:
        def on_commit(res: BatchResult, n: int, secs: float) -> None:
            if any(o in ("stored", "status") for o in res.outcomes):
                self.wake.set()
            self.hooks.committed(res, n, secs)
        self.ingress = Ingress(self.cfg, store, self.stop_ingress, on_commit, self.hooks.link,
                               self.hooks)
        self.ingress.run()

    def _run_forwarder(self, store: Store) -> None:
        assert self.cfg.upstream is not None
        self.forwarder = Forwarder(self.cfg, self.cfg.upstream, store, self.stop_forward,
                                   self.wake, self.hooks.forwarded, self.hooks.link)
        self.forwarder.run()

    def stalled(self, limit: float) -> list[str]:
        """Workers whose loop has not turned for `limit` seconds, or that died: the
        watchdog stops its pings then, and systemd restarts the agent."""
        now = time.monotonic()
        out = [t.name for t in self.threads if not t.is_alive()]
        for name, w in (("ingress", self.ingress), ("forwarder", self.forwarder)):
            if w is not None and now - w.loop_at > limit and name not in out:
                out.append(name)
        return out

    def start(self) -> None:
        # Create or migrate the database once, here, before two threads race to do it;
        # a StoreError (bad path, not a database) surfaces before anything starts.
        Store(self.cfg.db_path, self.limits).close()
        workers: list[tuple[str, Callable[[Store], None], bool]] = [
            ("ingress", self._run_ingress, True)]
        if self.cfg.upstream is not None:
            workers.append(("forwarder", self._run_forwarder, False))
        else:
            log.warning("no upstream configured: readings are kept in %s", self.cfg.db_path)
        for name, body, durable in workers:
            t = threading.Thread(target=self._worker, args=(name, body, durable), name=name,
                                 daemon=True)
            self.threads.append(t)
            t.start()
        for _ in workers:
            self._opened.acquire()
        if self.error is None:
            log.info("edge agent running: local %s, upstream %s, store %s", self.cfg.local.url,
                     self.cfg.upstream.url if self.cfg.upstream else "none", self.cfg.db_path)
            self.hooks.ready()

    def stop(self) -> None:
        """Ask the workers to finish (safe from a signal handler or any thread)."""
        self.stop_ingress.set()

    def wait(self) -> None:
        """Block until stop(); then stop ingress first (commit + acks), then the forwarder.
        Raises the first worker error, if any."""
        while not self.stop_ingress.wait(1.0):
            self.hooks.heartbeat()
            if not all(t.is_alive() for t in self.threads):
                break
        self.hooks.stopping()
        self.stop_ingress.set()
        for t in self.threads:
            if t.name == "ingress":
                t.join()
        self.stop_forward.set()
        for t in self.threads:
            t.join()
        self.hooks.stopped()
        self.wake.close()
        if self.error is not None:
            if isinstance(self.error, EdgeAgentError):
                raise self.error
            raise EdgeAgentError(f"{type(self.error).__name__}: {self.error}") from self.error
        log.info("edge agent stopped")

    def run(self) -> None:
        self.start()
        self.wait()
