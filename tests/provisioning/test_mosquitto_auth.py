"""mosquitto's password and ACL files as nodectl writes them, checked by a real mosquitto."""

from __future__ import annotations

import os
import stat
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hil_tests.mosquitto import Mosquitto
from provisioning.mosquitto_auth import (
    BEGIN,
    END,
    BrokerFiles,
    check_password,
    hash_password,
    password_hash,
    reload_broker,
    remove_user,
    set_password,
    write_acl,
)


def connect_rc(port: int, user: str, password: str) -> int:
    """CONNACK reason of a paho connect (0 = accepted)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.username_pw_set(user, password)
    result: list[int] = []
    c.on_connect = lambda cl, u, f, rc, p: result.append(rc.value)
    c.connect("127.0.0.1", port)
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        c.loop(0.05)
    c.disconnect()
    return result[0]


@pytest.fixture
def broker(tmp_path):
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    set_password(passwd, "edge-agent", "agent-pw")
    write_acl(acl, [], "edge-agent", "nodes")
    with Mosquitto(tmp_path / "mq", extra=f"password_file {passwd}\nacl_file {acl}\n",
                   allow_anonymous=False) as b:
        yield b, passwd, acl


def test_our_hash_is_accepted_by_mosquitto_and_a_wrong_password_is_not(broker):
    b, passwd, acl = broker
    assert connect_rc(b.port, "edge-agent", "agent-pw") == 0
    assert connect_rc(b.port, "edge-agent", "wrong") != 0


def test_a_new_user_works_after_reload(broker):
    b, passwd, acl = broker
    assert connect_rc(b.port, "wl-0007", "node-pw") != 0
    set_password(passwd, "wl-0007", "node-pw")
    how = reload_broker(BrokerFiles(passwd, acl, pid=b.proc.pid))
    assert "SIGHUP" in how
    deadline = time.monotonic() + 5
    while connect_rc(b.port, "wl-0007", "node-pw") != 0:
        assert time.monotonic() < deadline, "mosquitto did not take the new user"
        time.sleep(0.05)
    remove_user(passwd, "wl-0007")
    reload_broker(BrokerFiles(passwd, acl, pid=b.proc.pid))
    deadline = time.monotonic() + 5
    while connect_rc(b.port, "wl-0007", "node-pw") == 0:
        assert time.monotonic() < deadline, "mosquitto still takes a removed user"
        time.sleep(0.05)


def test_mosquitto_passwd_hashes_verify_here(tmp_path):
    f = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(f), "alice", "s3cret"], check=True,
                   capture_output=True)
    encoded = password_hash(f, "alice")
    assert encoded is not None and encoded.startswith("$7$")
    assert check_password("s3cret", encoded) and not check_password("s3cret!", encoded)


def test_set_password_keeps_a_matching_hash_and_replaces_a_stale_one(tmp_path):
    f = tmp_path / "passwd"
    assert set_password(f, "n1", "a")
    first = password_hash(f, "n1")
    assert not set_password(f, "n1", "a")  # re-registering changes nothing
    assert password_hash(f, "n1") == first
    assert set_password(f, "n1", "b")
    assert check_password("b", password_hash(f, "n1") or "")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600  # created owner-only


def test_rewrites_keep_the_files_mode(tmp_path):
    f = tmp_path / "passwd"
    f.write_text("admin:" + hash_password("x") + "\n")
    os.chmod(f, 0o640)
    set_password(f, "n1", "a")
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o640
    assert password_hash(f, "admin") is not None  # other users kept


def test_acl_block_is_replaced_and_operator_lines_kept(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("# operator's\nuser admin\ntopic readwrite #\n")
    write_acl(acl, ["wl-1", "boat-2"], "edge-agent", "nodes")
    write_acl(acl, ["wl-1"], "edge-agent", "nodes")
    lines = acl.read_text().splitlines()
    assert lines[:3] == ["# operator's", "user admin", "topic readwrite #"]
    assert lines.count(BEGIN) == 1 and lines.count(END) == 1
    block = lines[lines.index(BEGIN):]
    assert "user boat-2" not in block
    assert block[block.index("user wl-1") + 1:block.index("user wl-1") + 4] == [
        "topic write nodes/wl-1/up", "topic write nodes/wl-1/status", "topic read nodes/wl-1/down"]
    assert not write_acl(acl, ["wl-1"], "edge-agent", "nodes")  # unchanged: not rewritten
