# Per-node config: the examples validate, each kind of bad field gives one
# line naming it, defaults fill in, secrets never echo, downlink commands.

import json
import os
import sys

import config
from config import ConfigError
from fwtest import data_path, raises

ROLES = ("water_level", "boat", "truck")
SECRETS = {"wifi_pass": "correct horse battery", "mqtt_pass": "pw-7",
           "key": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}


def _example(role):
    with open(data_path("firmware/examples/%s.json" % role)) as f:
        return json.load(f)


def _copy(x):
    return json.loads(json.dumps(x))


def _errors(edit, role="water_level"):
    """validate() of the role's example after edit(cfg)."""
    c = _example(role)
    edit(c)
    return config.validate(c)


def _set(path, value):
    def edit(c):
        keys = path.split(".")
        for k in keys[:-1]:
            c = c[int(k)] if isinstance(c, list) else c[k]
        last = keys[-1]
        if isinstance(c, list):
            c[int(last)] = value
        else:
            c[last] = value
    return edit


def _del(path):
    def edit(c):
        keys = path.split(".")
        for k in keys[:-1]:
            c = c[k]
        del c[keys[-1]]
    return edit


def _edits(*fns):
    def edit(c):
        for f in fns:
            f(c)
    return edit


def test_every_example_validates():
    for role in ROLES:
        c = _example(role)
        assert c["role"] == role
        assert config.validate(c) == [], role
        out = config.parse(c, SECRETS)
        assert out["secrets"] == SECRETS
    with open(data_path("firmware/examples/secrets.example.json")) as f:
        config.parse(_example("boat"), json.load(f))


def test_the_example_errors_read_as_documented():
    assert _errors(_set("water_level.alert_m", "x")) == [
        "config: water_level.alert_m: must be a number, got 'x'"]
    assert _errors(_set("intervals.normal_s", 60.5)) == [
        "config: intervals.normal_s: must be an integer, got 60.5"]
    assert _errors(_set("intervals.fast_s", 0)) == [
        "config: intervals.fast_s: must be between 5 and 86400, got 0"]


def test_each_kind_of_bad_field_names_the_field_and_the_problem():
    cases = [
        # (edit, role, field named, problem)
        (_set("device", "WL_7"), "water_level", "device", "must match"),
        (_set("device", ""), "water_level", "device", "must match"),
        (_set("role", "ferry"), "water_level", "role", "must be one of"),
        (_set("water_level.deep_sleep", "yes"), "water_level", "water_level.deep_sleep",
         "must be true or false"),
        (_set("water_level.hyst_m", True), "water_level", "water_level.hyst_m",
         "must be a number, got True"),
        (_set("water_level.pings", 40), "water_level", "water_level.pings", "between 1 and 15"),
        (_set("water_level.rise_mps", float("nan")), "water_level", "water_level.rise_mps",
         "must be between"),
        (_del("water_level.datum_m"), "water_level", "water_level.datum_m", "missing"),
        (_set("water_level.alert", 2.0), "water_level", "water_level.alert", "unknown key"),
        (_set("water_level.pressure", {"shunt_ohm": 100}), "water_level",
         "water_level.pressure.range_m", "missing"),
        (_set("broker.port", 70000), "water_level", "broker.port", "between 1 and 65535"),
        (_set("broker.host", 17), "water_level", "broker.host", "must be a string"),
        (_set("topic_prefix", ""), "water_level", "topic_prefix", "1 to 64 characters"),
        (_set("intervals", [900, 60]), "water_level", "intervals", "must be an object"),
        (_set("link.type", "lora"), "water_level", "link.type", "must be one of cell, wifi"),
        (_del("link.ssid"), "water_level", "link.ssid", "missing"),
        (_set("link.apn", "x"), "water_level", "link.apn", "unknown key"),  # not for wifi
        (_set("link.pin", "12"), "truck", "link.pin", "4 to 8 characters"),
        (_set("pins.echo", 60), "water_level", "pins.echo", "between 0 and 48"),
        (_set("pins", None), "water_level", "pins", "must be an object"),
        (_set("boat.zones", []), "boat", "boat.zones", "must have 1 to 16 items, got 0"),
        (_set("boat.zones.0.polygon.1.0", 95), "boat", "boat.zones[0].polygon[1][0]",
         "between -90 and 90, got 95"),
        (_set("boat.zones.0.polygon.1", [10.0]), "boat", "boat.zones[0].polygon[1]",
         "must have 2 items, got 1"),
        (_set("boat.zones.0.polygon", [[10, 105], [10.1, 105]]), "boat",
         "boat.zones[0].polygon", "must have 3 to 64 items, got 2"),
        (_set("boat.zones.1.hours.0.1", 1500), "boat", "boat.zones[1].hours[0][1]",
         "between 0 and 1440"),
        (_set("truck.points_per_payload", 0), "truck", "truck.points_per_payload",
         "between 1 and 64"),
        # rules between fields
        (_set("intervals.fast_s", 1200), "water_level", "intervals.fast_s",
         "must not exceed normal_s"),
        (_set("water_level.alert_m", 4.4), "water_level", "water_level.alert_m",
         "must be at most datum_m - min_m (4.25), got 4.4"),
        (_edits(_set("water_level.min_m", 1.5), _set("water_level.max_m", 1.5)), "water_level",
         "water_level.max_m", "must exceed min_m (1.5), got 1.5"),
        (_del("water_level"), "water_level", "water_level", "missing (the role's section)"),
        (_del("pins.trig"), "water_level", "pins.trig", "missing (needed by water_level)"),
        (_set("boat.zones.1.name", "hau-07"), "boat", "boat.zones[1].name", "duplicate"),
        (_set("boat.zones.0.hours", [[600, 600]]), "boat", "boat.zones[0].hours[0]",
         "start equals end"),
    ]
    for edit, role, field, problem in cases:
        errs = _errors(edit, role)
        assert len(errs) == 1, errs
        line = errs[0]
        assert "\n" not in line
        assert line.startswith("config: " + field + ": "), (field, line)
        assert problem in line, (problem, line)


