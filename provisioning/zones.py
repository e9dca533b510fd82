"""A boat's licensed zones from a GeoJSON file (RFC 7946) into the node config's form.

The file is a FeatureCollection of Polygon features, each with properties
`name` and, optionally, `hours`: licensed periods in local time, as
`[[start_min, end_min], ...]` (minutes after midnight) or `["06:00-18:00", ...]`;
without `hours` the zone is licensed all day. GeoJSON positions are
`[lon, lat]`; the config wants `[[lat, lon], ...]` without the ring's closing
point. Every problem is one line naming the file and the feature.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from provisioning.errors import SettingsError

MAX_ZONES = 16
MAX_POINTS = 64
HOURS_RE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class ZoneFileError(SettingsError):
    pass


def _minutes(h: str, m: str) -> int:
    return int(h) * 60 + int(m)


def _hours(value: Any, where: str) -> list[list[int]]:
    if not isinstance(value, list) or not value:
        raise ZoneFileError(f"{where}: hours must be a non-empty list")
    out = []
    for i, period in enumerate(value):
        if isinstance(period, str):
            m = HOURS_RE.match(period.strip())
            if not m:
                raise ZoneFileError(f"{where}: hours[{i}]: expected 'HH:MM-HH:MM', got {period!r}")
            start, end = _minutes(m[1], m[2]), _minutes(m[3], m[4])
        elif (isinstance(period, list) and len(period) == 2
              and all(isinstance(x, int) and not isinstance(x, bool) for x in period)):
            start, end = period
        else:
            raise ZoneFileError(
                f"{where}: hours[{i}]: expected [start_min, end_min] or 'HH:MM-HH:MM'"
            )
        if not (0 <= start <= 1440 and 0 <= end <= 1440) or start == end:
            raise ZoneFileError(f"{where}: hours[{i}]: not a period within a day: {period!r}")
        out.append([start, end])
    return out


def _ring(coords: Any, where: str) -> list[list[float]]:
    if not isinstance(coords, list) or not coords:
        raise ZoneFileError(f"{where}: coordinates must be a list of rings")
    if len(coords) > 1:
        raise ZoneFileError(f"{where}: polygons with holes are not supported")
    ring = coords[0]
    if not isinstance(ring, list) or len(ring) < 4:
        raise ZoneFileError(f"{where}: a ring needs at least 4 positions (3 corners, closed)")
    points = []
    for i, pos in enumerate(ring):
        if (not isinstance(pos, list) or len(pos) < 2
                or not all(isinstance(x, int | float) and not isinstance(x, bool)
                           for x in pos[:2])):
            raise ZoneFileError(f"{where}: position {i}: expected [lon, lat]")
        lon, lat = float(pos[0]), float(pos[1])
        if not -90 <= lat <= 90:
            swapped = -90 <= lon <= 90
            hint = " (GeoJSON is [lon, lat]; this looks like [lat, lon])" if swapped else ""
            raise ZoneFileError(f"{where}: position {i}: latitude {lat} out of range{hint}")
        if not -180 <= lon <= 180:
            raise ZoneFileError(f"{where}: position {i}: longitude {lon} out of range")
        points.append([lat, lon])
    if points[0] != points[-1]:
        raise ZoneFileError(f"{where}: the ring is not closed (RFC 7946: last position = first)")
    points.pop()
    if len(points) > MAX_POINTS:
        raise ZoneFileError(f"{where}: {len(points)} corners, at most {MAX_POINTS}")
    return points


def parse_zones(data: Any, source: str) -> list[dict[str, Any]]:
    """GeoJSON data -> config zones [{name, polygon, hours}]."""
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise ZoneFileError(f"{source}: expected a GeoJSON FeatureCollection")
    features = data.get("features")
    if not isinstance(features, list) or not features:
        raise ZoneFileError(f"{source}: no features")
    if len(features) > MAX_ZONES:
        raise ZoneFileError(f"{source}: {len(features)} zones, at most {MAX_ZONES}")
    zones: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, feature in enumerate(features):
        where = f"{source}: features[{i}]"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            raise ZoneFileError(f"{where}: expected a Feature")
        props = feature.get("properties") or {}
        name = props.get("name") if isinstance(props, dict) else None
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            raise ZoneFileError(f"{where}: properties.name must be 1 to 32 characters")
        where = f"{source}: zone {name!r} (features[{i}])"
        if name in names:
            raise ZoneFileError(f"{where}: duplicate name")
        names.add(name)
        geometry = feature.get("geometry")
        if not isinstance(geometry, dict) or geometry.get("type") != "Polygon":
            got = geometry.get("type") if isinstance(geometry, dict) else geometry
            raise ZoneFileError(f"{where}: geometry must be a Polygon, got {got!r}")
        zone: dict[str, Any] = {"name": name, "polygon": _ring(geometry.get("coordinates"), where)}
        if props.get("hours") is not None:
            zone["hours"] = _hours(props["hours"], where)
        zones.append(zone)
    return zones


def load_zones(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ZoneFileError(f"{path}: cannot read: {e.strerror or e}") from e
    except ValueError as e:
        raise ZoneFileError(f"{path}: not JSON: {e}") from e
    return parse_zones(data, str(path))
