"""Broker URLs: `mqtt://host:port` (plain TCP) and `mqtts://host:port` (TLS)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerURL:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker_url(text: str) -> BrokerURL:
    """Parse a broker URL; ValueError says in a few words what is wrong with it.

    Credentials are refused in the URL on purpose: they would end up in logs and in
    `ps` output; they belong in `username` / `password_file`.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("must be a URL like mqtt://host:1883 or mqtts://host:8883")
    parts = urlsplit(text)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"scheme must be mqtt:// or mqtts://, got {text!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials do not belong in the URL: use username and password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"must be scheme://host:port with no path or query, got {text!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"port must be a number 1..65535, got {text!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {text!r}")
    if port is None:
        port = DEFAULT_PORTS[parts.scheme]
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {port}")
    return BrokerURL(parts.hostname, port, parts.scheme == "mqtts")
