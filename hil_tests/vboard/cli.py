"""`vboard`: run a virtual ESP32 on a pty, and poke a running one.

    vboard run --dir DIR [--board esp32|KIND] [--scenario FILE] [--speed N] [--heap 256K]
    vboard power-cycle --dir DIR
    vboard wifi up|down --dir DIR [--mode drop|reset]
    vboard cell up|down --dir DIR
    vboard log --dir DIR
    vboard state --dir DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .control import VBoardControl
from .errors import VBoardError
from .layout import BoardDir
from .relay import BOARDS, Relay
from .scenario import Scenario, load_kind, parse, read_file
from .world import World

DEFAULT_HEAP = "256K"

_dir_option = click.option(
    "--dir", "board_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="The board's flash root (created if missing; persists across runs).")


@click.group()
def cli() -> None:
    """Virtual ESP32 boards: a MicroPython VM behind a pty."""


@cli.command()
@_dir_option
@click.option("--board", "kind", default="esp32", show_default=True,
              help="esp32, or a kind from boards.yaml: its `virtual` section is the world, "
                   "and the scenario's sensor keys map onto its pins.")
@click.option("--scenario", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="YAML/JSON scenario: starting values (wifi, adc_mv, pins, ...) and a "
                   "timeline in sensor terms (level, gps, ignition, wifi down, power cuts).")
@click.option("--speed", type=float, default=None,
              help="Scenario seconds per second (default: the file's `speed`, else 1).")
@click.option("--heap", default=DEFAULT_HEAP, show_default=True,
              help="VM heap (-X heapsize); the VM is 64-bit, see hil_tests/README.md.")
def run(board_dir: Path, kind: str, scenario: Path | None, speed: float | None,
        heap: str) -> None:
    """Start one virtual board in the foreground; SIGTERM unplugs it."""
    board = BoardDir.create(board_dir)
    chip, board_kind, sc = _world_plan(kind, scenario, speed)
    # starting values only (the plain format): a world, not a running scenario
    relay = Relay(board, World(sc.initial if sc and not sc.timed else None), kind=chip,
                  heap=heap)
    relay.board_kind = board_kind
    try:
        relay.open()
        relay.install_signal_handlers()
        if sc is not None and sc.timed:
            relay.run_scenario(sc)
        relay.start()
        click.echo(f"control: {relay.control_path}")
        click.echo(f"port: {relay.port}")
        sys.stdout.flush()
        relay.serve()
    finally:
        relay.close()


def _world_plan(kind: str, path: Path | None, speed: float | None) \
        -> tuple[str, str | None, Scenario | None]:
    """(chip, boards.yaml kind or None, scenario) for `run`: the kind's world under the
    file's keys."""
    data: dict[str, Any] = {}
    file_data = read_file(path) if path else {}
    if kind == "esp32" and isinstance(file_data.get("board"), str):
        kind = file_data["board"]  # the file's kind, unless --board names another
    chip = kind
    name = str(path) if path else f"<board {kind}>"
    if kind not in BOARDS:
        from ..kind_world import kind_scenario  # hil_tests is importable once we run

        bk = load_kind(kind)
        if bk.chip not in BOARDS:
            raise VBoardError(f"board kind {kind!r} is an {bk.chip}; virtual boards are "
                              f"{', '.join(BOARDS)} only")
        chip = bk.chip
        data = kind_scenario(bk)
    data.update(file_data)
    board = None if kind in BOARDS else kind
    if not data and speed is None:
        return chip, board, None
    return chip, board, parse(data, name, board, speed,
                              path.resolve().parent if path else None)


@cli.command("power-cycle")
@_dir_option
def power_cycle(board_dir: Path) -> None:
    """Cut and restore power (reset cause PWRON_RESET)."""
    VBoardControl.for_dir(board_dir).power_cycle()


@cli.command()
@click.argument("updown", type=click.Choice(["up", "down"]))
@_dir_option
@click.option("--mode", type=click.Choice(["drop", "reset"]), default="drop", show_default=True,
              help="What the outage does to open connections: drop (a black hole both "
                   "ways) or reset (both ends reset at once).")
def wifi(updown: str, board_dir: Path, mode: str) -> None:
    """Make the board's Wi-Fi access point reachable or not; down cuts its sockets."""
    VBoardControl.for_dir(board_dir).wifi(updown == "up", mode=mode)


@cli.command()
@click.argument("updown", type=click.Choice(["up", "down"]))
@_dir_option
def cell(updown: str, board_dir: Path) -> None:
    """Make the cellular network reachable or not for the board's modem."""
    VBoardControl.for_dir(board_dir).cell(updown == "up")


@cli.command()
@_dir_option
def log(board_dir: Path) -> None:
    """Print everything the board has printed since `vboard run` started."""
    sys.stdout.write(VBoardControl.for_dir(board_dir).console_log())


@cli.command()
@_dir_option
def state(board_dir: Path) -> None:
    """Print the relay's state (phase, reset cause, world) as JSON."""
    click.echo(json.dumps(VBoardControl.for_dir(board_dir).state(), indent=2))


def main(argv: list[str] | None = None) -> int:
    """Entry point: the one place that turns errors into `vboard: ...` and exit code 2."""
    try:
        cli.main(args=argv, prog_name="vboard", standalone_mode=False)
    except click.exceptions.Abort:
        return 1
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except VBoardError as e:
        click.echo(f"vboard: {e}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
