"""Load boards.yaml: the board kinds nodectl knows how to flash and configure.

`load_boards(path)` returns a `Boards` of typed `BoardKind`s or raises
`BoardsFileError` naming the file, line, board and field that is wrong.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from provisioning.board_kind import (
    BoardKind,
    Image,
    Modem,
    Peripheral,
    Power,
    Sensor,
    Uart,
    Usb,
    Virtual,
)
from provisioning.board_schema import parse_board
from provisioning.errors import BoardsFileError, UnknownBoard
from provisioning.yamlnodes import MapReader, SchemaError, SyntaxProblem, compose, line_of

__all__ = [
    "BoardKind",
    "Boards",
    "Image",
    "Modem",
    "Peripheral",
    "Power",
    "Sensor",
    "Uart",
    "Usb",
    "Virtual",
    "default_boards_path",
    "load_boards",
    "parse_boards",
]

SCHEMA_VERSION = 1
BOARD_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


@dataclass(frozen=True)
class Boards:
    """The board kinds of one boards.yaml, in file order."""

    path: str  # as error messages show it
    kinds: dict[str, BoardKind]

    def get(self, name: str) -> BoardKind:
        try:
            return self.kinds[name]
        except KeyError:
            raise UnknownBoard(name, self.kinds, self.path) from None

    def names(self) -> list[str]:
        return list(self.kinds)

    def __iter__(self) -> Iterator[BoardKind]:
        return iter(self.kinds.values())

    def __len__(self) -> int:
        return len(self.kinds)


def default_boards_path() -> Path:
    """The repository's boards.yaml when nodectl runs from a checkout, else ./boards.yaml."""
    in_repo = Path(__file__).resolve().parent.parent / "boards.yaml"
    return in_repo if in_repo.is_file() else Path("boards.yaml")


def display_path(path: str | os.PathLike[str]) -> str:
    """The path as given, or relative when it lies under the working directory."""
    p = Path(path)
    if p.is_absolute():
        try:
            return str(p.relative_to(Path.cwd()))
        except ValueError:
            pass
    return str(p)


def load_boards(path: str | os.PathLike[str]) -> Boards:
    shown = display_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise BoardsFileError(shown, None, f"cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise BoardsFileError(shown, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from e
    return parse_boards(text, shown)


def parse_boards(text: str, path: str = "boards.yaml") -> Boards:
    """Check a whole boards.yaml text; `path` is only used in error messages."""
    try:
        root = compose(text)
    except SyntaxProblem as e:
        raise BoardsFileError(path, e.line, e.message) from e
    try:
        top = MapReader(root, "", 1).only(("version", "boards"))
        version = top.get("version", int)
        if version != SCHEMA_VERSION:
            raise SchemaError(
                top.value_line("version"),
                "version",
                f"this nodectl reads version {SCHEMA_VERSION}, got {version}",
            )
        boards_node = top.node("boards")
        if not isinstance(boards_node, yaml.MappingNode) or not boards_node.value:
            raise SchemaError(top.key_line("boards"), "boards", "expected a mapping of board kinds")
    except SchemaError as e:
        raise BoardsFileError(path, e.line, e.message, field=e.field) from e

    kinds: dict[str, BoardKind] = {}
    for key_node, value_node in boards_node.value:
        line = line_of(key_node)
        name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(name, str) or not BOARD_NAME_RE.match(name):
            raise BoardsFileError(
                path,
                line,
                f"board names are lowercase letters, digits and '-', got {name!r}",
                field="boards",
            )
        if name in kinds:
            raise BoardsFileError(
                path, line, f"duplicate board kind (first on line {kinds[name].line})", board=name
            )
        try:
            kinds[name] = parse_board(name, line, value_node)
        except SchemaError as e:
            raise BoardsFileError(path, e.line, e.message, board=name, field=e.field) from e
    return Boards(path=path, kinds=kinds)
