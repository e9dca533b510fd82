"""`nodectl deploy`: the firmware files onto the board (only those that changed)."""

from __future__ import annotations

from typing import Any

import click

from provisioning.commands import json_option
from provisioning.commands.options import board_options, firmware_option
from provisioning.commands.step_command import report, run_step
from provisioning.context import Options


@click.command("deploy")
@firmware_option
@board_options
@json_option
@click.pass_obj
def deploy(opts: Options, **params: Any) -> None:
    """Compile firmware/lib with mpy-cross, copy what differs, reset, check the version."""
    click.echo(report(opts, run_step(opts, "deploy", params), "deploy"))
