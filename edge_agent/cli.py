"""`edge-agent` command line: run the agent, look at its queue and dead letters.

main() is the single error boundary: an EdgeAgentError becomes one line
`edge-agent: <message>` on stderr and exit code 2 (configuration) or 1 (anything else).
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from .agent import Agent
from .config import Config, load_config
from .errors import EdgeAgentError, Rejected, StoreError
from .store import Store
from .validate import decode_strict


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
    agent = Agent(cfg)

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
def status(config_file: Path | None, data_dir: str | None) -> None:
    """Queue depth, oldest reading, devices, drops and dead letters (read from the store)."""
    cfg = _load(config_file, data_dir)
    store = _open_existing(cfg)
    try:
        now = time.time()
        rows, size = store.queue_depth()
        oldest = store.oldest_received_at()
        counters = store.counters()
        click.echo(f"store:        {cfg.db_path}")
        click.echo(f"queue:        {rows} readings, {size} bytes, {store.alarm_rows()} alarms")
        click.echo("oldest:       " + (f"{now - oldest:.0f} s ago" if oldest else "-"))
        for name in ("stored", "forwarded", "duplicates", "dropped_overflow", "dropped_age",
                     "dead_letters", "dead_letters_dropped"):
            click.echo(f"{name + ':':<14}{counters.get(name, 0)}")
        devices = store.device_states()
        click.echo(f"devices:      {len(devices)}")
        for d in devices:
            seen = d["last_seen"]
            ago = f"{now - seen:.0f} s ago" if seen else "never"
            state = _online(d, now, cfg.offline_multiple)
            click.echo(f"  {d['device']:<32} {d['role'] or 'unregistered':<12} {state:<8} "
                       f"last seen {ago}")
    finally:
        store.close()


def _online(d: dict[str, Any], now: float, multiple: float) -> str:
    if d["online"] == 0:
        return "offline"
    if d["last_seen"] and d["interval"]:
        return "online" if now - d["last_seen"] <= multiple * d["interval"] else "silent"
    return "online" if d["online"] else "unknown"


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
