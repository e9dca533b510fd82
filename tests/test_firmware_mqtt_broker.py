"""The firmware's MQTT client (firmware/lib/mqtt.py), run inside the MicroPython VM, against a
real mosquitto, with paho-mqtt 2.x on the other side.

The VM runs a small driver that takes one JSON command per stdin line (connect, publish,
wait_puback, subscribe, poll, disconnect) and answers with one JSON line, so each test
steps the client and checks what the broker and a paho client saw.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from micropython_vm import find_vm

from hil_tests.mosquitto import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[1]
VM = find_vm()[0]
pytestmark = pytest.mark.skipif(VM is None, reason="no MicroPython VM (CPython 3.11 only)")

DRIVER = r"""
import sys, json
from binascii import hexlify, unhexlify
sys.path.insert(0, sys.argv[1])
from mqtt import MQTTClient, MQTTError
from backoff import Backoff, retry

c = None
got = []


def cb(topic, msg):
    got.append([topic.decode(), hexlify(msg).decode()])


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")


while True:
    line = sys.stdin.readline()
    if not line:
        break
    cmd = json.loads(line)
    op = cmd["op"]
    try:
        r = None
        if op in ("connect", "connect_retry"):
            c = MQTTClient(cmd["id"], "127.0.0.1", cmd["port"], cmd.get("user"),
                           cmd.get("password"), cmd.get("keepalive", 60), cmd.get("clean", True))
            c.set_callback(cb)
            w = cmd.get("will")
            if w:
                c.set_last_will(w[0], unhexlify(w[1]), w[2], w[3])
            if op == "connect":
                r = c.connect()
            else:
                b = Backoff(cmd["base_ms"], cmd["cap_ms"])
                fails = []

                def attempt():
                    try:
                        return c.connect()
                    except OSError as e:
                        fails.append(e)
                        raise

                retry(attempt, b, cmd["tries"])
                r = len(fails)
        elif op == "publish":
            r = c.publish(cmd["topic"], unhexlify(cmd["hex"]), cmd.get("retain", False),
                          cmd.get("qos", 0))
        elif op == "wait_puback":
            r = c.wait_puback(cmd["pid"], cmd["ms"])
        elif op == "subscribe":
            r = c.subscribe(cmd["topic"], cmd.get("qos", 1))
        elif op == "poll":
            import time
            t0 = time.ticks_ms()
            while not got and time.ticks_diff(time.ticks_ms(), t0) < cmd["ms"]:
                c.poll(50)
            r = got[:]
            del got[:]
        elif op == "disconnect":
            c.disconnect()
        reply({"ok": r})
    except MQTTError as e:
        reply({"err": str(e), "code": e.code})
    except OSError as e:
        reply({"err": repr(e), "code": None})
"""


class VMClient:
    """The firmware client in a MicroPython process, stepped one JSON command at a time."""

    def __init__(self, workdir: Path) -> None:
        script = workdir / "mqtt_driver.py"
        script.write_text(DRIVER)
        assert VM is not None
        self.proc = subprocess.Popen(
            [VM, str(script), str(REPO / "firmware" / "lib")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def call(self, op: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        self.send(op, **args)
        return self.answer(op, timeout)

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def answer(self, op: str, timeout: float = 10.0) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"VM gave no answer to {op} in {timeout}s") from None
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"VM exited during {op}: {err}")
        return json.loads(line)

    def ok(self, op: str, **args: Any) -> Any:
        r = self.call(op, **args)
        assert "err" not in r, f"{op}: {r}"
        return r["ok"]

    def kill(self) -> None:
        """SIGKILL: the socket closes without DISCONNECT, like a power cut."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


class PahoSub:
    """A paho-mqtt 2.x subscriber that queues every message it gets."""

    def __init__(self, port: int, topic: str, client_id: str = "paho-sub") -> None:
        self.msgs: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.subscribed = threading.Event()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.c.on_message = lambda c, u, m: self.msgs.put(m)
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe(topic, qos=1)
        assert self.subscribed.wait(10), "paho got no SUBACK"

    def get(self, timeout: float = 10.0) -> paho.MQTTMessage:
        return self.msgs.get(timeout=timeout)

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VMClient]:
    client = VMClient(tmp_path)
    yield client
    client.close()


# The status last will: CBOR {"v": 1, "dev": "wl-0007", "online": false}.
WILL = bytes.fromhex("a36176016364657667776c2d30303037666f6e6c696e65f4")


def test_qos1_publish_gets_puback_and_reaches_paho_byte_exact(vm: VMClient, mosquitto) -> None:
    sub = PahoSub(mosquitto.port, "nodes/wl-0007/up")
    try:
        assert vm.ok("connect", id="wl-0007", port=mosquitto.port,
                     will=["nodes/wl-0007/status", WILL.hex(), True, 1]) is False
        small = b"\xa2\x00\x01\x01\x00\xff"
        big = bytes(range(256)) * 3  # past the one-write threshold: header and payload apart
        for payload in (small, big):
            pid = vm.ok("publish", topic="nodes/wl-0007/up", hex=payload.hex(), qos=1)
            assert isinstance(pid, int) and pid > 0
            assert vm.ok("wait_puback", pid=pid, ms=5000) is True
            m = sub.get()
            assert (m.topic, m.payload, m.qos, m.retain) == ("nodes/wl-0007/up", payload, 1, False)
    finally:
        sub.stop()


