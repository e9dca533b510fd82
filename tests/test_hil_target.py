"""Target on an attached board: a node left running by an earlier test must not reset this one."""

from __future__ import annotations

import time

from hil_tests.slots import BoardSlot
from hil_tests.target import Settings, Target
from hil_tests.vboard import VirtualBoard

# A node's main.py: arms a 1.5 s watchdog, then feeds it forever. After Ctrl-C
# (any harness connecting) nobody feeds it, and a soft reset does not stop it.
NODE_MAIN = (b"import machine, time\nwdt = machine.WDT(timeout=1500)\n"
             b"while True:\n    wdt.feed()\n    time.sleep_ms(100)\n")


def test_an_old_nodes_main_py_is_parked_for_the_test_and_put_back(tmp_path):
    root = tmp_path / "board"
    root.mkdir()
    (root / "main.py").write_bytes(NODE_MAIN)
    with VirtualBoard(root) as vb:
        # the virtual board's pty, given as a serial port: to Target, attached hardware
        target = Target(BoardSlot(0, vb.port, None), tmp_path / "t", Settings()).start()
        try:
            assert target.parked and not (root / "main.py").exists()
            time.sleep(2.5)  # longer than the old watchdog
            assert target.board.eval("__import__('machine').reset_cause()") == 2  # our reset
            assert vb.control.state()["reset_cause"] == 2, "the old watchdog fired"
        finally:
            target.stop()
        assert (root / "main.py").read_bytes() == NODE_MAIN
        assert not (root / "main.py.hil-parked").exists()
