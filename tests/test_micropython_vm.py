"""The firmware-test plugin (tests/micropython_vm.py), run on throw-away projects by pytester.

Each test writes a tiny project (firmware/lib, tests/firmware with the real fwtest.py) and
runs pytest on it in a subprocess with the plugin, so the real MicroPython VM runs the files.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from micropython_vm import find_vm, parse_output

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
FWTEST = TESTS / "firmware" / "fwtest.py"
SENTINEL = "@@fwtest@@"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """An empty firmware project: the plugin importable, fwtest in place, no FWTEST_* set."""
    for var in ("FWTEST_HEAPSIZE", "FWTEST_VM_TIMEOUT", "FWTEST_MICROPYTHON",
                "FWTEST_ALLOW_NO_VM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    pytester.makeini("[pytest]\naddopts = -p micropython_vm --strict-markers -p no:cacheprovider\n")
    (pytester.path / "tests" / "firmware").mkdir(parents=True)
    (pytester.path / "firmware" / "lib").mkdir(parents=True)
    shutil.copy(FWTEST, pytester.path / "tests" / "firmware" / "fwtest.py")
    return pytester


def write(project: pytest.Pytester, rel: str, source: str) -> Path:
    path = project.path / rel
    path.write_text(textwrap.dedent(source))
    return path


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("-v", *args, timeout=120)


needs_vm = pytest.mark.skipif(find_vm()[0] is None, reason="no MicroPython VM (CPython 3.11 only)")


@needs_vm
def test_a_passing_test_runs_on_cpython_and_in_the_vm(project: pytest.Pytester) -> None:
    write(project, "firmware/lib/calc.py", "def double(x):\n    return 2 * x\n")
    write(project, "tests/firmware/test_calc.py", """
        import sys
        from calc import double

        def helper():
            raise AssertionError("helpers are not tests")

        def test_double():
            assert double(21) == 42
            assert sys.implementation.name in ("cpython", "micropython")
        """)
    result = run(project)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "tests/firmware/test_calc.py::test_double PASSED*",
        "tests/firmware/test_calc.py::micropython::test_double PASSED*",
    ])


@needs_vm
def test_micropython_marker_selects_only_the_vm_items(project: pytest.Pytester) -> None:
    write(project, "tests/firmware/test_m.py", "def test_one():\n    pass\n")
    result = run(project, "-m", "micropython")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["*::micropython::test_one PASSED*"])


@needs_vm
def test_a_cpython_only_feature_fails_only_in_the_vm(project: pytest.Pytester) -> None:
    write(project, "tests/firmware/test_cp.py", """
        def test_removeprefix():
            assert "node-7".removeprefix("node-") == "7"
        """)
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "tests/firmware/test_cp.py::test_removeprefix PASSED*",
        "tests/firmware/test_cp.py::micropython::test_removeprefix FAILED*",
        "*test_removeprefix failed in the MicroPython VM (heapsize=2M):",
        '*File "tests/firmware/test_cp.py", line 3, in test_removeprefix',
        '*assert "node-7".removeprefix("node-") == "7"',
        "AttributeError: *removeprefix*",
    ])


@needs_vm
def test_an_import_error_in_the_vm_fails_every_vm_item(project: pytest.Pytester) -> None:
    write(project, "tests/firmware/test_imp.py", """
        import ctypes

        def test_a():
            assert ctypes

        def test_b():
            pass
        """)
    result = run(project)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "*::micropython::test_a FAILED*",
        "*::micropython::test_b FAILED*",
    ])
    result.stdout.fnmatch_lines(["test_imp.py failed to import in the MicroPython VM*"])
    # Each VM item's failure section names the import error (the short summary
    # may repeat it too, depending on the terminal width, hence >=).
    for name in ("test_a", "test_b"):
        section = result.stdout.str().split(f"{name}[micropython] _")[1].split("\n_")[0]
        assert "ImportError: no module named 'ctypes'" in section


@needs_vm
def test_an_assertion_failure_reports_the_vm_traceback_and_output(
    project: pytest.Pytester,
) -> None:
    write(project, "firmware/lib/checks.py", """
        def check(x):
            assert x == 2, "want 2"
        """)
    write(project, "tests/firmware/test_tb.py", """
        from checks import check

        def test_bad():
            print("reading 1 from the sensor")
            check(1)
        """)
    result = run(project, "-m", "micropython")
    result.assert_outcomes(failed=1, deselected=1)
    # Consecutive: the runner's own frame is left out, each frame shows its source line.
    result.stdout.fnmatch_lines([
        "test_bad failed in the MicroPython VM (heapsize=2M):",
        "Traceback (most recent call last):",
        '  File "tests/firmware/test_tb.py", line 6, in test_bad',
        "    check(1)",
        '  File "firmware/lib/checks.py", line 3, in check',
        '    assert x == 2, "want 2"',
        "AssertionError: want 2",
    ], consecutive=True)
    result.stdout.fnmatch_lines(["*Captured stdout call*", "reading 1 from the sensor"])


@needs_vm
def test_a_vm_crash_fails_the_running_test_and_those_after_it(project: pytest.Pytester) -> None:
    write(project, "tests/firmware/test_crash.py", """
        import sys

        def test_first():
            pass

        def test_segfault():
            if sys.implementation.name == "micropython":
                import uctypes
                print(uctypes.bytearray_at(0, 4)[0])  # reads address 0

        def test_after():
            pass
        """)
    result = run(project, "-m", "micropython")
    result.assert_outcomes(passed=1, failed=2, deselected=3)
    result.stdout.fnmatch_lines([
        "*::micropython::test_first PASSED*",
        "*::micropython::test_segfault FAILED*",
        "*::micropython::test_after FAILED*",
    ])
    result.stdout.fnmatch_lines([
        "test_segfault: the VM was killed by SIGSEGV while running this test (heapsize=2M)",
        "test_after did not run: the VM was killed by SIGSEGV while running test_segfault",
    ])


@needs_vm
def test_a_file_that_runs_too_long_is_stopped_at_the_per_file_cap(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FWTEST_VM_TIMEOUT", "2")
    write(project, "tests/firmware/test_slow.py", """
        def test_spins():
            while True:
                pass

        def test_never_reached():
            pass
        """)
    result = run(project, "-m", "micropython")
    result.assert_outcomes(failed=2, deselected=2)
    result.stdout.fnmatch_lines([
        "test_spins: timed out after 2s (the per-file cap*) while running this test*",
        "test_never_reached did not run: timed out after 2s * while running test_spins",
    ])


@needs_vm
def test_heapsize_comes_from_the_module_then_the_environment(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    alloc = "def test_alloc():\n    buf = bytearray(300 * 1024)\n    assert len(buf) == 307200\n"
    write(project, "tests/firmware/test_small.py", 'HEAPSIZE = "64K"\n\n' + alloc)
    write(project, "tests/firmware/test_default.py", alloc)
    result = run(project, "-m", "micropython")
    result.assert_outcomes(passed=1, failed=1, deselected=2)
    result.stdout.fnmatch_lines([
        "*test_default.py::micropython::test_alloc PASSED*",
        "*test_small.py::micropython::test_alloc FAILED*",
        "MemoryError: memory allocation failed*",
        "MemoryError at -X heapsize=64K. This unix VM is 64-bit*",
    ])

    monkeypatch.setenv("FWTEST_HEAPSIZE", "64K")
    result = run(project, "-m", "micropython", "tests/firmware/test_default.py")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*MemoryError at -X heapsize=64K*"])


@needs_vm
def test_k_selection_runs_only_the_selected_tests_in_the_vm(project: pytest.Pytester) -> None:
    write(project, "tests/firmware/test_sel.py", """
        def test_wanted():
            pass

        def test_other():
            # Leaves a mark in the rootdir (the VM's cwd) when it runs.
            with open("test_other_ran", "w") as f:
                f.write("x")
        """)
    marker = project.path / "test_other_ran"
    result = run(project, "-k", "wanted and micropython")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["*::micropython::test_wanted PASSED*"])
    assert not marker.exists()

    result = run(project, "-k", "other and micropython")
    result.assert_outcomes(passed=1, deselected=3)
    assert marker.exists()


@needs_vm
def test_test_output_that_looks_like_the_protocol_does_not_confuse_it(
    project: pytest.Pytester,
) -> None:
    write(project, "tests/firmware/test_noise.py", f"""
        import sys

        print("{SENTINEL}{{not json")

        def test_noisy():
            sys.stdout.write("no newline, then")
            print("{SENTINEL}{{\\"event\\": \\"bogus\\"")

        def test_fails_after_noise():
            assert False
        """)
    result = run(project, "-m", "micropython")
    result.assert_outcomes(passed=1, failed=1, deselected=2)
    result.stdout.fnmatch_lines(["*::micropython::test_noisy PASSED*"])


def test_a_missing_vm_fails_loudly_unless_allowed(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project, "tests/firmware/test_novm.py", "def test_x():\n    pass\n")
    monkeypatch.setenv("FWTEST_MICROPYTHON", str(project.path / "no-such-micropython"))
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["MicroPython VM not found (looked at FWTEST_MICROPYTHON=*"])

    monkeypatch.setenv("FWTEST_ALLOW_NO_VM", "1")
    result = run(project)
    result.assert_outcomes(passed=1, skipped=1)


def test_parse_output_splits_events_from_each_tests_output() -> None:
    def ev(**kw: object) -> str:
        import json

        return SENTINEL + json.dumps(kw) + "\n"

    stdout = (
        "banner\n"
        + ev(event="collected", names=["test_a", "test_b"])
        + ev(event="begin", name="test_a")
        + "a says hi\npartial"
        + ev(event="result", name="test_a", outcome="passed", traceback=None, duration_us=5)
        + ev(event="begin", name="test_b")
        + SENTINEL + "{broken\n"
        + "b was here\n"
    )
    run = parse_output(stdout, "Segmentation fault\n")
    assert run.collected == ["test_a", "test_b"]
    assert run.results["test_a"]["outcome"] == "passed"
    assert run.output["test_a"] == "a says hi\npartial"
    assert run.running == "test_b" and not run.done
    assert run.output["test_b"] == SENTINEL + "{broken\nb was here\n"
    assert run.stray == "banner\n"
    assert run.stderr == "Segmentation fault\n"
