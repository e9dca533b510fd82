"""The local cache of MicroPython images, and which image a board kind may be flashed with.

Technicians are often offline: images are downloaded once (micropython.org)
and added to a cache directory (`--images` / NODECTL_IMAGES, default
~/.cache/nodectl/images) with `nodectl images add FILE`, which copies the file
and records its sha256 in the cache's manifest `images.json`.

Which hash an image is checked against when flashing:
1. boards.yaml's `image.sha256` when it is real: the file must match it. This is
   the pinned, reviewed hash; the manifest is not consulted.
2. A placeholder (64 zeros) in boards.yaml: nothing pins the image, so flashing
   is refused unless `--allow-unverified-image`; with it, the file must still
   match the hash the manifest recorded when it was added, so a file changed
   or truncated in the cache since then is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from provisioning.board_kind import BoardKind
from provisioning.boards import Boards
from provisioning.errors import ImageError

MANIFEST = "images.json"
ENV = "NODECTL_IMAGES"


def default_cache_dir() -> Path:
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nodectl" / "images"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class CheckedImage:
    """An image read from the cache and matched against a trusted hash."""

    file: str
    data: bytes
    sha256: str
    pinned: bool  # True: boards.yaml's hash; False: the manifest's (unverified)


class ImageCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_cache_dir()).expanduser()

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def manifest(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ImageError(f"{self.manifest_path}: unreadable image manifest: {e}") from e
        if not isinstance(data, dict):
            raise ImageError(f"{self.manifest_path}: expected a JSON object")
        return data

    def add(self, source: Path, boards: Boards, kind_name: str | None = None) -> tuple[str, str]:
        """Copy `source` into the cache and record its hash; returns (file name, sha256).

        The file name must be an image some board kind (or `kind_name`) uses, and
        where boards.yaml pins a real hash the file must have it.
        """
        try:
            data = source.read_bytes()
        except OSError as e:
            raise ImageError(f"{source}: cannot read: {e.strerror or e}") from e
        kinds = [boards.get(kind_name)] if kind_name else list(boards)
        users = [k for k in kinds if k.image.file == source.name]
        if not users:
            wanted = sorted({k.image.file for k in kinds})
            who = f"board kind {kind_name}" if kind_name else "any board kind"
            raise ImageError(
                f"{source.name} is not an image {who} uses (expected: {', '.join(wanted)}); "
                "keep the official file name"
            )
        digest = sha256_of(data)
        for kind in users:
            if not kind.image.placeholder and kind.image.sha256 != digest:
                raise ImageError(
                    f"{source.name}: sha256 {digest} is not the one boards.yaml pins for "
                    f"{kind.name!r} ({kind.image.sha256}): a different or damaged file"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        dest = self.root / source.name
        if source.resolve() != dest.resolve():
            tmp = dest.with_suffix(".part")
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        manifest = self.manifest()
        manifest[source.name] = {"sha256": digest, "size": len(data), "added_at": time.time()}
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".images-")
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp_name, self.manifest_path)
        return source.name, digest

    def load(self, kind: BoardKind, *, allow_unverified: bool = False) -> CheckedImage:
        """The kind's image from the cache, checked (see the module docstring)."""
        name = kind.image.file
        path = self.root / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageError(
                f"image {name} for {kind.name!r} is not in the image cache {self.root}: "
                f"download it from micropython.org and run `nodectl images add FILE`"
            ) from None
        except OSError as e:
            raise ImageError(f"{path}: cannot read: {e.strerror or e}") from e
        digest = sha256_of(data)
        if not kind.image.placeholder:
            if digest != kind.image.sha256:
                raise ImageError(
                    f"{path}: sha256 {digest[:16]}... does not match boards.yaml's "
                    f"{kind.image.sha256[:16]}... for {kind.name!r}: a different or damaged file"
                )
            return CheckedImage(name, data, digest, pinned=True)
        recorded = self.manifest().get(name, {}).get("sha256")
        if not allow_unverified:
            hint = f"; the cache has sha256 {digest}" if recorded == digest else ""
            raise ImageError(
                f"boards.yaml has no sha256 for {name} ({kind.name!r}: placeholder): record the "
                f"real one in boards.yaml, or pass --allow-unverified-image to trust the "
                f"cached copy{hint}"
            )
        if recorded is None:
            raise ImageError(
                f"{path} was not added with `nodectl images add`: its hash is not recorded"
            )
        if recorded != digest:
            raise ImageError(
                f"{path} changed since `nodectl images add` (sha256 {digest[:16]}... was "
                f"{str(recorded)[:16]}...): add it again"
            )
        return CheckedImage(name, data, digest, pinned=False)
