"""The step commands through the real entry point, where no board is needed: usage
errors are one line, `ports` matches USB ids to board kinds, `images` fills the cache."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner
from serial.tools import list_ports

from provisioning.cli import main

REPO = Path(__file__).resolve().parents[2]
SHIPPED = str(REPO / "boards.yaml")


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("NODECTL_")}
    clean.update(env or {})
    with CliRunner().isolation(env=clean) as streams:
        code = main(["--boards", SHIPPED, *args])
        return code, streams[0].getvalue().decode(), streams[1].getvalue().decode()


def one_error(err: str) -> str:
    """The one error line (progress lines may come before it, never the message twice)."""
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("nodectl: ")]
    assert len(lines) == 1, err
    message = lines[0].split(": ", 2)[-1]
    assert err.count(message) == 1, err
    return lines[0]


def test_steps_need_a_registry(tmp_path):
    code, out, err = run("--port", str(tmp_path), "flash")
    assert code == 2 and "--registry" in one_error(err) and "NODECTL_REGISTRY" in err


def test_steps_need_a_board(tmp_path):
    code, _, err = run("--registry", str(tmp_path / "r.db"), "deploy")
    assert code == 2 and "no board" in one_error(err)
    code, _, err = run("--registry", str(tmp_path / "r.db"), "provision")
    assert code == 2 and "no board" in one_error(err)


def test_a_missing_port_or_virtual_board_is_one_line(tmp_path):
    reg = str(tmp_path / "r.db")
    code, _, err = run("--registry", reg, "--port", "/dev/ttyUSB97", "--board",
                       "water-level-devkitc", "flash")
    assert code == 2 and "no such serial port /dev/ttyUSB97" in one_error(err)
    code, _, err = run("--registry", reg, "provision", "--port", f"vboard:{tmp_path}/none",
                       "--board", "water-level-devkitc")
    assert code == 2 and "no virtual board is running" in one_error(err)
    assert not (tmp_path / "r.db").exists()  # nothing was registered


def test_register_by_id_needs_a_known_device_and_the_broker_files(tmp_path):
    reg = str(tmp_path / "r.db")
    code, _, err = run("--registry", reg, "register", "--id", "wl-0001")
    assert code == 2 and "no live device 'wl-0001'" in one_error(err)


def test_one_id_per_port(tmp_path):
    code, _, err = run("--registry", str(tmp_path / "r.db"), "provision", "-p", "/dev/a",
                       "-p", "/dev/b", "--id", "wl-1")
    assert code == 2 and "1 --id for 2 boards" in one_error(err)


def test_ports_lists_usb_serial_ports_and_the_kinds_that_match(monkeypatch):
    fake = [
        SimpleNamespace(device="/dev/ttyUSB0", vid=0x10C4, pid=0xEA60, serial_number="0001",
                        description="CP2102 USB to UART"),
        SimpleNamespace(device="/dev/ttyUSB1", vid=0x1A86, pid=0x7523, serial_number=None,
                        description="USB Serial"),
        SimpleNamespace(device="/dev/ttyACM0", vid=0x2341, pid=0x0043, serial_number="A1",
                        description="Arduino Uno"),
        SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None, serial_number=None,
                        description="n/a"),
    ]
    monkeypatch.setattr(list_ports, "comports", lambda: fake)
    code, out, err = run("--json", "ports")
    assert (code, err) == (0, "")
    ports = {p["port"]: p for p in json.loads(out)}
    assert set(ports) == {"/dev/ttyUSB0", "/dev/ttyUSB1", "/dev/ttyACM0"}  # USB ones only
    assert ports["/dev/ttyUSB0"]["kinds"] == ["water-level-devkitc", "water-level-s3"]
    assert ports["/dev/ttyUSB0"]["serial"] == "0001"
    assert ports["/dev/ttyUSB1"]["kinds"] == ["truck-gps-cell"]  # CH340C
    assert ports["/dev/ttyACM0"]["kinds"] == []
    code, out, _ = run("ports")
    line = next(ln for ln in out.splitlines() if ln.startswith("/dev/ttyUSB0"))
    assert "10c4:ea60" in line and "water-level-devkitc, water-level-s3" in line


def test_images_add_then_list(tmp_path):
    image = tmp_path / "ESP32_GENERIC_S3-20260824-v1.29.0.bin"
    image.write_bytes(b"\xe9" + os.urandom(1000))
    cache = str(tmp_path / "cache")
    code, out, err = run("images", "add", str(image), "--images", cache)
    assert code == 0, err
    assert "image.sha256" in out
    code, out, _ = run("--json", "images", "list", "--images", cache)
    rows = {r["board"]: r for r in json.loads(out)}
    assert rows["water-level-s3"]["in_cache"] and rows["water-level-s3"]["sha256"]
    assert not rows["water-level-devkitc"]["in_cache"]
    assert rows["water-level-s3"]["boards_yaml"] == "placeholder"
