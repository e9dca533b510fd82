"""The image cache: which image may be flashed, checked against which hash."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from provisioning.boards import load_boards, parse_boards
from provisioning.errors import ImageError
from provisioning.images import ImageCache

REPO = Path(__file__).resolve().parents[2]
SHIPPED = load_boards(REPO / "boards.yaml")  # every sha256 is a placeholder
KIND = SHIPPED.get("water-level-devkitc")
NAME = KIND.image.file


def pinned_boards(digest: str):
    text = (REPO / "boards.yaml").read_text().replace("0" * 64, digest)
    return parse_boards(text)


@pytest.fixture
def download(tmp_path) -> Path:
    d = tmp_path / "downloads"
    d.mkdir()
    (d / NAME).write_bytes(os.urandom(4096))
    return d / NAME


def test_add_copies_the_image_and_records_its_hash(tmp_path, download):
    cache = ImageCache(tmp_path / "cache")
    name, digest = cache.add(download, SHIPPED)
    assert name == NAME and digest == hashlib.sha256(download.read_bytes()).hexdigest()
    assert (cache.root / NAME).read_bytes() == download.read_bytes()
    assert json.loads(cache.manifest_path.read_text())[NAME]["sha256"] == digest


def test_add_refuses_a_file_no_board_kind_uses(tmp_path):
    other = tmp_path / "firmware.bin"
    other.write_bytes(b"x")
    with pytest.raises(ImageError, match="not an image any board kind uses"):
        ImageCache(tmp_path / "cache").add(other, SHIPPED)


def test_add_refuses_a_file_whose_hash_boards_yaml_pins_differently(tmp_path, download):
    with pytest.raises(ImageError, match="not the one boards.yaml pins"):
        ImageCache(tmp_path / "cache").add(download, pinned_boards("ab" * 32))
    assert not (tmp_path / "cache" / NAME).exists()


def test_placeholder_hash_is_refused_without_the_flag(tmp_path, download):
    cache = ImageCache(tmp_path / "cache")
    cache.add(download, SHIPPED)
    with pytest.raises(ImageError) as e:
        cache.load(KIND)
    assert "placeholder" in str(e.value) and "--allow-unverified-image" in str(e.value)


def test_placeholder_with_the_flag_checks_the_recorded_hash(tmp_path, download):
    cache = ImageCache(tmp_path / "cache")
    cache.add(download, SHIPPED)
    image = cache.load(KIND, allow_unverified=True)
    assert image.data == download.read_bytes() and not image.pinned
    (cache.root / NAME).write_bytes(b"truncated")  # changed in the cache since `images add`
    with pytest.raises(ImageError, match="changed since"):
        cache.load(KIND, allow_unverified=True)


def test_placeholder_with_the_flag_still_needs_images_add(tmp_path, download):
    cache = ImageCache(tmp_path / "cache")
    cache.root.mkdir()
    (cache.root / NAME).write_bytes(download.read_bytes())  # copied by hand
    with pytest.raises(ImageError, match="not added"):
        cache.load(KIND, allow_unverified=True)


def test_pinned_hash_is_the_only_check(tmp_path, download):
    digest = hashlib.sha256(download.read_bytes()).hexdigest()
    boards = pinned_boards(digest)
    cache = ImageCache(tmp_path / "cache")
    cache.root.mkdir()
    (cache.root / NAME).write_bytes(download.read_bytes())  # no manifest needed
    assert cache.load(boards.get(KIND.name)).pinned
    (cache.root / NAME).write_bytes(b"another build")
    with pytest.raises(ImageError, match="does not match boards.yaml"):
        cache.load(boards.get(KIND.name), allow_unverified=True)


def test_missing_image_names_the_file_the_cache_and_the_fix(tmp_path):
    with pytest.raises(ImageError) as e:
        ImageCache(tmp_path / "empty").load(KIND, allow_unverified=True)
    text = str(e.value)
    assert NAME in text and str(tmp_path / "empty") in text and "nodectl images add" in text
