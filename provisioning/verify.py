"""The smoke test: the board runs what was provisioned and its readings reach the broker.

Over the serial REPL: the firmware version is the one deployed, /config.json
is the one written (same sha256) and the firmware's own config.load() accepts
it for this device. Then, watching the broker as the agent's user, the board
is reset into its firmware: the node must publish its status (online, this
firmware version) and one reading on its own `up` topic, decoded as an
envelope of this device and role. Only live messages count, not retained
ones from an earlier run. On failure the message carries the board's last
console line (e.g. `config error: ...`, a link that does not come up).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from provisioning.errors import BoardError, VerifyError
from provisioning.link import BoardLink

COSE_MAC0_TAG = 17


@dataclass(frozen=True)
class Monitor:
    """How nodectl watches the broker: as the agent's user, which may read every node."""

    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Expected:
    device: str
    role: str
    version: str
    config_hash: str
    prefix: str = "nodes"


@dataclass(frozen=True)
class VerifyResult:
    version: str
    records: int  # SenML records in the first reading
    status: dict[str, Any]
    seconds: float


def decode_envelope(payload: bytes) -> dict[int, Any]:
    obj = cbor2.loads(payload)
    if isinstance(obj, cbor2.CBORTag) and obj.tag == COSE_MAC0_TAG:
        obj = cbor2.loads(obj.value[2])
    if not isinstance(obj, dict):
        raise ValueError("not a CBOR map")
    return obj


def check_board(link: BoardLink, want: Expected) -> None:
    """Version and config, over the REPL (the board's program is stopped meanwhile)."""
    try:
        version = link.eval("__import__('version').VERSION")
    except BoardError as e:
        raise VerifyError(f"the board reports no firmware version ({e}): deploy first") from e
    if version != want.version:
        raise VerifyError(f"the board runs firmware {version!r}, the registry says "
                          f"{want.version!r}: deploy again")
    got = link.hashes(["/config.json"]).get("/config.json")
    if got is None:
        raise VerifyError("the board has no /config.json: configure first")
    if got != want.config_hash:
        raise VerifyError(f"/config.json on the board (sha256 {got[:12]}...) is not the one "
                          f"registered ({want.config_hash[:12]}...): configure again")
    try:
        dev, role = link.eval(
            "(lambda c: (c['device'], c['role']))(__import__('config').load())")
    except BoardError as e:
        raise VerifyError(f"the firmware refuses its config: {e}") from e
    if (dev, role) != (want.device, want.role):
        raise VerifyError(f"the board's config is for {dev} ({role}), expected {want.device}")


class _Watch:
    """A paho subscriber on one device's up and status topics."""

    def __init__(self, monitor: Monitor, want: Expected) -> None:
        self.want = want
        self.reading: dict[int, Any] | None = None
        self.status: dict[str, Any] | None = None
        self.problems: list[str] = []
        self.ready = threading.Event()
        self.done = threading.Event()
        self.refused: str | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"nodectl-verify-{secrets.token_hex(4)}")
        if monitor.user:
            self.client.username_pw_set(monitor.user, monitor.password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.monitor = monitor

    def start(self, timeout: float = 10.0) -> None:
        try:
            self.client.connect(self.monitor.host, self.monitor.port, keepalive=30)
        except OSError as e:
            raise VerifyError(f"cannot reach the broker at {self.monitor.host}:"
                              f"{self.monitor.port}: {e}") from e
        self.client.loop_start()
        if not self.ready.wait(timeout) or self.refused:
            self.stop()
            raise VerifyError(f"the broker at {self.monitor.host}:{self.monitor.port} did not "
                              f"let nodectl watch ({self.refused or 'no answer'}); check "
                              f"--agent-user/--agent-pass")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    props: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            self.ready.set()
            return
        p, d = self.want.prefix, self.want.device
        client.subscribe([(f"{p}/{d}/up", 1), (f"{p}/{d}/status", 1)])

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any,
                      props: Any) -> None:
        if any(r.is_failure for r in reasons):
            self.refused = "subscription refused"
        self.ready.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.retain:  # from an earlier run: proves nothing about this one
            return
        try:
            if msg.topic.endswith("/status"):
                status = cbor2.loads(msg.payload)
                if isinstance(status, dict) and status.get("online"):
                    self.status = status
            else:
                env = decode_envelope(msg.payload)
                if env.get(1) != self.want.device or env.get(4) != self.want.role:
                    self.problems.append(f"an envelope for {env.get(1)}/{env.get(4)}")
                elif not isinstance(env.get(5), list) or not env[5]:
                    self.problems.append("an envelope without records")
                else:
                    self.reading = env
        except (ValueError, cbor2.CBORDecodeError, IndexError, TypeError) as e:
            self.problems.append(f"an undecodable message on {msg.topic}: {e}")
        if self.reading is not None and self.status is not None:
            self.done.set()


def watch_publish(link: BoardLink, monitor: Monitor, want: Expected,
                  timeout: float = 60.0) -> VerifyResult:
    """Reset the board into its firmware and wait for its status and one reading."""
    watch = _Watch(monitor, want)
    watch.start()
    console = bytearray()
    t0 = time.monotonic()
    try:
        link.hard_reset(interrupt=False)
        while not watch.done.is_set() and time.monotonic() - t0 < timeout:
            console += link.read_console(0.2)
    finally:
        watch.stop()
    if not watch.done.is_set():
        missing = [w for w, got in (("its status", watch.status), ("a reading", watch.reading))
                   if got is None]
        lines = [ln.strip() for ln in console.decode(errors="replace").splitlines() if ln.strip()]
        said = (f"; the board printed: {lines[-1][:160]!r}" if lines
                else "; the board printed nothing")
        also = f"; got {watch.problems[-1]}" if watch.problems else ""
        raise VerifyError(f"{want.device} did not publish {' or '.join(missing)} within "
                          f"{timeout:g} s{also}{said}")
    status = watch.status or {}
    if status.get("fw") != want.version:
        raise VerifyError(f"{want.device}'s status says firmware {status.get('fw')!r}, "
                          f"expected {want.version!r}")
    assert watch.reading is not None
    return VerifyResult(version=want.version, records=len(watch.reading[5]), status=status,
                        seconds=time.monotonic() - t0)
