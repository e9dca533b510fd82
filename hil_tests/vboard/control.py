"""Client for a running virtual board's control socket (JSON, one object per line)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from .errors import ControlError, NotRunningError, VBoardError
from .layout import BoardDir


class VBoardControl:
    """What a test does to the board from outside: power, Wi-Fi, world values, logs."""

    def __init__(self, socket_path: Path | str, timeout: float = 10.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    @classmethod
    def for_dir(cls, board_dir: Path | str, timeout: float = 10.0) -> VBoardControl:
        """The control of the board that `vboard run --dir board_dir` serves."""
        info = BoardDir(Path(board_dir).resolve()).read_run_info()
        return cls(info["control"], timeout)

    def request(self, cmd: str, **args: Any) -> dict[str, Any]:
        args["cmd"] = cmd
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(self.socket_path)
                s.sendall(json.dumps(args).encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise NotRunningError(f"no virtual board at {self.socket_path}") from e
        except OSError as e:
            raise ControlError(f"{cmd}: {e} ({self.socket_path})") from e
        try:
            reply = json.loads(buf)
        except ValueError as e:
            raise ControlError(f"{cmd}: bad reply {buf[:80]!r}") from e
        if not reply.get("ok"):
            raise ControlError(f"{cmd}: {reply.get('error')}")
        return reply

    def state(self) -> dict[str, Any]:
        return self.request("state")["state"]

    def power_cycle(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Power off and on (PWRON_RESET); with wait, until the ROM has booted again."""
        boots = self.request("power_cycle")["boots"]
        if wait:
            self.wait_booted(boots, timeout)

    def wait_booted(self, after_boots: int, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the board has booted more than `after_boots` times in all."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.state()
            if st["boots"] > after_boots and st["phase"] == "running":
                return st
            if time.monotonic() > deadline:
                raise VBoardError(f"board did not boot within {timeout} s (state {st['phase']})")
            time.sleep(0.01)

    def wifi(self, up: bool, mode: str | None = None) -> None:
        """Bring the access point back or take it away. `mode` says what an outage does
        to open connections: "drop" (default: a black hole) or "reset" (both ends reset)."""
        if mode is None:
            self.request("wifi", up=up)
        else:
            self.request("wifi", up=up, mode=mode)

    def cell(self, up: bool) -> None:
        """Take the cellular network away (a call in data mode ends: NO CARRIER) or back."""
        self.request("cell", up=up)

    def set_world(self, values: dict[str, Any]) -> None:
        """Merge world values, e.g. {"adc_mv": {34: 1200}}."""
        self.request("world", values=values)

    def feed_uart(self, uart: int, data: bytes) -> None:
        """Queue bytes for the board to receive on UART `uart`."""
        self.request("uart_feed", id=uart, data=data.hex())

    def console_log(self, offset: int = 0) -> str:
        """Everything the board printed since `vboard run` started (latin-1 text)."""
        return self.request("console_log", offset=offset)["text"]

    def load_scenario(self, scenario: dict[str, Any], speed: float | None = None,
                      board: str | None = None, name: str | None = None) -> None:
        """Play a scenario (scenario.py's format, as a dict) from now on, replacing any
        running one; `board` is the boards.yaml kind its sensor keys map onto (default:
        the file's `board`, else the kind `vboard run --board` was given); speed 0
        holds it at t = 0 (its starting values) until it is loaded again."""
        args: dict[str, Any] = {"scenario": scenario}
        for key, value in (("speed", speed), ("board", board), ("name", name)):
            if value is not None:
                args[key] = value
        self.request("scenario", **args)

    def stop_scenario(self) -> None:
        """Stop the running scenario; the world keeps the values it has now."""
        self.request("scenario_stop")

    def uart_speed(self, uart: int, speed: float | str) -> None:
        """Deliver UART `uart`'s bytes faster than its baud rate: a factor, or "instant"."""
        self.request("uart_speed", id=uart, speed=speed)
