"""Configuration: embedded defaults, then a TOML file, then command-line flags.

Every key is checked here, once, so the rest of the agent can trust its settings; a
bad one raises ConfigError with one line naming the source, the key and the problem:
`config.toml: queue.max_rows: must be a positive integer, got -5`.

Example file (every key optional):

    log_level = "info"
    data_dir = "/var/lib/edge-agent"
    accept_unknown = false        # take readings from devices missing from the registry
    offline_multiple = 3          # offline after this many reporting intervals of silence
    metrics_port = 0              # 0: no metrics endpoint; else http://127.0.0.1:<port>/metrics

    [local]                       # the nodes' broker on this gateway
    url = "mqtt://127.0.0.1:1883"
    client_id = "edge-agent"      # fixed: the broker keeps a persistent session for it
    topic_prefix = "nodes"
    max_message_bytes = 16384

    [upstream]                    # the IOC; no url: keep everything locally
    url = "mqtts://ioc.example.org:8883"
    topic_prefix = "nodes"
    inflight = 1000               # readings sent and not acknowledged yet, at most (1..30000)
    username = "gw-01"
    password_file = "/etc/edge-agent/upstream.pass"   # mode 0600, never logged
    ca_file = "/etc/edge-agent/ca.pem"
    publish_events = true         # offline/online events on <topic_prefix>/<device>/event

    [commit]
    interval = 0.1                # seconds a message may wait for its group commit, at most
    at_pending = 500              # commit at once at this many (at most half the broker's
                                  # max_inflight_messages, 1000 in gateway.conf); a commit
                                  # also starts as soon as the broker has nothing more to send

    [ack]
    min_interval = 0.2            # seconds between two end-to-end acks to one device, at
                                  # least: a device acked more recently gets its ack when the
                                  # interval has passed (0: one ack per device per commit)

    [queue]
    max_rows = 1000000
    max_bytes = 1073741824
    max_age = 2592000             # seconds; older non-alarm readings are dropped
    max_dead_letters = 10000
    max_db_bytes = 0              # cap of the database file (0: the disk is the cap)
    reserve_bytes = 4194304       # a file kept in data_dir, deleted to make room on a full disk
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .brokerurl import BrokerURL, parse_broker_url
from .errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class BrokerConfig:
    """How to reach one broker. The password itself is never held here, only its file."""

    url: BrokerURL
    client_id: str
    topic_prefix: str
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = 30

    def password(self) -> str | None:
        """Read the password when connecting, so a rotated file is picked up on reconnect."""
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"{self.password_file}: cannot read password: {e.strerror}") from e


@dataclass(frozen=True)
class Config:
    local: BrokerConfig
    upstream: BrokerConfig | None
    data_dir: Path
    log_level: str = "info"
    accept_unknown: bool = False
    offline_multiple: float = 3.0
    metrics_port: int = 0
    max_message_bytes: int = 16384
    upstream_inflight: int = 1000
    commit_interval: float = 0.1
    commit_at_pending: int = 500
    ack_min_interval: float = 0.2
    max_rows: int = 1_000_000
    max_bytes: int = 1 << 30
    max_age: float = 30 * 86400.0
    max_dead_letters: int = 10_000
    max_db_bytes: int = 0
    reserve_bytes: int = 4 << 20
    publish_events: bool = True

    @property
    def db_path(self) -> Path:
        return self.data_dir / "agent.db"


def default_data_dir() -> Path:
    """systemd's StateDirectory= first, then the XDG state directory."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return Path(base) / "edge-agent"


# --- value checkers: return the converted value or raise ValueError(problem) ---

def _positive_int(v: Any) -> int:
    if type(v) is not int or v <= 0:
        raise ValueError(f"must be a positive integer, got {v!r}")
    return v


def _window(v: Any) -> int:
    """Messages in flight: each needs a packet id of its own (1..65535), events included."""
    if type(v) is not int or not 1 <= v <= 30_000:
        raise ValueError(f"must be an integer 1..30000, got {v!r}")
    return v


