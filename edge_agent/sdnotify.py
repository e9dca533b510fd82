"""systemd's notify protocol (sd_notify(3)) without python-systemd: one datagram per call.

systemd (Type=notify) passes a unix datagram socket in $NOTIFY_SOCKET: a path, or an
abstract socket name written with a leading '@' (Linux: the address starts with a NUL
byte instead). Each datagram is newline-separated VAR=value assignments: READY=1,
STOPPING=1, WATCHDOG=1, STATUS=<one line for `systemctl status`>. $WATCHDOG_USEC is the
unit's WatchdogSec in microseconds; $WATCHDOG_PID, when set, names the process meant to
send the pings (a child that inherited the environment must not).

Sending is best effort: when the socket is gone (systemd restarted) the agent keeps
running; the error is logged once.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def notify_address(env: Mapping[str, str]) -> str | bytes | None:
    """The socket address from $NOTIFY_SOCKET, or None when not run by systemd."""
    path = env.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    if path.startswith("@"):
        return b"\0" + path[1:].encode()  # abstract namespace
    if not path.startswith("/"):
        return None  # sd_notify(3) accepts only absolute paths and abstract names
    return path


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """WatchdogSec in seconds, or None when there is no watchdog for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    wpid = env.get("WATCHDOG_PID", "")
    if wpid and wpid.isdigit() and int(wpid) != (pid if pid is not None else os.getpid()):
        return None
    return int(usec) / 1e6


class Notifier:
    """Sends sd_notify messages; every method is a no-op outside systemd."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = notify_address(env)
        self.watchdog = watchdog_interval(env)
        self.sock: socket.socket | None = None
        self._failed = False
        if self.address is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self.sock is not None

    def send(self, **fields: str | int) -> bool:
        """send(READY=1, STATUS="...") -> one datagram; False when it could not go."""
        if self.sock is None or self.address is None:
            return False
        lines = []
        for k, v in fields.items():
            text = str(v).replace("\n", " ")
            lines.append(f"{k}={text}")
        try:
            self.sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as e:
            if not self._failed:
                log.warning("sd_notify to %r failed: %s", self.address, e.strerror or e)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def ping(self) -> bool:
        return self.send(WATCHDOG=1)

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
