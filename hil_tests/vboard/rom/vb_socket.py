# MicroPython code: `socket` for the virtual ESP32 (installed as sys.modules["socket"]).
#
# Everything is the unix port's own socket module (real socket objects, so
# select.poll and ssl work on them unchanged) except getaddrinfo for TCP: it
# asks the relay for a route over the board interface that is up (vb_network),
# and the relay answers with its link proxy's address for that destination
# (hil_tests/vboard/linkproxy.py), which cuts the connection when the world
# takes the link down. With no interface up a name does not resolve: OSError
# -202, as lwIP's EAI_FAIL on the ESP32 port. A literal IPv4 address resolves
# (lwIP does not ask DNS for it) to an address whose connect is refused.
# UDP (SOCK_DGRAM) is not proxied: it resolves to the real address.
import socket as _real

import vb_host
import vb_network

_EAI_FAIL = -202
_LOCAL = ("", "0.0.0.0")  # bind addresses, not destinations

for _k in dir(_real):
    if not _k.startswith("__"):
        globals()[_k] = getattr(_real, _k)


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):  # noqa: A002 - CPython's name
    if host in _LOCAL or (type and type != _real.SOCK_STREAM):
        if host not in _LOCAL and vb_network._route_iface() is None:
            raise OSError(_EAI_FAIL)
        return _real.getaddrinfo(host, port, af, type, proto, flags)
    r = vb_host.ask("route", host=host, port=port, iface=vb_network._route_iface())
    if not r or "addr" not in r:
        raise OSError((r or {}).get("err", _EAI_FAIL))
    ip, lport = r["addr"]
    return _real.getaddrinfo(ip, lport, af, type, proto, flags)
