"""Putting a MicroPython image on a board: the `Flasher` interface and the one safe order.

`flash_image` is the only caller of `erase()`: it reads the chip and flash size
first and refuses a board that is not the kind asked for, so a wrong board is
never erased. Two flashers implement the interface: `EsptoolFlasher` (a real
ESP32 through esptool's Python API) and `VirtualFlasher` (a virtual board).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from provisioning.board_kind import BoardKind
from provisioning.errors import BoardMismatch

# (bytes done, bytes in all): how a flasher reports a long write.
Progress = Callable[[int, int], None]


class Flasher(Protocol):
    """What nodectl needs from a tool that talks to the chip's ROM bootloader."""

    def chip(self) -> str:
        """The chip family as boards.yaml names it: `esp32`, `esp32s3`, `esp32c3`."""
        ...

    def mac(self) -> str:
        """The base MAC, `aa:bb:cc:dd:ee:ff`: the board's identity in the registry."""
        ...

    def flash_id(self) -> str:
        """Flash manufacturer and device id as esptool prints them (`ef4016`)."""
        ...

    def flash_size(self) -> str:
        """Detected flash size as boards.yaml writes it (`4MB`)."""
        ...

    def erase(self) -> None: ...

    def write(self, offset: int, data: bytes, progress: Progress | None = None) -> None: ...

    def verify(self, offset: int, data: bytes) -> None:
        """Raise FlashError unless the flash at `offset` holds `data`."""
        ...

    def finish(self) -> None:
        """Reset the chip into the new image and let the port go."""
        ...

    def close(self) -> None:
        """Let the port go; the board runs whatever it has (after a check or an error)."""
        ...


@dataclass(frozen=True)
class BoardFacts:
    """What the ROM says about the board, read before anything is changed."""

    chip: str
    mac: str
    flash_id: str
    flash_size: str


def inspect_board(flasher: Flasher) -> BoardFacts:
    return BoardFacts(
        chip=flasher.chip(),
        mac=flasher.mac(),
        flash_id=flasher.flash_id(),
        flash_size=flasher.flash_size(),
    )


def check_kind(facts: BoardFacts, kind: BoardKind) -> None:
    """Refuse a board whose chip or flash size is not the kind's (nothing changed yet)."""
    if facts.chip != kind.chip:
        raise BoardMismatch(
            f"wrong chip: board kind {kind.name!r} is {kind.chip}, the board is {facts.chip} "
            "(nothing was erased)"
        )
    if facts.flash_size != kind.flash_size:
        raise BoardMismatch(
            f"wrong flash size: board kind {kind.name!r} has {kind.flash_size}, the board "
            f"has {facts.flash_size} (nothing was erased)"
        )


def flash_image(
    flasher: Flasher,
    kind: BoardKind,
    data: bytes,
    *,
    progress: Progress | None = None,
    before_erase: Callable[[BoardFacts], None] | None = None,
    after_erase: Callable[[], None] | None = None,
) -> BoardFacts:
    """Check the board against `kind`, then erase, write the image at its offset, verify.

    `before_erase(facts)` runs after the checks and before the erase: the
    caller's last chance to refuse (e.g. the registry) with the board untouched.
    """
    facts = inspect_board(flasher)
    check_kind(facts, kind)
    if before_erase is not None:
        before_erase(facts)
    flasher.erase()
    if after_erase is not None:
        after_erase()
    flasher.write(kind.image.offset, data, progress)
    flasher.verify(kind.image.offset, data)
    flasher.finish()
    return facts


def format_mac(raw: bytes | tuple[int, ...] | list[int]) -> str:
    return ":".join(f"{b:02x}" for b in bytes(raw))
