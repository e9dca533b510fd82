"""The relay: the USB-UART bridge, power supply and watchdog of one virtual board.

Two pty pairs.  The VM (the chip) runs on slave A as its controlling tty; the
host (mpremote, pyserial) opens slave B by path.  The relay copies bytes
between master A and master B: while nobody has slave B open the board's
output is dropped, as a UART's would be, and while someone does, a slow
reader holds the board back (back-pressure) instead of losing bytes.

Over the side-channel pipes the ROM asks for world values and reports resets,
deep sleep and watchdog feeds; resets are done here by killing the VM and
starting it again with the reset cause in its environment.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import signal
import socket
import termios
import time
from collections import deque
from typing import Any

from .errors import BoardBusyError, VBoardError
from .layout import BoardDir
from .linkproxy import LinkProxy
from .modem import Sim7600, wiring
from .ptys import board_side_mode, open_raw_pty
from .scenario import Scenario, ScenarioRun, load_kind
from .scenario import parse as parse_scenario
from .vm import VmProcess, find_micropython, spawn_vm
from .world import World

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET = 1, 2, 3, 4
TIMER_WAKE = 4
BOARDS = {"esp32": "ESP32 module (virtual) with ESP32"}

_HIGH_WATER = 64 * 1024  # bytes buffered one way before the relay stops reading the other side
_INTR_GAP_S = 0.01  # two ^C closer than this could kill the VM (second SIGINT while one pending)
_B_CHECK_S = 0.02  # how often to look whether someone opened the host side
_CRASH_BACKOFF_S = 1.0


class Relay:
    """Owns the ptys, the VM process and the control socket of one board."""

    def __init__(self, board: BoardDir, world: World, kind: str = "esp32",
                 heap: str = "256K", exe: str | None = None) -> None:
        if kind not in BOARDS:
            raise VBoardError(f"unknown board kind {kind!r} (known: {', '.join(BOARDS)})")
        self.board = board
        self.world = world
        self.kind = kind
        self.heap = heap
        self.exe = exe or find_micropython()
        self.uid = board.unique_id()
        self.vm: VmProcess | None = None
        self.vm_started = 0.0
        self.next_boot: tuple[float, int, int] | None = None  # (at, cause, wake)
        self.cause = PWRON_RESET
        self.boots = 0
        self.booted = False
        self.mem_free: int | None = None
        self.wdt_ms: int | None = None
        self.wdt_deadline: float | None = None
        self.events: deque[tuple[float, str]] = deque(maxlen=100)
        self.out_pending = bytearray()  # board -> host
        self.in_pending = bytearray()  # host -> board
        self.last_intr = 0.0
        self.b_open = False
        self.tx_buf = b""
        self.stopping = False
        self.clients: dict[int, _Client] = {}
        self.scenario: ScenarioRun | None = None  # a world changing over time (scenario.py)
        self.board_kind: str | None = None  # boards.yaml kind the scenario keys map to
        self.links = LinkProxy(world.link_up)  # the board's TCP sockets go through it
        self.modem: Sim7600 | None = None  # attached when world.cell["uart"] is set
        self._lock_fd = -1
        self._opened = False

    # ---- setup and teardown ----

    def open(self) -> None:
        self._lock()
        self.master_a, self.slave_a = open_raw_pty()
        board_side_mode(self.slave_a)
        self.slave_a_path = os.ttyname(self.slave_a)
        self.master_b, slave_b = open_raw_pty()
        self.port = os.ttyname(slave_b)
        os.close(slave_b)  # the host opens it by path; closed means "nobody listening"
        self.log = open(self.board.console_log, "wb", buffering=0)  # noqa: SIM115
        self.control_path = self.board.control_socket_path()
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.control_path))
        self.server.listen(8)
        self.server.setblocking(False)
        self.sig_r, self.sig_w = os.pipe()
        os.set_blocking(self.sig_w, False)
        os.set_blocking(self.sig_r, False)
        self.links.start()
        self._opened = True

    def _lock(self) -> None:
        self._lock_fd = os.open(self.board.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise BoardBusyError(f"board {self.board.root} is already running") from e

    def start(self, timeout: float = 10.0) -> None:
        """Power the board on and wait until its ROM reports it has booted."""
        if self.board_kind and self.world.cell.get("uart") is None:
            wired = wiring(load_kind(self.board_kind))  # the kind's modem, if on a UART
            if wired is not None:
                self.world.update({"cell": wired})
        self._boot(PWRON_RESET, 0)
        self.board.write_run_info({"pid": os.getpid(), "port": self.port,
                                   "control": str(self.control_path)})
        deadline = time.monotonic() + timeout
        while not self.booted:
            if self.vm is None or time.monotonic() > deadline:
                tail = self.board.console_log.read_bytes()[-400:].decode("latin-1")
                raise VBoardError(f"virtual board did not boot; console said: {tail.strip()!r}")
            self.step()

    def close(self) -> None:
        if self.vm is not None:
            self.vm.kill()
            self.vm = None
        if not self._opened:
            return
        for c in list(self.clients.values()):
            c.sock.close()
        self.links.close()
        self.server.close()
        with contextlib.suppress(OSError):
            self.control_path.unlink()
        with contextlib.suppress(OSError):
            self.board.run_file.unlink()
        for fd in (self.master_a, self.slave_a, self.master_b, self.sig_r, self.sig_w,
                   self._lock_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.log.close()
        self._opened = False

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT unplug the board: serve() returns."""
        def handler(signum: int, frame: Any) -> None:
            self.stopping = True
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.set_wakeup_fd(self.sig_w)

    def serve(self) -> None:
        while not self.stopping:
            self.step()

    # ---- the chip's life cycle ----

    def _note(self, what: str) -> None:
        self.events.append((time.time(), what))

    def _boot(self, cause: int, wake: int) -> None:
        # Input typed while the chip was down is lost, as on a UART.
        termios.tcflush(self.slave_a, termios.TCIFLUSH)
        board_side_mode(self.slave_a)
        self.in_pending.clear()
        self.cause = cause
        self.booted = False
        self.next_boot = None
        env = {"VBOARD_DIR": str(self.board.root), "VBOARD_CAUSE": str(cause),
               "VBOARD_WAKE": str(wake), "VBOARD_UID": self.uid.hex(),
               "VBOARD_KIND": self.kind}
        self.vm = spawn_vm(self.exe, self.slave_a_path, self.heap, env)
        self.vm_started = time.monotonic()
        self._note(f"boot cause={cause}")

    def _take_down(self) -> None:
        if self.vm is not None:
            self.vm.kill()
            self.vm = None
        self.booted = False
        self.tx_buf = b""
        self.wdt_ms = None  # any reset or sleep stops the watchdog
        self.wdt_deadline = None

    def reset(self, cause: int, delay: float = 0.0, wake: int = 0) -> None:
        """Take the chip down and bring it up again after `delay` seconds."""
        self._take_down()
        self.next_boot = (time.monotonic() + delay, cause, wake)

    def power_cycle(self, off_s: float = 0.0) -> None:
        self.world.power_off()
        if self.modem is not None:  # the modem shares the board's supply
            self.modem.power_cycle()
        self._note("power cycle" + (f" (off {off_s:.3g} s)" if off_s else ""))
        self.reset(PWRON_RESET, delay=off_s)

    def run_scenario(self, sc: Scenario) -> None:
        """Play `sc` on the world from now on (replacing a running one)."""
        self.scenario = ScenarioRun(sc, self.world, self.power_cycle)
        self._note(f"scenario {sc.name} at speed {sc.speed:g}")
        self.scenario.tick(time.monotonic())

    def _deep_sleep(self, ms: int) -> None:
        self._note(f"deepsleep {ms} ms")
        self._take_down()
        self.next_boot = None if ms <= 0 else (
            time.monotonic() + ms / 1000, DEEPSLEEP_RESET, TIMER_WAKE)

    def _wdt_fire(self) -> None:
        ms = int(time.monotonic() * 1000) % 100000
        self._board_output(b"E (%d) task_wdt: Task watchdog got triggered. The following tasks "
                           b"did not reset the watchdog in time:\r\nE (%d) task_wdt:  - mp_task "
                           b"(CPU 0)\r\n" % (ms, ms))
        self._note("watchdog reset")
        self.reset(WDT_RESET)

    def _vm_exited(self) -> None:
        assert self.vm is not None
        lived = time.monotonic() - self.vm_started
        code = self.vm.kill()
        self.vm = None
        self._note(f"VM exited by itself with status {code}")
        # A crash reboots the chip (ESP_RST_PANIC -> HARD_RESET); back off if it loops.
        self.reset(HARD_RESET, delay=_CRASH_BACKOFF_S if lived < 2 else 0.0)

    # ---- the event loop ----

    def step(self) -> None:
        now = time.monotonic()
        if self.scenario is not None:
            self.scenario.tick(now)
        if self.wdt_deadline is not None and now >= self.wdt_deadline:
            self._wdt_fire()
        if self.vm is None and self.next_boot and now >= self.next_boot[0]:
            self._boot(self.next_boot[1], self.next_boot[2])
        if not self.b_open:
            self._check_b_open()

        p = select.poll()
        p.register(self.sig_r, select.POLLIN)
        p.register(self.server, select.POLLIN)
        for c in self.clients.values():
            p.register(c.sock, select.POLLIN | (select.POLLOUT if c.out else 0))
        if self.vm is not None:
            p.register(self.vm.pidfd, select.POLLIN)
            p.register(self.vm.tx, select.POLLIN)
        ev_a = 0
        if not self.b_open or len(self.out_pending) < _HIGH_WATER:
            ev_a |= select.POLLIN
        hold = self._intr_hold(now)
        if self.in_pending and self.vm is not None and hold <= 0:
            ev_a |= select.POLLOUT
        if ev_a:
            p.register(self.master_a, ev_a)
        if self.b_open:
            ev_b = select.POLLIN if len(self.in_pending) < _HIGH_WATER else 0
            if self.out_pending:
                ev_b |= select.POLLOUT
            p.register(self.master_b, ev_b)

        timeout = 1.0
        if not self.b_open:
            timeout = _B_CHECK_S
        if self.in_pending and hold > 0:
            timeout = min(timeout, hold)
        due = self.scenario.next_due(now) if self.scenario is not None else None
        for t in (self.wdt_deadline, self.next_boot[0] if self.next_boot else None, due):
            if t is not None:
                timeout = min(timeout, max(0.0, t - now))
        for fd, ev in p.poll(timeout * 1000):
            self._dispatch(fd, ev)

    def _dispatch(self, fd: int, ev: int) -> None:
        if fd == self.sig_r:
            with contextlib.suppress(BlockingIOError):
                os.read(self.sig_r, 64)
        elif fd == self.server.fileno():
            self._accept()
        elif fd in self.clients:
            self._client_io(self.clients[fd], ev)
        elif self.vm is not None and fd == self.vm.pidfd:
            self._vm_exited()
        elif self.vm is not None and fd == self.vm.tx:
            self._vm_messages()
        elif fd == self.master_a:
            if ev & select.POLLOUT:
                self._write_board()
            if ev & (select.POLLIN | select.POLLHUP):
                self._read_board()
        elif fd == self.master_b:
            if ev & select.POLLOUT and self.b_open:
                self._write_host()
            if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                self._read_host()

    # ---- console bytes ----

    def _check_b_open(self) -> None:
        p = select.poll()
        p.register(self.master_b, select.POLLIN)
        res = p.poll(0)
        if not res or not res[0][1] & select.POLLHUP:
            self.b_open = True
            self._note("host opened the port")

    def _b_closed(self) -> None:
        if self.b_open:
            self._note("host closed the port")
        self.b_open = False
        self.out_pending.clear()

    def _board_output(self, data: bytes) -> None:
        self.log.write(data)
        if self.b_open:
            self.out_pending += data

    def _read_board(self) -> None:
        try:
            data = os.read(self.master_a, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.EIO:
                return
            raise
        self._board_output(data)

    def _write_host(self) -> None:
        try:
            n = os.write(self.master_b, self.out_pending)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.EIO:
                self._b_closed()
                return
            raise
        del self.out_pending[:n]

    def _read_host(self) -> None:
        try:
            data = os.read(self.master_b, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.EIO:  # the last opener of slave B closed it
                self._b_closed()
                return
            raise
        if not data:
            self._b_closed()
            return
        if self.vm is not None:  # while the chip is down, typed bytes are lost
            self.in_pending += data

    def _intr_hold(self, now: float) -> float:
        """Seconds to wait before the next ^C may go to the VM (0: go)."""
        if not self.in_pending or self.in_pending[0] != 3:
            return 0.0
        return self.last_intr + _INTR_GAP_S - now

    def _write_board(self) -> None:
        # Send up to and including the next ^C; a following ^C waits _INTR_GAP_S.
        buf = self.in_pending
        end = buf.find(b"\x03", 1 if buf[:1] == b"\x03" else 0)
        chunk = bytes(buf[: end if end > 0 else len(buf)])
        try:
            n = os.write(self.master_a, chunk)
        except BlockingIOError:
            return
        if b"\x03" in chunk[:n]:
            self.last_intr = time.monotonic()
        del buf[:n]

    # ---- side channel ----

    def _vm_messages(self) -> None:
        assert self.vm is not None
        try:
            data = os.read(self.vm.tx, 65536)
        except BlockingIOError:
            return
        if not data:
            return
        lines = (self.tx_buf + data).split(b"\n")
        self.tx_buf = lines.pop()
        for line in lines:
            if self.vm is None:
                break  # a reset in this batch: the rest was never really sent
            self._handle(json.loads(line))

    def _attached_modem(self) -> Sim7600 | None:
        """The modem on world.cell["uart"] (made when first wired), after time acted on it."""
        uart = self.world.cell.get("uart")
        if uart is None:
            self.modem = None
        else:
            if self.modem is None or self.modem.uart != int(uart):
                self.modem = Sim7600(self.world, int(uart))
            self.modem.poll()
        return self.modem

    def _handle(self, msg: dict[str, Any]) -> None:
        op = msg.get("op", "")
        modem = self._attached_modem()
        if op == "booted":
            self.booted = True
            self.boots += 1
            self.mem_free = msg.get("mem_free")
        elif op == "reset":
            self._note("machine.reset()")
            self.reset(HARD_RESET)
        elif op == "deepsleep":
            self._deep_sleep(int(msg.get("ms") or 0))
        elif op == "wdt":
            self.wdt_ms = int(msg["ms"])
            self.wdt_deadline = time.monotonic() + self.wdt_ms / 1000
        elif op == "feed":
            if self.wdt_ms is not None:
                self.wdt_deadline = time.monotonic() + self.wdt_ms / 1000
        elif "seq" in msg:
            if self.scenario is not None:  # values as they are at this very moment
                self.scenario.tick(time.monotonic(), power=False)
            if op == "route":  # the board's getaddrinfo
                value = self.links.route(msg.get("host"), msg.get("port"), msg.get("iface"))
            else:
                value = self.world.answer(op, msg)
            assert self.vm is not None
            os.write(self.vm.rx, json.dumps({"seq": msg["seq"], "v": value}).encode() + b"\n")
        else:
            self.world.event(op, msg)
            if modem is not None:
                modem.event(op, msg)

    # ---- control socket ----

    def _accept(self) -> None:
        try:
            sock, _ = self.server.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self.clients[sock.fileno()] = _Client(sock)

    def _client_io(self, c: _Client, ev: int) -> None:
        if ev & select.POLLOUT and c.out:
            try:
                n = c.sock.send(c.out)
                del c.out[:n]
            except BlockingIOError:
                pass
            except OSError:
                self._drop(c)
                return
        if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._drop(c)
                return
            c.inbuf += data
            while b"\n" in c.inbuf:
                line, _, rest = bytes(c.inbuf).partition(b"\n")
                c.inbuf = bytearray(rest)
                c.out += json.dumps(self._command(line)).encode() + b"\n"

    def _drop(self, c: _Client) -> None:
        self.clients.pop(c.sock.fileno(), None)
        c.sock.close()

    def _command(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "state":
                self._attached_modem()  # time acts on the modem first (boot, STATUS, calls)
                return {"ok": True, "state": self.state()}
            if cmd == "power_cycle":
                self.power_cycle()
                return {"ok": True, "boots": self.boots}
            if cmd == "wifi":
                mode = req.get("mode") or "drop"
                self.links.set_mode("wlan", mode)
                self.world.set_wifi(bool(req["up"]))
                self.links.sync()  # connections are cut (or freed) before the reply
                self._note(f"wifi {'up' if req['up'] else 'down (' + mode + ')'}")
                return {"ok": True}
            if cmd == "cell":
                self.world.update({"cell": {"up": bool(req["up"])}})
                self._attached_modem()  # a call in data mode ends now: NO CARRIER
                self.links.sync()  # the PPP route's connections are cut (or freed)
                self._note(f"cell {'up' if req['up'] else 'down'}")
                return {"ok": True}
            if cmd == "scenario":
                data = req["scenario"]
                kind = req.get("board") or (None if isinstance(data, dict) and "board" in data
                                            else self.board_kind)
                sc = parse_scenario(data, str(req.get("name") or "<control>"), kind,
                                    req.get("speed"))
                self.run_scenario(sc)
                return {"ok": True}
            if cmd == "scenario_stop":
                self.scenario = None
                return {"ok": True}
            if cmd == "uart_speed":
                self.world.uart_speed(int(req["id"]), req["speed"])
                return {"ok": True}
            if cmd == "world":
                self.world.update(req["values"])
                # a modem wired now powers on now (not when the board next talks to the
                # relay); a changed network acts on a call before the reply
                self._attached_modem()
                self.links.sync()  # a link the values took down is cut before the reply
                return {"ok": True}
            if cmd == "uart_feed":
                self.world.feed_uart(int(req["id"]), bytes.fromhex(req["data"]))
                return {"ok": True}
            if cmd == "console_log":
                data = self.board.console_log.read_bytes()[int(req.get("offset", 0)):]
                return {"ok": True, "text": data.decode("latin-1")}
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        except (ValueError, KeyError, TypeError, VBoardError, OSError) as e:
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    def state(self) -> dict[str, Any]:
        if self.vm is not None:
            phase = "running" if self.booted else "booting"
        else:
            phase = "sleeping" if self.next_boot else "off"
        return {
            "phase": phase, "pid": self.vm.proc.pid if self.vm else None,
            "port": self.port, "kind": self.kind, "boots": self.boots,
            "reset_cause": self.cause, "host_connected": self.b_open,
            "wdt_ms": self.wdt_ms, "mem_free_at_boot": self.mem_free,
            "unique_id": self.uid.hex(), "world": self.world.snapshot(),
            "events": [f"{t:.3f} {w}" for t, w in self.events],
            "links": self.links.snapshot(),
            "scenario": self.scenario.snapshot(time.monotonic()) if self.scenario else None,
        }


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.out = bytearray()
