"""The registry nodectl writes is the edge agent's database: both sides keep working."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading

import pytest

from edge_agent.registry import add_device, load_devices
from edge_agent.store import Store
from provisioning.errors import RegistryError
from provisioning.registry import Registry, auto_device_id


@pytest.fixture
def reg(tmp_path):
    with Registry(tmp_path / "agent.db") as r:
        yield r


def test_a_new_registry_file_is_owner_only(tmp_path):
    Registry(tmp_path / "r.db").close()
    assert stat.S_IMODE(os.stat(tmp_path / "r.db").st_mode) == 0o600


def test_steps_are_recorded_in_order_and_a_redone_step_clears_what_it_invalidates(reg):
    reg.create("wl-1", "24:0a:c4:00:00:01", "water_level", "water-level-devkitc")
    for step in ("flash", "deploy", "configure", "register", "verify"):
        reg.step_done("wl-1", step)
    assert reg.by_id("wl-1").steps == ("flash", "deploy", "configure", "register", "verify")
    reg.step_done("wl-1", "deploy", fw_version="0.2.0")
    row = reg.by_id("wl-1")
    assert row.steps == ("flash", "deploy", "configure", "register") and row.fw_version == "0.2.0"
    reg.step_done("wl-1", "flash")  # flashing empties the board: its files are gone
    assert reg.by_id("wl-1").steps == ("flash", "register")


def test_a_failed_step_is_kept_until_the_step_succeeds(reg):
    reg.create("wl-1", "24:0a:c4:00:00:01", "water_level", "water-level-devkitc")
    reg.step_failed("wl-1", "deploy", "board stopped answering")
    assert reg.by_id("wl-1").last_error == "deploy: board stopped answering"
    reg.step_done("wl-1", "deploy")
    assert reg.by_id("wl-1").last_error is None


def test_one_live_device_per_board(reg):
    reg.create("wl-1", "24:0a:c4:00:00:01", "water_level", "water-level-devkitc")
    with pytest.raises(RegistryError):
        reg.create("wl-2", "24:0a:c4:00:00:01", "water_level", "water-level-devkitc")
    reg.retire("wl-1")
    assert reg.live_by_mac("24:0a:c4:00:00:01") is None
    reg.create("wl-2", "24:0a:c4:00:00:01", "water_level", "water-level-devkitc")
    assert reg.live_by_mac("24:0a:c4:00:00:01").device_id == "wl-2"
    assert reg.by_id("wl-1").retired  # the old record stays


def test_retire_removes_the_agents_row(reg):
    reg.create("wl-1", "24:0a:c4:00:00:01", "water_level", "water-level-devkitc")
    reg.add_agent_device("wl-1", "water_level", "water-level-devkitc", mac_key=None,
                         password_hash="$7$x")
    assert reg.registered("wl-1")
    reg.retire("wl-1")
    assert not reg.registered("wl-1") and reg.agent_device_ids() == []


def test_the_agent_opens_a_registry_nodectl_made_and_sees_its_devices(tmp_path):
    path = tmp_path / "agent.db"
    with Registry(path) as reg:
        reg.create("boat-1", "24:0a:c4:00:00:02", "boat", "boat-gps-cell")
        reg.add_agent_device("boat-1", "boat", "boat-gps-cell", mac_key=b"k" * 32,
                             password_hash="$7$x")
    store = Store(path)
    try:
        devices = store.devices()
        assert devices["boat-1"].role == "boat" and not devices["boat-1"].keyless
        add_device(store.conn, "wl-2", "water_level")  # the agent's API is unchanged
    finally:
        store.close()
    with Registry(path) as reg:  # and nodectl opens the agent's database again
        assert reg.agent_device_ids() == ["boat-1", "wl-2"]
        assert reg.by_id("boat-1").board == "boat-gps-cell"
    conn = sqlite3.connect(path)
    assert set(load_devices(conn)) == {"boat-1", "wl-2"}
    conn.close()


def test_auto_ids_are_the_role_prefix_and_the_macs_last_bytes():
    assert auto_device_id("water_level", "24:0a:c4:e1:c4:10") == "wl-e1c410"
    assert auto_device_id("boat", "24:0a:c4:00:00:0a") == "boat-00000a"
    assert auto_device_id("truck", "24:0a:c4:ab:cd:ef") == "trk-abcdef"


def test_boards_threads_may_open_a_new_registry_at_once(tmp_path):
    # Switching a new file to WAL answers "database is locked" without waiting: a
    # provision of several boards must not lose one of them to that.
    errors: list[str] = []

    def board(path, i: int) -> None:
        try:
            with Registry(path) as reg:
                reg.create(f"wl-{i}", f"24:0a:c4:00:00:{i:02x}", "water_level",
                           "water-level-devkitc")
                reg.step_done(f"wl-{i}", "flash")
        except RegistryError as e:
            errors.append(str(e))

    for n in range(20):
        path = tmp_path / f"r{n}.db"
        threads = [threading.Thread(target=board, args=(path, i)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    with Registry(tmp_path / "r0.db") as reg:
        assert [r.device_id for r in reg.rows()] == [f"wl-{i}" for i in range(6)]
