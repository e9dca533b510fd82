# MicroPython code: network.PPP for the virtual ESP32 (exported by vb_network).
#
# The API of MicroPython's ESP32 port (ports/esp32/network_ppp.c, 1.24+):
# PPP(stream); active([on]); connect(security=, user=, key=) (or the older
# authmode=, username=, password=); disconnect(); isconnected(); status();
# ifconfig(); ipconfig(); config(); poll(). No PPP frames cross the UART
# here: the link is up while the simulated modem (hil_tests/vboard/modem.py)
# is in data mode on the call that was up when connect() ran, the cell
# network is up, and the negotiation time (world cell "ppp_ms") has passed.
# A dropped call never comes back to this object (lwIP does not redial): the
# firmware dials again and makes a new PPP, as on the chip.
import time

import vb_host

SEC_NONE = 0
SEC_PAP = 1
SEC_CHAP = 2

STAT_IDLE = 0  # not connecting
STAT_CONNECTING = 1  # LCP/IPCP under way
STAT_CONNECTED = 2
STAT_LOST = 3  # the carrier went away (PPPERR_CONNECT)


def _iface_registry(ppp):
    # vb_network's interface registry routes the board's sockets through the
    # PPP link only while it is up (if this ROM has it).
    try:
        import vb_network
    except ImportError:
        return
    reg = getattr(vb_network, "_register_iface", None)
    if reg is not None:
        reg("ppp", ppp)


class PPP:
    SEC_NONE = SEC_NONE
    SEC_PAP = SEC_PAP
    SEC_CHAP = SEC_CHAP
    AUTH_NONE = SEC_NONE
    AUTH_PAP = SEC_PAP
    AUTH_CHAP = SEC_CHAP

    def __init__(self, stream):
        if not (hasattr(stream, "read") and hasattr(stream, "write")):
            raise OSError("stream operation not supported")
        self._stream = stream
        self._active = False
        self._connecting = False
        self._call = 0
        self._t0 = 0
        self._lost = False
        self._dns = None
        _iface_registry(self)

    def __repr__(self):
        return "<PPP>"

    def _cell(self):
        return vb_host.ask("cell") or {}

    def active(self, on=None):
        if on is None:
            return self._active
        if on:
            self._active = True
        elif self._active:
            self._active = False
            self._connecting = False
            self._call = 0
        return self._active

    def connect(self, security=None, user=None, key=None, authmode=None, username=None,
                password=None):
        if not self._active:
            raise OSError("must be active")
        if self._connecting:
            raise OSError(114)  # EALREADY
        sec = security if security is not None else authmode
        sec = SEC_NONE if sec is None else sec
        if sec not in (SEC_NONE, SEC_PAP, SEC_CHAP):
            raise ValueError("invalid auth")
        if sec != SEC_NONE:
            u = user if user is not None else username
            k = key if key is not None else password
            if not isinstance(u, str) or not isinstance(k, str):
                raise TypeError("can't convert NoneType to str")
        c = self._cell()
        # LCP starts on the line as it is now: only a call already in data mode answers
        self._call = c.get("call", 0) if c.get("data_mode") else 0
        self._t0 = time.ticks_ms()
        self._connecting = True
        self._lost = False

    def disconnect(self):
        self.active(False)

    def _up(self, c):
        ready = time.ticks_diff(time.ticks_ms(), self._t0) >= c.get("ppp_ms", 300)
        if not c.get("up") or c.get("call") != self._call:
            self._lost = ready
            self._call = 0  # that call is gone for this object
            return False
        if not c.get("data_mode"):
            return False  # "+++" took the modem to command mode: PPP waits for ATO
        return ready

    def _live(self):
        return self._active and self._connecting and self._call

    def isconnected(self):
        return bool(self._live()) and self._up(self._cell())

    def status(self):
        if self._live() and self._up(self._cell()):
            return STAT_CONNECTED
        if self._lost:
            return STAT_LOST
        if self._active and self._connecting:
            return STAT_CONNECTING  # LCP keeps asking (with no call in data mode: forever)
        return STAT_IDLE

    def ifconfig(self, cfg=None):
        if cfg is not None:
            self._dns = tuple(cfg)[3]  # only the DNS server can be set on this port
            return None
        c = self._cell()
        if not (self._live() and self._up(c)):
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        ip = c.get("ip", "10.64.12.34")
        return (ip, "255.255.255.255", "10.64.64.64", self._dns or c.get("dns", "8.8.8.8"))

    def ipconfig(self, *args, **kw):
        if kw:
            raise ValueError("unknown config param")
        if len(args) != 1:
            raise TypeError("can query only one param")
        if args[0] == "addr4":
            ip, mask = self.ifconfig()[:2]
            return ip, mask
        if args[0] == "dhcp4":
            return False
        raise ValueError("unknown config param")

    def config(self, *args, **kw):
        if args and kw:
            raise TypeError("either pos or kw args are allowed")
        if kw:
            for _k in kw:
                raise ValueError("unknown config param")
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        raise ValueError("unknown config param")

    def poll(self):
        """Take what the modem sent (PPP frames on the chip; nothing here carries data)."""
        data = self._stream.read()
        return len(data) if data else 0
