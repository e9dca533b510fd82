"""Type-check the firmware against the ESP32 MicroPython API (micropython-esp32-stubs) with mypy.

Run from the repository root: ``.venv/bin/python firmware/typecheck.py`` (``make typecheck``).
Checks firmware/*.py and firmware/lib/*.py; exits 0 when clean, 1 on type errors, 2 when it
cannot run. Why: the unix VM the tests use has no ``machine.Pin``, ``network`` or ``esp32``,
so only a type check sees a call into an API the ESP32 port lacks before a board does.

What works with this stub package, installed as the Makefile does
(``pip install --no-deps --target .stubs/esp32 micropython-esp32-stubs``):
- The target is one flat folder of ``.pyi`` files: machine, network, esp32, ... plus
  MicroPython's own versions of some stdlib modules (time with ``ticks_ms``, socket, select,
  gc, micropython, errno, hashlib, binascii, math). It has no ``stdlib/VERSIONS``, so it is not a
  typeshed and ``--custom-typeshed-dir`` cannot point at it (that needs the dependency
  micropython-stdlib-stubs, which ``--no-deps`` leaves out on purpose: it shadows CPython's).
- So the folder goes on mypy's search path (``mypy_path``), where its modules take precedence
  over mypy's bundled typeshed; modules it lacks (struct, json, sys, io, os, collections) come
  from that typeshed, i.e. are checked against CPython's API, which is looser than MicroPython's
  (the VM runs of the firmware tests catch what CPython has and MicroPython lacks).
- The stubs import ``_mpy_shed`` (a package of the missing dependency) for buffer types and
  the ``@mp_available`` decorator. Left unresolved, every decorated function (``time.ticks_ms``,
  some ``machine`` methods) would become ``Any`` and go unchecked, so a small shim written here
  gives ``mp_available`` its real, transparent signature and makes the rest ``Any``.
  The stubs have errors of their own (redefined names, undefined ``adcchannel``): not reported.
- ``no_site_packages``: firmware cannot import CPython packages (cbor2, paho): that is an error.
- Loose for untyped code: no strict mode; no annotations asked for (``var-annotated`` off);
  a name may be rebound to another type (``allow_redefinition``); ``None`` fits anywhere
  (``strict_optional`` off, so ``self.x = None`` in ``__init__`` raises no Optional noise);
  ``assignment`` off (a dict literal's inferred value type would reject other values).
  But ``check_untyped_defs`` on, so the bodies of unannotated functions are checked:
  ``machine.Pin(4).nonexistent()``, ``machine.no_such_func()``, a wrong argument count or
  keyword to an ESP32 API are errors. Not seen: calls on attributes first set to ``None``
  (mypy types them ``Any``), and code after a call that never returns (``machine.reset()``).
- The CPython fallback of the project's import idiom, the body of an ``except ImportError:``
  (``try: from micropython import const`` / ``except ImportError: def const(x): ...``), never
  runs on the board, yet mypy checks it against the ESP32 stubs (``time.monotonic`` is not
  there; the fallback ``def`` "redefines" the stub's). Errors on lines inside such a handler
  are dropped and counted on the summary line.
- A folder of its own (.mypy_cache/firmware-esp32: cache, config, shim): its ``time`` and
  ``socket`` are not CPython's, so it must not share mypy's usual cache.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

STUBS_REL = ".stubs/esp32"
WORK_REL = ".mypy_cache/firmware-esp32"
ROOT = Path(__file__).resolve().parent.parent
SELF = Path(__file__).resolve()


class TypecheckError(Exception):
    """The type check could not run (as opposed to: it found errors)."""


def firmware_files(root: Path) -> list[Path]:
    """firmware/*.py and firmware/lib/*.py, this script excepted, relative to root."""
    files = sorted((root / "firmware").glob("*.py")) + sorted((root / "firmware/lib").glob("*.py"))
    return [f.relative_to(root) for f in files if f.resolve() != SELF]


def stub_modules(stubs: Path) -> list[str]:
    """Top-level module names the stub folder provides (their own errors are not ours)."""
    names = {p.stem for p in stubs.glob("*.pyi")}
    names |= {p.parent.name for p in stubs.glob("*/__init__.pyi")}
    return sorted(names - {"__builtins__"})


# Stands in for micropython-stdlib-stubs' _mpy_shed (see the module docstring). Only
# ``mp_available`` matters: it decorates API functions and must hand them back unchanged.
SHIM = """\
from typing import Any, Callable, Iterable, TypeVar, overload

_T = TypeVar("_T")

@overload
def mp_available(obj: _T, /) -> _T: ...
@overload
def mp_available(
    *, port: str | Iterable[str] = ..., version: str | Iterable[str] = ...,
    macro: str | Iterable[str] = ...,
) -> Callable[[_T], _T]: ...
def __getattr__(name: str) -> Any: ...
"""
SHIM_SUBMODULE = "from typing import Any\n\ndef __getattr__(name: str) -> Any: ...\n"