def test_subscribed_downlink_from_paho_arrives_and_is_acknowledged(
        vm: VMClient, mosquitto) -> None:
    port = mosquitto.port
    assert vm.ok("connect", id="wl-0007", port=port, clean=False) is False
    assert vm.ok("subscribe", topic="nodes/wl-0007/down", qos=1) == 1
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="gateway")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        down = b"\xa3\x00\x01\x01gwl-0007\x08\xa1\x03\x18\x2a"  # {v:1, dev, ack:{3:42}}
        pub.publish("nodes/wl-0007/down", down, qos=1).wait_for_publish(10)
        assert vm.ok("poll", ms=5000) == [["nodes/wl-0007/down", down.hex()]]
        # The client's PUBACK reached the broker: the persistent session holds nothing
        # to deliver again after a reconnect.
        vm.ok("disconnect")
        assert vm.ok("connect", id="wl-0007", port=port, clean=False) is True
        assert vm.ok("poll", ms=500) == []
        pub.publish("nodes/wl-0007/down", b"second", qos=1).wait_for_publish(10)
        assert vm.ok("poll", ms=5000) == [["nodes/wl-0007/down", b"second".hex()]]
    finally:
        pub.disconnect()
        pub.loop_stop()


def test_killed_client_makes_the_broker_publish_its_last_will(vm: VMClient, mosquitto) -> None:
    sub = PahoSub(mosquitto.port, "nodes/wl-0007/status")
    try:
        vm.ok("connect", id="wl-0007", port=mosquitto.port,
              will=["nodes/wl-0007/status", WILL.hex(), True, 1])
        online = b"\xa3avbonline\xf5"
        pid = vm.ok("publish", topic="nodes/wl-0007/status", hex=online.hex(), qos=1, retain=True)
        assert vm.ok("wait_puback", pid=pid, ms=5000)
        assert sub.get().payload == online
        vm.kill()
        m = sub.get()
        assert (m.topic, m.payload, m.qos) == ("nodes/wl-0007/status", WILL, 1)
    finally:
        sub.stop()
    # Retained: a subscriber arriving later still reads the node as offline.
    late = PahoSub(mosquitto.port, "nodes/wl-0007/status", client_id="late")
    try:
        m = late.get()
        assert (m.payload, m.retain) == (WILL, True)
    finally:
        late.stop()


def test_clean_disconnect_sends_no_last_will(vm: VMClient, mosquitto) -> None:
    sub = PahoSub(mosquitto.port, "nodes/wl-0007/status")
    try:
        vm.ok("connect", id="wl-0007", port=mosquitto.port,
              will=["nodes/wl-0007/status", WILL.hex(), False, 1])
        vm.ok("disconnect")
        with pytest.raises(queue.Empty):
            sub.get(timeout=1.0)
    finally:
        sub.stop()


def test_password_file_broker_refuses_bad_credentials_with_connack_code(
        vm: VMClient, tmp_path: Path) -> None:
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "wl-0007", "right"],
                   check=True, capture_output=True, timeout=30)
    with Mosquitto(tmp_path / "broker", allow_anonymous=False,
                   extra=f"password_file {pwfile}") as broker:
        port = broker.port
        r = vm.call("connect", id="wl-0007", port=port, user="wl-0007", password="wrong")
        # mosquitto answers a failed password with 5 ("not authorized"), not 4.
        assert r == {"err": "connection refused: not authorized", "code": 5}
        r = vm.call("connect", id="wl-0007", port=port)  # anonymous
        assert r["code"] == 5
        assert vm.ok("connect", id="wl-0007", port=port, user="wl-0007",
                     password="right") is False
        assert vm.ok("subscribe", topic="nodes/wl-0007/down") == 1


def test_connect_retries_with_backoff_until_the_broker_comes_up(
        vm: VMClient, tmp_path: Path) -> None:
    port = free_port()
    vm.send("connect_retry", id="wl-0007", port=port, base_ms=20, cap_ms=200, tries=200)
    # Nothing listens yet: the client is failing and backing off. Wait until the first
    # refusals have surely happened, then start the broker on that port.
    with pytest.raises(queue.Empty):
        vm.lines.get(timeout=0.5)
    with Mosquitto(tmp_path / "broker", port=port):
        r = vm.answer("connect_retry", timeout=20)
        assert "err" not in r, r
        assert r["ok"] >= 2  # refused at least twice before the broker was up
        assert vm.ok("subscribe", topic="nodes/wl-0007/down") == 1
