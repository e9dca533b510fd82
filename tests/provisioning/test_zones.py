"""GeoJSON zones into the boat config: [lon, lat] in, [lat, lon] out, one-line errors."""

from __future__ import annotations

import json

import pytest

from provisioning.zones import ZoneFileError, load_zones, parse_zones

SQUARE = [[105.785, 10.031], [105.791, 10.031], [105.791, 10.037], [105.785, 10.037],
          [105.785, 10.031]]


def fc(*features):
    return {"type": "FeatureCollection", "features": list(features)}


def zone(name="hau-07", coords=None, hours=None, gtype="Polygon"):
    props = {"name": name}
    if hours is not None:
        props["hours"] = hours
    return {"type": "Feature", "properties": props,
            "geometry": {"type": gtype, "coordinates": coords or [SQUARE]}}


def test_positions_are_swapped_to_lat_lon_and_the_closing_point_dropped():
    (z,) = parse_zones(fc(zone()), "z.geojson")
    assert z["name"] == "hau-07"
    assert z["polygon"] == [[10.031, 105.785], [10.031, 105.791], [10.037, 105.791],
                            [10.037, 105.785]]
    assert "hours" not in z  # all day: the firmware's default


def test_hours_as_text_or_minutes():
    (a, b) = parse_zones(fc(zone("a", hours=["06:00-18:30", "22:00-02:00"]),
                            zone("b", hours=[[300, 690]])), "z")
    assert a["hours"] == [[360, 1110], [1320, 120]]
    assert b["hours"] == [[300, 690]]


@pytest.mark.parametrize("feature, message", [
    (zone(coords=[SQUARE, SQUARE]), "holes are not supported"),
    (zone(coords=[SQUARE[:-1]]), "not closed"),
    (zone(gtype="MultiPolygon"), "must be a Polygon"),
    (zone(coords=[[[lat, lon] for lon, lat in SQUARE]]), "looks like [lat, lon]"),
    (zone(hours=["6h-18h"]), "HH:MM-HH:MM"),
    (zone(name=""), "properties.name"),
    (zone(coords=[[[105 + i / 1000, 10.0] for i in range(70)] + [[105.0, 10.0]]]),
     "at most 64"),
])
def test_bad_zones_name_the_file_and_feature(feature, message):
    with pytest.raises(ZoneFileError) as e:
        parse_zones(fc(zone("ok"), feature), "zones.geojson")
    text = str(e.value)
    assert message in text and text.startswith("zones.geojson: ") and "features[1]" in text
    assert "\n" not in text


def test_duplicate_names_and_wrong_top_level_are_refused():
    with pytest.raises(ZoneFileError, match="duplicate"):
        parse_zones(fc(zone("a"), zone("a")), "z")
    with pytest.raises(ZoneFileError, match="FeatureCollection"):
        parse_zones(zone(), "z")


def test_unreadable_file_is_one_line(tmp_path):
    p = tmp_path / "z.geojson"
    p.write_text("{not json")
    with pytest.raises(ZoneFileError, match="not JSON"):
        load_zones(p)
    p.write_text(json.dumps(fc(zone())))
    assert load_zones(p)[0]["name"] == "hau-07"
