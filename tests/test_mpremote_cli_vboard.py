"""The real `mpremote` CLI drives a virtual board the way QA drives a USB-attached ESP32.

One clearly named end-to-end check for issue 3's "a test in the normal suite
drives a vboard with the real mpremote CLI": connect, exec, fs cp, fs ls and
run chained in ONE mpremote session (as a QA script would), then a second
session sees the files. The per-command tests (eval, cat, rm, mkdir,
sha256sum, soft-reset, reset, resume, mount, errors) are in
tests/vboard/test_vboard_mpremote.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from hil_tests.vboard import VirtualBoard

MPREMOTE = str(Path(sys.executable).parent / "mpremote")


def test_mpremote_cli_connects_execs_copies_lists_and_runs_in_one_session(tmp_path):
    blob = os.urandom(20 * 1024)
    (tmp_path / "blob.bin").write_bytes(blob)
    (tmp_path / "probe.py").write_text(
        "import machine, os\n"
        "print('run:', os.stat('/blob.bin')[6], len(machine.unique_id()))\n")
    with VirtualBoard(tmp_path / "board") as vb:
        r = subprocess.run(
            [MPREMOTE, "connect", vb.port,
             "exec", "import sys; print('exec:', sys.platform)", "+",
             "fs", "cp", str(tmp_path / "blob.bin"), ":blob.bin", "+",
             "fs", "ls", ":", "+",
             "run", str(tmp_path / "probe.py")],
            capture_output=True, text=True, timeout=60)  # mpremote never times out on a pty
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert "exec: esp32" in lines
        assert f"{len(blob)} blob.bin" in [" ".join(ln.split()) for ln in lines]
        assert "run: 20480 6" in lines
        assert lines.index("exec: esp32") < lines.index("run: 20480 6")  # in the given order
        assert (vb.dir / "blob.bin").read_bytes() == blob  # the flash is the board's directory

        again = subprocess.run([MPREMOTE, "connect", vb.port, "fs", "sha256sum", ":blob.bin"],
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stdout + again.stderr
        assert hashlib.sha256(blob).hexdigest() in again.stdout
