"""The global options every nodectl command sees (esptool-style `ctx.obj`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from provisioning.board_kind import BoardKind
from provisioning.boards import Boards, load_boards
from provisioning.errors import ProvisioningError


@dataclass
class Options:
    """Parsed from `nodectl [--boards F] [--port P] [--board B] [--registry R] [--json]`."""

    boards_file: Path
    port: str | None = None
    board: str | None = None
    registry: Path | None = None
    json: bool = False
    _boards: Boards | None = field(default=None, repr=False)

    def boards(self) -> Boards:
        """boards.yaml, loaded on first use: commands that do not need it never fail on it."""
        if self._boards is None:
            self._boards = load_boards(self.boards_file)
        return self._boards

    def board_kind(self, name: str | None = None) -> BoardKind:
        """The board kind a command works on: `name`, else --board / NODECTL_BOARD."""
        name = name or self.board
        if not name:
            raise ProvisioningError("no board kind given: pass --board NAME or set NODECTL_BOARD")
        return self.boards().get(name)
