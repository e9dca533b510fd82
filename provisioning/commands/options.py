"""Option groups the step commands share, and the Bench they are turned into.

Each group is a decorator adding click options; `bench_from(opts, params)`
reads whichever of them a command has. Every option has an environment
default (NODECTL_...), so a bench laptop can be set up once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from provisioning.bench import Bench
from provisioning.context import Options
from provisioning.errors import ProvisioningError
from provisioning.images import ImageCache
from provisioning.mosquitto_auth import DEFAULT_AGENT_USER, BrokerFiles
from provisioning.node_config import NodeSettings
from provisioning.registry import STEPS
from provisioning.secrets_store import default_dir
from provisioning.verify import Monitor

F = TypeVar("F", bound=Callable[..., Any])
PathType = click.Path(path_type=Path)
FileType = click.Path(path_type=Path, dir_okay=False)


def _apply(f: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        f = option(f)
    return f


def board_options(f: F) -> F:
    return _apply(f, [
        click.option("--id", "device_id", metavar="DEVICE",
                     help="Device id for a new board [default: role prefix + MAC, e.g. "
                          "wl-a1b2c3]."),
        click.option("--force", is_flag=True,
                     help="Redo every step; give a registered board a new id or kind."),
    ])


def image_options(f: F) -> F:
    return _apply(f, [
        click.option("--images", "images_dir", envvar="NODECTL_IMAGES", type=PathType,
                     help="Image cache [env NODECTL_IMAGES; default ~/.cache/nodectl/images]."),
        click.option("--allow-unverified-image", is_flag=True,
                     help="Flash an image boards.yaml has no sha256 for (placeholder), "
                          "checked against the hash `nodectl images add` recorded."),
    ])


def firmware_option(f: F) -> F:
    return click.option("--firmware", "firmware_dir", envvar="NODECTL_FIRMWARE",
                        type=click.Path(path_type=Path, file_okay=False),
                        help="Firmware tree (boot.py, main.py, lib/) [env NODECTL_FIRMWARE; "
                             "default: the repository's firmware/].")(f)


def settings_options(f: F) -> F:
    return _apply(f, [
        click.option("--site", envvar="NODECTL_SITE", type=FileType,
                     help="Site settings: a partial node config, YAML or JSON "
                          "[env NODECTL_SITE]."),
        click.option("--link", type=click.Choice(["wifi", "cell"]),
                     help="Override the board kind's link (virtual boards: wifi)."),
        click.option("--wifi-ssid", help="Wi-Fi network (link.ssid)."),
        click.option("--wifi-pass", envvar="NODECTL_WIFI_PASS",
                     help="Wi-Fi passphrase [env NODECTL_WIFI_PASS]; never printed."),
        click.option("--apn", help="Cellular APN (link.apn)."),
        click.option("--broker-host", help="Broker address the node connects to."),
        click.option("--broker-port", type=int, help="Broker port the node connects to."),
        click.option("--tls/--no-tls", default=None, help="Node connects with TLS."),
        click.option("--zones", type=FileType,
                     help="Boat zones: GeoJSON FeatureCollection of Polygons (name, hours)."),
        click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
                     help="Any config field, e.g. water_level.alert_m=1.9 (repeatable)."),
        click.option("--secrets", "secrets_dir", envvar="NODECTL_SECRETS", type=PathType,
                     help="Host copies of device secrets, mode 0600 [env NODECTL_SECRETS; "
                          "default: nodectl-secrets/ next to the registry]."),
    ])


def broker_options(f: F) -> F:
    return _apply(f, [
        click.option("--broker-passwd", envvar="NODECTL_BROKER_PASSWD", type=FileType,
                     help="mosquitto password_file [env NODECTL_BROKER_PASSWD]."),
        click.option("--broker-acl", envvar="NODECTL_BROKER_ACL", type=FileType,
                     help="mosquitto acl_file [env NODECTL_BROKER_ACL]."),
        click.option("--broker-pid", envvar="NODECTL_BROKER_PID", type=int,
                     help="Broker pid to SIGHUP after a change [env NODECTL_BROKER_PID]."),
        click.option("--broker-pidfile", envvar="NODECTL_BROKER_PIDFILE", type=FileType,
                     help="Broker pid file [env NODECTL_BROKER_PIDFILE; else systemctl "
                          "reload mosquitto]."),
        click.option("--agent-user", envvar="NODECTL_AGENT_USER", default=DEFAULT_AGENT_USER,
                     show_default=True, help="The edge agent's broker user (reads all nodes)."),
        click.option("--require-mac", is_flag=True,
                     help="Give the agent the payload key: it then accepts only MACed "
                          "envelopes from the node."),
    ])


def verify_options(f: F) -> F:
    return _apply(f, [
        click.option("--agent-pass", envvar="NODECTL_AGENT_PASS",
                     help="The agent user's broker password, to watch the node's publishes "
                          "[env NODECTL_AGENT_PASS]."),
        click.option("--monitor", envvar="NODECTL_MONITOR", metavar="HOST[:PORT]",
                     help="Broker address as nodectl reaches it [default: the node's]."),
        click.option("--verify-timeout", type=float, default=60.0, show_default=True,
                     help="Seconds to wait for the node's status and first reading."),
    ])


def steps_option(f: F) -> F:
    return _apply(f, [
        click.option("--skip", multiple=True, type=click.Choice(STEPS),
                     help="Leave this step out (repeatable)."),
        click.option("--until", type=click.Choice(STEPS), help="Stop after this step."),
    ])


def chosen_steps(params: dict[str, Any]) -> list[str]:
    steps = list(STEPS)
    if params.get("until"):
        steps = steps[: steps.index(params["until"]) + 1]
    return [s for s in steps if s not in (params.get("skip") or ())]


def registry_path(opts: Options) -> Path:
    if opts.registry is None:
        raise ProvisioningError(
            "no registry: pass --registry PATH or set NODECTL_REGISTRY (the edge agent's "
            "database, e.g. /var/lib/edge-agent/agent.db)")
    return opts.registry


def bench_from(opts: Options, params: dict[str, Any]) -> Bench:
    registry = registry_path(opts)
    settings = NodeSettings.load(
        params.get("site"), link=params.get("link"), wifi_ssid=params.get("wifi_ssid"),
        wifi_pass=params.get("wifi_pass"), apn=params.get("apn"),
        broker_host=params.get("broker_host"), broker_port=params.get("broker_port"),
        tls=params.get("tls"), zones=params.get("zones"), sets=tuple(params.get("sets") or ()),
    )
    broker = None
    if params.get("broker_passwd") or params.get("broker_acl"):
        if not (params.get("broker_passwd") and params.get("broker_acl")):
            raise ProvisioningError("give both --broker-passwd and --broker-acl")
        broker = BrokerFiles(
            passwd=params["broker_passwd"], acl=params["broker_acl"],
            pid=params.get("broker_pid"), pidfile=params.get("broker_pidfile"),
            agent_user=params.get("agent_user") or DEFAULT_AGENT_USER,
            topic_prefix=settings.topic_prefix,
        )
    monitor = None
    if params.get("agent_pass") is not None:
        host, port = settings.broker_address()
        mon = params.get("monitor")
        if mon:
            h, sep, p = str(mon).rpartition(":")
            host, port = (h, int(p)) if sep and p.isdigit() else (str(mon), port)
        if not host:
            raise ProvisioningError("verify needs the broker's address: --monitor HOST[:PORT] "
                                    "or broker.host in the settings")
        monitor = Monitor(host=host, port=port,
                          user=params.get("agent_user") or DEFAULT_AGENT_USER,
                          password=params["agent_pass"])
    return Bench(
        boards=opts.boards(), registry_path=registry,
        secrets_dir=params.get("secrets_dir") or default_dir(registry),
        images=ImageCache(params.get("images_dir")),
        allow_unverified_image=bool(params.get("allow_unverified_image")),
        firmware_dir=params.get("firmware_dir"), settings=settings, broker=broker,
        monitor=monitor, require_mac=bool(params.get("require_mac")),
        force=bool(params.get("force")),
        verify_timeout=float(params.get("verify_timeout") or 60.0),
    )
