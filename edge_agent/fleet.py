"""The fleet view: which devices are online, and when one goes offline or comes back.

A device is offline when its last will says so (status `online: false`), or when it has
been silent for more than `offline_multiple` times its reporting interval. The interval
is the one its last status announced (`interval`), else the spacing the store observed
between its messages (`device_state.seen_interval`); with neither, silence is not judged.
Silence counts from the later of its last message and the moment the agent started
listening (`heard_from`): a device cannot be heard while the local link is down, and
the broker's backlog is still being read right after a start.

Each change becomes an event: a log line, a metric, a row in the `events` table (kept
with the device's `offline_since`), and, when configured, a message upstream (forward.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

FleetRow = tuple[str, float | None, int | None, int | None, float | None, float | None]


@dataclass
class Judgement:
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (device, kind, detail)
    online: int = 0
    offline: int = 0
    states: dict[str, str] = field(default_factory=dict)  # device -> online/offline/unknown


def judge(rows: Iterable[FleetRow], now: float, multiple: float,
          heard_from: float | None) -> Judgement:
    """Decide each device's state from its device_state row; `heard_from` None means
    silence cannot be judged now (the local link is down)."""
    out = Judgement()
    for device, last_seen, online, interval, seen_interval, offline_since in rows:
        every = interval or seen_interval
        if offline_since is not None:
            if last_seen is not None and last_seen > offline_since:
                out.events.append((device, "online",
                                   f"heard again after {last_seen - offline_since:.0f} s"))
                out.online += 1
                out.states[device] = "online"
            else:
                out.offline += 1
                out.states[device] = "offline"
            continue
        if online == 0:
            out.events.append((device, "offline", "last will: its connection dropped"))
        elif (last_seen is not None and every and heard_from is not None
              and now - max(last_seen, heard_from) > multiple * every):
            out.events.append((device, "offline",
                               f"silent for {now - last_seen:.0f} s, more than "
                               f"{multiple:g} x its {every:.0f} s interval"))
        else:
            state = "online" if last_seen is not None else "unknown"
            out.states[device] = state
            out.online += state == "online"
            continue
        out.offline += 1
        out.states[device] = "offline"
    return out
