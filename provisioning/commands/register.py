"""`nodectl register`: the device into the registry and the broker's users and ACL."""

from __future__ import annotations

from typing import Any

import click

from provisioning.commands import json_option
from provisioning.commands.options import board_options, broker_options, settings_options
from provisioning.commands.step_command import report, run_step
from provisioning.context import Options


@click.command("register")
@broker_options
@settings_options
@board_options
@json_option
@click.pass_obj
def register(opts: Options, **params: Any) -> None:
    """Register the board on --port (or the device --id): agent registry, broker user, ACL."""
    click.echo(report(opts, run_step(opts, "register", params, needs_board=False), "register"))
