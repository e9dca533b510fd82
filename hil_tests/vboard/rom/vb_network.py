# MicroPython code: `network` for the virtual ESP32 (installed as sys.modules["network"]).
#
# Whether the access point is reachable is the host's decision (vboard wifi
# up|down); a connect takes world["wifi"]["connect_ms"] to get an address and
# the station reconnects by itself when the AP comes back, as the ESP32 does.
# The station registers itself as the "wlan" route for sockets (vb_socket).
import time

import vb_host
import vb_machine
from vb_ppp import PPP  # noqa: F401 - network.PPP (cellular modems)

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
AUTH_OPEN = 0
AUTH_WEP = 1
AUTH_WPA_PSK = 2
AUTH_WPA2_PSK = 3
AUTH_WPA_WPA2_PSK = 4
MODE_11B = 1
MODE_11G = 2
MODE_11N = 4

_hostname = "esp32"
_ifaces = {}
_routes = []  # [(name, iface)]: the interfaces sockets can route over (vb_socket)


def _register_iface(name, obj):
    """Offer `obj` (with isconnected()) as the route for sockets named `name` ("wlan",
    "ppp"); a newer object of that name replaces the older (a redialled PPP)."""
    for i, (n, _) in enumerate(_routes):
        if n == name:
            _routes[i] = (name, obj)
            return
    _routes.append((name, obj))


def _route_iface():
    """The name of the first registered interface that is connected, or None."""
    for name, obj in _routes:
        if obj.isconnected():
            return name
    return None


def hostname(name=None):
    global _hostname
    if name is None:
        return _hostname
    _hostname = name


def country(code=None):
    return "01" if code is None else None


def WLAN(interface_id=STA_IF):  # noqa: N802 - the ESP32 API name
    if interface_id not in (STA_IF, AP_IF):
        raise ValueError("invalid WLAN interface identifier")
    if interface_id not in _ifaces:
        _ifaces[interface_id] = _WLAN(interface_id)
        if interface_id == STA_IF:
            _register_iface("wlan", _ifaces[interface_id])
    return _ifaces[interface_id]


class _WLAN:
    def __init__(self, iface):
        self._if = iface
        self._active = False
        self._ssid = None
        self._key = None
        self._want = False
        self._t0 = 0
        mac = bytearray(vb_machine.unique_id())
        mac[5] = (mac[5] + iface) & 0xFF
        self._mac = bytes(mac)
        self._static = None
        self._cfg = {"reconnects": -1, "txpower": 20, "channel": 1, "hidden": False}

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        if not on:
            self._want = False

    def connect(self, ssid=None, key=None, bssid=None):
        if self._if != STA_IF:
            raise OSError("STA required")
        if not self._active:
            raise OSError("Wifi Not Started")
        if ssid is not None:
            self._ssid = ssid
            self._key = key
        self._want = True
        self._t0 = time.ticks_ms()

    def disconnect(self):
        self._want = False

    def _world(self):
        return vb_host.ask("wifi") or {}

    def status(self, param=None):
        w = self._world()
        if param == "rssi":
            if self._state(w) != STAT_GOT_IP:
                raise OSError("STA must be connected")
            return w.get("rssi", -60)
        if param == "stations":
            return []
        if param is not None:
            raise ValueError("unknown status param")
        return self._state(w)

    def _state(self, w):
        if self._if == AP_IF:
            return STAT_IDLE
        if not (self._active and self._want):
            return STAT_IDLE
        if not w.get("up", True):
            return STAT_NO_AP_FOUND
        if w.get("ssid") not in (None, self._ssid):
            return STAT_NO_AP_FOUND
        if w.get("key") not in (None, self._key):
            return STAT_WRONG_PASSWORD
        since = w.get("up_since_ms", 0)
        start = self._t0 if time.ticks_diff(self._t0, since) > 0 else since
        if time.ticks_diff(time.ticks_ms(), start) < w.get("connect_ms", 300):
            return STAT_CONNECTING
        return STAT_GOT_IP

    def isconnected(self):
        if self._if == AP_IF:
            return False
        return self._state(self._world()) == STAT_GOT_IP

    def scan(self):
        if not self._active:
            raise OSError("Wifi Not Started")
        w = self._world()
        if not w.get("up", True):
            return []
        ssid = (w.get("ssid") or "delta-ap").encode()
        return [(ssid, b"\x24\x0a\xc4\x00\x00\x01", 1, w.get("rssi", -60), AUTH_WPA2_PSK, False)]

    def config(self, *args, **kw):
        if kw:
            for k, v in kw.items():
                if k in ("ssid", "essid"):
                    self._ssid = v
                elif k in ("key", "password"):
                    self._key = v
                elif k in ("hostname", "dhcp_hostname"):
                    hostname(v)
                elif k == "mac":
                    self._mac = bytes(v)
                else:
                    self._cfg[k] = v
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        k = args[0]
        if k == "mac":
            return self._mac
        if k in ("ssid", "essid"):
            return self._ssid or ""
        if k in ("hostname", "dhcp_hostname"):
            return _hostname
        if k in self._cfg:
            return self._cfg[k]
        raise ValueError("unknown config param")

    def ifconfig(self, cfg=None):
        if cfg is not None:
            self._static = tuple(cfg)
            return None
        if self._static:
            return self._static
        if self._if == AP_IF:
            return ("192.168.4.1", "255.255.255.0", "192.168.4.1", "0.0.0.0")
        if not self.isconnected():
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        w = self._world()
        gw = w.get("gw", "10.42.0.1")
        return (w.get("ip", "10.42.0.50"), "255.255.255.0", gw, w.get("dns", gw))

    def ipconfig(self, key):
        if key == "addr4":
            ip, mask = self.ifconfig()[:2]
            return ip, mask
        raise ValueError("unknown config param")
