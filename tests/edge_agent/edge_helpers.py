"""Helpers for the edge agent tests: envelopes per docs/wire-format.md, simulated nodes,
an upstream subscriber, and the agent run in a thread or as an `edge-agent` process."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.agent import Agent, HookChain, Hooks
from edge_agent.config import Config, load_config
from edge_agent.registry import add_device
from edge_agent.store import Store

BT = 1_763_900_000  # a valid wall-clock time, seconds


def water_level_pack(level: float = 2.31, alert: bool = False, clear: bool = False
                     ) -> list[dict[int, Any]]:
    pack: list[dict[int, Any]] = [
        {-3: BT, 0: "level", 1: "m", 2: level},
        {0: "distance", 1: "m", 2: 1.19},
        {0: "rise", 1: "m/s", 2: -0.0004},
        {0: "plevel", 1: "m", 2: 2.29},
        {0: "temp", 1: "Cel", 2: 29.5},
        {0: "battery", 1: "V", 2: 3.92},
    ]
    if alert:
        pack.append({0: "event", 3: "flood_alert"})
    if clear:
        pack.append({0: "event", 3: "flood_clear"})
    return pack


def boat_pack(zone: str = "Z3", event: str | None = None) -> list[dict[int, Any]]:
    pack: list[dict[int, Any]] = [
        {-3: BT + 0.5, 0: "lat", 1: "lat", 2: 10.0341},
        {0: "lon", 1: "lon", 2: 105.7882},
        {0: "speed", 1: "m/s", 2: 1.5},
        {0: "course", 1: "deg", 2: 271},
        {0: "fix", 4: True},
        {0: "sats", 2: 9},
        {0: "zone", 3: zone},
        {0: "battery", 1: "V", 2: 12.6},
    ]
    if event:
        pack.append({0: "event", 3: event})
        if event in ("dwell",):
            pack.append({0: "duration", 1: "s", 2: 900})
    return pack


def truck_pack(event: str | None = None) -> list[dict[int, Any]]:
    track = cbor2.dumps([0, 10034100, 105788200, 5, 12, -30, 5, 9, -25])
    pack: list[dict[int, Any]] = [
        {-3: BT, 0: "lat", 1: "lat", 2: 10.0341},
        {0: "lon", 1: "lon", 2: 105.7882},
        {0: "speed", 1: "m/s", 2: 8.2},
        {0: "track", 8: track, 6: 1},
        {0: "odometer", 1: "m", 2: 123456},
        {0: "ignition", 4: True},
    ]
    if event:
        pack.append({0: "event", 3: event})
        if event == "stop":
            pack.append({0: "duration", 1: "s", 2: 120})
    return pack


PACKS: dict[str, Callable[..., list[dict[int, Any]]]] = {
    "water_level": water_level_pack, "boat": boat_pack, "truck": truck_pack}


def envelope(dev: str, boot: int, seq: int, role: str = "water_level",
             pack: list[dict[int, Any]] | None = None, **extra: Any) -> bytes:
    env: dict[int, Any] = {0: 1, 1: dev, 2: boot, 3: seq, 4: role,
                           5: pack if pack is not None else PACKS[role]()}
    for k, v in extra.items():
        env[int(k.lstrip("k"))] = v
    return cbor2.dumps(env)


def reading_bytes(dev: str, boot: int, seq: int, role: str, alarm: bool) -> bytes:
    if role == "water_level":
        pack = water_level_pack(alert=alarm)
    elif role == "boat":
        pack = boat_pack(event="zone_exit" if alarm else None)
    else:
        pack = truck_pack()
    return envelope(dev, boot, seq, role, pack)


def wait_until(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class SimNode:
    """A node as the broker sees it: publishes envelopes QoS1 on nodes/<dev>/up and
    collects the end-to-end acks from nodes/<dev>/down; `check(dev, boot, seq)` runs on
    each ack as it arrives and returns a problem or None."""

    def __init__(self, broker_url: str, dev: str, role: str = "water_level",
                 check: Callable[[str, int, int], str | None] | None = None) -> None:
        self.dev, self.role, self.check = dev, role, check
        self.acks: dict[int, int] = {}  # boot -> highest seq acked
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=dev, clean_session=True)
        c.max_inflight_messages_set(20)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(f"nodes/{dev}/down", 1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", _port(broker_url))
        c.loop_start()
        self.client = c
        if not self.subscribed.wait(10):
            raise AssertionError(f"{dev}: no SUBACK")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Errors are collected, not raised: an exception would end paho's thread.
        m = cbor2.loads(msg.payload)
        if set(m) != {0, 1, 8} or m[0] != 1 or m[1] != self.dev or not m[8] \
                or cbor2.dumps(m, canonical=True) != msg.payload:
            self.errors.append(f"{self.dev}: bad downlink {msg.payload.hex()}")
            return
        for boot, seq in m[8].items():
            if self.check is not None:
                problem = self.check(self.dev, boot, seq)
                if problem:
                    self.errors.append(problem)
            with self.lock:
                if seq < self.acks.get(boot, 0):  # acks only grow, or the agent lost state
                    self.errors.append(f"{self.dev}: ack {boot}:{seq} after "
                                       f"{self.acks[boot]}")
                self.acks[boot] = max(seq, self.acks.get(boot, 0))

    def publish(self, boot: int, seq: int, alarm: bool = False,
                payload: bytes | None = None) -> mqtt.MQTTMessageInfo:
        data = payload if payload is not None else reading_bytes(self.dev, boot, seq,
                                                                 self.role, alarm)
        return self.client.publish(f"nodes/{self.dev}/up", data, qos=1)

    def acked(self, boot: int) -> int:
        with self.lock:
            return self.acks.get(boot, 0)

    def close(self) -> None:
        self.client.disconnect()  # first: it wakes paho's thread, which then ends at once
        self.client.loop_stop()


class Upstream:
    """The IOC side: a persistent-session subscriber on nodes/+/up that records every
    (device, boot, seq, alarm) in arrival order, duplicates included."""

    def __init__(self, broker_url: str, client_id: str = "ioc-test") -> None:
        self.got: list[tuple[str, int, int, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("nodes/+/up", 1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        c.reconnect_delay_set(0.1, 0.5)
        c.connect("127.0.0.1", _port(broker_url))
        c.loop_start()
        self.client = c
        if not self.subscribed.wait(10):
            raise AssertionError("upstream subscriber: no SUBACK")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        env = cbor2.loads(msg.payload)
        dev = msg.topic.split("/")[1]
        assert env[1] == dev
        alarm = any(r.get(3) in ("flood_alert", "zone_exit") for r in env[5])
        with self.lock:
            self.got.append((dev, env[2], env[3], alarm))

    def keys(self) -> set[tuple[str, int, int]]:
        with self.lock:
            return {(d, b, s) for d, b, s, _ in self.got}

    def snapshot(self) -> list[tuple[str, int, int, bool]]:
        with self.lock:
            return list(self.got)

    def close(self) -> None:
        self.client.disconnect()  # first: it wakes paho's thread, which then ends at once
        self.client.loop_stop()


def first_occurrences(got: list[tuple[str, int, int, bool]]) -> list[tuple[str, int, int, bool]]:
    seen: set[tuple[str, int, int]] = set()
    out = []
    for d, b, s, a in got:
        if (d, b, s) not in seen:
            seen.add((d, b, s))
            out.append((d, b, s, a))
    return out


def assert_per_device_order(got: list[tuple[str, int, int, bool]]) -> None:
    """Within each device, and separately within its alarm and normal streams, first
    occurrences arrive in (boot, seq) order (alarms may overtake normal readings)."""
    last: dict[tuple[str, bool], tuple[int, int]] = {}
    for d, b, s, a in first_occurrences(got):
        prev = last.get((d, a))
        assert prev is None or (b, s) > prev, f"{d} {'alarm' if a else 'normal'}: " \
            f"({b}, {s}) after {prev}"
        last[(d, a)] = (b, s)


def register(db_path: Path, devices: dict[str, str]) -> None:
    store = Store(db_path)
    try:
        for dev, role in devices.items():
            add_device(store.conn, dev, role, board="esp32-devkitc")
    finally:
        store.close()


def agent_config(data_dir: Path, local_url: str, upstream_url: str | None, **toml: Any
                 ) -> Config:
    overrides = [("test", "data_dir", str(data_dir)), ("test", "local.url", local_url),
                 ("test", "upstream.url", upstream_url or "none"),
                 ("test", "local.client_id", f"edge-agent-{os.getpid()}"),
                 ("test", "upstream.client_id", f"edge-agent-up-{os.getpid()}")]
    overrides += [("test", k.replace("__", "."), v) for k, v in toml.items()]
    return load_config(None, overrides)


class _Subscribed(Hooks):
    def __init__(self) -> None:
        self.event = threading.Event()

    def link(self, name: str, up: bool) -> None:
        if name == "local" and up:
            self.event.set()


class AgentThread:
    """The agent in this process (what `edge-agent run` does, minus the signals). Starts
    once the agent is subscribed: the first run has no broker session to queue into."""

    def __init__(self, cfg: Config, hooks: list[Hooks] | None = None) -> None:
        sub = _Subscribed()
        self.agent = Agent(cfg, HookChain([sub, *(hooks or [])]))
        self.thread = threading.Thread(target=self.agent.run, name="agent-main", daemon=True)
        self.thread.start()
        if not sub.event.wait(15):
            self.stop()
            raise AssertionError("the agent did not subscribe")

    def stop(self, timeout: float = 15.0) -> None:
        if not self.thread.is_alive():
            return
        self.agent.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "agent did not stop"
        assert self.agent.error is None, self.agent.error


def write_toml(path: Path, data_dir: Path, local_url: str, upstream_url: str,
               extra: str = "") -> Path:
    path.write_text(f"""
