"""`nodectl flash`: the board kind's MicroPython image onto the board."""

from __future__ import annotations

from typing import Any

import click

from provisioning.commands import json_option
from provisioning.commands.options import board_options, image_options
from provisioning.commands.step_command import report, run_step
from provisioning.context import Options


@click.command("flash")
@image_options
@board_options
@json_option
@click.pass_obj
def flash(opts: Options, **params: Any) -> None:
    """Check chip and flash size against --board, then erase, write and verify the image."""
    click.echo(report(opts, run_step(opts, "flash", params), "flash"))
