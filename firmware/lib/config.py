# Per-node configuration: /config.json (written by provisioning, printable) and
# /secrets.json (Wi-Fi password, MQTT password, payload key; mode 0600 on the
# host, never printed: errors about it never echo the value).
#
# The schema lives in one place, SCHEMA below, as nested tuples so it costs
# little RAM and walks in a fixed order on MicroPython (whose dicts are
# unordered). The same module runs on the host: provisioning can import it to
# validate a config before writing it to a board.
#
# Field specs: (kind, default, ...). default REQ = required; None = optional
# and absent. Kinds:
#   "i" int (default, lo, hi)       "n" number (default, lo, hi)
#   "b" bool (default)              "s" string (default, min_len, max_len)
#   "e" enum (default, choices)     "d" device id (default)
#   "h" hex key (default, min_len, max_len)
#   "o" object (default, fields)    "v" object picked by a tag (default, tag, {tag: fields})
#   "l" list (default, min, max, item spec)
#   "t" fixed list (default, (spec, spec, ...))
#   "m" map name -> spec (default, value spec)
#
# Errors are one line each, naming the field and the problem, e.g.
#   config: water_level.alert_m: must be a number, got 'x'

import errno
import json

from wire import valid_dev


class ConfigError(ValueError):
    pass


REQ = object()  # marks a required field

ROLES = ("water_level", "boat", "truck")

_INTERVALS = (
    ("normal_s", ("i", 900, 10, 86400)),
    ("fast_s", ("i", 60, 5, 86400)),
)

_WATER_LEVEL = (
    ("datum_m", ("n", REQ, -100, 1000)),  # sensor face height above the datum
    ("alert_m", ("n", REQ, -100, 1000)),  # alert line, on the same datum
    ("hyst_m", ("n", 0.05, 0, 5)),
    ("rise_mps", ("n", 0.0001, 0.000001, 1)),  # 0.0001 m/s = 36 cm/h
    ("rise_window_s", ("i", 3600, 60, 86400)),  # oldest reading used for the rate
    ("pings", ("i", 5, 1, 15)),
    ("trig_us", ("i", 10, 10, 2000)),
    ("min_m", ("n", 0.25, 0.02, 2)),  # ultrasonic working range (blind zone .. far end)
    ("max_m", ("n", 6.0, 0.5, 12)),
    ("deep_sleep", ("b", False)),
    ("pressure", ("o", None, (
        ("shunt_ohm", ("n", 100, 1, 1000)),
        ("range_m", ("n", REQ, 0.1, 100)),
        ("offset_m", ("n", 0, -100, 1000)),  # pressure sensor height above the datum
    ))),
)

_POINT = ("t", REQ, (("n", REQ, -90, 90), ("n", REQ, -180, 180)))  # [lat, lon]
_PERIOD = ("t", REQ, (("i", REQ, 0, 1440), ("i", REQ, 0, 1440)))  # [start_min, end_min]

_BOAT = (
    ("zones", ("l", REQ, 1, 16, ("o", REQ, (
        ("name", ("s", REQ, 1, 32)),
        ("polygon", ("l", REQ, 3, 64, _POINT)),
        ("hours", ("l", [[0, 1440]], 1, 8, _PERIOD)),  # local time, end < start wraps midnight
    )))),
    ("dwell_s", ("i", 600, 30, 86400)),
    ("dwell_radius_m", ("n", 50, 5, 5000)),
)

_TRUCK = (
    ("min_dist_m", ("n", 50, 1, 10000)),
    ("max_interval_s", ("i", 60, 1, 3600)),
    ("heading_deg", ("n", 30, 1, 180)),
    ("stop_min_s", ("i", 60, 5, 86400)),
    ("points_per_payload", ("i", 10, 1, 64)),
)

SCHEMA = (
    ("device", ("d", REQ)),
    ("role", ("e", REQ, ROLES)),
    ("link", ("v", REQ, "type", {
        "wifi": (("ssid", ("s", REQ, 1, 32)),),
        "cell": (("apn", ("s", REQ, 1, 64)), ("pin", ("s", None, 4, 8))),
    })),
    ("broker", ("o", REQ, (
        ("host", ("s", REQ, 1, 253)),
        ("port", ("i", None, 1, 65535)),  # default 8883 with tls, else 1883
        ("tls", ("b", False)),
        ("user", ("s", None, 1, 64)),  # default: the device id
    ))),
    ("topic_prefix", ("s", "nodes", 1, 64)),
    ("intervals", ("o", {}, _INTERVALS)),
    ("outbox", ("o", {}, (("max_bytes", ("i", 131072, 4096, 4194304)),))),
    ("watchdog_s", ("i", 120, 10, 7200)),
    ("tz_offset_s", ("i", 0, -43200, 50400)),
    ("battery_ratio", ("n", 2.0, 1, 20)),  # divider (R1 + R2) / R2 on the battery ADC
    ("pins", ("m", REQ, ("i", REQ, 0, 48))),  # GPIO numbers from boards.yaml
    ("water_level", ("o", None, _WATER_LEVEL)),
    ("boat", ("o", None, _BOAT)),
    ("truck", ("o", None, _TRUCK)),
)

