"""`nodectl images add|list`: the local cache of MicroPython images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from provisioning.boards_view import table
from provisioning.commands import json_option
from provisioning.context import Options
from provisioning.images import ImageCache

_cache_option = click.option(
    "--images", "images_dir", envvar="NODECTL_IMAGES", type=click.Path(path_type=Path),
    help="Image cache [env NODECTL_IMAGES; default ~/.cache/nodectl/images].")


def images_list(opts: Options, cache: ImageCache) -> str:
    manifest = cache.manifest()
    rows: list[dict[str, Any]] = []
    for kind in opts.boards():
        entry: dict[str, Any] = manifest.get(kind.image.file, {})
        present = (cache.root / kind.image.file).is_file()
        pinned = "pinned" if not kind.image.placeholder else "placeholder"
        rows.append({"board": kind.name, "file": kind.image.file, "in_cache": present,
                     "sha256": entry.get("sha256"), "boards_yaml": pinned})
    if opts.json:
        return json.dumps(rows, indent=2)
    head = ("BOARD", "IMAGE", "CACHED", "SHA256 (CACHE)", "BOARDS.YAML")
    body = [(str(r["board"]), str(r["file"]), "yes" if r["in_cache"] else "no",
             str(r["sha256"] or "-")[:16], str(r["boards_yaml"])) for r in rows]
    return f"cache: {cache.root}\n" + table([head, *body])


@click.group("images")
def images() -> None:
    """The MicroPython image cache flashing reads from."""


@images.command("add")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--board", "kind", help="Only for this board kind.")
@_cache_option
@click.pass_obj
def add(opts: Options, file: Path, kind: str | None, images_dir: Path | None) -> None:
    """Copy FILE (an official image name) into the cache and record its sha256."""
    name, digest = ImageCache(images_dir).add(file, opts.boards(), kind or opts.board)
    click.echo(f"{name}: sha256 {digest}\n(pin it in boards.yaml: image.sha256: \"{digest}\")")


@images.command("list")
@_cache_option
@json_option
@click.pass_obj
def list_(opts: Options, images_dir: Path | None) -> None:
    """Each board kind's image: cached or not, and how it is checked."""
    click.echo(images_list(opts, ImageCache(images_dir)))