def test_parse_raises_one_line_with_a_count_of_the_rest():
    c = _example("water_level")
    c["water_level"]["alert_m"] = "x"
    c["watchdog_s"] = 1
    c["colour"] = "red"
    assert len(config.validate(c)) == 3
    e = raises(ConfigError, config.parse, c, {})
    msg = str(e)
    assert isinstance(e, ValueError)
    assert "\n" not in msg
    assert msg.startswith("config: colour: unknown key") and msg.endswith("(and 2 more)"), msg
    assert config.validate([1, 2]) == ["config: must be a JSON object"]


def test_defaults_fill_the_optional_fields():
    c = {"device": "wl-0001", "role": "water_level",
         "link": {"type": "wifi", "ssid": "gw"}, "broker": {"host": "10.0.0.1"},
         "pins": {"trig": 5, "echo": 18},
         "water_level": {"datum_m": 4.0, "alert_m": 2.0}}
    out = config.parse(c, {})
    assert out["topic_prefix"] == "nodes"
    assert out["intervals"] == {"normal_s": 900, "fast_s": 60}
    assert out["outbox"] == {"max_bytes": 131072}
    assert out["broker"] == {"host": "10.0.0.1", "port": 1883, "tls": False, "user": "wl-0001"}
    wl = out["water_level"]
    assert wl["pressure"] is None and wl["pings"] == 5 and wl["deep_sleep"] is False
    assert wl["hyst_m"] == 0.05 and wl["rise_window_s"] == 3600
    assert out["boat"] is None and out["truck"] is None
    assert out["secrets"] == {"wifi_pass": None, "mqtt_pass": None, "key": None}
    assert "topic_prefix" not in c  # the input is not modified
    c["broker"]["tls"] = True
    c["water_level"]["pressure"] = {"range_m": 5}
    out = config.parse(c, {})
    assert out["broker"]["port"] == 8883
    assert out["water_level"]["pressure"] == {"shunt_ohm": 100, "range_m": 5, "offset_m": 0}
    b = config.parse(_example("boat"), {})
    assert b["boat"]["zones"][0]["hours"] == [[360, 1080]]
    c = _example("boat")
    del c["boat"]["zones"][0]["hours"]
    out = config.parse(c, {})
    assert out["boat"]["zones"][0]["hours"] == [[0, 1440]]
    out["boat"]["zones"][0]["hours"].append([1, 2])
    assert config.parse(c, {})["boat"]["zones"][0]["hours"] == [[0, 1440]]  # not shared


def test_null_means_absent_only_for_fields_without_a_default():
    c = _example("water_level")
    c["water_level"]["pressure"] = None
    assert config.parse(c, {})["water_level"]["pressure"] is None
    c["water_level"]["hyst_m"] = None
    assert config.validate(c) == ["config: water_level.hyst_m: must be a number, got None"]


def test_secret_errors_never_echo_the_value():
    c = _example("water_level")
    for secrets, field in (
        ({"wifi_pass": "hunter2"}, "wifi_pass"),  # too short for WPA2
        ({"mqtt_pass": 123456789}, "mqtt_pass"),
        ({"key": "zz" * 16}, "key"),
        ({"key": "abc" * 11}, "key"),  # odd number of hex digits
    ):
        e = raises(ConfigError, config.parse, c, secrets)
        msg = str(e)
        assert msg.startswith("secrets: " + field + ": "), msg
        assert str(secrets[field]) not in msg and "got" not in msg, msg
    e = raises(ConfigError, config.parse, c, {"wifi": "x"})
    assert str(e) == "secrets: wifi: unknown key"
    e = raises(ConfigError, config.parse, c, "hunter22")
    assert str(e) == "secrets: must be a JSON object"


