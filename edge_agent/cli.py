"""`edge-agent` command line: run the agent, look at its queue, devices and dead letters,
replay dead letters.

main() is the single error boundary: an EdgeAgentError becomes one line
`edge-agent: <message>` on stderr and exit code 2 (configuration) or 1 (anything else).
"""

from __future__ import annotations

import functools
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from .agent import Agent
from .config import Config, load_config
from .downlink import DownlinkError, send_acks
from .errors import EdgeAgentError, Rejected, StoreError
from .fleet import judge
from .ingress import check_message
from .service import service_hooks
from .store import DeadLetter, Store
from .validate import Reading, decode_strict


def _config_options(f: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                  envvar="EDGE_AGENT_CONFIG", help="TOML configuration file.")
    @click.option("--data-dir", type=str, help="Directory of the SQLite store.")
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return f(*args, **kwargs)
    return wrapper


def _load(config_file: Path | None, data_dir: str | None, **flags: Any) -> Config:
    overrides = [("--data-dir", "data_dir", data_dir)]
    names = {"local_broker": ("--local-broker", "local.url"),
             "upstream": ("--upstream", "upstream.url"), "log_level": ("--log-level", "log_level")}
    overrides += [(*names[k], v) for k, v in flags.items()]
    return load_config(config_file, overrides)


def _open_existing(cfg: Config) -> Store:
    if not cfg.db_path.exists():
        raise StoreError(f"{cfg.db_path}: no store yet (has the agent run with this data dir?)")
    return Store(cfg.db_path)


@click.group()
@click.version_option(package_name="delta-nodes", prog_name="edge-agent")
def cli() -> None:
    """Gateway agent: local MQTT broker -> SQLite (fsync) -> upstream, end-to-end acked."""


