"""BoardSlot: one board a HIL session runs tests on, before anything is connected.

A slot is either a serial port (a real board, or any pty) or "virtual": a
fresh virtual board started for each test. The plugin builds the slots once
per session from its options, parametrises the `board` fixture over them and
checks capability markers against them at collection time.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioning.boards import BoardKind

VIRTUAL = "virtual"


@dataclass(frozen=True)
class BoardSlot:
    index: int
    port: str  # a device path or pyserial URL, or VIRTUAL
    kind: BoardKind | None  # None: an attached board whose kind was not given
    serial_number: str | None = None
    mac: str | None = None

    @property
    def virtual(self) -> bool:
        return self.port == VIRTUAL

    @property
    def id(self) -> str:
        """The test id part: `water-level-devkitc` / `ttyUSB0-boat-gps-cell`."""
        kind = self.kind.name if self.kind else "unknown-kind"
        if self.virtual:
            return f"virtual-{kind}-{self.index}"
        port = self.port.removeprefix("/dev/").replace("/", "")  # ttyUSB0, pts3, COM4
        return f"{port}-{kind}"

    def describe(self) -> str:
        kind = self.kind.name if self.kind else "a board of unknown kind"
        where = "a virtual board" if self.virtual else self.port
        return f"{kind} on {where}"
