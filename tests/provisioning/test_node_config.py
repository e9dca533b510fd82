"""Node config from board kind + site settings, checked by the firmware's own config.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioning.boards import load_boards
from provisioning.errors import SettingsError
from provisioning.node_config import NodeSettings, build_config, node_files, render

REPO = Path(__file__).resolve().parents[2]
BOARDS = load_boards(REPO / "boards.yaml")
WL = BOARDS.get("water-level-devkitc")
BOAT = BOARDS.get("boat-gps-cell")
SECRETS = {"mqtt_pass": "p" * 32, "key": "ab" * 32}
ZONES = {"type": "FeatureCollection", "features": [{
    "type": "Feature", "properties": {"name": "hau-07", "hours": ["06:00-18:00"]},
    "geometry": {"type": "Polygon", "coordinates": [[[105.74, 10.05], [105.75, 10.05],
                                                     [105.75, 10.06], [105.74, 10.05]]]}}]}


@pytest.fixture
def site(tmp_path) -> Path:
    (tmp_path / "zones.geojson").write_text(json.dumps(ZONES))
    path = tmp_path / "site.yaml"
    path.write_text(
        "link: {ssid: ninh-kieu-gw, apn: m3-world}\n"
        "broker: {host: 192.168.50.1, port: 1883}\n"
        "intervals: {normal_s: 600, fast_s: 60}\n"
        "tz_offset_s: 25200\n"
        "secrets: {wifi_pass: site-passphrase}\n"
        "water_level: {datum_m: 4.5, alert_m: 1.9}\n"
        "boat: {zones_file: zones.geojson, dwell_s: 900}\n"
        "truck: {min_dist_m: 40}\n")
    return path


def test_water_level_config_takes_the_kinds_facts_and_the_sites_values(site):
    s = NodeSettings.load(site)
    files = node_files(WL, "wl-0007", s, SECRETS)
    cfg = json.loads(files.config_bytes)
    assert cfg["device"] == "wl-0007" and cfg["role"] == "water_level"
    assert cfg["pins"] == WL.pins  # GPIO numbers come only from boards.yaml
    assert cfg["link"] == {"type": "wifi", "ssid": "ninh-kieu-gw"}  # no apn on a Wi-Fi kind
    assert cfg["battery_ratio"] == 2.0
    wl = cfg["water_level"]
    assert (wl["min_m"], wl["max_m"], wl["deep_sleep"]) == (0.25, 4.5, True)  # from the kind
    assert (wl["datum_m"], wl["alert_m"]) == (4.5, 1.9)  # from the site
    assert "boat" not in cfg and "truck" not in cfg  # other roles' sections dropped
    secrets = json.loads(files.secrets_bytes)
    assert secrets == {**SECRETS, "wifi_pass": "site-passphrase"}
    assert b"site-passphrase" not in files.config_bytes and b"ab" * 32 not in files.config_bytes


def test_boat_gets_cellular_link_and_zones_from_geojson(site):
    files = node_files(BOAT, "boat-0112", NodeSettings.load(site), SECRETS)
    cfg = json.loads(files.config_bytes)
    assert cfg["link"] == {"type": "cell", "apn": "m3-world"}
    assert cfg["boat"]["dwell_s"] == 900
    assert cfg["boat"]["zones"] == [{"name": "hau-07", "hours": [[360, 1080]],
                                     "polygon": [[10.05, 105.74], [10.05, 105.75],
                                                 [10.06, 105.75]]}]
    assert "wifi_pass" not in json.loads(files.secrets_bytes)  # no Wi-Fi on a cell node


def test_options_override_the_site(site):
    s = NodeSettings.load(site, link="wifi", broker_port=8883, tls=True,
                          sets=("water_level.alert_m=2.5", "watchdog_s=60"))
    cfg = build_config(BOAT, "boat-1", s)
    assert cfg["link"] == {"type": "wifi", "ssid": "ninh-kieu-gw"}
    assert cfg["broker"] == {"host": "192.168.50.1", "port": 8883, "tls": True}
    assert build_config(WL, "wl-1", s)["water_level"]["alert_m"] == 2.5
    assert cfg["watchdog_s"] == 60


def test_the_same_settings_give_the_same_bytes(site):
    a = node_files(WL, "wl-0007", NodeSettings.load(site), SECRETS)
    b = node_files(WL, "wl-0007", NodeSettings.load(site), SECRETS)
    assert a.config_bytes == b.config_bytes and a.config_hash == b.config_hash
    assert a.config_bytes == render(json.loads(a.config_bytes))


def test_the_firmware_schema_names_the_missing_field(tmp_path):
    s = NodeSettings.load(None, wifi_ssid="ap", broker_host="gw")
    with pytest.raises(SettingsError) as e:
        node_files(WL, "wl-1", s, SECRETS)
    assert "water_level.datum_m: missing" in str(e.value)


def test_the_firmware_schema_checks_values_and_cross_fields(site):
    s = NodeSettings.load(site, sets=("water_level.alert_m=4.4",))
    with pytest.raises(SettingsError, match="alert_m: must be at most datum_m - min_m"):
        node_files(WL, "wl-1", s, SECRETS)
    s = NodeSettings.load(site, sets=("intervals.fast_s=3",))
    with pytest.raises(SettingsError, match="intervals.fast_s"):
        node_files(WL, "wl-1", s, SECRETS)


def test_a_short_wifi_password_is_refused_without_echoing_it(site):
    s = NodeSettings.load(site, wifi_pass="short")
    with pytest.raises(SettingsError) as e:
        node_files(WL, "wl-1", s, SECRETS)
    assert "wifi_pass" in str(e.value) and "short" not in str(e.value)


def test_a_cellular_kind_needs_an_apn(tmp_path):
    s = NodeSettings.load(None, broker_host="gw")
    with pytest.raises(SettingsError, match="no APN"):
        build_config(BOAT, "boat-1", s)


def test_a_bad_zone_file_is_a_settings_error(site):
    (site.parent / "zones.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(SettingsError, match="zones.geojson: no features"):
        build_config(BOAT, "boat-1", NodeSettings.load(site))


def test_site_secrets_section_holds_only_the_wifi_password(tmp_path):
    p = tmp_path / "site.yaml"
    p.write_text("secrets: {wifi_pass: abcdefgh, mqtt_pass: nope}\n")
    with pytest.raises(SettingsError, match="only wifi_pass"):
        NodeSettings.load(p)
