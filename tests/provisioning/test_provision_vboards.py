"""`nodectl provision` end to end: virtual boards, the real mpremote library, a real mosquitto.

Each test starts its own broker (password file + ACL, no anonymous access)
and virtual boards running the real firmware; nodectl runs as the console
script a technician types.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import time

import paho.mqtt.client as mqtt
import pytest
import serial
from paho.mqtt.enums import CallbackAPIVersion
from provision_env import AGENT_PASS, AGENT_USER, board_files, wait_for

from edge_agent.registry import load_devices

pytestmark = pytest.mark.slow

ROLES = {"water-level-devkitc": "water_level", "boat-gps-cell": "boat",
         "truck-gps-cell": "truck"}


class Agent:
    """A subscriber as the agent's user, on every node topic."""

    def __init__(self, port: int) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"agent-{os.getpid()}")
        self.c.username_pw_set(AGENT_USER, AGENT_PASS)
        subscribed = []
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.c.on_subscribe = lambda c, u, mid, rc, p: subscribed.append(rc)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe("nodes/#", qos=1)
        wait_for(lambda: subscribed, what="the agent's SUBACK")

    def seen(self, payload: bytes, timeout: float = 5.0) -> str | None:
        """The topic `payload` arrived on, or None if it did not within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                topic, body = self.messages.get(timeout=0.05)
            except queue.Empty:
                continue
            if body == payload:
                return topic
        return None

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def publish_v5(port: int, user: str, password: str, topic: str, payload: bytes) -> int:
    """Connect as `user` (MQTT 5) and publish QoS1; returns the PUBACK's reason code."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-t{secrets.token_hex(2)}",
                    protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    acks: list[int] = []
    connected: list[int] = []
    c.on_connect = lambda cl, u, f, rc, p: connected.append(rc.value)
    c.on_publish = lambda cl, u, mid, rc, p: acks.append(rc.value)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        wait_for(lambda: connected, what=f"CONNACK for {user}")
        assert connected[0] == 0, f"{user} refused at connect: {connected[0]:#x}"
        c.publish(topic, payload, qos=1)
        wait_for(lambda: acks, what=f"PUBACK for {user}")
        return acks[0]
    finally:
        c.disconnect()
        c.loop_stop()


def provision_args(boards: list, kinds: list[str], *extra: str) -> list[str]:
    args = ["provision", "--link", "wifi", "--verify-timeout", "40", *extra]
    for vb, kind in zip(boards, kinds, strict=True):
        args += ["--port", f"vboard:{vb.dir}", "--board", kind]
    return args


def test_three_boards_one_per_role_in_one_command_then_each_publishes_as_itself(penv):
    kinds = list(ROLES)
    boards = [penv.board(k) for k in kinds]
    r = penv.nodectl(*provision_args(boards, kinds))
    assert r.returncode == 0, r.stdout + r.stderr
    table = r.stdout.splitlines()
    assert table[0].split()[:3] == ["PORT", "DEVICE", "BOARD"] and len(table) == 4
    assert all(line.rstrip().endswith(" ok") for line in table[1:]), r.stdout

    state = penv.registry_state()
    rows = {row["board"]: row for row in state["provisioning"]}
    assert set(rows) == set(kinds)
    for kind, row in rows.items():
        assert row["role"] == ROLES[kind]
        assert row["steps"] == "flash,deploy,configure,register,verify"  # each published
        assert row["chip"] == "esp32" and row["fw_version"] and row["config_hash"]
    devices = {d["device_id"]: d for d in state["devices"]}
    assert {d: devices[d]["role"] for d in devices} == {
        row["device_id"]: row["role"] for row in rows.values()}
    import sqlite3
    conn = sqlite3.connect(penv.registry)
    assert {d: i.role for d, i in load_devices(conn).items()} == {
        row["device_id"]: row["role"] for row in rows.values()}  # what the agent reads
    conn.close()

    agent = Agent(penv.broker.port)
    try:
        ids = [rows[k]["device_id"] for k in kinds]
        for dev in ids:
            password = penv.secrets_of(dev)["mqtt_pass"]
            own = f"own {dev} {secrets.token_hex(4)}".encode()
            assert publish_v5(penv.broker.port, dev, password, f"nodes/{dev}/up", own) == 0
            assert agent.seen(own) == f"nodes/{dev}/up"
            other = ids[(ids.index(dev) + 1) % len(ids)]
            forged = f"forged by {dev} {secrets.token_hex(4)}".encode()
            code = publish_v5(penv.broker.port, dev, password, f"nodes/{other}/up", forged)
            assert code == 0x87  # Not authorized
            # the forged message never reaches the agent; a later one on its own topic does
            marker = f"after {dev} {secrets.token_hex(4)}".encode()
            assert publish_v5(penv.broker.port, dev, password, f"nodes/{dev}/status",
                              marker) == 0
            assert agent.seen(marker) == f"nodes/{dev}/status"
            assert agent.seen(forged, timeout=0.5) is None
    finally:
        agent.close()


