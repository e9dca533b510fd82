"""Extension points of the agent: where metrics, sd_notify and the watchdog plug in.

The workers call these from their own threads (ingress, forwarder) and the main thread
calls `heartbeat`; keep each call quick and thread-safe. `HookChain` fans one call out
to several hooks, so a test can add its own beside the service's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .agent import Agent
    from .store import BatchResult


class Hooks:
    """Extension points; every method is a no-op here."""

    def bind(self, agent: Agent) -> None:
        """The agent these hooks serve (called once, from Agent.__init__)."""

    def ready(self) -> None:
        """Both workers have opened the store (brokers may still be unreachable)."""

    def heartbeat(self) -> None:
        """Called about once a second from the main thread while the agent runs."""

    def link(self, name: str, up: bool) -> None:
        """Broker `name` ("local" or "upstream") is up or down; for "local", up means
        subscribed (SUBACK received), so messages published from then on reach the agent."""

    def received(self, kind: str, rejected: str | None) -> None:
        """One message arrived from the local broker (ingress thread). `kind` is the
        topic's last level ("up", "status", ...); `rejected` is the reason's class
        (see validate.reason_class) when it failed validation, else None."""

    def committed(self, result: BatchResult, messages: int, seconds: float) -> None:
        """A group commit of `messages` messages took `seconds` (ingress thread)."""

    def dropped(self, policy: str, rows: int) -> None:
        """`rows` readings were dropped by `policy`: "overflow", "age" or "disk_full"."""

    def forwarded(self, rows: int) -> None:
        """`rows` rows were acknowledged upstream and deleted (forwarder thread)."""

    def stopping(self) -> None:
        """A stop was requested; the workers are finishing."""

    def stopped(self) -> None:
        """The workers have finished (main thread)."""


class HookChain(Hooks):
    """Several hooks called in order."""

    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self.hooks = list(hooks)

    def bind(self, agent: Agent) -> None:
        for h in self.hooks:
            h.bind(agent)

    def ready(self) -> None:
        for h in self.hooks:
            h.ready()

    def heartbeat(self) -> None:
        for h in self.hooks:
            h.heartbeat()

    def link(self, name: str, up: bool) -> None:
        for h in self.hooks:
            h.link(name, up)

    def received(self, kind: str, rejected: str | None) -> None:
        for h in self.hooks:
            h.received(kind, rejected)

    def committed(self, result: BatchResult, messages: int, seconds: float) -> None:
        for h in self.hooks:
            h.committed(result, messages, seconds)

    def dropped(self, policy: str, rows: int) -> None:
        for h in self.hooks:
            h.dropped(policy, rows)

    def forwarded(self, rows: int) -> None:
        for h in self.hooks:
            h.forwarded(rows)

    def stopping(self) -> None:
        for h in self.hooks:
            h.stopping()

    def stopped(self) -> None:
        for h in self.hooks:
            h.stopped()
