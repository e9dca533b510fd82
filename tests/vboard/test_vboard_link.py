"""A link outage cuts a virtual board's sockets: they reach the host only through the
relay's link proxy (hil_tests/vboard/linkproxy.py), which follows the world's Wi-Fi."""

from __future__ import annotations

import ast
import errno
import hashlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from hil_tests.errors import BoardExecError
from hil_tests.serial_board import SerialBoard
from hil_tests.vboard.errors import ControlError

WLAN_UP = ("import network, socket, time\n"
           "w = network.WLAN(network.STA_IF)\nw.active(True)\nw.connect('delta-ap', 'secret')\n"
           "t = time.ticks_ms()\n"
           "while not w.isconnected() and time.ticks_diff(time.ticks_ms(), t) < 5000:\n"
           "    time.sleep_ms(20)\n"
           "assert w.isconnected()\n")
HOST_T = 1.0  # seconds the host side waits for bytes that must not come


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A TCP server on the host: what a broker is to the board."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        srv.settimeout(10)
        yield srv


@pytest.fixture
def board(vboard) -> Iterator[SerialBoard]:
    b = SerialBoard(vboard.port, timeout=20)
    try:
        yield b
    finally:
        b.close()


def _connect(board: SerialBoard, server: socket.socket, name: str = "s") -> socket.socket:
    """Connect `name` on the board to the server; returns the server's end."""
    port = server.getsockname()[1]
    board.exec(f"{name} = socket.socket()\n"
               f"{name}.connect(socket.getaddrinfo('127.0.0.1', {port})[0][-1])\n")
    conn, _ = server.accept()
    conn.settimeout(10)
    board.exec(f"{name}.write(b'hi')")
    assert conn.recv(2) == b"hi"
    conn.sendall(b"ho")
    assert board.eval(f"{name}.recv(2)") == b"ho"
    return conn


def _board_try(board: SerialBoard, code: str) -> tuple[str, object]:
    """Run `code` on the board: ("err", errno) if it raised OSError, else ("ok", value)."""
    out = board.exec(f"try:\n    r = ('ok', {code})\nexcept OSError as e:\n"
                     f"    r = ('err', e.errno)\nprint(repr(r))")
    return ast.literal_eval(out.strip())


DEAD = (("err", errno.ECONNRESET), ("ok", b""))  # what a reset session reads: RST or EOF


def _host_gets_nothing(conn: socket.socket) -> None:
    conn.settimeout(HOST_T)
    with pytest.raises(TimeoutError):
        got = conn.recv(100)
        pytest.fail(f"the host received {got!r} during the outage")


def test_board_socket_reaches_the_host_through_the_proxy_byte_exact(vboard, board, server):
    board.exec(WLAN_UP)
    port = server.getsockname()[1]
    addr = board.eval(f"bytes(socket.getaddrinfo('127.0.0.1', {port})[0][-1])")
    proxy_port = int.from_bytes(addr[2:4], "big")
    assert addr[4:8] == bytes([127, 0, 0, 1]) and proxy_port != port  # not the server itself
    conn = _connect(board, server)
    links = vboard.control.state()["links"]
    assert links["connections"] == [{"iface": "wlan", "state": "open",
                                     "dest": f"127.0.0.1:{port}"}]

    # 512 KiB of random bytes: host -> board, echoed board -> host, then both FINs pass.
    payload = os.urandom(512 * 1024)
    sender = threading.Thread(target=lambda: (conn.sendall(payload),
                                              conn.shutdown(socket.SHUT_WR)))
    sender.start()
    back = bytearray()
    reader = threading.Thread(target=lambda: _read_all(conn, back))
    reader.start()
    digest = board.exec(
        "import hashlib\nh = hashlib.sha256()\nn = 0\n"
        "while True:\n    d = s.recv(4096)\n    if not d:\n        break\n"
        "    h.update(d)\n    n += len(d)\n    s.write(d)\n"
        "s.close()\nprint(n, h.digest().hex())", timeout=60).split()
    sender.join(30)
    reader.join(30)
    assert digest == [str(len(payload)), hashlib.sha256(payload).hexdigest()]
    assert bytes(back) == payload  # every byte, in order, and the board's FIN after them


def _read_all(conn: socket.socket, into: bytearray) -> None:
    conn.settimeout(30)
    while chunk := conn.recv(65536):
        into += chunk


