"""A node's /config.json and /secrets.json: built from the board kind and the site settings.

The site file (`--site`, YAML or JSON) is a partial config in the firmware's
own field names (firmware/lib/config.py): broker, intervals, thresholds per
role, tz_offset_s, ... plus `link` (`ssid` for Wi-Fi kinds, `apn`/`pin` for
cellular ones: one site file serves every kind), `boat.zones_file` (GeoJSON,
relative to the site file) and `secrets.wifi_pass`. Options override it
(`--set water_level.alert_m=1.9`, `--wifi-ssid`, ...). The board kind gives
device-independent facts: role, pins, battery divider, the ultrasonic range,
deep sleep. The result is checked with the firmware's own config.py (run on
CPython) before anything is written to a board.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from provisioning.board_kind import ROLES, BoardKind
from provisioning.errors import SettingsError
from provisioning.firmware_build import default_firmware_dir
from provisioning.zones import load_zones

LINK_FIELDS = {"wifi": ("ssid",), "cell": ("apn", "pin")}
_fw_lock = threading.Lock()
_fw_modules: dict[Path, ModuleType] = {}


def firmware_config(firmware_dir: Path | None = None) -> ModuleType:
    """firmware/lib/config.py loaded on CPython (it imports `wire` from the same folder)."""
    lib = ((firmware_dir or default_firmware_dir()) / "lib").resolve()
    with _fw_lock:
        if lib not in _fw_modules:
            path = lib / "config.py"
            if str(lib) not in sys.path:
                sys.path.append(str(lib))
            spec = importlib.util.spec_from_file_location("nodectl_fw_config", path)
            if spec is None or spec.loader is None or not path.is_file():
                raise SettingsError(f"{path}: the firmware's config schema is missing")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            _fw_modules[lib] = mod
        return _fw_modules[lib]


def parse_value(text: str) -> Any:
    """`--set` values: JSON when they parse (numbers, true, lists), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    if not all(keys):
        raise SettingsError(f"--set {dotted}: not a field path like water_level.alert_m")
    node = target
    for k in keys[:-1]:
        nxt = node.setdefault(k, {})
        if not isinstance(nxt, dict):
            raise SettingsError(f"--set {dotted}: {k} is not a section")
        node = nxt
    node[keys[-1]] = value


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass(frozen=True)
class NodeSettings:
    """What a site gives every node, after options are applied."""

    values: dict[str, Any] = field(default_factory=dict)  # config-shaped
    wifi_pass: str | None = None
    link: str | None = None  # 'wifi'/'cell' forced for every kind (virtual boards: wifi)
    zones_file: Path | None = None
    source: str = "options"

    @classmethod
    def load(cls, site: Path | None = None, *, link: str | None = None,
             wifi_ssid: str | None = None, wifi_pass: str | None = None,
             apn: str | None = None, broker_host: str | None = None,
             broker_port: int | None = None, tls: bool | None = None,
             zones: Path | None = None, sets: tuple[str, ...] = ()) -> NodeSettings:
        values: dict[str, Any] = {}
        source = "options"
        zones_file = zones
        if site is not None:
            source = str(site)
            try:
                data = yaml.safe_load(site.read_text())
            except OSError as e:
                raise SettingsError(f"{site}: cannot read: {e.strerror or e}") from e
            except yaml.YAMLError as e:
                raise SettingsError(f"{site}: not YAML/JSON: {' '.join(str(e).split())}") from e
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise SettingsError(f"{site}: expected a mapping of config fields")
            values = data
            secret = values.pop("secrets", None) or {}
            if not isinstance(secret, dict) or set(secret) - {"wifi_pass"}:
                raise SettingsError(f"{site}: secrets: only wifi_pass belongs in a site file")
            wifi_pass = wifi_pass or secret.get("wifi_pass")
            boat = values.get("boat")
            if isinstance(boat, dict) and "zones_file" in boat:
                zf = Path(str(boat.pop("zones_file")))
                zones_file = zones_file or (zf if zf.is_absolute() else site.parent / zf)
        over: dict[str, Any] = {}
        for text in sets:
            key, sep, raw = text.partition("=")
            if not sep:
                raise SettingsError(f"--set {text}: expected FIELD=VALUE")
            set_path(over, key.strip(), parse_value(raw))
        for dotted, value in (("link.ssid", wifi_ssid), ("link.apn", apn),
                              ("broker.host", broker_host), ("broker.port", broker_port),
                              ("broker.tls", tls)):
            if value is not None:
                set_path(over, dotted, value)
        return cls(values=merge(values, over), wifi_pass=wifi_pass, link=link,
                   zones_file=zones_file, source=source)

    @property
    def topic_prefix(self) -> str:
        return str(self.values.get("topic_prefix", "nodes"))

    def broker_address(self) -> tuple[str | None, int]:
        b = self.values.get("broker") or {}
        port = b.get("port") or (8883 if b.get("tls") else 1883)
        return b.get("host"), int(port)


