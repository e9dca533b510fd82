"""Progress lines: redrawn in place on a terminal, one plain line per change otherwise."""

from __future__ import annotations

import io

from provisioning.display import Display, summary_table


def test_plain_output_is_one_line_per_step_and_no_bars():
    out = io.StringIO()
    d = Display(out, live=False)
    a, b = d.line("/dev/ttyUSB0"), d.line("/dev/ttyUSB1")
    a.device("wl-1")
    a.step("flash")
    a.progress(50, 100)  # a bar is for terminals only
    b.step("flash")
    a.finish("ok")
    assert out.getvalue().splitlines() == [
        "/dev/ttyUSB0: wl-1: flash", "/dev/ttyUSB1: flash", "/dev/ttyUSB0: wl-1: ok"]


def test_live_output_redraws_every_line_in_place_with_a_bar():
    out = io.StringIO()
    d = Display(out, live=True)
    a, _ = d.line("/dev/ttyUSB0"), d.line("/dev/ttyUSB1")
    a.device("wl-1")
    a.step("flash")
    assert out.getvalue().startswith("\x1b[2K/dev/ttyUSB0")  # first frame: no cursor-up
    d.last = 0.0  # progress redraws are throttled to 10 a second
    a.progress(50, 100)
    a.finish("ok")
    frames = out.getvalue()
    assert "\x1b[2F" in frames  # cursor back up over both lines before each redraw
    assert "[##########..........]  50%" in frames
    last = frames.rsplit("\x1b[2F", 1)[-1]
    assert [ln.replace("\x1b[2K", "").split() for ln in last.strip().split("\n")] == [
        ["/dev/ttyUSB0", "wl-1", "ok"], ["/dev/ttyUSB1", "waiting"]]


def test_summary_table_has_one_row_per_board():
    text = summary_table([
        {"port": "/dev/ttyUSB0", "device": "wl-1", "board": "water-level-devkitc",
         "steps": "flash,deploy", "time": "1.0s", "result": "ok"},
        {"port": "/dev/ttyUSB1", "device": "-", "board": "-", "steps": "-", "time": "0.1s",
         "result": "port /dev/ttyUSB1 is busy"}])
    lines = text.splitlines()
    assert lines[0].split() == ["PORT", "DEVICE", "BOARD", "STEPS", "DONE", "TIME", "RESULT"]
    assert lines[2].endswith("port /dev/ttyUSB1 is busy")
