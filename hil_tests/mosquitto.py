"""Run a real mosquitto broker on a free loopback port, for tests, benchmarks and the demo.

Each broker gets a directory of its own (config, persistence, log), listens on
127.0.0.1 only, and runs as the current user (`user` is set so a root run does
not drop privileges to `mosquitto`, which could not write the directory).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


class BrokerError(RuntimeError):
    """mosquitto is missing, or did not start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """One mosquitto process. `extra` lines are appended to its config."""

    def __init__(self, workdir: Path, port: int | None = None, extra: str = "",
                 persistence: bool = True, allow_anonymous: bool = True) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.extra = extra
        self.persistence = persistence
        self.allow_anonymous = allow_anonymous
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"user {user}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.dir}/",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            # Explicit limits: the defaults (1000 queued) drop acknowledged QoS1 messages.
            "max_queued_messages 0",
            "max_inflight_messages 20",
        ]
        self.conf.write_text("\n".join(lines) + "\n" + self.extra + "\n")

    def start(self, timeout: float = 10.0) -> Mosquitto:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise BrokerError("mosquitto not found: apt-get install mosquitto")
        self.write_config()
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}: {err.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port} in {timeout}s")

    def reload(self) -> None:
        """SIGHUP: mosquitto rereads its password and ACL files."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        """kill -9: no chance to save persistence."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
