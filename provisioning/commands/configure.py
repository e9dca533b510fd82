"""`nodectl configure`: the node's /config.json and /secrets.json."""

from __future__ import annotations

import json
from typing import Any

import click

from provisioning.commands import json_option
from provisioning.commands.options import board_options, firmware_option, settings_options
from provisioning.commands.step_command import report, run_step
from provisioning.context import Options
from provisioning.provision import result_json


@click.command("configure")
@settings_options
@firmware_option
@board_options
@click.option("--show-secrets", is_flag=True, help="Print the MQTT password and payload key.")
@json_option
@click.pass_obj
def configure(opts: Options, show_secrets: bool, **params: Any) -> None:
    """Write the config (site settings + board kind) and the device's secrets to the board."""
    result = run_step(opts, "configure", params)
    s = result.details["secrets"]
    if opts.json:
        data = result_json(result)
        if show_secrets:
            data |= {"mqtt_pass": s.mqtt_pass, "key": s.key}
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(report(opts, result, "configure"))
    if show_secrets:
        click.echo(f"mqtt_pass: {s.mqtt_pass}\nkey: {s.key}")
