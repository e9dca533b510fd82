"""VirtualBoard: a `vboard run` subprocess for tests, as a context manager."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from .control import VBoardControl
from .errors import VBoardError


class VirtualBoard:
    """One virtual ESP32; `.port` is its /dev/pts path, `.control` its control client.

        with VirtualBoard(tmp_path / "board") as vb:
            subprocess.run(["mpremote", "connect", vb.port, "exec", "print(1)"], timeout=10)
    """

    def __init__(self, board_dir: Path | str, kind: str = "esp32",
                 scenario: Path | str | None = None, heap: str | None = None,
                 start_timeout: float = 15.0) -> None:
        self.dir = Path(board_dir)
        self.kind = kind
        self.scenario = scenario
        self.heap = heap
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = ""
        self.control: VBoardControl | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "hil_tests.vboard.cli", "run", "--dir", str(self.dir),
               "--board", self.kind]
        if self.scenario:
            cmd += ["--scenario", str(self.scenario)]
        if self.heap:
            cmd += ["--heap", self.heap]
        return cmd

    def start(self) -> VirtualBoard:
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        lines: dict[str, str] = {}
        deadline = time.monotonic() + self.start_timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while "port" not in lines:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.stop()
                    raise VBoardError(f"vboard run did not report its port in "
                                      f"{self.start_timeout} s")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace") \
                        if self.proc.stderr else ""
                    self.stop()
                    raise VBoardError(f"vboard run exited: {err.strip()}")
                buf += chunk
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    key, _, value = line.decode().partition(": ")
                    lines[key] = value.strip()
        self.port = lines["port"]
        self.control = VBoardControl(lines["control"])
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """Unplug: SIGTERM, then SIGKILL if it does not go; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        code = self.proc.returncode
        self.proc = None
        return code

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
