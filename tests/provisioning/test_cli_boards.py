"""`nodectl boards` through the real entry point: output, JSON, options, errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from provisioning.boards import display_path, load_boards
from provisioning.cli import cli, main
from provisioning.errors import ProvisioningError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "boards.yaml"
NODECTL = Path(sys.executable).parent / "nodectl"
ENV_VARS = ("NODECTL_BOARDS", "NODECTL_PORT", "NODECTL_BOARD", "NODECTL_REGISTRY")


def run(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    """main(args) with click's isolated streams and environment: (exit code, stdout, stderr)."""
    runner = CliRunner()
    clean: dict[str, str | None] = dict.fromkeys(ENV_VARS)
    clean.update(env or {})
    with runner.isolation(env=clean) as streams:
        code = main(list(args))
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return code, out, err


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run from an empty directory, so nothing is found relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_list_shows_every_kind_with_its_facts():
    code, out, err = run("--boards", str(SHIPPED), "boards")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "CHIP", "FLASH", "ROLE", "LINK", "SENSORS", "IMAGE"]
    boards = load_boards(SHIPPED)
    assert len(lines) == 1 + len(boards)
    for line, kind in zip(lines[1:], boards, strict=True):
        cells = line.split()
        assert cells[:5] == [kind.name, kind.chip, kind.flash_size, kind.role, kind.link]
        assert cells[-1] == kind.image.version
    pressure_row = next(line for line in lines if line.startswith("water-level-devkitc "))
    assert "(pressure)" in pressure_row  # optional sensors are marked


def test_show_prints_every_field_of_one_kind():
    code, out, err = run("--boards", str(SHIPPED), "boards", "boat-gps-cell")
    assert (code, err) == (0, "")
    kind = load_boards(SHIPPED).get("boat-gps-cell")
    shown = display_path(SHIPPED)  # relative when run from the repository
    assert out.splitlines()[0].split() == ["name", "boat-gps-cell", f"({shown}:{kind.line})"]
    assert f"{kind.usb.bridge} {kind.usb.vid:04x}:{kind.usb.pid:04x}" in out
    assert f"{kind.image.file} (MicroPython {kind.image.version}) at 0x1000" in out
    assert "placeholder" in out  # the shipped sha256 is not a real one yet
    for name, gpio in kind.pins.items():
        assert f"{name}  " in out and f"GPIO {gpio}" in out
    assert "UART 2 at 9600 baud" in out and "UART 1 at 115200 baud" in out


@pytest.mark.parametrize(
    "args", [("--json", "boards"), ("boards", "--json")], ids=["global", "after-command"]
)
def test_list_json_parses_and_matches_the_file(args):
    code, out, err = run("--boards", str(SHIPPED), *args)
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert [d["name"] for d in data] == load_boards(SHIPPED).names()
    boat = next(d for d in data if d["name"] == "boat-gps-cell")
    assert boat["usb"] == {"bridge": "CH9102", "vid": 0x1A86, "pid": 0x55D4}
    assert boat["modem"]["uart"] == {"id": 1, "baud": 115200}


def test_show_json_is_the_whole_kind():
    code, out, _ = run("--boards", str(SHIPPED), "--json", "boards", "truck-gps-cell")
    assert code == 0
    assert json.loads(out) == load_boards(SHIPPED).get("truck-gps-cell").to_dict()


def test_unknown_board_exits_2_with_one_line():
    code, out, err = run("--boards", str(SHIPPED), "boards", "barge")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("nodectl: unknown board kind 'barge' in ")
    for name in load_boards(SHIPPED).names():
        assert name in err


def test_bad_boards_file_exits_2_with_one_line_naming_file_and_line(tmp_path):
    text = SHIPPED.read_text()
    line = text[: text.index("gps_tx: 33")].count("\n") + 1
    bad = tmp_path / "boards.yaml"
    bad.write_text(text.replace("gps_tx: 33", "gps_tx: 6", 1))
    code, out, err = run("--boards", str(bad), "boards")
    assert (code, out) == (2, "")
    assert (
        err == f"nodectl: {bad}:{line}: board 'boat-gps-cell': pins.gps_tx: GPIO 6 is a flash pin\n"
    )