def _non_negative_int(v: Any) -> int:
    if type(v) is not int or v < 0:
        raise ValueError(f"must be an integer >= 0, got {v!r}")
    return v


def _port_or_zero(v: Any) -> int:
    if type(v) is not int or not 0 <= v <= 65535:
        raise ValueError(f"must be a port number 0..65535 (0: off), got {v!r}")
    return v


def _positive_number(v: Any) -> float:
    if type(v) not in (int, float) or not v > 0 or v == float("inf"):
        raise ValueError(f"must be a positive number, got {v!r}")
    return float(v)


def _non_negative_number(v: Any) -> float:
    if type(v) not in (int, float) or not 0 <= v < float("inf"):
        raise ValueError(f"must be a number >= 0, got {v!r}")
    return float(v)


def _boolean(v: Any) -> bool:
    if type(v) is not bool:
        raise ValueError(f"must be true or false, got {v!r}")
    return v


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v or any(c in v for c in "\0\n\r"):
        raise ValueError(f"must be a non-empty one-line string, got {v!r}")
    return v


def _topic_prefix(v: Any) -> str:
    v = _text(v)
    if v.startswith("/") or v.endswith("/") or any(c in v for c in "+#") or "//" in v:
        raise ValueError(f"must be topic levels without wildcards or outer slashes, got {v!r}")
    return v


def _log_level(v: Any) -> str:
    if not isinstance(v, str) or v.lower() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {v!r}")
    return v.lower()


def _path(v: Any) -> Path:
    return Path(os.path.expanduser(_text(v)))


def _readable_file(v: Any) -> Path:
    p = _path(v)
    if not os.access(p, os.R_OK) or not p.is_file():
        raise ValueError(f"no readable file at {str(p)!r}")
    return p


def _url(v: Any) -> BrokerURL:
    return parse_broker_url(v)


def _optional_url(v: Any) -> BrokerURL | None:
    if v in ("", "none"):
        return None
    return parse_broker_url(v)


def _default_upstream_client_id() -> str:
    return "edge-agent-" + (socket.gethostname().split(".")[0] or "gateway")


_BROKER_KEYS: dict[str, Callable[[Any], Any]] = {
    "client_id": _text, "topic_prefix": _topic_prefix, "username": _text,
    "password_file": _readable_file, "ca_file": _readable_file, "cert_file": _readable_file,
    "key_file": _readable_file, "keepalive": _positive_int,
}

# dotted key -> checker; defaults live in the dataclasses and in _defaults().
SPEC: dict[str, Callable[[Any], Any]] = {
    "log_level": _log_level, "data_dir": _path, "accept_unknown": _boolean,
    "offline_multiple": _positive_number, "metrics_port": _port_or_zero,
    "local.url": _url, "local.max_message_bytes": _positive_int,
    **{f"local.{k}": f for k, f in _BROKER_KEYS.items()},
    "upstream.url": _optional_url, "upstream.inflight": _window,
    "upstream.publish_events": _boolean,
    **{f"upstream.{k}": f for k, f in _BROKER_KEYS.items()},
    "commit.interval": _positive_number, "commit.at_pending": _positive_int,
    "ack.min_interval": _non_negative_number,
    "queue.max_rows": _positive_int, "queue.max_bytes": _positive_int,
    "queue.max_age": _positive_number, "queue.max_dead_letters": _positive_int,
    "queue.max_db_bytes": _non_negative_int, "queue.reserve_bytes": _non_negative_int,
}


def _defaults() -> dict[str, Any]:
    return {
        "log_level": "info", "data_dir": default_data_dir(), "accept_unknown": False,
        "offline_multiple": 3.0, "metrics_port": 0,
        "local.url": parse_broker_url("mqtt://127.0.0.1:1883"), "local.client_id": "edge-agent",
        "local.topic_prefix": "nodes", "local.max_message_bytes": 16384, "local.keepalive": 30,
        "upstream.url": None, "upstream.client_id": _default_upstream_client_id(),
        "upstream.topic_prefix": "nodes", "upstream.inflight": 1000, "upstream.keepalive": 30,
        "commit.interval": 0.1, "commit.at_pending": 500, "ack.min_interval": 0.2,
        "queue.max_rows": 1_000_000, "queue.max_bytes": 1 << 30,
        "queue.max_age": 30 * 86400.0, "queue.max_dead_letters": 10_000,
        "queue.max_db_bytes": 0, "queue.reserve_bytes": 4 << 20,
        "upstream.publish_events": True,
    }


