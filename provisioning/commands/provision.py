"""`nodectl provision`: every step on one board or many, resumable, with a summary."""

from __future__ import annotations

import json
from typing import Any

import click

from provisioning.commands import json_option
from provisioning.commands.options import (
    bench_from,
    broker_options,
    chosen_steps,
    firmware_option,
    image_options,
    settings_options,
    steps_option,
    verify_options,
)
from provisioning.context import Options
from provisioning.display import Display, summary_table
from provisioning.errors import ProvisioningError
from provisioning.provision import provision_boards, result_json, summary_rows


def provision_command(opts: Options, ports: tuple[str, ...], kinds: tuple[str, ...],
                      ids: tuple[str, ...], params: dict[str, Any]) -> tuple[str, int]:
    """(what to print on stdout, exit code) for `nodectl provision`."""
    specs = list(ports) or ([opts.port] if opts.port else [])
    if not specs:
        raise ProvisioningError("no board: pass --port PORT (repeat it for several boards)")
    if not kinds and opts.board:
        kinds = (opts.board,)
    results = provision_boards(bench_from(opts, params), specs, kinds, ids,
                               chosen_steps(params), Display())
    failed = [r for r in results if not r.ok]
    if opts.json:
        return json.dumps([result_json(r) for r in results], indent=2), 2 if failed else 0
    if len(results) == 1 and failed:
        r = failed[0]
        where = f"{r.failed_step}: " if r.failed_step else ""
        raise ProvisioningError(f"{r.target}: {where}{r.error}")
    text = summary_table(summary_rows(results))
    if failed:
        click.echo(f"nodectl: {len(failed)} of {len(results)} boards failed "
                   f"(re-run the same command to continue where each stopped)", err=True)
    return text, 2 if failed else 0


@click.command("provision")
@click.option("--port", "-p", "ports", multiple=True,
              help="Board to provision (repeat for several at once; vboard:DIR for a virtual "
                   "board) [default: the global --port].")
@click.option("--board", "kinds", multiple=True, metavar="KIND",
              help="Board kind: once for every port, or once per --port in order "
                   "[default: the global --board; a registered board's own kind].")
@click.option("--id", "ids", multiple=True, metavar="DEVICE",
              help="Device id per --port, in order [default: role prefix + MAC].")
@click.option("--force", is_flag=True, help="Redo every step, even those done.")
@steps_option
@image_options
@firmware_option
@settings_options
@broker_options
@verify_options
@json_option
@click.pass_obj
def provision(opts: Options, ports: tuple[str, ...], kinds: tuple[str, ...],
              ids: tuple[str, ...], **params: Any) -> int:
    """Flash, deploy, configure, register and verify; a re-run continues where it stopped."""
    text, code = provision_command(opts, ports, kinds, ids, params)
    click.echo(text)
    return code
