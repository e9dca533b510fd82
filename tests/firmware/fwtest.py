# Helpers for firmware tests: plain functions that work on CPython and MicroPython.
# Firmware test files (tests/firmware/test_*.py) use plain `assert` and these
# helpers only; no pytest features, so the same file runs inside the VM
# (tests/micropython_vm.py runs each file in both runtimes).


def _up(path, n):
    # `n` folders up from `path` without os.path (MicroPython has none): "a/b/c" -> "a",
    # "/x/a/b" -> "/x", "b" -> "..", "." -> "../..".
    parts = [p for p in path.split("/") if p not in ("", ".")]
    absolute = path.startswith("/")
    for _ in range(n):
        if parts and parts[-1] != "..":
            parts.pop()
        elif absolute:
            pass  # "/.." is "/"
        else:
            parts.append("..")
    joined = "/".join(parts)
    if absolute:
        return "/" + joined
    return joined or "."


try:
    _FILE = __file__
except NameError:  # frozen or exec'd without a file: assume cwd is the repository root
    _FILE = "tests/firmware/fwtest.py"

# This file's folder (tests/firmware); the repository root is two folders above it.
_HERE = _up(_FILE, 1)
REPO = _up(_HERE, 2)


def data_path(rel):
    """Path of a file relative to the repository root (e.g. 'tests/vectors/x.cbor')."""
    return REPO + "/" + rel


def shared_path(rel):
    """Path of a file under ../shared/ beside the repository (e.g. 'data/nmea/mt3339.log')."""
    return REPO + "/../shared/" + rel


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exception it raised; fail if it raised nothing or another type.

    Another exception type propagates unchanged, so its own traceback shows.
    """
    try:
        result = fn(*args, **kwargs)
    except exc_type as e:
        return e
    name = getattr(exc_type, "__name__", repr(exc_type))
    raise AssertionError(
        "expected %s from %s, got return value %r"
        % (name, getattr(fn, "__name__", repr(fn)), result)
    )


def lcg(seed):
    """Deterministic pseudo-random ints 0..32767, the same on both runtimes (a linear
    congruential generator; no random module needed)."""
    x = seed
    while True:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        yield x >> 16


_tmp_count = [0]


def tmpdir(tag="fwt"):
    """A fresh directory under /tmp (MicroPython has no tempfile); remove it with rmtree."""
    import os
    import time

    _tmp_count[0] += 1
    d = "/tmp/%s_%d_%d" % (tag, time.time_ns(), _tmp_count[0])
    os.mkdir(d)
    return d


def rmtree(d):
    """Remove a directory tree (MicroPython has no shutil)."""
    import os

    for nm in os.listdir(d):
        p = d + "/" + nm
        if os.stat(p)[0] & 0x4000:
            rmtree(p)
        else:
            os.remove(p)
    os.rmdir(d)


class scratch:
    """`with scratch() as d:` a fresh directory from tmpdir(), removed with all it holds
    when the block ends, whether it passed or raised.

    A class rather than contextlib.contextmanager, which MicroPython lacks.
    """

    def __init__(self, tag="fwt"):
        self.tag = tag
        self.path = None

    def __enter__(self):
        self.path = tmpdir(self.tag)
        return self.path

    def __exit__(self, exc_type, exc, tb):
        rmtree(self.path)
        return False  # an exception from the block goes on


def read(path):
    """The whole file as bytes."""
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    """Create or replace a file with these bytes."""
    with open(path, "wb") as f:
        f.write(data)
