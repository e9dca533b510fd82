"""The wire contract's tables (docs/wire-format.md, version 1) as data for the validator."""

from __future__ import annotations

import re

VERSION = 1
DEVICE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")

# Uplink envelope keys.
K_V, K_DEV, K_BOOT, K_SEQ, K_ROLE, K_PACK, K_UT, K_LO = 0, 1, 2, 3, 4, 5, 6, 7
ENVELOPE_KEYS = frozenset({K_V, K_DEV, K_BOOT, K_SEQ, K_ROLE, K_PACK, K_UT, K_LO})
FIRST_EXTENSION_KEY = 16  # keys >= 16 are ignored, unknown keys below are rejected
MAX_RECORDS = 64

# Downlink keys.
D_V, D_DEV, D_ACK, D_CMD, D_ARGS, D_ID = 0, 1, 8, 9, 10, 11

# SenML integer labels (RFC 8428 section 6).
BN, BT, BU, N, U, V, VS, VB, VD, T = -2, -3, -4, 0, 1, 2, 3, 4, 8, 6
LABELS = frozenset({BN, BT, BU, N, U, V, VS, VB, VD, T})
VALUE_LABELS = (V, VS, VB, VD)

ROLES = frozenset({"water_level", "boat", "truck"})
_ALL = ROLES
_MOVING = frozenset({"boat", "truck"})

# name -> (roles allowed to send it, unit or None, the one value label it carries)
NAMES: dict[str, tuple[frozenset[str], str | None, int]] = {
    "level": (frozenset({"water_level"}), "m", V),
    "distance": (frozenset({"water_level"}), "m", V),
    "rise": (frozenset({"water_level"}), "m/s", V),
    "plevel": (frozenset({"water_level"}), "m", V),
    "temp": (frozenset({"water_level"}), "Cel", V),
    "battery": (_ALL, "V", V),
    "lat": (_MOVING, "lat", V),
    "lon": (_MOVING, "lon", V),
    "speed": (_MOVING, "m/s", V),
    "course": (_MOVING, "deg", V),
    "fix": (_MOVING, None, VB),
    "sats": (_MOVING, None, V),
    "zone": (frozenset({"boat"}), None, VS),
    "track": (frozenset({"truck"}), None, VD),
    "odometer": (frozenset({"truck"}), "m", V),
    "ignition": (frozenset({"truck"}), None, VB),
    "event": (_ALL, None, VS),
    "duration": (_ALL, "s", V),
}

DWELL = "dwell"  # an alarm when the pack's zone is "" (outside every zone) or absent

# kind -> (roles, alarm); `dwell` is decided by the pack's zone.
EVENTS: dict[str, tuple[frozenset[str], bool]] = {
    "flood_alert": (frozenset({"water_level"}), True),
    "flood_clear": (frozenset({"water_level"}), False),
    "zone_exit": (frozenset({"boat"}), True),
    "zone_enter": (frozenset({"boat"}), False),
    "off_hours": (frozenset({"boat"}), True),
    DWELL: (frozenset({"boat"}), False),
    "fix_lost": (_MOVING, False),
    "trip_start": (frozenset({"truck"}), False),
    "trip_end": (frozenset({"truck"}), False),
    "stop": (frozenset({"truck"}), False),
}

# Status map (text keys): key -> accepted Python types.
STATUS_TYPES: dict[str, tuple[type, ...]] = {
    "v": (int,), "dev": (str,), "online": (bool,), "fw": (str,), "boot": (int,),
    "reset": (str,), "heap": (int,), "rssi": (int,), "link": (str,), "batt": (int, float),
    "outbox": (int,), "dropped": (int,), "uptime": (int,), "interval": (int,), "cmd_id": (int,),
}
STATUS_UNSIGNED = frozenset({"v", "boot", "heap", "outbox", "dropped", "uptime", "interval",
                             "cmd_id"})
RESET_CAUSES = frozenset({"power_on", "hard", "wdt", "deepsleep", "soft", "brownout"})
LINKS = frozenset({"wifi", "cell"})