SECRETS = (
    ("wifi_pass", ("s", None, 8, 63)),  # WPA2 passphrase length
    ("mqtt_pass", ("s", None, 1, 128)),
    ("key", ("h", None, 32, 128)),  # payload MAC key, hex
)

# Pins each role cannot run without (names as in boards.yaml).
ROLE_PINS = {
    "water_level": ("trig", "echo"),
    "boat": ("gps_rx", "gps_tx"),
    "truck": ("gps_rx", "gps_tx"),
}

# Downlink commands that change the config: arg name -> (section, key).
COMMANDS = {
    "set_interval": {"normal": ("intervals", "normal_s"), "fast": ("intervals", "fast_s")},
}
THRESHOLDS = {
    "water_level": {"alert": "alert_m", "hyst": "hyst_m", "rise": "rise_mps"},
    "boat": {"dwell": "dwell_s", "dwell_radius": "dwell_radius_m"},
    "truck": {"min_dist": "min_dist_m", "max_interval": "max_interval_s",
              "heading": "heading_deg", "stop_min": "stop_min_s"},
}


def _is_num(v):
    # bool is an int subclass on CPython (not on MicroPython): reject it on both.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_hex(v):
    if len(v) % 2:
        return False
    for c in v:
        if c not in "0123456789abcdefABCDEF":
            return False
    return True


def _walk(spec, v, path, errs, secret):
    """Check v against spec; return it with defaults filled in. Appends to errs."""
    kind = spec[0]

    def bad(msg, got=v):
        if secret:
            errs.append("%s: %s" % (path, msg))
        else:
            errs.append("%s: %s, got %r" % (path, msg, got))

    if kind == "i" or kind == "n":
        lo, hi = spec[2], spec[3]
        if kind == "i" and (not isinstance(v, int) or isinstance(v, bool)):
            bad("must be an integer")
        elif not _is_num(v):
            bad("must be a number")
        elif not lo <= v <= hi:  # also catches NaN
            bad("must be between %r and %r" % (lo, hi))
        return v
    if kind == "b":
        if not isinstance(v, bool):
            bad("must be true or false")
        return v
    if kind == "s" or kind == "h":
        if not isinstance(v, str):
            bad("must be a string")
        elif not spec[2] <= len(v) <= spec[3]:
            bad("must be %d to %d characters" % (spec[2], spec[3]))
        elif kind == "h" and not _is_hex(v):
            bad("must be hex digits (an even number)")
        return v
    if kind == "e":
        if v not in spec[2]:
            bad("must be one of " + ", ".join(spec[2]))
        return v
    if kind == "d":
        if not valid_dev(v):
            bad("must match ^[a-z0-9][a-z0-9-]{0,31}$")
        return v
    if kind == "l" or kind == "t":
        if not isinstance(v, list):
            bad("must be a list")
            return v
        if kind == "l":
            lo, hi = spec[2], spec[3]
        else:
            lo = hi = len(spec[2])
        if not lo <= len(v) <= hi:
            bad("must have %d to %d items" % (lo, hi) if lo != hi else "must have %d items" % lo,
                len(v))
            return v
        out = []
        for i in range(len(v)):
            s = spec[4] if kind == "l" else spec[2][i]
            out.append(_walk(s, v[i], "%s[%d]" % (path, i), errs, secret))
        return out
    if kind == "m":
        if not isinstance(v, dict):
            bad("must be an object")
            return v
        out = {}
        for k in sorted(v):
            out[k] = _walk(spec[2], v[k], _join(path, k), errs, secret)
        return out
    if kind == "v":
        if not isinstance(v, dict):
            bad("must be an object")
            return v
        tag = spec[2]
        if tag not in v:
            errs.append("%s: missing" % _join(path, tag))
            return v
        if not isinstance(v[tag], str) or v[tag] not in spec[3]:
            errs.append("%s: must be one of %s, got %r" % (
                _join(path, tag), ", ".join(sorted(spec[3])), v[tag]))
            return v
        rest = dict(v)
        del rest[tag]
        out = _fields(spec[3][v[tag]], rest, path, errs, secret)
        out[tag] = v[tag]
        return out
    # "o"
    if not isinstance(v, dict):
        bad("must be an object")
        return v
    return _fields(spec[2], v, path, errs, secret)


def _join(path, key):
    return path + "." + key if path else key


def _fields(fields, v, path, errs, secret):
    out = {}
    names = [f[0] for f in fields]
    for k in sorted(v):
        if k not in names:
            errs.append("%s: unknown key" % _join(path, k))
    for name, spec in fields:
        p = _join(path, name)
        if name in v and not (v[name] is None and spec[1] is None):  # null: absent
            out[name] = _walk(spec, v[name], p, errs, secret)
        elif spec[1] is REQ:
            errs.append("%s: missing" % p)
        elif isinstance(spec[1], (dict, list)):  # a default section or list: a fresh copy
            out[name] = _walk(spec, spec[1], p, errs, secret)
        else:
            out[name] = spec[1]
    return out


