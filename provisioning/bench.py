"""What every board of one nodectl run shares: files, settings, and the firmware build.

Made once by the command from its options and read by every board's thread.
The firmware is compiled and each image read and checked once, under a lock,
however many boards are provisioned.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from provisioning.board_kind import BoardKind
from provisioning.boards import Boards
from provisioning.firmware_build import Build, build_firmware
from provisioning.images import CheckedImage, ImageCache
from provisioning.mosquitto_auth import BrokerFiles
from provisioning.node_config import NodeSettings
from provisioning.verify import Monitor


@dataclass
class Bench:
    boards: Boards
    registry_path: Path
    secrets_dir: Path
    images: ImageCache = field(default_factory=ImageCache)
    allow_unverified_image: bool = False
    firmware_dir: Path | None = None
    settings: NodeSettings = field(default_factory=NodeSettings)
    broker: BrokerFiles | None = None
    monitor: Monitor | None = None
    require_mac: bool = False  # register the payload key with the agent (see README)
    force: bool = False
    verify_timeout: float = 60.0
    _build: Build | None = field(default=None, repr=False)
    _images: dict[str, CheckedImage] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def build(self) -> Build:
        with self._lock:
            if self._build is None:
                self._build = build_firmware(self.firmware_dir)
            return self._build

    def image(self, kind: BoardKind) -> CheckedImage:
        with self._lock:
            if kind.name not in self._images:
                self._images[kind.name] = self.images.load(
                    kind, allow_unverified=self.allow_unverified_image)
            return self._images[kind.name]