def _tmp(name):
    # both runtimes may run this file at once: keep their files apart
    return "/tmp/fwtest-%s-%s" % (sys.implementation.name, name)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_load_reads_both_files():
    pc, ps = _tmp("config.json"), _tmp("secrets.json")
    _write(pc, json.dumps(_example("truck")))
    _write(ps, json.dumps(SECRETS))
    try:
        cfg = config.load(pc, ps)
        assert cfg["device"] == "trk-0031" and cfg["secrets"]["mqtt_pass"] == "pw-7"
        assert cfg["truck"]["stop_min_s"] == 60
        e = raises(ConfigError, config.load, pc, _tmp("missing.json"))
        assert str(e) == "secrets: %s: cannot read (ENOENT)" % _tmp("missing.json")
        _write(ps, '{"wifi_pass": "the secret passphrase",')
        e = raises(ConfigError, config.load, pc, ps)
        assert str(e) == "secrets: %s: not valid JSON" % ps
        _write(pc, '{"device": ')
        e = raises(ConfigError, config.load, pc, ps)
        assert str(e) == "config: %s: not valid JSON" % pc
        _write(ps, "{}")
        _write(pc, json.dumps({"device": "trk-0031"}))
        e = raises(ConfigError, config.load, pc, ps)
        assert str(e).startswith("config: role: missing")
    finally:
        os.remove(pc)
        os.remove(ps)


def test_set_interval_changes_only_what_it_names():
    cfg = config.parse(_example("water_level"), SECRETS)
    iv = cfg["intervals"]
    assert config.apply_command(cfg, "set_interval", {"normal": 600}) == ["intervals.normal_s"]
    assert cfg["intervals"] is iv and iv == {"normal_s": 600, "fast_s": 60}
    assert config.apply_command(cfg, "set_interval", {"normal": 600, "fast": 30}) == [
        "intervals.fast_s"]  # normal_s was already 600
    assert iv == {"normal_s": 600, "fast_s": 30}
    assert config.apply_command(cfg, "set_interval", {"fast": 30}) == []


def test_bad_commands_leave_the_config_untouched():
    cfg = config.parse(_example("water_level"), SECRETS)
    before = _copy(cfg)
    cases = [
        ("set_interval", {"normal": "x"},
         "set_interval: intervals.normal_s: must be an integer, got 'x'"),
        ("set_interval", {"normal": 2}, "set_interval: intervals.normal_s: must be between"),
        ("set_interval", {"normal": 100, "fast": 200},
         "set_interval: intervals.fast_s: must not exceed normal_s"),
        ("set_interval", {"fast": 1200}, "set_interval: intervals.fast_s: must not exceed"),
        ("set_interval", {"slow": 10}, "set_interval: slow: unknown argument"),
        ("set_interval", {}, "set_interval: args must be a non-empty map of fast, normal"),
        ("set_interval", [900], "set_interval: args must be"),
        ("set_thresholds", {"alert": 4.4},
         "set_thresholds: water_level.alert_m: must be at most datum_m - min_m"),
        ("set_thresholds", {"alert": 1.5, "hyst": -0.1},
         "set_thresholds: water_level.hyst_m: must be between 0 and 5, got -0.1"),
        ("set_thresholds", {"rise": 0}, "set_thresholds: water_level.rise_mps: must be between"),
        ("set_thresholds", {"dwell": 60}, "set_thresholds: dwell: unknown argument"),
        ("set_wifi", {"ssid": "x"}, "command: unknown config command 'set_wifi'"),
    ]
    for cmd, args, msg in cases:
        e = raises(ConfigError, config.apply_command, cfg, cmd, args)
        assert str(e).startswith(msg), (msg, str(e))
        assert cfg == before, cmd


def test_set_thresholds_per_role():
    cfg = config.parse(_example("water_level"), {})
    got = config.apply_command(cfg, "set_thresholds", {"alert": 2.1, "hyst": 0.1, "rise": 0.0002})
    assert sorted(got) == ["water_level.alert_m", "water_level.hyst_m", "water_level.rise_mps"]
    wl = cfg["water_level"]
    assert (wl["alert_m"], wl["hyst_m"], wl["rise_mps"]) == (2.1, 0.1, 0.0002)
    cfg = config.parse(_example("boat"), {})
    assert config.apply_command(cfg, "set_thresholds", {"dwell": 900}) == ["boat.dwell_s"]
    assert cfg["boat"]["dwell_s"] == 900
    cfg = config.parse(_example("truck"), {})
    got = config.apply_command(cfg, "set_thresholds", {"stop_min": 120, "heading": 45})
    assert sorted(got) == ["truck.heading_deg", "truck.stop_min_s"]
    e = raises(ConfigError, config.apply_command, cfg, "set_thresholds", {"max_interval": 0})
    assert str(e).startswith("set_thresholds: truck.max_interval_s: must be between 1 and")
    assert cfg["truck"]["max_interval_s"] == 60
