"""`nodectl boards [NAME]`: list the board kinds of boards.yaml, or show one."""

from __future__ import annotations

import click

from provisioning.boards import Boards
from provisioning.boards_view import list_text, show_text, to_json
from provisioning.commands import json_option
from provisioning.context import Options


def boards_report(boards: Boards, name: str | None = None, *, as_json: bool = False) -> str:
    """The table of every kind, or every field of kind `name`; JSON when asked."""
    if name is None:
        kinds = list(boards)
        return to_json([k.to_dict() for k in kinds]) if as_json else list_text(kinds)
    kind = boards.get(name)
    return to_json(kind.to_dict()) if as_json else show_text(kind, boards.path)


@click.command("boards")
@click.argument("name", required=False)
@json_option
@click.pass_obj
def boards(opts: Options, name: str | None) -> None:
    """List the board kinds in boards.yaml, or show kind NAME in full."""
    click.echo(boards_report(opts.boards(), name, as_json=opts.json))
