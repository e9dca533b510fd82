# Helpers for firmware tests: plain functions that work on CPython and MicroPython.
# Firmware test files (tests/firmware/test_*.py) use plain `assert` and these
# helpers only; no pytest features, so the same file runs inside the VM.

try:
    _HERE = __file__.rsplit("/", 1)[0]
except NameError:  # frozen or exec'd without a file
    _HERE = "tests/firmware"

# tests/firmware -> repository root
REPO = _HERE.rsplit("/", 2)[0] if _HERE.count("/") >= 2 else "."


def data_path(rel):
    """Path of a file relative to the repository root (e.g. 'tests/vectors/x.cbor')."""
    return REPO + "/" + rel


def shared_path(rel):
    """Path of a file under ../shared/ beside the repository (e.g. 'data/nmea/mt3339.log')."""
    return REPO + "/../shared/" + rel


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exception it raised; fail if it raised nothing or another type."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError("expected %s from %r" % (exc_type.__name__, fn))