def write_if_changed(path: Path, text: str) -> None:
    """Keep the mtime of unchanged files, so mypy's cache stays valid between runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def write_shim(shim: Path, stubs: Path) -> None:
    """A ``_mpy_shed`` package with every submodule the stubs import from it."""
    write_if_changed(shim / "_mpy_shed" / "__init__.pyi", SHIM)
    subs = set()
    for stub in stubs.rglob("*.pyi"):
        for line in stub.read_text(errors="replace").splitlines():
            if line.startswith("from _mpy_shed."):
                subs.add(line.split()[1].split(".", 1)[1])
    for sub in sorted(subs):
        write_if_changed(shim / "_mpy_shed" / (sub.replace(".", "/") + ".pyi"), SHIM_SUBMODULE)


def mypy_config(root: Path, stubs: Path, shim: Path) -> str:
    """The mypy configuration file's text (a file: per-module sections need one)."""
    search = os.pathsep.join([str(root / "firmware" / "lib"), str(shim), str(stubs)])
    silenced = ",".join(f"{m},{m}.*" for m in stub_modules(stubs))
    return f"""\
[mypy]
mypy_path = {search}
no_site_packages = True
check_untyped_defs = True
allow_redefinition = True
strict_optional = False
disable_error_code = var-annotated, assignment
show_error_codes = True
pretty = False

[mypy-{silenced},_mpy_shed,_mpy_shed.*]
ignore_errors = True
"""


MESSAGE = re.compile(r"^(?P<path>[^:\n]+\.py):(?P<line>\d+): (?P<kind>error|note|warning): ")
IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def fallback_lines(path: Path) -> set[int]:
    """Line numbers inside ``except ImportError:`` handler bodies (CPython fallbacks)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return set()  # mypy reports the syntax error itself
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ExceptHandler) or node.type is None:
            continue
        caught = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        if any(isinstance(c, ast.Name) and c.id in IMPORT_ERRORS for c in caught):
            first, last = node.body[0].lineno, node.end_lineno or node.body[-1].lineno
            lines.update(range(first, last + 1))
    return lines


def filter_fallbacks(output: str, root: Path) -> tuple[list[str], int, int]:
    """mypy's messages less those in CPython fallbacks: (lines to show, errors, dropped).

    mypy's own summary line is left out: its count would include the dropped errors.
    """
    shown: list[str] = []
    errors = dropped = 0
    cache: dict[str, set[int]] = {}
    for line in output.splitlines():
        m = MESSAGE.match(line)
        if m is None:
            if not line.startswith(("Found ", "Success: ")):
                shown.append(line)
            continue
        path = m.group("path")
        if path not in cache:
            cache[path] = fallback_lines(root / path)
        if int(m.group("line")) in cache[path]:
            dropped += m.group("kind") == "error"
            continue
        errors += m.group("kind") == "error"
        shown.append(line)
    return shown, errors, dropped


def stubs_version(stubs: Path) -> str:
    dists = sorted(stubs.glob("micropython_esp32_stubs-*.dist-info"))
    return dists[-1].name.removesuffix(".dist-info").replace("_", "-") if dists else "unknown"


def run(root: Path, stubs: Path) -> int:
    """Run mypy over the firmware; returns 0 when clean, 1 on type errors."""
    if not (stubs / "machine.pyi").is_file():
        raise TypecheckError(
            f"ESP32 stubs not found in {stubs} (no machine.pyi): run `make stubs`, i.e. "
            f"pip install --no-deps --target {STUBS_REL} 'micropython-esp32-stubs>=1.24'"
        )
    files = firmware_files(root)
    if not files:
        print(f"typecheck: no firmware files under {root / 'firmware'}")
        return 0
    work = root / WORK_REL
    try:
        write_shim(work / "shim", stubs)
        write_if_changed(work / "mypy.ini", mypy_config(root, stubs, work / "shim"))
    except OSError as e:
        raise TypecheckError(f"cannot write mypy's files under {work}: {e}") from e
    cmd = [
        sys.executable, "-m", "mypy",
        "--config-file", str(work / "mypy.ini"),
        "--cache-dir", str(work / "cache"),
        *map(str, files),
    ]
    print(f"typecheck: {len(files)} firmware files against {stubs_version(stubs)}", flush=True)
    try:
        # cwd=root: mypy names files as firmware/lib/x.py, relative to the repository.
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    except OSError as e:
        raise TypecheckError(f"cannot run mypy with {sys.executable}: {e}") from e
    shown, errors, dropped = filter_fallbacks(proc.stdout, root)
    if proc.returncode not in (0, 1) and not errors:
        # Exit 2 without a file:line error: mypy itself could not run.
        detail = (proc.stderr + proc.stdout).strip() or f"exit status {proc.returncode}"
        raise TypecheckError(f"mypy failed: {detail}")
    for line in shown:
        print(line)
    if proc.stderr.strip():
        print(proc.stderr.rstrip(), file=sys.stderr)
    skipped = f" ({dropped} in `except ImportError:` fallbacks not counted)" if dropped else ""
    verdict = f"{errors} error(s)" if errors else "no errors"
    print(f"typecheck: {verdict} in {len(files)} firmware files{skipped}")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="repository root holding firmware/ (default: this script's)")
    parser.add_argument("--stubs", type=Path, default=None,
                        help=f"ESP32 stub folder (default: ROOT/{STUBS_REL})")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    stubs = (args.stubs or root / STUBS_REL).resolve()
    try:
        return run(root, stubs)
    except TypecheckError as e:
        print(f"typecheck: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
