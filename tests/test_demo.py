"""`make demo` keeps working: the whole path, three virtual nodes to the upstream broker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_delivers_every_reading_of_three_nodes_across_an_agent_kill() -> None:
    r = subprocess.run([sys.executable, str(REPO / "demo/run.py"), "--seconds", "24"],
                       capture_output=True, text=True, timeout=170, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "killing the edge agent with SIGKILL" in r.stdout
    rows = {m[0]: (int(m[1]), int(m[2])) for m in
            re.findall(r"^(\S+)\s+(\d+)\s+\d+\s+\d+\s+(\d+)\s+\S+", r.stdout, re.M)
            if m[0] in ("wl-0007", "boat-0112", "trk-0031")}
    assert set(rows) == {"wl-0007", "boat-0112", "trk-0031"}, r.stdout[-2000:]
    for dev, (received, gaps) in rows.items():
        assert received > 0 and gaps == 0, (dev, received, gaps)
    # The flood crossed the alert line and the boat left its zone: both alarms arrived.
    assert "EVENT flood_alert" in r.stdout
    assert "EVENT zone_exit" in r.stdout
