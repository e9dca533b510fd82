"""Putting the firmware on a board: only what changed, then prove it boots.

The board hashes its own files (one exec for all of them); a file is sent
only when its sha256 differs, written to `<path>.new` and renamed, so a cut
leaves the old file or the new one. `.py`/`.mpy` files in /lib that the build
no longer has are removed (a stale `x.py` would shadow the new `x.mpy`). Then
a soft reset (boot.py runs, main.py does not) and `import version` must give
the version just deployed: that proves the .mpy files load on this board.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from provisioning.errors import BoardError, FirmwareError
from provisioning.firmware_build import LIB_DIR, Build
from provisioning.link import BoardLink

# A point inside the step where a test may stop the process (see checkpoint.py).
Checkpoint = Callable[[str], None]


@dataclass(frozen=True)
class BoardInfo:
    micropython: str  # '1.29.0'
    mpy: int  # sys.implementation._mpy
    machine: str  # os.uname().machine
    mac: str

    @property
    def mpy_version(self) -> int:
        return self.mpy & 0xFF

    @property
    def chip(self) -> str:
        """`ESP32 module with ESP32` -> esp32; `... with ESP32S3` -> esp32s3."""
        return self.machine.rsplit(" with ", 1)[-1].strip().lower().replace("-", "")


def board_info(link: BoardLink) -> BoardInfo:
    v, mpy, machine, uid = link.eval(
        "(tuple(__import__('sys').implementation.version)[:3],"
        " getattr(__import__('sys').implementation, '_mpy', 0),"
        " __import__('os').uname()[4], __import__('machine').unique_id())"
    )
    return BoardInfo(
        micropython=".".join(str(x) for x in v),
        mpy=int(mpy),
        machine=str(machine),
        mac=":".join(f"{b:02x}" for b in bytes(uid)),
    )


@dataclass(frozen=True)
class DeployResult:
    version: str
    manifest: str
    copied: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]
    micropython: str


def deploy(link: BoardLink, build: Build, info: BoardInfo,
           progress: Callable[[int, int], None] | None = None,
           checkpoint: Checkpoint | None = None) -> DeployResult:
    if build.version is None:
        raise FirmwareError(
            "the firmware has no lib/version.py VERSION: nothing to confirm the deploy with"
        )
    if build.mpy is not None and build.mpy[0] != info.mpy_version:
        raise FirmwareError(
            f"the board's MicroPython {info.micropython} loads .mpy version {info.mpy_version}, "
            f"mpy-cross made version {build.mpy[0]}: flash the image boards.yaml names"
        )
    link.mkdir(LIB_DIR)
    on_board = link.hashes(build.paths())
    todo = [f for f in build.files if on_board.get(f.path) != f.sha256]
    unchanged = tuple(f.path for f in build.files if f not in todo)
    total = sum(len(f.data) for f in todo)
    done = 0
    for f in todo:
        link.write_file(f.path, f.data)
        done += len(f.data)
        if progress is not None:
            progress(done, total)
        if checkpoint is not None:
            checkpoint("copying")
    wanted = {f.path for f in build.files}
    removed = []
    for name, is_dir in link.listdir(LIB_DIR):
        path = f"{LIB_DIR}/{name}"
        if not is_dir and name.endswith((".py", ".mpy", ".new")) and path not in wanted:
            link.remove(path)
            removed.append(path)
    link.soft_reset()
    try:
        reported = link.eval("__import__('version').VERSION")
    except BoardError as e:
        raise FirmwareError(f"the deployed firmware does not load: {e}") from e
    if reported != build.version:
        raise FirmwareError(
            f"the board reports firmware {reported!r} after the deploy, expected {build.version!r}"
        )
    return DeployResult(
        version=build.version, manifest=build.manifest, copied=tuple(f.path for f in todo),
        unchanged=unchanged, removed=tuple(removed), micropython=info.micropython,
    )
