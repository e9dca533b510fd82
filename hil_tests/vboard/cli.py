"""`vboard`: run a virtual ESP32 on a pty, and poke a running one.

    vboard run --dir DIR [--board esp32] [--scenario FILE] [--heap 256K]
    vboard power-cycle --dir DIR
    vboard wifi up|down --dir DIR
    vboard log --dir DIR
    vboard state --dir DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .control import VBoardControl
from .errors import VBoardError
from .layout import BoardDir
from .relay import BOARDS, Relay
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
@click.option("--board", "kind", default="esp32", type=click.Choice(sorted(BOARDS)),
              show_default=True)
@click.option("--scenario", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="YAML/JSON file with the world's starting values (wifi, adc_mv, pins, ...).")
@click.option("--heap", default=DEFAULT_HEAP, show_default=True,
              help="VM heap (-X heapsize); the VM is 64-bit, see hil_tests/README.md.")
def run(board_dir: Path, kind: str, scenario: Path | None, heap: str) -> None:
    """Start one virtual board in the foreground; SIGTERM unplugs it."""
    board = BoardDir.create(board_dir)
    relay = Relay(board, World.from_file(scenario), kind=kind, heap=heap)
    try:
        relay.open()
        relay.install_signal_handlers()
        relay.start()
        click.echo(f"control: {relay.control_path}")
        click.echo(f"port: {relay.port}")
        sys.stdout.flush()
        relay.serve()
    finally:
        relay.close()


@cli.command("power-cycle")
@_dir_option
def power_cycle(board_dir: Path) -> None:
    """Cut and restore power (reset cause PWRON_RESET)."""
    VBoardControl.for_dir(board_dir).power_cycle()


@cli.command()
@click.argument("updown", type=click.Choice(["up", "down"]))
@_dir_option
def wifi(updown: str, board_dir: Path) -> None:
    """Make the board's Wi-Fi access point reachable or not."""
    VBoardControl.for_dir(board_dir).wifi(updown == "up")


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
