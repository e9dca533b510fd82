"""The real mpremote CLI drives a virtual board like a USB-connected ESP32."""

from __future__ import annotations

import hashlib
import os

from vboard_helpers import mp_ok, mpremote


def test_exec_and_eval_run_on_the_board(vboard):
    out = mp_ok(vboard.port, "exec", "import sys; print(sys.platform, 6 * 7)")
    assert out.strip() == "esp32 42"
    assert mp_ok(vboard.port, "eval", "sum(range(10))").strip() == "45"


def test_exception_on_the_board_fails_the_command_with_its_traceback(vboard):
    r = mpremote(vboard.port, "exec", "1/0")
    assert r.returncode == 1
    assert "ZeroDivisionError" in r.stdout + r.stderr
    # ROM frames are hidden, as C frames are on the chip
    assert "vb_" not in r.stdout + r.stderr


def test_fs_commands_round_trip_files(vboard, tmp_path):
    data = os.urandom(20 * 1024)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    mp_ok(vboard.port, "fs", "mkdir", ":lib")
    mp_ok(vboard.port, "fs", "cp", str(src), ":lib/blob.bin")
    assert (vboard.dir / "lib" / "blob.bin").read_bytes() == data  # the flash is the dir

    listing = mp_ok(vboard.port, "fs", "ls", ":lib")
    assert f"{len(data)} blob.bin" in " ".join(listing.split())
    assert hashlib.sha256(data).hexdigest() in mp_ok(vboard.port, "fs", "sha256sum",
                                                      ":lib/blob.bin")
    back = tmp_path / "back.bin"
    mp_ok(vboard.port, "fs", "cp", ":lib/blob.bin", str(back))
    assert back.read_bytes() == data

    (tmp_path / "note.txt").write_text("line one\nline two\n")
    mp_ok(vboard.port, "fs", "cp", str(tmp_path / "note.txt"), ":note.txt")
    assert "line one" in mp_ok(vboard.port, "fs", "cat", ":note.txt")

    mp_ok(vboard.port, "fs", "rm", ":lib/blob.bin")
    assert not (vboard.dir / "lib" / "blob.bin").exists()
    root = mp_ok(vboard.port, "fs", "ls", ":")
    assert "lib/" in root and ".vboard" not in root  # the relay's folder is not flash


def test_run_executes_a_local_script_on_the_board(vboard, tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("import machine\nprint('id', len(machine.unique_id()))\n")
    assert mp_ok(vboard.port, "run", str(script)).strip() == "id 6"


def test_files_in_lib_are_importable(vboard, tmp_path):
    (vboard.dir / "lib").mkdir()
    (vboard.dir / "lib" / "greet.py").write_text("WORD = 'delta'\n")
    assert mp_ok(vboard.port, "exec", "import greet; print(greet.WORD)").strip() == "delta"


def test_soft_reset_then_resume_keeps_no_state_but_resume_keeps_it(vboard):
    mp_ok(vboard.port, "exec", "marker = 123")
    # resume: no soft reset, the global is still there
    assert mp_ok(vboard.port, "resume", "eval", "marker").strip() == "123"
    mp_ok(vboard.port, "soft-reset")
    r = mpremote(vboard.port, "resume", "eval", "marker")
    assert r.returncode != 0 and "NameError" in r.stdout + r.stderr


def test_reset_is_a_hard_reset(vboard):
    mp_ok(vboard.port, "reset")
    st = vboard.control.wait_booted(1)
    assert st["reset_cause"] == 2
    out = mp_ok(vboard.port, "resume", "exec", "import machine; print(machine.reset_cause())")
    assert out.strip() == "2"


def test_mount_makes_a_host_directory_importable(vboard, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "hostmod.py").write_text("VALUE = 'from host'\n")
    out = mp_ok(vboard.port, "mount", str(host), "exec", "import hostmod; print(hostmod.VALUE)")
    assert "from host" in out


def test_a_port_that_does_not_exist_gives_a_clear_error():
    r = mpremote("/dev/pts/4095", "exec", "print(1)", timeout=10)
    assert r.returncode != 0
    assert "failed to access /dev/pts/4095" in r.stdout + r.stderr
