"""Provisioning as plain functions: one board through some steps, or many boards at once.

Boards run in threads, one per port: each has its own serial port, registry
connection and progress line, and one board failing does not stop the
others. The commands in `commands/` are thin wrappers over these.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from provisioning.bench import Bench
from provisioning.display import Display
from provisioning.errors import ProvisioningError
from provisioning.job import BoardJob, Events, JobResult
from provisioning.registry import STEPS
from provisioning.target import parse_target


def run_board(bench: Bench, spec: str | None, kind: str | None, device_id: str | None,
              steps: Sequence[str], *, resume: bool = False,
              events: Events | None = None) -> JobResult:
    """`steps` on the board at `spec` (a port or `vboard:DIR`; None: no board, by id)."""
    try:
        target = parse_target(spec) if spec else None
    except ProvisioningError as e:
        return JobResult(target=spec or "?", error=str(e))
    return BoardJob(bench, target, kind, device_id, events).run(steps, resume=resume)


def per_board(values: Sequence[str], n: int, what: str) -> list[str | None]:
    """One value for every board, one per board, or none."""
    if not values:
        return [None] * n
    if len(values) == 1 and what != "--id":
        return [values[0]] * n
    if len(values) != n:
        raise ProvisioningError(f"{len(values)} {what} for {n} boards: give one per --port"
                                + ("" if what == "--id" else ", or one for all"))
    return list(values)


def provision_boards(bench: Bench, specs: Sequence[str], kinds: Sequence[str] = (),
                     ids: Sequence[str] = (), steps: Sequence[str] = STEPS,
                     display: Display | None = None) -> list[JobResult]:
    """Every step not done yet on each board, all boards at once; results in port order."""
    wanted = per_board(ids, len(specs), "--id")
    kind_of = per_board(kinds, len(specs), "--board")
    if len(set(specs)) != len(specs):
        raise ProvisioningError("the same port is given twice")
    display = display or Display()
    lines = [display.line(spec) for spec in specs]

    def one(i: int) -> JobResult:
        result = run_board(bench, specs[i], kind_of[i], wanted[i], steps, resume=True,
                           events=lines[i])
        lines[i].device(result.device_id or "")
        if result.ok:
            lines[i].finish("ok" if result.ran else "ok (nothing to do)")
        else:  # the message itself is in the summary (or the one error line)
            lines[i].finish(f"failed at {result.failed_step}" if result.failed_step
                            else "refused")
        return result

    with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
        return list(pool.map(one, range(len(specs))))


def summary_rows(results: Sequence[JobResult]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        if r.ok:
            text = "ok" if r.ran else "ok (nothing to do)"
        else:
            text = f"failed at {r.failed_step}: {r.error}" if r.failed_step else f"{r.error}"
        rows.append({
            "port": r.target, "device": r.device_id or "-", "board": r.board or "-",
            "steps": ",".join(r.done) or "-", "time": f"{r.seconds:.1f}s", "result": text,
        })
    return rows


def result_json(r: JobResult) -> dict[str, Any]:
    return {
        "target": r.target, "device": r.device_id, "board": r.board, "mac": r.mac,
        "ok": r.ok, "ran": r.ran, "done": list(r.done), "notes": r.notes,
        "failed_step": r.failed_step, "error": r.error, "seconds": round(r.seconds, 3),
        "step_seconds": {k: round(v, 3) for k, v in r.step_seconds.items()},
    }
