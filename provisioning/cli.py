"""nodectl: the command line technicians use to flash, configure and register nodes.

The click group holds the global options (esptool v5 style, with environment
defaults) in `ctx.obj`; each command lives in `provisioning/commands/`.
`main()` is the only place that prints a ProvisioningError.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from provisioning.boards import default_boards_path
from provisioning.commands import boards as boards_command
from provisioning.commands import (
    configure,
    deploy,
    devices,
    flash,
    images,
    ports,
    provision,
    register,
    verify,
)
from provisioning.context import Options
from provisioning.errors import ProvisioningError

# Every nodectl command, one module each under provisioning/commands/.
COMMANDS: tuple[click.Command, ...] = (
    boards_command.boards,
    ports.ports,
    images.images,
    flash.flash,
    deploy.deploy,
    configure.configure,
    register.register,
    verify.verify,
    provision.provision,
    devices.devices,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--boards",
    "boards_file",
    envvar="NODECTL_BOARDS",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Board kinds file [env NODECTL_BOARDS; default: the repository's boards.yaml, "
    "else ./boards.yaml].",
)
@click.option("--port", "-p", envvar="NODECTL_PORT", help="Serial port [env NODECTL_PORT].")
@click.option("--board", envvar="NODECTL_BOARD", help="Board kind [env NODECTL_BOARD].")
@click.option(
    "--registry",
    envvar="NODECTL_REGISTRY",
    metavar="PATH",
    type=click.Path(path_type=Path),
    help="Device registry [env NODECTL_REGISTRY].",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.pass_context
def cli(
    ctx: click.Context,
    boards_file: Path | None,
    port: str | None,
    board: str | None,
    registry: Path | None,
    as_json: bool,
) -> None:
    """Flash, configure and register MicroPython sensor nodes."""
    ctx.obj = Options(
        boards_file=boards_file or default_boards_path(),
        port=port,
        board=board,
        registry=registry,
        json=as_json,
    )


for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run nodectl on `argv` (default sys.argv[1:]) and return the exit code.

    The single error boundary: a ProvisioningError becomes `nodectl: <msg>` on
    stderr and exit code 2; click's usage errors keep click's own output and code.
    """
    args = list(argv) if argv is not None else None
    try:
        rv = cli.main(args=args, prog_name="nodectl", standalone_mode=False)
    except ProvisioningError as e:
        click.echo(f"nodectl: {e}", err=True)
        return 2
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return rv if isinstance(rv, int) else 0