def _sensor(kind: BoardKind, type_: str) -> Any:
    return next((s for s in kind.sensors if s.type == type_), None)


def build_config(kind: BoardKind, device_id: str, settings: NodeSettings) -> dict[str, Any]:
    """The node's config (not yet validated): site values, then the kind's facts."""
    cfg = copy.deepcopy(settings.values)
    for role in ROLES:
        if role != kind.role:
            cfg.pop(role, None)
    cfg["device"] = device_id
    cfg["role"] = kind.role
    cfg["pins"] = dict(kind.pins)
    divider = _sensor(kind, "adc-divider")
    if divider is not None:
        cfg.setdefault("battery_ratio", float(divider.params["ratio"]))
    raw_link = cfg.get("link")
    site_link: dict[str, Any] = raw_link if isinstance(raw_link, dict) else {}
    link_type = settings.link or site_link.get("type") or kind.link
    if link_type not in LINK_FIELDS:
        raise SettingsError(
            f"{settings.source}: link.type: expected wifi or cell, got {link_type!r}")
    link = {"type": link_type}
    link.update({k: site_link[k] for k in LINK_FIELDS[link_type] if k in site_link})
    if link_type == "wifi" and "ssid" not in link:
        raise SettingsError(f"no Wi-Fi SSID for {kind.name!r}: give --wifi-ssid or link.ssid "
                            f"in the site file")
    if link_type == "cell" and "apn" not in link:
        raise SettingsError(f"no APN for {kind.name!r} (cellular): give --apn or link.apn in the "
                            f"site file (virtual boards have no modem: --link wifi)")
    cfg["link"] = link
    section = cfg.setdefault(kind.role, {})
    if not isinstance(section, dict):
        raise SettingsError(f"{settings.source}: {kind.role}: expected a mapping")
    if kind.role == "water_level":
        level = _sensor(kind, "jsn-sr04t")
        if level is not None:
            section.setdefault("min_m", float(level.params["min_range_m"]))
            section.setdefault("max_m", float(level.params["max_range_m"]))
        section.setdefault("deep_sleep", kind.power.deep_sleep)
        pressure = _sensor(kind, "pressure-4-20ma")
        if isinstance(section.get("pressure"), dict) and pressure is not None:
            section["pressure"].setdefault("shunt_ohm", float(pressure.params["shunt_ohms"]))
            section["pressure"].setdefault("range_m", float(pressure.params["range_m"]))
    if kind.role == "boat" and settings.zones_file is not None:
        section["zones"] = load_zones(settings.zones_file)
    return cfg


def render(data: dict[str, Any]) -> bytes:
    """Compact, key-sorted JSON: the same settings give the same bytes and hash."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def config_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class NodeFiles:
    config: dict[str, Any]
    config_bytes: bytes
    secrets_bytes: bytes

    @property
    def config_hash(self) -> str:
        return config_hash(self.config_bytes)


def node_files(kind: BoardKind, device_id: str, settings: NodeSettings,
               secrets: dict[str, str], firmware_dir: Path | None = None) -> NodeFiles:
    """Both files, checked by the firmware's config.py; SettingsError names the field."""
    cfg = build_config(kind, device_id, settings)
    schema = firmware_config(firmware_dir)
    errors = schema.validate(cfg)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SettingsError(f"{errors[0]}{more} [settings from {settings.source}]")
    node_secrets = dict(secrets)
    if cfg["link"]["type"] == "wifi" and settings.wifi_pass:
        node_secrets["wifi_pass"] = settings.wifi_pass
    try:
        schema.parse(cfg, node_secrets)
    except schema.ConfigError as e:  # never echoes a secret's value (config.py's promise)
        raise SettingsError(str(e)) from e
    return NodeFiles(config=cfg, config_bytes=render(cfg), secrets_bytes=render(node_secrets))
