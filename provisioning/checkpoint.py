"""Named points inside the provisioning steps where a test can stop nodectl.

With NODECTL_TEST_PAUSE_AT=<step> (at the start of the step) or
<step>:<point> (inside it: `flash:erased`, `deploy:copying`,
`configure:config-written`, `register:files-written`), nodectl prints
`nodectl: test pause at <where>` on stderr when it gets there and sleeps, so
a test can SIGKILL it at a known place and check that a re-run recovers.
Unset (always, outside tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "NODECTL_TEST_PAUSE_AT"
POINTS = (
    "flash", "flash:erased",
    "deploy", "deploy:copying",
    "configure", "configure:config-written",
    "register", "register:files-written",
    "verify",
)


def checkpoint(step: str, point: str | None = None) -> None:
    want = os.environ.get(ENV)
    if not want:
        return
    where = f"{step}:{point}" if point else step
    if want == where:
        sys.stderr.write(f"nodectl: test pause at {where}\n")
        sys.stderr.flush()
        while True:
            time.sleep(3600)
