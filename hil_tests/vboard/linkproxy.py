"""The link proxy: the only way a virtual board's TCP sockets reach the host.

The board's `socket.getaddrinfo` (rom/vb_socket.py) asks the relay for a route
to (host, port) over the interface that is up on the board ("wlan", "ppp").
The answer is a listener of this proxy on 127.0.0.1, one per (destination,
interface); the firmware then connects a real socket there, and the proxy
copies bytes to and from the real destination unchanged, both ways, with
back-pressure (a slow reader holds the writer back, nothing is lost).

While the world says an interface's link is down (`World.link_up(iface)`):

- `drop` (the default): that interface's connections become a black hole, like
  a radio link that vanished. Nothing is read or written on either side, so
  the board's sends pile up unacknowledged and its reads time out; the
  destination (the broker) hears nothing either and only its own keepalive
  notices. Closing the board's socket does not reach the destination.
- `reset`: both sides of that interface's connections are reset at once
  (an RST each way), as when a modem tears the session down.
- A new connection to that interface's listeners is reset as soon as it is
  accepted (the kernel has already completed the handshake, so the board's
  connect() returns and its first read fails with ECONNRESET or sees EOF).

When the link comes back, every black-holed connection is reset on both sides:
an ESP32's TCP session is dead after an outage that long (its retransmissions
gave up, the node closed it when `isconnected()` went false), and the broker
then sees the connection close without DISCONNECT and publishes the node's
last will. New connections work again at once.

Forwarding runs in one thread per relay (a selector loop); the relay's thread
only asks for routes and reports link changes, under one lock.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import traceback
from collections.abc import Callable
from typing import Any

from .errors import VBoardError

MODES = ("drop", "reset")
EAI_FAIL = -202  # what the ESP32 port raises when a name does not resolve (lwIP EAI_FAIL)
_HIGH_WATER = 256 * 1024  # bytes buffered one way before the proxy stops reading that side
_CHUNK = 65536
_TICK_S = 0.1  # how often idle connections are checked against the world's link state
_LOOPBACK = "127.0.0.1"
_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST)
    sock.close()


class _Side:
    """One socket of a connection and the bytes waiting to be written to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()
        self.eof_in = False  # it sent FIN: nothing more will be read from it
        self.shut_out = False  # FIN sent to it after the peer's FIN was flushed


class _Conn:
    """A board connection and its upstream twin."""

    def __init__(self, board: socket.socket, up: socket.socket, iface: str,
                 dest: tuple[str, int]) -> None:
        self.board = _Side(board)
        self.up = _Side(up)
        self.iface = iface
        self.dest = dest
        self.state = "connecting"  # -> "open" -> ("held" while black-holed) -> closed

    def peer(self, side: _Side) -> _Side:
        return self.up if side is self.board else self.board


class _Listener:
    def __init__(self, sock: socket.socket, dest: tuple[str, int], iface: str) -> None:
        self.sock = sock
        self.dest = dest
        self.iface = iface


