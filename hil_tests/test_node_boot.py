"""Firmware level, every role: the node boots, says who it is, and speaks the wire contract."""

from __future__ import annotations

import json
import re

import cbor2

from hil_tests.node_config import FIRMWARE

FIRST_MESSAGE_S = 30  # boot, Wi-Fi, MQTT and the first reading, with room for a slow bench


def firmware_version() -> str:
    text = (FIRMWARE / "lib" / "version.py").read_text()
    m = re.search(r"""^VERSION\s*=\s*["']([^"']+)["']""", text, re.M)
    assert m, "firmware/lib/version.py has no VERSION"
    return m.group(1)


def test_node_boots_and_reports_its_firmware_version(deployed_board):
    node = deployed_board
    st = node.watch.wait(lambda w: w.online_statuses(), FIRST_MESSAGE_S, "an online status")[0]
    assert st["fw"] == firmware_version()
    assert st["dev"] == node.device
    assert st["boot"] >= 1
    assert st["reset"] == "hard"  # the deployment ended with machine.reset()
    assert st["link"] == node.config["link"]["type"]
    assert st["heap"] > 0
    line = node.board.expect(f"node: {node.device} boot {st['boot']} (hard), fw {st['fw']}",
                             timeout=5)
    assert "config error" not in line


def test_node_config_on_the_flash_is_the_deployed_one_and_valid(deployed_board):
    node = deployed_board
    node.watch.wait(lambda w: w.online_statuses(), FIRST_MESSAGE_S, "an online status")
    # The REPL interrupts main.py; the node's watchdog gives us 10 s, plenty.
    on_flash = json.loads(node.board.get("/config.json"))
    assert on_flash == node.config
    loaded = node.board.eval("(lambda c: (c['device'], c['role'], c['broker']['port'], "
                             "sorted(c['secrets'])))(__import__('config').load())")
    assert loaded[:3] == (node.device, node.kind.role, node.config["broker"]["port"])
    assert "wifi_pass" in loaded[3] or node.config["link"]["type"] == "cell"


def test_an_invalid_config_is_reported_on_the_console_and_the_node_idles(deployed_board):
    node = deployed_board
    node.watch.wait(lambda w: w.online_statuses(), FIRST_MESSAGE_S, "an online status")
    bad = dict(node.config, intervals={"normal_s": 10, "fast_s": 1})
    node.board.put(json.dumps(bad).encode(), "/config.json")
    seen = len(node.watch.online_statuses())
    node.board.reset(wait_repl=False)
    node.board.expect("config error: intervals.fast_s", timeout=20)
    node.board.wait_boot(timeout=10)  # idle, not a reset loop: the REPL answers
    assert node.board.eval("1 + 1") == 2
    # (its last will, online=false, may arrive: the reset cut the old session)
    assert len(node.watch.online_statuses()) == seen, "a node with a bad config went online"


def test_uplinks_and_status_decode_per_the_wire_contract(deployed_board):
    node = deployed_board
    ups = node.watch.wait(lambda w: len(w.unique()) >= 2 and w.online_statuses() and w.unique(),
                          FIRST_MESSAGE_S, "two uplinks and a status")
    assert not node.watch.rejected, f"the agent's validator refused: {node.watch.rejected[:3]}"
    boot = node.watch.online_statuses()[0]["boot"]
    for (b, seq), up in ups.items():
        env = up.envelope
        assert env[0] == 1 and env[1] == node.device and env[4] == node.kind.role
        assert b == boot and seq >= 1
        assert 1 <= len(env[5]) <= 64
        # RFC 8949 deterministic encoding: re-encoding canonically gives the same bytes
        assert cbor2.dumps(cbor2.loads(up.reading.payload), canonical=True) == \
            up.reading.payload
    seqs = sorted(seq for b, seq in ups if b == boot)
    assert seqs == list(range(1, len(seqs) + 1)), "seq starts at 1 and has no gaps"


def test_the_node_acts_on_a_status_command_and_echoes_its_id(deployed_board):
    node = deployed_board
    node.watch.wait(lambda w: w.online_statuses(), FIRST_MESSAGE_S, "an online status")
    node.watch.command("status", {}, cid=4242)
    st = node.watch.wait(lambda w: [s for s in w.online_statuses() if s.get("cmd_id") == 4242],
                         10, "a status carrying cmd_id 4242")
    assert st[0]["dev"] == node.device
