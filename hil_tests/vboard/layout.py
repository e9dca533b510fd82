"""Where a virtual board keeps its own files: DIR/.vboard/ next to the flash.

The ROM hides `.vboard` from the firmware's directory listings, so the board
directory stays the flash image plus this one folder.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import NotRunningError

STATE_DIR = ".vboard"
# sockaddr_un holds 108 bytes: longer socket paths go to the temp dir.
_MAX_SOCK_PATH = 100
# Espressif's OUI, so MACs look like an ESP32's
_OUI = bytes((0x24, 0x0A, 0xC4))


@dataclass(frozen=True)
class BoardDir:
    """The flash root DIR and its .vboard state folder."""

    root: Path

    @classmethod
    def create(cls, root: Path | str) -> BoardDir:
        root = Path(root).resolve()
        (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @property
    def console_log(self) -> Path:
        return self.state / "console.log"

    @property
    def run_file(self) -> Path:
        return self.state / "run.json"

    @property
    def lock_file(self) -> Path:
        return self.state / "lock"

    def control_socket_path(self) -> Path:
        path = self.state / "control.sock"
        if len(str(path)) <= _MAX_SOCK_PATH:
            return path
        return Path(tempfile.mkdtemp(prefix="vboard-")) / "control.sock"

    def unique_id(self) -> bytes:
        """The board's 6-byte base MAC (machine.unique_id()), made once and kept."""
        path = self.state / "uid"
        try:
            uid = bytes.fromhex(path.read_text().strip())
            if len(uid) == 6:
                return uid
        except (OSError, ValueError):
            pass
        uid = _OUI + secrets.token_bytes(3)
        path.write_text(uid.hex() + "\n")
        return uid

    def write_run_info(self, info: dict) -> None:
        tmp = self.run_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.run_file)

    def read_run_info(self) -> dict:
        try:
            return json.loads(self.run_file.read_text())
        except (OSError, ValueError) as e:
            raise NotRunningError(f"no virtual board is running in {self.root}") from e