@cli.command()
@_config_options
@click.option("--local-broker", help="The nodes' broker, mqtt://host:port.")
@click.option("--upstream", help="Upstream broker URL, or 'none'.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def run(config_file: Path | None, data_dir: str | None, local_broker: str | None,
        upstream: str | None, log_level: str | None) -> None:
    """Run the agent until SIGTERM or SIGINT."""
    cfg = _load(config_file, data_dir, local_broker=local_broker, upstream=upstream,
                log_level=log_level)
    logging.basicConfig(stream=sys.stdout, level=cfg.log_level.upper(),
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("edge_agent").info("config: %s", _describe(cfg))
    agent = Agent(cfg, service_hooks(cfg))

    def on_signal(signum: int, frame: Any) -> None:
        logging.getLogger("edge_agent").info("%s: stopping", signal.Signals(signum).name)
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run()


def _describe(cfg: Config) -> str:
    """The settings worth a log line; no secrets (only the password's file is named)."""
    up = cfg.upstream
    return (f"local={cfg.local.url} prefix={cfg.local.topic_prefix} "
            f"upstream={up.url if up else 'none'}"
            f"{f' as {up.username}' if up and up.username else ''} "
            f"data_dir={cfg.data_dir} commit={cfg.commit_interval}s/{cfg.commit_at_pending} "
            f"queue={cfg.max_rows} rows/{cfg.max_bytes} B/{cfg.max_age:.0f} s "
            f"accept_unknown={cfg.accept_unknown}")


@cli.command()
@_config_options
@click.option("--limit", default=100, show_default=True, type=click.IntRange(0),
              help="Devices listed (offline ones first).")
def status(config_file: Path | None, data_dir: str | None, limit: int) -> None:
    """Agent and links, queue, drops, dead letters, devices online/offline, events."""
    cfg = _load(config_file, data_dir)
    store = _open_existing(cfg)
    try:
        _print_status(cfg, store, time.time(), limit)
    finally:
        store.close()


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _show(label: str, value: object) -> None:
    click.echo(f"{label + ':':<23}{value}")


def _print_status(cfg: Config, store: Store, now: float, limit: int) -> None:
    state = store.agent_state()
    beat = float(state["heartbeat"][0]) if "heartbeat" in state else None
    said = state.get("state", ("", 0))[0]
    running = beat is not None and said == "running" and now - beat < 30
    _show("store", cfg.db_path)
    if beat is None:
        _show("agent", "has not run with this store yet")
    elif running:
        _show("agent", f"running, pid {state['pid'][0]}, reported {_ago(now - beat)} ago")
    elif said == "stopped":
        _show("agent", f"stopped {_ago(now - beat)} ago")
    else:
        _show("agent", f"not reporting for {_ago(now - beat)} (pid {state['pid'][0]} killed "
                       "or hung?)")
    heard_from = None
    for name, label in (("upstream", "upstream"), ("local", "local broker")):
        value = state.get(name, ("unknown", 0))[0]
        if value in ("none", "unknown"):
            _show(label, "none configured" if value == "none" else "-")
            continue
        link, _, since = value.partition(" ")
        _show(label, f"{link} for {_ago(now - float(since))}"
              + ("" if running else " (when the agent last reported)"))
        if name == "local" and running and link == "connected":
            heard_from = float(since)
    rows, size = store.queue_depth()
    oldest = store.oldest_received_at()
    counters = store.counters()
    _show("queue", f"{rows} readings, {size} bytes, {store.alarm_rows()} alarms")
    _show("oldest", f"{_ago(now - oldest)} ago" if oldest else "-")
    for name in ("stored", "forwarded", "duplicates", "dropped_overflow", "dropped_age",
                 "dropped_disk", "dead_letters", "dead_letters_dropped",
                 "dead_letters_replayed"):
        _show(name, counters.get(name, 0))
    _show("dlq now", store.dead_letter_count())
    _show("statuses", f"{len(store.pending_statuses())} waiting for upstream,"
                      f" {counters.get('statuses_forwarded', 0)} forwarded,"
                      f" {counters.get('statuses_replaced', 0)} replaced by a newer one unsent")
    devices = store.device_states()
    j = judge(store.fleet(), now, cfg.offline_multiple, heard_from)
    unknown = len(devices) - j.online - j.offline
    _show("devices", f"{len(devices)}: {j.online} online, {j.offline} offline, {unknown} never "
                     "heard from")
    order = {"offline": 0, "online": 1}
    devices.sort(key=lambda d: (order.get(j.states.get(d["device"], ""), 2), d["device"]))
    for d in devices[:limit]:
        seen = d["last_seen"]
        every = d["interval"] or d["seen_interval"]
        click.echo(f"  {d['device']:<32} {d['role'] or 'unregistered':<12} "
                   f"{j.states.get(d['device'], 'unknown'):<8} last seen "
                   f"{_ago(now - seen) + ' ago' if seen else 'never':<10}"
                   + (f" every {every:.0f} s" if every else ""))
    if len(devices) > limit:
        click.echo(f"  ... {len(devices) - limit} more (--limit)")
    events = store.events(limit=5)
    if events:
        click.echo("events:")
        for e in events:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
            click.echo(f"  {when}  {e['device']:<20} {e['kind']:<8} {e['detail']}")


@cli.group()
def dlq() -> None:
    """The dead-letter queue: messages that failed validation, kept with the reason."""


@dlq.command("list")
@_config_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
def dlq_list(config_file: Path | None, data_dir: str | None, limit: int) -> None:
    """The newest dead letters."""
    store = _open_existing(_load(config_file, data_dir))
    try:
        for d in store.dead_letters(limit):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["received_at"]))
            click.echo(f"{d['id']:>6}  {when}  {d['topic']}  {d['size']} B  {d['reason']}")
    finally:
        store.close()


