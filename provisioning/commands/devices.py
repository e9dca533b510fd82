"""`nodectl devices list|show|retire`: the registry, as technicians and operators read it."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from provisioning.boards_view import table
from provisioning.commands import json_option
from provisioning.commands.options import bench_from, broker_options, registry_path
from provisioning.context import Options
from provisioning.errors import RegistryError
from provisioning.job import retire_device
from provisioning.registry import DeviceRow, Registry
from provisioning.secrets_store import SecretsStore, default_dir


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def devices_list(reg: Registry, *, include_retired: bool, as_json: bool) -> str:
    rows = reg.rows(include_retired=include_retired)
    if as_json:
        return json.dumps([r.to_dict() | {"registered": reg.registered(r.device_id)}
                           for r in rows], indent=2)
    head = ("DEVICE", "ROLE", "BOARD", "MAC", "FIRMWARE", "STEPS DONE", "STATE", "UPDATED")
    body = []
    for r in rows:
        state = "retired" if r.retired else ("live" if reg.registered(r.device_id) else "new")
        if r.last_error and not r.retired:
            state += f" (failed {r.last_error.split(':')[0]})"
        body.append((r.device_id, r.role, r.board, r.mac, r.fw_version or "-",
                     ",".join(r.steps) or "-", state, _when(r.updated_at)))
    return table([head, *body]) if body else "no devices"


def _row(reg: Registry, device_id: str) -> DeviceRow:
    row = reg.by_id(device_id)
    if row is None:
        raise RegistryError(f"no device {device_id!r} in the registry {reg.path}")
    return row


def devices_show(reg: Registry, secrets: SecretsStore, device_id: str, *,
                 show_secrets: bool, as_json: bool) -> str:
    row = _row(reg, device_id)
    data: dict[str, Any] = row.to_dict()
    data["agent"] = reg.agent_row(device_id)
    held = secrets.load(device_id)
    data["secrets_file"] = str(secrets.path(device_id)) if held else None
    if show_secrets and held:
        data["mqtt_pass"], data["key"] = held.mqtt_pass, held.key
    if as_json:
        return json.dumps(data, indent=2)
    lines = []
    for k, v in data.items():
        if k.endswith("_at"):
            v = _when(v)
        elif isinstance(v, list):
            v = ",".join(v) or "-"
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items() if not a.endswith("_at"))
        lines.append((f"{k}:", "-" if v is None else str(v)))
    return table(lines)


@click.group("devices")
def devices() -> None:
    """The device registry: list, show, retire."""


@devices.command("list")
@click.option("--all", "include_retired", is_flag=True, help="Include retired devices.")
@json_option
@click.pass_obj
def list_(opts: Options, include_retired: bool) -> None:
    """Every device: board, firmware, steps done, state."""
    with Registry(registry_path(opts)) as reg:
        click.echo(devices_list(reg, include_retired=include_retired, as_json=opts.json))


@devices.command("show")
@click.argument("device_id")
@click.option("--show-secrets", is_flag=True, help="Also print the MQTT password and key.")
@click.option("--secrets", "secrets_dir", envvar="NODECTL_SECRETS",
              type=click.Path(path_type=__import__("pathlib").Path))
@json_option
@click.pass_obj
def show(opts: Options, device_id: str, show_secrets: bool, secrets_dir: Any) -> None:
    """Everything the registry knows about DEVICE_ID."""
    path = registry_path(opts)
    with Registry(path) as reg:
        store = SecretsStore(secrets_dir or default_dir(path))
        click.echo(devices_show(reg, store, device_id, show_secrets=show_secrets,
                                as_json=opts.json))


@devices.command("retire")
@click.argument("device_id")
@broker_options
@click.pass_obj
def retire(opts: Options, device_id: str, **params: Any) -> None:
    """Take DEVICE_ID out of service: the agent and the broker forget it."""
    bench = bench_from(opts, params)
    with Registry(bench.registry_path) as reg:
        if _row(reg, device_id).retired:
            raise RegistryError(f"{device_id} is already retired")
        how = retire_device(bench, reg, device_id)
    click.echo(f"{device_id}: retired; broker: {how}")
