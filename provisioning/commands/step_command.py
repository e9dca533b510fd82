"""What the one-step commands (flash, deploy, configure, register, verify) share."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from provisioning.commands.options import bench_from
from provisioning.context import Options
from provisioning.errors import ProvisioningError
from provisioning.job import JobResult
from provisioning.provision import result_json, run_board


class ClickBar:
    """A job's Events as a click progress bar on stderr (the image write, the file copy)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.done = 0

    def device(self, device_id: str) -> None:
        pass

    def step(self, name: str) -> None:
        self.close()

    def progress(self, done: int, total: int) -> None:
        if self.bar is None:
            bar: Any = click.progressbar(length=total, label=self.label, file=sys.stderr)
            bar.__enter__()
            self.bar = bar
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
            self.done = 0


def run_step(opts: Options, step: str, params: dict[str, Any], *,
             needs_board: bool = True) -> JobResult:
    """Run one step on --port (or, where a board is not needed, on --id); raise on failure."""
    bench = bench_from(opts, params)
    spec = opts.port
    if spec is None and needs_board:
        raise ProvisioningError("no board: pass --port PORT (or vboard:DIR), or set NODECTL_PORT")
    if spec is None and not params.get("device_id"):
        raise ProvisioningError(f"{step}: give --port or --id")
    bar = ClickBar(step)
    try:
        result = run_board(bench, spec, opts.board, params.get("device_id"), [step],
                           events=bar)
    finally:
        bar.close()
    if not result.ok:
        raise ProvisioningError(f"{result.target}: {result.error}")
    return result


def report(opts: Options, result: JobResult, step: str) -> str:
    if opts.json:
        return json.dumps(result_json(result), indent=2)
    return f"{result.device_id}: {step}: {result.notes.get(step, 'done')}"