def test_a_rerun_of_a_provisioned_board_changes_nothing_and_redeploy_copies_nothing(penv):
    vb = penv.board("water-level-devkitc")
    first = penv.nodectl(*provision_args([vb], ["water-level-devkitc"]))
    assert first.returncode == 0, first.stdout + first.stderr
    before = penv.registry_state()
    again = penv.nodectl(*provision_args([vb], ["water-level-devkitc"]))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ok (nothing to do)" in again.stdout
    assert penv.registry_state() == before
    deploy = penv.nodectl("--port", f"vboard:{vb.dir}", "--json", "deploy")
    assert deploy.returncode == 0, deploy.stderr
    result = json.loads(deploy.stdout)
    assert "0 copied" in result["notes"]["deploy"] and "0 removed" in result["notes"]["deploy"]


def test_a_boat_is_verified_and_new_settings_are_applied_by_a_rerun(penv):
    vb = penv.board("boat-gps-cell")
    r = penv.nodectl(*provision_args([vb], ["boat-gps-cell"]))
    assert r.returncode == 0, r.stdout + r.stderr
    row = penv.registry_state()["provisioning"][0]
    assert row["steps"] == "flash,deploy,configure,register,verify"
    zone = json.loads((vb.dir / "config.json").read_text())["boat"]["zones"][0]
    assert zone["name"] == "can-tho-dock" and zone["polygon"][0] == [10.031, 105.785]
    r = penv.nodectl(*provision_args([vb], ["boat-gps-cell"], "--set", "boat.dwell_s=1200"))
    assert r.returncode == 0, r.stderr
    new = penv.registry_state()["provisioning"][0]
    assert new["config_hash"] != row["config_hash"] and new["steps"].endswith("verify")
    assert new["fw_manifest"] == row["fw_manifest"]  # the firmware was not sent again
    assert json.loads((vb.dir / "config.json").read_text())["boat"]["dwell_s"] == 1200


def test_one_failing_board_does_not_stop_the_others(penv):
    good = penv.board("water-level-devkitc")
    bad = penv.board("water-level-devkitc")
    holder = serial.Serial(bad.port, exclusive=True)  # someone else has this port
    try:
        r = penv.nodectl(*provision_args([good, bad], ["water-level-devkitc"] * 2))
    finally:
        holder.close()
    assert r.returncode == 2
    lines = r.stdout.splitlines()
    assert lines[1].rstrip().endswith(" ok") and "busy" in lines[2]
    assert "1 of 2 boards failed" in r.stderr
    assert [row["board"] for row in penv.registry_state()["provisioning"]] == [
        "water-level-devkitc"]


def _refused(penv, vb, *args: str, **env: str):
    """Run a provision that must be refused; return its stderr after checking that the
    board's files and the registry are exactly as before."""
    files, state = board_files(vb.dir), penv.registry_state(volatile=True)
    r = penv.nodectl("provision", "--port", f"vboard:{vb.dir}", "--link", "wifi", *args, **env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert board_files(vb.dir) == files
    assert penv.registry_state(volatile=True) == state
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("nodectl: ")]
    assert len(errors) == 1, r.stderr
    assert r.stderr.count(errors[0].split(": ", 2)[-1]) == 1, r.stderr  # said once
    return errors[0]