def _cross(c, errs):
    """Checks between fields, once every field has the right type."""
    iv = c["intervals"]
    if iv["fast_s"] > iv["normal_s"]:
        errs.append("intervals.fast_s: must not exceed normal_s (%r), got %r"
                    % (iv["normal_s"], iv["fast_s"]))
    role = c["role"]
    if c[role] is None:
        errs.append("%s: missing (the role's section)" % role)
        return
    for pin in ROLE_PINS[role]:
        if pin not in c["pins"]:
            errs.append("pins.%s: missing (needed by %s)" % (pin, role))
    wl = c["water_level"]
    if wl is not None:
        top = round(wl["datum_m"] - wl["min_m"], 3)  # water in the blind zone is not seen
        if wl["alert_m"] > top:
            errs.append("water_level.alert_m: must be at most datum_m - min_m (%r), got %r"
                        % (top, wl["alert_m"]))
        if wl["min_m"] >= wl["max_m"]:
            errs.append("water_level.max_m: must exceed min_m (%r), got %r"
                        % (wl["min_m"], wl["max_m"]))
    boat = c["boat"]
    if boat is not None:
        seen = []
        for i, z in enumerate(boat["zones"]):
            if z["name"] in seen:
                errs.append("boat.zones[%d].name: duplicate, got %r" % (i, z["name"]))
            seen.append(z["name"])
            for j, (a, b) in enumerate(z["hours"]):
                if a == b:
                    errs.append("boat.zones[%d].hours[%d]: start equals end, got %r"
                                % (i, j, [a, b]))


def _derive(c):
    """Defaults that depend on other fields."""
    b = c["broker"]
    if b["port"] is None:
        b["port"] = 8883 if b["tls"] else 1883
    if b["user"] is None:
        b["user"] = c["device"]


def check(cfg):
    """(config with defaults, list of error lines without the 'config: ' prefix)."""
    errs = []
    if not isinstance(cfg, dict):
        return cfg, ["must be a JSON object"]
    out = _fields(SCHEMA, cfg, "", errs, False)
    if not errs:
        _cross(out, errs)
    if not errs:
        _derive(out)
    return out, errs


def validate(cfg):
    """Every problem in cfg, one line each ('config: <field>: <problem>'); [] when valid."""
    return ["config: " + e for e in check(cfg)[1]]


def _raise(prefix, errs):
    more = " (and %d more)" % (len(errs) - 1) if len(errs) > 1 else ""
    raise ConfigError(prefix + errs[0] + more)


def parse(cfg, secrets=None):
    """Validated config with defaults, secrets under "secrets"; ConfigError on the first problem."""
    out, errs = check(cfg)
    if errs:
        _raise("config: ", errs)
    errs = []
    if not isinstance(secrets, dict):
        errs.append("must be a JSON object")
    else:
        out["secrets"] = _fields(SECRETS, secrets, "", errs, True)
    if errs:
        _raise("secrets: ", errs)
    return out


def _read_json(path, prefix):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        n = e.args[0] if e.args else 0
        raise ConfigError("%s%s: cannot read (%s)" % (prefix, path, errno.errorcode.get(n, n)))
    except ValueError:
        # no exception text: for the secrets file it could quote the content
        raise ConfigError("%s%s: not valid JSON" % (prefix, path))


def load(path_config="/config.json", path_secrets="/secrets.json"):
    """Read, validate and merge the two files; ConfigError names the file or field."""
    return parse(_read_json(path_config, "config: "), _read_json(path_secrets, "secrets: "))


def apply_command(cfg, cmd, args):
    """Apply set_interval / set_thresholds to cfg in place; return the changed 'section.key's.

    Every value is checked against SCHEMA and the cross-field rules on a copy
    first: on any problem ConfigError names the argument and cfg is untouched.
    Sections are updated in place, so objects holding cfg["water_level"] see it.
    """
    if cmd == "set_thresholds":
        role = cfg["role"]
        amap = {}
        for a, key in THRESHOLDS[role].items():
            amap[a] = (role, key)
    elif cmd in COMMANDS:
        amap = COMMANDS[cmd]
    else:
        raise ConfigError("command: unknown config command %r" % (cmd,))
    if not isinstance(args, dict) or not args:
        raise ConfigError("%s: args must be a non-empty map of %s" % (cmd, ", ".join(sorted(amap))))
    cand = dict(cfg)
    cand.pop("secrets", None)
    for a in sorted(args):
        if a not in amap:
            raise ConfigError("%s: %s: unknown argument (expected %s)"
                              % (cmd, a, ", ".join(sorted(amap))))
        sect, key = amap[a]
        if cand[sect] is cfg[sect]:
            cand[sect] = dict(cfg[sect])
        cand[sect][key] = args[a]
    out, errs = check(cand)
    if errs:
        raise ConfigError("%s: %s" % (cmd, errs[0]))
    changed = []
    for a in sorted(args):
        sect, key = amap[a]
        if cfg[sect][key] != out[sect][key]:
            cfg[sect][key] = out[sect][key]
            changed.append(sect + "." + key)
    return changed