class LinkProxy:
    """Routes and forwards one virtual board's TCP connections; see the module docstring."""

    def __init__(self, link_up: Callable[[str], bool]) -> None:
        self.link_up = link_up
        self.modes: dict[str, str] = {}
        self._lock = threading.RLock()
        self._sel = selectors.DefaultSelector()
        self._listeners: dict[tuple[str, int, str], _Listener] = {}
        self._conns: set[_Conn] = set()
        self._refuser: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = False
        self._thread: threading.Thread | None = None
        self.stats = {"accepted": 0, "refused": 0, "dropped": 0, "reset": 0}

    # ---- the relay's side ----

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vboard-links", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            for c in list(self._conns):
                self._close(c)
            for lst in self._listeners.values():
                lst.sock.close()
            self._listeners.clear()
            if self._refuser is not None:
                self._refuser.close()
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()

    def set_mode(self, iface: str, mode: str) -> None:
        """What the next outage of `iface` does to its connections: drop or reset."""
        if mode not in MODES:
            raise VBoardError(f"outage mode {mode!r}: expected one of {', '.join(MODES)}")
        with self._lock:
            self.modes[iface] = mode

    def route(self, host: Any, port: Any, iface: str | None) -> dict[str, Any]:
        """The board's getaddrinfo: {"addr": [ip, port]} to connect to, or {"err": errno}.

        With no interface up a name does not resolve (EAI_FAIL, as on the chip);
        a literal IPv4 address does, and a connect to it is refused.
        """
        if not isinstance(host, str):
            return {"err": EAI_FAIL}
        if iface is None:  # no DNS server without an interface; lwIP parses literals itself
            if not _is_ipv4(host):
                return {"err": EAI_FAIL}
            return {"addr": [_LOOPBACK, self._refuse_port()]}
        try:
            self.link_up(iface)  # a name the world knows
            port = int(port)
            infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
        except (VBoardError, OSError, ValueError, TypeError, UnicodeError):
            return {"err": EAI_FAIL}
        ip = str(infos[0][4][0])
        with self._lock:
            key = (ip, port, iface)
            lst = self._listeners.get(key)
            if lst is None:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind((_LOOPBACK, 0))
                sock.listen(64)
                sock.setblocking(False)
                lst = self._listeners[key] = _Listener(sock, (ip, port), iface)
                self._sel.register(sock, selectors.EVENT_READ, lst)
                self._wake()
            return {"addr": [_LOOPBACK, lst.sock.getsockname()[1]]}

    def sync(self) -> None:
        """Act on link changes now (the relay calls this after `vboard wifi up|down`)."""
        with self._lock:
            self._check_links()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            conns = [{"iface": c.iface, "state": c.state, "dest": f"{c.dest[0]}:{c.dest[1]}"}
                     for c in self._conns]
            return {"modes": dict(self.modes), "connections": conns,
                    "listeners": len(self._listeners), **self.stats}

    # ---- the forwarding thread ----

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"x")

    def _refuse_port(self) -> int:
        # A bound socket that never listens: a connect to it is refused at once
        # (ECONNREFUSED), like the chip's EHOSTUNREACH with no interface up.
        with self._lock:
            if self._refuser is None:
                self._refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._refuser.bind((_LOOPBACK, 0))
            return self._refuser.getsockname()[1]

    def _run(self) -> None:
        while not self._stop:
            events = self._sel.select(_TICK_S)
            with self._lock:
                if self._stop:
                    return
                self._check_links()
                for key, mask in events:
                    data = key.data
                    if data is None:
                        with contextlib.suppress(BlockingIOError, OSError):
                            self._wake_r.recv(4096)
                    elif isinstance(data, _Listener):
                        self._accept(data)
                    else:
                        conn, side = data
                        if conn.state in ("connecting", "open"):
                            try:
                                self._io(conn, side, mask)
                            except Exception:  # a bug here must not stall every connection
                                traceback.print_exc()
                                self._close(conn, rst=True)

    def _check_links(self) -> None:
        up_now: dict[str, bool] = {}
        for c in list(self._conns):
            up = up_now.get(c.iface)
            if up is None:
                up = up_now[c.iface] = self.link_up(c.iface)
            if up and c.state == "held":
                self.stats["reset"] += 1
                self._close(c, rst=True)  # the session died with the link
            elif not up and c.state in ("open", "connecting"):
                if self.modes.get(c.iface, "drop") == "reset":
                    self.stats["reset"] += 1
                    self._close(c, rst=True)
                else:
                    self.stats["dropped"] += 1
                    self._hold(c)

    def _accept(self, lst: _Listener) -> None:
        while True:
            try:
                board, _ = lst.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not self.link_up(lst.iface):
                self.stats["refused"] += 1
                _reset(board)
                continue
            board.setblocking(False)
            board.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            up.setblocking(False)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(board, up, lst.iface, lst.dest)
            self._conns.add(conn)
            self.stats["accepted"] += 1
            err = up.connect_ex(lst.dest)
            if err not in (0, 115):  # 115: EINPROGRESS
                self._close(conn, rst=True)
                continue
            self._sel.register(up, selectors.EVENT_WRITE, (conn, conn.up))

    def _hold(self, c: _Conn) -> None:
        c.state = "held"
        for s in (c.board, c.up):
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s.sock)

    def _close(self, c: _Conn, rst: bool = False) -> None:
        self._conns.discard(c)
        c.state = "closed"
        for s in (c.board, c.up):
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(s.sock)
            if rst:
                _reset(s.sock)
            else:
                s.sock.close()

    def _io(self, c: _Conn, side: _Side, mask: int) -> None:
        if c.state == "connecting":
            err = c.up.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._close(c, rst=True)  # the destination refused: the board is reset
                return
            c.state = "open"
            self._sel.unregister(c.up.sock)
            self._sel.register(c.board.sock, selectors.EVENT_READ, (c, c.board))
            self._sel.register(c.up.sock, selectors.EVENT_READ, (c, c.up))
            return
        try:
            if mask & selectors.EVENT_WRITE:
                self._flush(c, side)
            if mask & selectors.EVENT_READ:
                self._read(c, side)
        except OSError:
            self._close(c, rst=True)  # a reset on one side resets the other
            return
        if c.state != "open":
            return
        if c.board.shut_out and c.up.shut_out:
            self._close(c)
            return
        self._interest(c)

    def _read(self, c: _Conn, side: _Side) -> None:
        peer = c.peer(side)
        if side.eof_in or len(peer.out) >= _HIGH_WATER:
            return
        try:
            data = side.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            side.eof_in = True
        else:
            peer.out += data
        self._flush(c, peer)

    def _flush(self, c: _Conn, side: _Side) -> None:
        if side.out:
            try:
                n = side.sock.send(side.out)
            except BlockingIOError:
                n = 0
            del side.out[:n]
        if not side.out and c.peer(side).eof_in and not side.shut_out:
            side.sock.shutdown(socket.SHUT_WR)  # pass the FIN on once the bytes are through
            side.shut_out = True

    def _interest(self, c: _Conn) -> None:
        for side in (c.board, c.up):
            peer = c.peer(side)
            ev = 0
            if not side.eof_in and len(peer.out) < _HIGH_WATER:
                ev |= selectors.EVENT_READ
            if side.out:
                ev |= selectors.EVENT_WRITE
            key = self._sel.get_map().get(side.sock.fileno())
            if ev == 0:
                if key is not None:
                    self._sel.unregister(side.sock)
            elif key is None:
                self._sel.register(side.sock, ev, (c, side))
            elif key.events != ev:
                self._sel.modify(side.sock, ev, (c, side))


def _is_ipv4(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except (OSError, TypeError):
        return False
    return host.count(".") == 3
