"""End-to-end acks coalesced per device (`ack.min_interval`), with real brokers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
from edge_helpers import AgentThread, SimNode, register, wait_until

from edge_agent.hooks import Hooks
from edge_agent.store import BatchResult
from hil_tests.mosquitto import Mosquitto

StartAgent = Callable[..., AgentThread]
INTERVAL = 0.3  # ack.min_interval in these tests


class TimedNode(SimNode):
    """A SimNode that also keeps when each ack arrived: (monotonic time, {boot: seq})."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.received: list[tuple[float, dict[int, int]]] = []
        super().__init__(*args, **kwargs)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        super()._on_message(client, userdata, msg)
        with self.lock:
            self.received.append((time.monotonic(), dict(cbor2.loads(msg.payload)[8])))

    def ack_times(self) -> list[tuple[float, dict[int, int]]]:
        with self.lock:
            return list(self.received)


class Commits(Hooks):
    """When each commit ended, and the ack state it reached per device."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[float, dict[str, dict[int, int]]]] = []

    def committed(self, result: BatchResult, messages: int, seconds: float) -> None:
        with self.lock:
            self.log.append((time.monotonic(), {d: dict(a) for d, a in result.acks.items()}))

    def of(self, dev: str) -> list[tuple[float, dict[int, int]]]:
        with self.lock:
            return [(t, acks[dev]) for t, acks in self.log if dev in acks]


def test_fast_device_gets_few_acks_slow_device_one_per_commit(
        tmp_path: Path, mosquitto: Mosquitto, nodes: list[SimNode],
        start_agent: StartAgent) -> None:
    register(tmp_path / "data" / "agent.db", {"wl-fast": "water_level",
                                              "wl-slow": "water_level"})
    commits = Commits()
    start_agent(mosquitto.url, None, hooks=[commits], ack__min_interval=INTERVAL)
    fast, slow = TimedNode(mosquitto.url, "wl-fast"), TimedNode(mosquitto.url, "wl-slow")
    nodes += [fast, slow]

    def publish_slow() -> None:
        for seq in (1, 2, 3):
            slow.publish(1, seq)
            time.sleep(2.5 * INTERVAL)
    t = threading.Thread(target=publish_slow, daemon=True)
    t.start()
    n = 300
    t0 = time.monotonic()
    for seq in range(1, n + 1):  # about 200 readings/s for 1.5 s
        fast.publish(1, seq)
        ahead = seq / 200 - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    t.join(10)
    wait_until(lambda: fast.acked(1) == n, 10, "the fast device's last ack")
    wait_until(lambda: slow.acked(1) == 3, 10, "the slow device's last ack")
    time.sleep(2 * INTERVAL)  # nothing more is held back: no late acks to count
    assert [e for node in nodes for e in node.errors] == []

    # The fast device: far fewer acks than commits, none closer than the interval (a
    # little less: delivery may bunch them), and the last covers its last reading.
    fast_commits, fast_acks = commits.of("wl-fast"), fast.ack_times()
    elapsed = fast_acks[-1][0] - fast_acks[0][0]
    assert len(fast_commits) >= 3 * len(fast_acks), (len(fast_commits), len(fast_acks))
    assert len(fast_acks) <= elapsed / INTERVAL + 2, (len(fast_acks), elapsed)
    gaps = [b[0] - a[0] for a, b in zip(fast_acks, fast_acks[1:], strict=False)]
    assert min(gaps) > INTERVAL / 2, gaps
    last_commit = next(t for t, acks in fast_commits if acks.get(1) == n)
    assert fast_acks[-1][1] == {1: n}
    assert fast_acks[-1][0] - last_commit <= INTERVAL + 0.2, "the held ack came late"
    print(f"\nfast device: {n} readings, {len(fast_commits)} commits, {len(fast_acks)} acks"
          f" in {elapsed:.2f} s")

    # The slow device: one ack per commit, right after it.
    slow_commits, slow_acks = commits.of("wl-slow"), slow.ack_times()
    assert [a for _, a in slow_acks] == [{1: 1}, {1: 2}, {1: 3}]
    assert [a for _, a in slow_commits] == [{1: 1}, {1: 2}, {1: 3}]
    for (tc, _), (ta, _) in zip(slow_commits, slow_acks, strict=True):
        assert ta - tc < INTERVAL / 2, f"ack {ta - tc:.3f} s after its commit"


def test_ack_min_interval_zero_acks_every_commit(
        tmp_path: Path, mosquitto: Mosquitto, nodes: list[SimNode],
        start_agent: StartAgent) -> None:
    register(tmp_path / "data" / "agent.db", {"wl-fast": "water_level"})
    commits = Commits()
    start_agent(mosquitto.url, None, hooks=[commits], ack__min_interval=0)
    fast = TimedNode(mosquitto.url, "wl-fast")
    nodes.append(fast)
    for seq in range(1, 101):
        fast.publish(1, seq)
        time.sleep(0.002)
    wait_until(lambda: fast.acked(1) == 100, 10, "the last ack")
    wait_until(lambda: len(fast.ack_times()) >= len(commits.of("wl-fast")), 5, "every ack")
    assert [a for _, a in fast.ack_times()] == [a for _, a in commits.of("wl-fast")]
