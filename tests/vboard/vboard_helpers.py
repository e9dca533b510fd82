"""Helpers for the virtual-board tests: mpremote as a bounded subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MPREMOTE = str(Path(sys.executable).parent / "mpremote")


def mpremote(port: str, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """The real mpremote CLI; its own timeouts never fire on a pty, so bound it here."""
    return subprocess.run([MPREMOTE, "connect", port, *args], capture_output=True, text=True,
                          timeout=timeout)


def mp_ok(port: str, *args: str, timeout: float = 20.0) -> str:
    """mpremote that must succeed; returns its stdout."""
    r = mpremote(port, *args, timeout=timeout)
    assert r.returncode == 0, f"mpremote {args} failed ({r.returncode}): {r.stdout}{r.stderr}"
    return r.stdout


def read_until(ser, token: bytes, timeout: float = 10.0) -> bytes:
    """Read a pyserial port until `token` (or fail with what came)."""
    ser.timeout = timeout
    data = ser.read_until(token)
    assert data.endswith(token), f"waited for {token!r}, got {data[-300:]!r}"
    return data


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll `predicate` until it returns something truthy."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def sync_friendly(ser) -> None:
    """Put the board's friendly REPL in a known state: everything before is read.

    The board may still be printing its boot banner when the port is opened,
    so wait for the echo of a unique expression rather than for a prompt.
    """
    ser.write(b"\x02")
    ser.write(b"'sync-point'\r")
    read_until(ser, b"'sync-point'\r\n>>> ")