def test_wifi_down_black_holes_open_connections_and_up_frees_the_broker(vboard, board,
                                                                        server):
    board.exec(WLAN_UP)
    port = server.getsockname()[1]
    conn = _connect(board, server)
    board.exec(f"cached = socket.getaddrinfo('127.0.0.1', {port})[0][-1]")
    vboard.control.wifi(False)  # default mode: drop

    # both ways nothing passes: the board's send is accepted locally and goes nowhere,
    # the host's bytes never reach the board (its recv times out)
    conn.sendall(b"from-host")
    assert _board_try(board, "s.send(b'from-board')") == ("ok", 10)
    board.exec("s.settimeout(1)")
    assert _board_try(board, "s.recv(100)") == ("err", errno.EAGAIN)  # the unix port's timeout
    _host_gets_nothing(conn)

    # while down: a name does not resolve (ESP32: -202); a literal IP resolves and its
    # connect is refused; a connect to the address cached before the outage never
    # reaches the server
    assert _board_try(board, f"socket.getaddrinfo('localhost', {port})") == ("err", -202)
    assert _board_try(
        board, f"socket.socket().connect(socket.getaddrinfo('127.0.0.1', {port})[0][-1])"
    ) == ("err", errno.ECONNREFUSED)
    board.exec("c2 = socket.socket()\nc2.settimeout(2)\nc2.connect(cached)")
    assert _board_try(board, "c2.recv(10)") in DEAD
    server.settimeout(0.5)
    with pytest.raises(TimeoutError):
        server.accept()
    assert vboard.control.state()["links"]["refused"] == 1

    # the link returns: the black-holed session is dead on both ends (the broker side
    # sees it close, so a broker publishes the last will now), new connections work
    vboard.control.wifi(True)
    conn.settimeout(5)
    with pytest.raises(ConnectionResetError):
        got = conn.recv(100)
        pytest.fail(f"the dead session carried {got!r} after the outage")
    assert _board_try(board, "s.recv(100)") in DEAD
    board.exec(WLAN_UP)
    conn2 = _connect(board, server, "s2")
    conn2.sendall(b"again")
    assert board.eval("s2.recv(5)") == b"again"
    assert vboard.control.state()["links"]["connections"][0]["state"] == "open"


def test_wifi_down_in_reset_mode_resets_both_ends_at_once(vboard, board, server):
    board.exec(WLAN_UP)
    conn = _connect(board, server)
    r = subprocess.run([sys.executable, "-m", "hil_tests.vboard.cli", "wifi", "down",
                        "--mode", "reset", "--dir", str(vboard.dir)],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    conn.settimeout(5)
    with pytest.raises(ConnectionResetError):
        conn.recv(100)
    board.exec("s.settimeout(5)")
    assert _board_try(board, "s.recv(100)") in DEAD
    assert "wifi down (reset)" in " ".join(vboard.control.state()["events"])


def test_no_interface_up_means_no_name_resolution(vboard, board):
    # the firmware never brought Wi-Fi up: as on the chip, names do not resolve
    with pytest.raises(BoardExecError, match="OSError: -202"):
        board.exec("import socket\nsocket.getaddrinfo('localhost', 1883)")
    # bind addresses are local, not routes
    board.exec("socket.getaddrinfo('0.0.0.0', 80)")


def test_an_unknown_outage_mode_is_refused_naming_it(vboard):
    with pytest.raises(ControlError, match="outage mode 'slow'"):
        vboard.control.wifi(False, mode="slow")
    assert vboard.control.state()["world"]["wifi"]["up"] is True


def test_sockets_follow_the_interface_that_is_up_and_only_its_outage_cuts_them(
        vboard, board, server):
    # no Wi-Fi; a connected "ppp" interface, as network.PPP registers itself
    board.exec("import socket, vb_network\n"
               "class Ppp:\n    def isconnected(self):\n        return True\n"
               "vb_network._register_iface('ppp', Ppp())")
    conn = _connect(board, server)
    assert [c["iface"] for c in vboard.control.state()["links"]["connections"]] == ["ppp"]
    vboard.control.set_world({"wifi": {"up": False}})  # not this connection's link
    conn.sendall(b"still")
    assert board.eval("s.recv(5)") == b"still"
    vboard.control.set_world({"cell": {"up": False}})
    conn.sendall(b"lost")
    board.exec("s.settimeout(1)")
    assert _board_try(board, "s.recv(100)") == ("err", errno.EAGAIN)
    _host_gets_nothing(conn)
