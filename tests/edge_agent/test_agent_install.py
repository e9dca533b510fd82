"""What a gateway installs: the systemd unit, its system user, the mosquitto config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from edge_helpers import wait_until
from paho.mqtt.enums import CallbackAPIVersion

from hil_tests.mosquitto import free_port
from provisioning.mosquitto_auth import set_password, write_acl

PKG = Path(__file__).resolve().parents[2] / "edge_agent"
UNIT = PKG / "systemd" / "edge-agent.service"
SYSUSERS = PKG / "systemd" / "edge-agent.sysusers.conf"
GATEWAY_CONF = PKG / "mosquitto" / "gateway.conf"


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    exe = Path(sys.executable).with_name("edge-agent")
    assert exe.exists(), "the edge-agent console script is not installed in this venv"
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/edge-agent run" in text
    # verify insists that ExecStart exists: point a copy at this venv's script.
    copy = tmp_path / "edge-agent.service"
    copy.write_text(text.replace("/usr/local/bin/edge-agent", str(exe)))
    r = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                       timeout=60)
    problems = [line for line in (r.stdout + r.stderr).splitlines() if "edge-agent" in line]
    assert r.returncode == 0 and problems == [], r.stdout + r.stderr
    # And it does catch mistakes: a misspelt key in the same file is reported.
    copy.write_text(copy.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    r = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                       timeout=60)
    assert "Unknown key 'NoNewPrivilege'" in r.stderr


def test_unit_is_a_hardened_notify_service_with_a_watchdog() -> None:
    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] == ["30"] and s["Restart"] == ["on-failure"]
    assert s["User"] == ["edge-agent"] and s["StateDirectory"] == ["edge-agent"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "MemoryDenyWriteExecute", "RestrictRealtime", "LockPersonality"):
        assert s[key] == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    assert s["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "@system-service" in s["SystemCallFilter"]
    assert s["CapabilityBoundingSet"] == [""]


def test_sysusers_file_creates_the_service_user(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers not installed (apt-get install systemd)")
    (tmp_path / "etc").mkdir()
    r = subprocess.run([sysusers, f"--root={tmp_path}", str(SYSUSERS)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    user = [line for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
            if line.startswith("edge-agent:")]
    assert len(user) == 1 and user[0].endswith(":/var/lib/edge-agent:/usr/sbin/nologin")


def test_every_gateway_setting_says_why() -> None:
    block_has_comment = False
    for line in GATEWAY_CONF.read_text().splitlines():
        line = line.strip()
        if not line:
            block_has_comment = False
        elif line.startswith("#"):
            block_has_comment = True
        else:
            assert block_has_comment, f"no comment above {line!r}"


class Client:
    def __init__(self, port: int, user: str | None, password: str | None,
                 subscribe: str | None = None) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.result: list[str] = []
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user or "anon",
                        protocol=mqtt.MQTTv311)
        if user:
            c.username_pw_set(user, password)
        self.subscribed = False

        def on_connect(cl: mqtt.Client, u: object, f: object, rc: mqtt.ReasonCode,
                       p: object) -> None:
            self.result.append(rc.getName())
            if not rc.is_failure and subscribe:
                cl.subscribe(subscribe, 1)

        def on_subscribe(*a: object) -> None:
            self.subscribed = True

        c.on_connect = on_connect
        c.on_subscribe = on_subscribe
        c.on_message = lambda cl, u, m: self.got.append((m.topic, bytes(m.payload)))
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.c = c

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_gateway_mosquitto_config_runs_and_enforces_the_acl(tmp_path: Path) -> None:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto not installed")
    agent_port, lan_port = free_port(), free_port()
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    # The agent's user (the installer adds it), then what `nodectl register` writes.
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "edge-agent", "agent-pw"],
                   check=True, capture_output=True)
    set_password(passwd, "wl-0001", "node-pw")
    write_acl(acl, ["wl-0001", "wl-0002"], "edge-agent", "nodes")
    # The rules the config's comment shows are the ones provisioning writes.
    shown = re.findall(r"^#     ((?:user|topic) .*)$", GATEWAY_CONF.read_text(), re.M)
    written = [line for line in acl.read_text().splitlines() if line.startswith(("user", "topic"))]
    assert shown == written[:len(shown)]
    # Same file, paths into tmp and ports free; the LAN listener stays on loopback here.
    text = GATEWAY_CONF.read_text()
    text = text.replace("listener 1883 127.0.0.1", f"listener {agent_port} 127.0.0.1")
    text = re.sub(r"^listener 1883$", f"listener {lan_port} 127.0.0.1", text, flags=re.M)
    text = text.replace("bind_interface eth0", "bind_interface lo")
    text = text.replace("password_file /etc/mosquitto/passwd", f"password_file {passwd}")
    text = text.replace("acl_file /etc/mosquitto/acl", f"acl_file {acl}")
    text = text.replace("/var/lib/mosquitto/", f"{tmp_path}/")
    text = text.replace("log_dest stderr", f"log_dest file {tmp_path / 'mosquitto.log'}")
    if os.geteuid() == 0:
        text += "\nuser root\n"  # else mosquitto drops to `mosquitto`, who cannot write tmp
    conf = tmp_path / "gateway.conf"
    conf.write_text(text)
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    clients: list[Client] = []
    try:
        wait_until(lambda: proc.poll() is not None or "running" in _read(tmp_path), 10,
                   "mosquitto to start")
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        agent = Client(agent_port, "edge-agent", "agent-pw", subscribe="nodes/+/up")
        node = Client(lan_port, "wl-0001", "node-pw")
        anon = Client(lan_port, None, None)
        wrong = Client(lan_port, "wl-0001", "not-the-password")
        clients += [agent, node, anon, wrong]
        wait_until(lambda: agent.subscribed and node.result and anon.result and wrong.result,
                   10, "connections")
        assert agent.result == ["Success"] and node.result == ["Success"]
        assert anon.result == ["Not authorized"] and wrong.result == ["Not authorized"]
        node.c.publish("nodes/wl-0002/up", b"spoofed", qos=1)  # someone else's topic
        node.c.publish("nodes/wl-0001/up", b"mine", qos=1)
        wait_until(lambda: agent.got, 10, "the node's reading at the agent")
        time.sleep(0.3)
        assert agent.got == [("nodes/wl-0001/up", b"mine")]
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        proc.wait(10)
    log = _read(tmp_path)
    assert "Error" not in log and "Unknown" not in log, log


def _read(tmp_path: Path) -> str:
    p = tmp_path / "mosquitto.log"
    return p.read_text() if p.exists() else ""
