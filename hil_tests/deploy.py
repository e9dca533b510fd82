"""Deploying the firmware and a node's config onto a board over its REPL.

What goes on the flash, as provisioning will put it: firmware/boot.py and
main.py at the root, firmware/lib/*.py in /lib, /config.json, /secrets.json
and the HIL timing knobs in /tune.json. Files already on the board with the
same SHA-256 are not sent again (as `mpremote fs cp` does), which matters
at 115200 baud; files in /lib the firmware no longer has are removed, and
the node's /data (boot counter, outbox) is wiped so each test starts clean.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .board import Board
from .node_config import FIRMWARE


@dataclass(frozen=True)
class Deployment:
    """What a deployed board runs: its device id, config and the files sent."""

    device: str
    config: dict[str, Any]
    sent: tuple[str, ...]
    skipped: tuple[str, ...]

    @property
    def prefix(self) -> str:
        return str(self.config.get("topic_prefix", "nodes"))


def runtime_present() -> bool:
    """The firmware runtime has landed when firmware/main.py exists."""
    return (FIRMWARE / "main.py").is_file()


def firmware_files() -> list[tuple[Path, str]]:
    """(local file, path on the board) for everything the firmware needs."""
    files = [(FIRMWARE / n, f"/{n}") for n in ("boot.py", "main.py") if (FIRMWARE / n).is_file()]
    files += [(p, f"/lib/{p.name}") for p in sorted((FIRMWARE / "lib").glob("*.py"))]
    return files


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode()


def _put_if_changed(board: Board, data: bytes, remote: str, sizes: dict[str, int]) -> bool:
    """Send a file unless the board has it already (same size, then same SHA-256)."""
    if sizes.get(remote) == len(data) and \
            board.sha256(remote) == hashlib.sha256(data).hexdigest():
        return False
    board.put(data, remote)
    return True


def _sizes(board: Board, folder: str) -> dict[str, int]:
    base = folder.rstrip("/")
    return {f"{base}/{e.name}": e.size for e in board.ls(folder) if not e.is_dir}


def wipe_data(board: Board, path: str = "/data") -> None:
    """Remove the node's state directory (boot counter, outbox), recursively."""
    board.exec(
        "import os\n"
        "def rm(p):\n"
        "    try:\n        entries = list(os.ilistdir(p))\n"
        "    except OSError:\n        return\n"
        "    for e in entries:\n"
        "        q = p + '/' + e[0]\n"
        "        if e[1] & 0x4000:\n            rm(q)\n"
        "        else:\n            os.remove(q)\n"
        "    os.rmdir(p)\n"
        f"rm({path!r})\n")


def deploy(board: Board, config: dict[str, Any], secrets: dict[str, Any],
           tune: dict[str, Any] | None = None) -> Deployment:
    """Put firmware, config and secrets on the board (no reset: the caller decides)."""
    sent: list[str] = []
    skipped: list[str] = []
    board.makedirs("/lib")
    wanted = firmware_files()
    names = {remote.rsplit("/", 1)[1] for _, remote in wanted if remote.startswith("/lib/")}
    sizes = _sizes(board, "/") | _sizes(board, "/lib")
    for path in list(sizes):
        name = path.rsplit("/", 1)[1]
        if path.startswith("/lib/") and name.endswith((".py", ".mpy")) and name not in names:
            board.remove(path)
    blobs = [(local.read_bytes(), remote) for local, remote in wanted]
    blobs += [(_json(config), "/config.json"), (_json(secrets), "/secrets.json")]
    if tune:
        blobs.append((_json(tune), "/tune.json"))
    elif "/tune.json" in sizes:
        board.remove("/tune.json")
    for data, remote in blobs:
        (sent if _put_if_changed(board, data, remote, sizes) else skipped).append(remote)
    wipe_data(board)
    return Deployment(str(config["device"]), config, tuple(sent), tuple(skipped))