data_dir = "{data_dir}"
log_level = "info"
[local]
url = "{local_url}"
client_id = "edge-agent-proc"
[upstream]
url = "{upstream_url}"
client_id = "edge-agent-proc-up"
{extra}
""")
    return path


def start_agent_process(config: Path, log: Path, env: dict[str, str] | None = None
                        ) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("edge-agent")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "edge_agent.cli"]
    with open(log, "ab") as out:
        return subprocess.Popen([*cmd, "run", "--config", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def committed_check(db_path: Path) -> Callable[[str, int, int], str | None]:
    """A SimNode check: when an ack for (boot, seq) arrives, the agent's database must
    already say (committed) that seq is gap-free. Rows and ack state share a transaction,
    so this proves the rows were on disk before the ack was sent."""
    def check(dev: str, boot: int, seq: int) -> str | None:
        conn = sqlite3.connect(db_path, timeout=10)
        try:
            row = conn.execute("SELECT hw FROM ack_state WHERE device = ? AND boot = ?",
                               (dev, boot)).fetchone()
        finally:
            conn.close()
        if row is None or row[0] < seq:
            return f"{dev}: ack {boot}:{seq} arrived before its commit (db: {row})"
        return None
    return check


def db_keys(db_path: Path) -> set[tuple[str, int, int]]:
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        return set(conn.execute("SELECT device, boot, seq FROM readings").fetchall())
    finally:
        conn.close()


def status_fields(out: str) -> dict[str, str]:
    """`edge-agent status` output as {label: value} (the unindented `label: value` lines)."""
    fields = {}
    for line in out.splitlines():
        if line and not line.startswith(" ") and ":" in line:
            label, _, value = line.partition(":")
            fields[label] = value.strip()
    return fields
