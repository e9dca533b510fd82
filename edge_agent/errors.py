"""The edge agent's one exception hierarchy; only cli.main() prints these."""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Anything the agent reports to its operator as one line."""

    exit_code = 1


class ConfigError(EdgeAgentError):
    """A bad setting: the message names the source, the key and the problem."""

    exit_code = 2


class StoreError(EdgeAgentError):
    """The SQLite store cannot be opened or used."""


class Rejected(EdgeAgentError):
    """A message failed validation; `reason` is short and goes into the dead-letter queue.

    `identity` is (device, boot, seq) when the envelope got far enough to name a reading
    of a known device: the agent then closes that seq for the end-to-end ack (the dead
    letter is durable), so one bad message cannot stall a node's outbox forever.
    """

    def __init__(self, reason: str, identity: tuple[str, int, int] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.identity = identity
