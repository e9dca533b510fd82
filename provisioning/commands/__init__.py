"""nodectl commands, one module each; `provisioning.cli` registers them.

A command is a 3-5 line click wrapper over a plain function that does the
work and can be called (and tested) without click. To add one: write
`commands/<name>.py` with a `@click.command()` function taking `Options` via
`@click.pass_obj`, then add it to `COMMANDS` in `provisioning/cli.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().obj.json = True


def json_option(f: F) -> F:
    """`--json` after the command too (`nodectl boards --json` = `nodectl --json boards`)."""
    return click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Machine-readable JSON output.",
    )(f)
