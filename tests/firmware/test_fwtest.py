# fwtest's own helpers, checked in both runtimes (CPython and the MicroPython VM).

import os

import fwtest
from fwtest import data_path, lcg, raises, read, scratch, shared_path, write


def _fail(exc, *args, **kwargs):
    raise exc(*args)


def _ok(*args, **kwargs):
    return (args, kwargs)


def test_raises_returns_the_exception():
    e = raises(ValueError, _fail, ValueError, "bad value")
    assert isinstance(e, ValueError)
    assert e.args == ("bad value",)


def test_raises_accepts_a_base_class():
    e = raises(Exception, _fail, KeyError, "k")
    assert isinstance(e, KeyError)


def test_raises_fails_when_nothing_is_raised():
    try:
        raises(ValueError, _ok, 1, two=2)
    except AssertionError as e:
        msg = str(e)
        assert "ValueError" in msg, msg
        assert "_ok" in msg, msg
        assert "((1,), {'two': 2})" in msg, msg
    else:
        raise AssertionError("raises() passed although nothing was raised")


def test_raises_lets_another_exception_type_through():
    try:
        raises(ValueError, _fail, KeyError, "k")
    except KeyError as e:
        assert e.args == ("k",)
    else:
        raise AssertionError("raises() swallowed a KeyError it was not asked for")


def test_data_path_names_repository_files():
    with open(data_path("pyproject.toml")) as f:
        assert "[project]" in f.read()
    with open(data_path("tests/firmware/fwtest.py")) as f:
        assert "def data_path" in f.read()


def test_shared_path_points_beside_the_repository():
    assert shared_path("notes/style.md") == data_path("../shared/notes/style.md")
    # The stat fails with OSError if shared/ is not beside the repository.
    os.stat(shared_path("notes"))


def test_up_walks_folders_without_os_path():
    up = fwtest._up
    assert up("tests/firmware/fwtest.py", 1) == "tests/firmware"
    assert up("tests/firmware", 2) == "."
    assert up("/work/main/tests/firmware", 2) == "/work/main"
    assert up("fwtest.py", 1) == "."
    assert up(".", 2) == "../.."
    assert up("../x", 2) == "../.."
    assert up("/a", 3) == "/"


def _exists(path):
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def test_scratch_gives_a_fresh_directory_and_removes_it_with_its_contents():
    with scratch() as d:
        assert os.listdir(d) == []
        with scratch() as other:
            assert other != d
        assert not _exists(other)
        os.mkdir(d + "/sub")
        write(d + "/sub/f", b"x")
        write(d + "/g", b"")
    assert not _exists(d)


def test_scratch_removes_its_directory_and_lets_the_error_through():
    seen = []
    try:
        with scratch() as d:
            seen.append(d)
            write(d + "/f", b"x")
            raise KeyError("inside")
    except KeyError as e:
        assert e.args == ("inside",)
    else:
        raise AssertionError("scratch() swallowed the error raised in its block")
    assert not _exists(seen[0])


def test_write_then_read_round_trips_bytes_and_replaces_the_file():
    with scratch() as d:
        write(d + "/f", b"\x00\xff old contents")
        write(d + "/f", b"\xd5new")
        assert read(d + "/f") == b"\xd5new"


def test_lcg_is_the_same_sequence_on_both_runtimes():
    # The generated tracks and noise the firmware tests use depend on these exact values.
    g = lcg(1)  # the C standard's example rand(), seeded with 1, starts the same
    assert [next(g) for _ in range(5)] == [16838, 5758, 10113, 17515, 31051]
    a, b = lcg(7), lcg(7)
    first = [next(a) for _ in range(1000)]
    assert first == [next(b) for _ in range(1000)]
    assert min(first) >= 0 and max(first) <= 32767 and len(set(first)) > 900