def test_refusals_leave_the_board_and_the_registry_as_they_were(penv):
    vb = penv.board("water-level-devkitc")
    (vb.dir / "main.py").write_text("print('a previous firmware')\n")
    (vb.dir / "data").mkdir()
    (vb.dir / "data" / "outbox").write_bytes(b"readings not yet delivered")

    msg = _refused(penv, vb, "--board", "water-level-s3")
    assert "wrong chip" in msg and "esp32s3" in msg and "nothing was erased" in msg

    holder = serial.Serial(vb.port, exclusive=True)
    try:
        msg = _refused(penv, vb, "--board", "water-level-devkitc")
    finally:
        holder.close()
    assert "busy" in msg

    msg = _refused(penv, vb, "--board", "water-level-devkitc",
                   NODECTL_IMAGES=str(penv.root / "no-images"))
    assert "ESP32_GENERIC-20260824-v1.29.0.bin" in msg and "not in the image cache" in msg

    boat = penv.board("boat-gps-cell")
    penv.zones.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "swapped"},
        "geometry": {"type": "Polygon", "coordinates": [[[10.03, 105.78], [10.03, 105.79],
                                                         [10.04, 105.79], [10.03, 105.78]]]}}]}))
    msg = _refused(penv, boat, "--board", "boat-gps-cell")
    assert "zones.geojson" in msg and "[lat, lon]" in msg


def test_a_registered_board_keeps_its_id_unless_forced(penv):
    vb = penv.board("water-level-devkitc")
    r = penv.nodectl(*provision_args([vb], ["water-level-devkitc"], "--id", "wl-0007"))
    assert r.returncode == 0, r.stderr
    before = penv.registry_state(volatile=True)
    r = penv.nodectl(*provision_args([vb], ["water-level-devkitc"], "--id", "wl-0008"))
    assert r.returncode == 2 and "already wl-0007" in r.stderr and "--force" in r.stderr
    assert penv.registry_state(volatile=True) == before
    r = penv.nodectl(*provision_args([vb], ["water-level-devkitc"], "--id", "wl-0008",
                                     "--force"))
    assert r.returncode == 0, r.stderr
    state = penv.registry_state()
    assert [d["device_id"] for d in state["devices"]] == ["wl-0008"]  # the agent: only the new
    old = next(row for row in state["provisioning"] if row["device_id"] == "wl-0007")
    assert old["retired_at"] is not None
    assert "user wl-0007" not in penv.acl.read_text()
    assert json.loads((vb.dir / "config.json").read_text())["device"] == "wl-0008"


def test_step_commands_one_by_one_and_the_devices_commands(penv):
    vb = penv.board("water-level-devkitc")
    port = ("--port", f"vboard:{vb.dir}")
    flash = penv.nodectl(*port, "--board", "water-level-devkitc", "flash")
    assert flash.returncode == 0, flash.stderr
    dev = flash.stdout.split(":")[0]
    assert sorted(board_files(vb.dir)) == ["boot.py"]  # a fresh MicroPython
    assert penv.nodectl(*port, "deploy").returncode == 0  # the kind is in the registry now
    configure = penv.nodectl(*port, "configure", "--link", "wifi")
    assert configure.returncode == 0, configure.stderr
    held = penv.secrets_of(dev)
    assert held["mqtt_pass"] not in configure.stdout + configure.stderr  # never printed
    assert oct(os.stat(penv.secrets / f"{dev}.json").st_mode & 0o777) == "0o600"
    on_board = json.loads((vb.dir / "secrets.json").read_text())
    assert (on_board["mqtt_pass"], on_board["key"]) == (held["mqtt_pass"], held["key"])
    register = penv.nodectl("register", "--id", dev)  # no board needed
    assert register.returncode == 0, register.stderr
    verify = penv.nodectl(*port, "verify", "--verify-timeout", "40")
    assert verify.returncode == 0, verify.stderr
    assert "a reading of" in verify.stdout

    listing = penv.nodectl("devices", "list")
    assert dev in listing.stdout and "live" in listing.stdout
    shown = penv.nodectl("--json", "devices", "show", dev)
    data = json.loads(shown.stdout)
    assert data["steps"] == ["flash", "deploy", "configure", "register", "verify"]
    assert "mqtt_pass" not in data
    shown = penv.nodectl("--json", "devices", "show", dev, "--show-secrets")
    assert json.loads(shown.stdout)["mqtt_pass"] == held["mqtt_pass"]

    retire = penv.nodectl("devices", "retire", dev)
    assert retire.returncode == 0, retire.stderr
    assert dev not in penv.nodectl("devices", "list").stdout
    assert "retired" in penv.nodectl("devices", "list", "--all").stdout
    assert penv.registry_state()["devices"] == []
    assert f"{dev}:" not in penv.passwd.read_text() and f"user {dev}" not in penv.acl.read_text()
