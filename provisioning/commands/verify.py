"""`nodectl verify`: the smoke test over serial and on the broker."""

from __future__ import annotations

from typing import Any

import click

from provisioning.commands import json_option
from provisioning.commands.options import board_options, settings_options, verify_options
from provisioning.commands.step_command import report, run_step
from provisioning.context import Options


@click.command("verify")
@verify_options
@settings_options
@board_options
@click.option("--agent-user", envvar="NODECTL_AGENT_USER", default="edge-agent",
              show_default=True, help="The broker user nodectl watches as.")
@json_option
@click.pass_obj
def verify(opts: Options, **params: Any) -> None:
    """Version and config over the REPL, then a status and one reading seen on the broker."""
    click.echo(report(opts, run_step(opts, "verify", params), "verify"))