def test_missing_boards_file_exits_2(tmp_path):
    code, _, err = run("--boards", str(tmp_path / "none.yaml"), "boards")
    assert code == 2
    assert err == f"nodectl: {tmp_path / 'none.yaml'}: cannot read: No such file or directory\n"


def test_nodectl_boards_env_selects_the_file_and_the_option_wins(tmp_path):
    text = SHIPPED.read_text()
    start = text.index("  boat-gps-cell:")
    only_first = tmp_path / "one.yaml"
    only_first.write_text(text[:start])  # the first kind alone is still a valid file
    code, out, _ = run("boards", env={"NODECTL_BOARDS": str(only_first)})
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["water-level-devkitc"]
    code, out, _ = run("--boards", str(SHIPPED), "boards", env={"NODECTL_BOARDS": str(only_first)})
    assert len(out.splitlines()) == 1 + len(load_boards(SHIPPED))


def test_default_is_the_repository_boards_yaml_from_any_directory(in_tmp):
    (in_tmp / "boards.yaml").write_text("not: [valid\n")  # must not be picked over the repo's
    code, out, _ = run("boards")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == load_boards(SHIPPED).names()


def test_usage_errors_keep_clicks_output_and_code():
    code, out, err = run("--boards", str(SHIPPED), "boards", "a", "b")
    assert code == 2
    assert "Usage: nodectl boards" in err and "unexpected extra argument" in err
    assert not err.startswith("nodectl:")


def test_help_exits_0():
    code, out, _ = run("--help")
    assert code == 0 and "boards" in out and "--boards FILE" in out


@pytest.fixture
def probe():
    """A throwaway command that records the Options the group built."""
    seen = []

    @click.command("probe")
    @click.pass_obj
    def command(opts):
        seen.append(opts)

    cli.add_command(command)
    yield seen
    del cli.commands["probe"]


def test_global_options_come_from_the_environment(probe, tmp_path):
    env = {
        "NODECTL_PORT": "/dev/ttyUSB3",
        "NODECTL_BOARD": "boat-gps-cell",
        "NODECTL_REGISTRY": str(tmp_path / "reg"),
        "NODECTL_BOARDS": str(SHIPPED),
    }
    assert run("probe", env=env)[0] == 0
    opts = probe[0]
    assert (opts.port, opts.board, opts.registry) == (
        "/dev/ttyUSB3",
        "boat-gps-cell",
        tmp_path / "reg",
    )
    assert opts.boards_file == SHIPPED and opts.json is False
    assert opts.board_kind().name == "boat-gps-cell"


def test_global_options_override_the_environment(probe):
    env = {"NODECTL_PORT": "/dev/ttyUSB3", "NODECTL_BOARD": "boat-gps-cell"}
    args = ("--port", "/dev/ttyACM0", "--board", "truck-gps-cell", "--json", "probe")
    assert run(*args, env=env)[0] == 0
    opts = probe[0]
    assert (opts.port, opts.board, opts.json) == ("/dev/ttyACM0", "truck-gps-cell", True)


def test_board_kind_without_a_board_is_a_provisioning_error(probe):
    assert run("probe")[0] == 0
    with pytest.raises(ProvisioningError, match="no board kind given"):
        probe[0].board_kind()


@pytest.mark.skipif(not NODECTL.exists(), reason="nodectl console script not installed")
def test_installed_console_script_reports_errors_on_one_line(tmp_path):
    bad = tmp_path / "b.yaml"
    bad.write_text("version: 1\nboards:\n  x:\n    chip: esp33\n")
    proc = subprocess.run(
        [str(NODECTL), "--boards", str(bad), "boards"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "nodectl: b.yaml:4: board 'x': chip: expected one of esp32, esp32s3, esp32c3, "
        "got string 'esp33'\n"
    )