SECTIONS = ("local", "upstream", "commit", "ack", "queue")


def _flatten(source: str, table: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    for k, v in table.items():
        if k in SECTIONS:
            if not isinstance(v, dict):
                raise ConfigError(f"{source}: {k}: must be a table [{k}], got {v!r}")
            for sub, value in v.items():
                yield f"{k}.{sub}", value
        else:
            yield k, v


def _check(source: str, key: str, value: Any) -> Any:
    checker = SPEC.get(key)
    if checker is None:
        raise ConfigError(f"{source}: {key}: unknown key")
    try:
        return checker(value)
    except ValueError as e:
        raise ConfigError(f"{source}: {key}: {e}") from e


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e


def load_config(path: Path | None = None,
                overrides: Iterable[tuple[str, str, Any]] = ()) -> Config:
    """Defaults <- file <- overrides. Each override is (flag name, dotted key, value)."""
    values = _defaults()
    sources = {k: "defaults" for k in values}
    if path is not None:
        for key, value in _flatten(str(path), read_toml(path)):
            values[key] = _check(str(path), key, value)
            sources[key] = str(path)
    for flag, key, value in overrides:
        if value is not None:
            values[key] = _check(flag, key, value)
            sources[key] = flag
    return _build(values, sources)


def _broker(values: dict[str, Any], sources: dict[str, str], section: str) -> BrokerConfig:
    url: BrokerURL = values[f"{section}.url"]
    get = values.get
    tls_files = [k for k in ("ca_file", "cert_file", "key_file") if get(f"{section}.{k}")]
    if tls_files and not url.tls:
        key = f"{section}.{tls_files[0]}"
        raise ConfigError(f"{sources[key]}: {key}: TLS files need an mqtts:// url, "
                          f"got {url}")
    if bool(get(f"{section}.cert_file")) != bool(get(f"{section}.key_file")):
        key = f"{section}.{'cert_file' if get(f'{section}.cert_file') else 'key_file'}"
        raise ConfigError(f"{sources[key]}: {key}: cert_file and key_file go together")
    if get(f"{section}.password_file") and not get(f"{section}.username"):
        key = f"{section}.password_file"
        raise ConfigError(f"{sources[key]}: {key}: a password needs a username")
    return BrokerConfig(
        url=url, client_id=values[f"{section}.client_id"],
        topic_prefix=values[f"{section}.topic_prefix"],
        username=get(f"{section}.username"), password_file=get(f"{section}.password_file"),
        ca_file=get(f"{section}.ca_file"), cert_file=get(f"{section}.cert_file"),
        key_file=get(f"{section}.key_file"), keepalive=values[f"{section}.keepalive"])


def _build(values: dict[str, Any], sources: dict[str, str]) -> Config:
    upstream = _broker(values, sources, "upstream") if values["upstream.url"] else None
    return Config(
        local=_broker(values, sources, "local"), upstream=upstream,
        data_dir=values["data_dir"], log_level=values["log_level"],
        accept_unknown=values["accept_unknown"], offline_multiple=values["offline_multiple"],
        metrics_port=values["metrics_port"],
        max_message_bytes=values["local.max_message_bytes"],
        upstream_inflight=values["upstream.inflight"],
        commit_interval=values["commit.interval"], commit_at_pending=values["commit.at_pending"],
        ack_min_interval=values["ack.min_interval"],
        max_rows=values["queue.max_rows"], max_bytes=values["queue.max_bytes"],
        max_age=values["queue.max_age"], max_dead_letters=values["queue.max_dead_letters"],
        max_db_bytes=values["queue.max_db_bytes"], reserve_bytes=values["queue.reserve_bytes"],
        publish_events=values["upstream.publish_events"])