@dlq.command("show")
@_config_options
@click.argument("dl_id", metavar="ID", type=int)
def dlq_show(config_file: Path | None, data_dir: str | None, dl_id: int) -> None:
    """One dead letter with its payload (hex and, when it decodes, CBOR diagnostic)."""
    store = _open_existing(_load(config_file, data_dir))
    try:
        d = store.dead_letter(dl_id)
    finally:
        store.close()
    if d is None:
        raise EdgeAgentError(f"no dead letter {dl_id}")
    for key in ("id", "topic", "reason", "device", "boot", "seq"):
        click.echo(f"{key + ':':<9}{d[key] if d[key] is not None else '-'}")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["received_at"]))
    click.echo(f"{'received:':<9}{when}")
    payload: bytes = d["payload"]
    click.echo(f"{'size:':<9}{len(payload)} B")
    click.echo(f"{'hex:':<9}{payload[:4096].hex()}{'...' if len(payload) > 4096 else ''}")
    try:
        click.echo(f"{'cbor:':<9}{decode_strict(payload, max_depth=8)!r}"[:8192])
    except Rejected as e:
        click.echo(f"{'cbor:':<9}does not decode ({e.reason})")


@dlq.command("replay")
@_config_options
@click.argument("ids", metavar="[ID]...", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
@click.option("--reason", help="Only dead letters whose reason contains this text.")
def dlq_replay(config_file: Path | None, data_dir: str | None, ids: tuple[int, ...],
               everything: bool, reason: str | None) -> None:
    """Validate dead letters again (e.g. after registering their device) and ingest those
    that pass; the others stay. Then send the nodes the end-to-end acks of what was ingested
    (on the local broker, with the agent's settings). Works while the agent runs."""
    cfg = _load(config_file, data_dir)
    if not ids and not everything and reason is None:
        raise EdgeAgentError("dlq replay: name dead letter IDs, or --all, or --reason TEXT")
    store = _open_existing(cfg)
    try:
        if not ids:
            ids = tuple(store.dead_letter_ids(None if reason is None else f"%{reason}%"))
        devices = store.devices()
        counts: dict[str, int] = {}
        touched: set[tuple[str, int]] = set()
        for dl_id in ids:
            outcome = _replay_one(cfg, store, dl_id, devices, touched)
            counts[outcome] = counts.get(outcome, 0) + 1
        acks: dict[str, dict[int, int]] = {}
        for dev, boot in touched:  # what the replays closed is committed: ack it now
            hw = store.ack_levels(dev).get(boot, 0)
            if hw >= 1:
                acks.setdefault(dev, {})[boot] = hw
    finally:
        store.close()
    click.echo(f"replayed {len(ids)}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
               if ids else "no dead letters matched")
    try:
        send_acks(cfg.local, acks)
    except DownlinkError as e:
        click.echo(f"edge-agent: warning: end-to-end acks of {_devices(len(acks))} not sent "
                   f"({e}); a node gets its ack when it sends the reading again", err=True)
        return
    if acks:
        click.echo(f"sent end-to-end acks to {_devices(len(acks))}")


def _devices(n: int) -> str:
    return f"{n} device{'s' if n != 1 else ''}"


def _replay_one(cfg: Config, store: Store, dl_id: int, devices: dict[str, Any],
                touched: set[tuple[str, int]]) -> str:
    d = store.dead_letter(dl_id)
    if d is None:
        raise EdgeAgentError(f"no dead letter {dl_id}")
    item = check_message(cfg, d["topic"], d["payload"], devices.get)
    if isinstance(item, DeadLetter):
        click.echo(f"{dl_id:>6}  still rejected: {item.reason}")
        return "still rejected"
    try:
        outcome = store.replay(dl_id, item)
    except sqlite3.Error as e:
        raise StoreError(f"{cfg.db_path}: replaying dead letter {dl_id}: {e}") from e
    if isinstance(item, Reading):
        touched.add((item.device, item.boot))
    click.echo(f"{dl_id:>6}  {outcome}")
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="edge-agent",
                 standalone_mode=False)
    except EdgeAgentError as e:
        click.echo(f"edge-agent: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("edge-agent: aborted", err=True)
        return 1
    except click.ClickException as e:
        e.show()
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
