"""A simulated SIM7600 cellular modem on one of the virtual board's UARTs (host side).

The relay feeds it what the board writes on the modem UART (`receive`) and
lets it answer into that UART's receive buffer in the world (`poll`); both
take the time, so unit tests drive it with a fake clock. The network it sees
is `world.cell` (up or not, signal, registration, SIM PIN, APN).

What it does, after V.250 and 3GPP TS 27.007 as the SIMCom SIM7500/SIM7600
AT command manual describes them:
- power: on with the supply (or after a PWRKEY pulse, `auto_on: false`);
  silent for `boot_ms`, then the URCs `RDY` and `+CPIN: <state>` (and
  `SMS DONE`, `PB DONE` once the SIM is ready). The board drives PWRKEY
  through a transistor, so its pin high is PWRKEY low: held >= 100 ms it
  powers an off modem on, >= 2.5 s it powers a running one down
  (`NORMAL POWER DOWN`). The STATUS pin reads 1 while it runs.
- command mode: characters echoed until ATE0; a command line is `AT`...CR
  (anything before `AT` is dropped, backspace edits it), extended commands
  may be chained with `;`; every line ends with one final result code:
  `OK`, `ERROR`, `+CME ERROR: <err>` (AT+CMEE: 0 plain ERROR, 1 numeric,
  2 verbose, the default here), or for a dial `CONNECT 115200`/`NO CARRIER`.
  Replies are framed `\\r\\n<line>\\r\\n`.
- SIM: `sim_pin: None` READY at boot; else `SIM PIN` until AT+CPIN="<pin>"
  (a wrong one: `+CME ERROR: incorrect password`; three wrong: `SIM PUK`).
- registration (+CGREG/+CREG/+CEREG `<n>,<stat>`): 0 until the SIM is ready,
  2 (searching) for `reg_after_ms` after that or after the cell came back,
  then `reg` (1 home, 5 roaming, 3 denied); 2 while the cell is down.
  AT+CGREG=1 adds `+CGREG: <stat>` URCs when it changes.
- ATD*99# (or *99***<cid>#): `CONNECT 115200` after `dial_ms` and data mode,
  when registered and the context's APN is the network's (`apn: None`: any);
  else `NO CARRIER`. In data mode bytes are the PPP link's, not commands;
  `+++` with 1 s of silence before and after (S12 = 50) goes back to command
  mode with the call kept (ATO resumes it, ATH ends it). When the cell link
  drops (or goes down and up again) during a call: `NO CARRIER`, command mode.

State the board's `network.PPP` (rom/vb_ppp.py) reads back through the world:
`cell["call"]` is the id of the current data call (0: none) and
`cell["data_mode"]` whether the UART carries it right now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .errors import VBoardError

CR = 13
LF = 10
BS = 8
GUARD_MS = 1000  # S12 = 50, in 1/50 s: the "+++" escape's guard time
# The side channel adds a little latency on each side of the guard: accept a
# guard this much shorter than S12 (a "+++" glued to data still is no escape).
GUARD_SLACK_MS = 150
PWRKEY_ON_MS = 100  # PWRKEY low at least this long powers the module on
PWRKEY_OFF_MS = 2500  # ... and at least this long powers a running one down
PIN_TRIES = 3
CONNECT = "CONNECT 115200"
MODEL = "SIMCOM_SIM7600E-H"
REVISION = "LE20B04SIM7600M22"

CME = {  # 3GPP TS 27.007 9.2.1
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    16: "incorrect password",
    30: "no network service",
    50: "incorrect parameters",
    100: "unknown",
}


# world.cell: what the modem's network is like. Tests and `vboard cell up|down`
# change it while the board runs; "call" and "data_mode" are the modem's to set.
CELL_DEFAULTS: dict[str, Any] = {
    "uart": None,  # the board's UART id the modem is wired to; None: no modem
    "pwrkey": None,  # GPIO driving PWRKEY (through a transistor: high = pressed)
    "status": None,  # GPIO reading the modem's STATUS output
    "auto_on": True,  # powers up with the supply; False: waits for a PWRKEY pulse
    "boot_ms": 3000,  # silent after power-on for this long
    "up": True,  # the cellular network is there
    "csq": 20,  # +CSQ rssi index (0..31, 99 unknown): -113 + 2 * csq dBm
    "ber": 99,
    "reg": 1,  # registration once found: 1 home, 5 roaming, 3 denied
    "reg_after_ms": 1500,  # searching (2) this long after the SIM is ready or the cell is back
    "sim": True,  # a SIM is inserted
    "sim_pin": None,  # the SIM's PIN, or None: no PIN asked
    "apn": None,  # the only APN the network accepts; None: any
    "dial_ms": 200,  # ATD*99# -> CONNECT
    "operator": "Viettel",
    "imei": "862636051234567",
    "ip": "10.64.12.34",  # what the board's PPP gets (IPCP)
    "dns": "8.8.8.8",
    "ppp_ms": 300,  # PPP negotiation (LCP, IPCP) after connect()
    "up_since_ms": 0,
    "call": 0,
    "data_mode": False,
}
_MODEM_OWNED = ("call", "data_mode", "up_since_ms")


def cell_defaults() -> dict[str, Any]:
    return dict(CELL_DEFAULTS)


def update_cell(cell: dict[str, Any], values: dict[str, Any]) -> None:
    """Merge world values into `cell`; VBoardError naming a key that is not one."""
    for k in values:
        if k not in CELL_DEFAULTS:
            raise VBoardError(f"unknown cell key {k!r} (known: {', '.join(CELL_DEFAULTS)})")
        if k in _MODEM_OWNED:
            raise VBoardError(f"cell key {k!r} is the modem's state, not a setting")
    if "up" in values:
        up = bool(values["up"])
        if up and not cell["up"]:
            cell["up_since_ms"] = now_ms()
        cell["up"] = up
    cell.update({k: v for k, v in values.items() if k != "up"})


def wiring(kind: Any) -> dict[str, Any] | None:
    """World `cell` values wiring the modem of a boards.yaml kind (provisioning BoardKind):
    its UART id and the GPIOs of PWRKEY and STATUS; None when it has no modem on a UART."""
    m = getattr(kind, "modem", None)
    if m is None or m.uart is None:
        return None
    cell: dict[str, Any] = {"uart": m.uart.id}
    for role in ("pwrkey", "status"):
        if role in m.gpios:
            cell[role] = m.gpios[role]
    return cell


def now_ms() -> int:
    # CLOCK_MONOTONIC in ms: the same clock as time.ticks_ms() in the unix VM
    return int(time.monotonic() * 1000)


class _Fail(Exception):
    """A command's final result is an error: `code` None is plain ERROR."""

    def __init__(self, code: int | None = None) -> None:
        self.code = code


class Sim7600:
    """One modem on `uart`; the world holds the network it sees and its receive buffer."""

    def __init__(self, world: Any, uart: int, clock: Callable[[], int] = now_ms) -> None:
        self.world = world
        self.uart = uart
        self.clock = clock
        self.cell: dict[str, Any] = world.cell
        self.powered = False
        self.boot_at = 0
        self._out: list[tuple[int, bytes]] = []  # (due ms, bytes), in order
        self._key_down: int | None = None
        self._calls = 0
        self._reset_state()
        if self.cell.get("auto_on", True):
            self.power_on()

    # ---- power ----

    def _reset_state(self) -> None:
        self.booted = False
        self.echo = True
        self.cmee = 2
        self.cgreg_n = 0
        self.creg_n = 0
        self.line = bytearray()
        self.last_line = b""
        self.mode = "command"  # "command" | "dialing" | "data" | "online" (escaped, call kept)
        self.dial_due = 0
        self.call_up_since = 0
        self.last_rx = -(10**9)
        self.plus = 0
        self.escape_at: int | None = None
        self.sim = "READY"
        self.sim_ready_at = 0
        self.pin_tries = PIN_TRIES
        self.dial_cid = 1
        self.contexts: dict[int, tuple[str, str]] = {}
        self.reported_stat: int | None = None
        self.cfun = 1
        self._set_call(0, False)

    def power_on(self) -> None:
        now = self.clock()
        self._reset_state()
        self.powered = True
        self.boot_at = now + int(self.cell.get("boot_ms", 3000))

    def power_off(self, urc: bool = False) -> None:
        if urc and self.booted:
            self._emit("NORMAL POWER DOWN")
            self._flush(self.clock())
        self._out.clear()
        self.powered = False
        self._reset_state()
        self._status_pin(0)

    def power_cycle(self) -> None:
        """The supply went away and came back."""
        self.power_off()
        if self.cell.get("auto_on", True):
            self.power_on()

    def event(self, op: str, msg: dict[str, Any]) -> None:
        """A one-way report from the board (relay): its UART writes and pin levels."""
        if op == "uart_tx" and int(msg["id"]) == self.uart:
            self.receive(bytes.fromhex(msg["data"]))
        elif op == "pin_out":
            self.pin_changed(int(msg["id"]), int(msg["v"]))

    def pin_changed(self, gpio: int, level: int) -> None:
        """A pin the board drives; PWRKEY (through an inverting transistor) matters."""
        if gpio != self.cell.get("pwrkey"):
            return
        now = self.clock()
        if level:
            if self._key_down is None:
                self._key_down = now
            return
        if self._key_down is None:
            return
        held = now - self._key_down
        self._key_down = None
        if not self.powered and held >= PWRKEY_ON_MS:
            self.power_on()
        elif self.powered and held >= PWRKEY_OFF_MS:
            self.power_off(urc=True)

    def _status_pin(self, level: int) -> None:
        gpio = self.cell.get("status")
        if gpio is not None:
            self.world.pins[int(gpio)] = level

    # ---- output ----

    def _emit(self, line: str, delay_ms: int = 0) -> None:
        self._raw(b"\r\n" + line.encode() + b"\r\n", delay_ms)

    def _raw(self, data: bytes, delay_ms: int = 0) -> None:
        due = self.clock() + delay_ms
        i = len(self._out)
        while i and self._out[i - 1][0] > due:  # a later URC does not hold a reply back
            i -= 1
        self._out.insert(i, (due, data))

    def _flush(self, now: int) -> None:
        while self._out and self._out[0][0] <= now:
            self.world.feed_uart(self.uart, self._out.pop(0)[1])

    def _set_call(self, call: int, data: bool) -> None:
        self.cell["call"] = call
        self.cell["data_mode"] = data

    # ---- time passing ----

    def poll(self) -> None:
        """Let time act: boot, dial results, the +++ escape, link drops, URCs."""
        now = self.clock()
        if self.powered and not self.booted and now >= self.boot_at:
            self.booted = True
            self.sim_ready_at = now
            self.sim = "SIM PIN" if self.cell.get("sim_pin") else "READY"
            if not self.cell.get("sim", True):
                self.sim = "NOT INSERTED"
            self._status_pin(1)
            self._emit("RDY")
            if self.sim != "NOT INSERTED":
                self._emit(f"+CPIN: {self.sim}")
            if self.sim == "READY":
                self._sim_done()
        if self.booted:
            self._time_events(now)
        self._flush(now)

    def _time_events(self, now: int) -> None:
        if self.mode == "dialing" and now >= self.dial_due:
            if self._can_connect():
                self._calls += 1
                self.mode = "data"
                self.call_up_since = self.cell.get("up_since_ms", 0)
                self._set_call(self._calls, True)
                self._emit(CONNECT)
            else:
                self.mode = "command"
                self._emit("NO CARRIER")
        if self.mode in ("data", "online") and self._dropped():
            self.mode = "command"
            self.escape_at = None
            self.plus = 0
            self._set_call(0, False)
            self._emit("NO CARRIER")
        if self.mode == "data" and self.escape_at is not None \
                and now - self.escape_at >= GUARD_MS - GUARD_SLACK_MS:
            self.mode = "online"
            self.escape_at = None
            self.plus = 0
            self.cell["data_mode"] = False
            self._emit("OK")
        stat = self.reg_stat()
        if stat != self.reported_stat:
            if self.reported_stat is not None:
                if self.cgreg_n:
                    self._emit(f"+CGREG: {stat}")
                if self.creg_n:
                    self._emit(f"+CREG: {stat}")
            self.reported_stat = stat

    def _sim_done(self) -> None:
        self.sim_ready_at = self.clock()
        self._emit("SMS DONE", 200)
        self._emit("PB DONE", 200)

    def reg_stat(self) -> int:
        """+CGREG <stat>: 0 not searching, 1 home, 2 searching, 3 denied, 5 roaming."""
        if not self.booted or self.sim != "READY" or self.cfun != 1:
            return 0
        if not self.cell.get("up", True):
            return 2
        since = max(self.sim_ready_at, int(self.cell.get("up_since_ms", 0)))
        if self.clock() - since < int(self.cell.get("reg_after_ms", 1500)):
            return 2
        return int(self.cell.get("reg", 1))

    def _registered(self) -> bool:
        return self.reg_stat() in (1, 5)

    def _can_connect(self) -> bool:
        if not self._registered():
            return False
        want = self.cell.get("apn")
        _, apn = self.contexts.get(self.dial_cid, ("IP", ""))
        return want is None or apn == want

    def _dropped(self) -> bool:
        return (not self.cell.get("up", True) or not self._registered()
                or self.cell.get("up_since_ms", 0) != self.call_up_since)

    # ---- bytes from the board ----

    def receive(self, data: bytes) -> None:
        """What the board wrote on the modem UART."""
        self.poll()
        if not self.booted:
            return  # not listening yet: lost, as on the wire
        now = self.clock()
        for b in data:
            if self.mode == "data":
                self._data_byte(b, now)
            elif self.mode == "dialing":
                self.mode = "command"  # V.250: any character aborts a dial attempt
                self._emit("NO CARRIER")
            else:
                self._command_byte(b)
            self.last_rx = now
        self._flush(now)

    def _data_byte(self, b: int, now: int) -> None:
        quiet = now - self.last_rx
        if b == ord("+") and ((self.plus == 0 and quiet >= GUARD_MS - GUARD_SLACK_MS)
                              or 0 < self.plus < 3 and quiet < GUARD_MS):
            self.plus += 1
            self.escape_at = now if self.plus == 3 else None
        else:
            self.plus = 0  # PPP bytes (or a "+" without its guard time): the link's
            self.escape_at = None

    def _command_byte(self, b: int) -> None:
        if self.echo:
            self._raw(bytes((b,)))
        if b == CR:
            line = bytes(self.line)
            self.line.clear()
            self._line(line)
        elif b == BS:
            if self.line:
                self.line.pop()
        elif b == LF:
            pass  # V.250: ignored between commands
        else:
            self.line.extend(bytes((b,)))
            if self.line[-2:].upper() == b"A/" and len(self.line) == 2:
                self.line.clear()  # A/ repeats the last command line at once
                self._line(self.last_line)
            elif len(self.line) > 560:
                self.line.clear()

    # ---- command lines ----

    def _line(self, raw: bytes) -> None:
        at = raw.upper().find(b"AT")
        if at < 0:
            return  # no AT prefix: not a command line (V.250 5.2.1)
        body = raw[at + 2:].decode("latin-1").strip()
        self.last_line = raw[at:]
        try:
            parts = _split(body) if body else [""]
            for part in parts:
                for line in self._command(part.strip()):
                    self._emit(line)
                if self.mode == "dialing":
                    return  # the final result comes with the dial's outcome
        except _Fail as e:
            self._emit(self._error(e.code))
            return
        if self.mode == "data":
            return
        self._emit("OK")

    def _error(self, code: int | None) -> str:
        if code is None or self.cmee == 0:
            return "ERROR"
        if self.cmee == 1:
            return f"+CME ERROR: {code}"
        return f"+CME ERROR: {CME.get(code, CME[100])}"

    def _need_sim(self) -> None:
        if self.sim == "NOT INSERTED":
            raise _Fail(10)
        if self.sim == "SIM PIN":
            raise _Fail(11)
        if self.sim == "SIM PUK":
            raise _Fail(12)

    def _command(self, cmd: str) -> list[str]:
        """Run one command; the reply lines before the final OK. _Fail for errors."""
        up = cmd.upper()
        if up == "":
            return []
        if up in ("E0", "E1", "E"):
            self.echo = up == "E1"
            return []
        if up in ("Z", "&F", "Z0", "&F0"):
            self.echo = True
            self.cmee = 2
            return []
        if up in ("I", "I0"):
            return ["Manufacturer: SIMCOM INCORPORATED", f"Model: {MODEL}",
                    f"Revision: {REVISION}", f"IMEI: {self.imei()}", "+GCAP: +CGSM"]
        if up.startswith("&D") or up.startswith("&C") or up in ("V1", "Q0", "X4"):
            return []
        if up.startswith("D"):
            return self._dial(up[1:])
        if up in ("H", "H0"):
            if self.mode in ("online", "data"):
                self._set_call(0, False)
            self.mode = "command"
            return []
        if up in ("O", "O0"):
            if self.mode != "online":
                raise _Fail()  # no call to go back to
            self.mode = "data"
            self.cell["data_mode"] = True
            self._emit(CONNECT)
            return []
        if up.startswith("+"):
            return self._extended(up, cmd)
        raise _Fail()

    def _extended(self, up: str, cmd: str) -> list[str]:
        name, op, arg = _parse_ext(up)
        raw_arg = cmd[len(name) + len(op):] if op == "=" else ""
        if name == "+CGMI":
            return ["SIMCOM INCORPORATED"]
        if name == "+CGMM":
            return [MODEL]
        if name == "+CGMR":
            return [f"+CGMR: {REVISION}"]
        if name in ("+CGSN", "+GSN"):
            return [self.imei()]
        if name == "+CMEE":
            return self._setting(op, arg, "cmee", (0, 1, 2))
        if name == "+CPIN":
            return self._cpin(op, raw_arg)
        if name == "+CSQ":
            if op == "=?":
                return ["+CSQ: (0-31,99),(0-7,99)"]
            rssi = int(self.cell.get("csq", 20)) if self.cell.get("up", True) else 99
            return [f"+CSQ: {rssi},{int(self.cell.get('ber', 99))}"]
        if name in ("+CGREG", "+CREG", "+CEREG"):
            attr = "creg_n" if name == "+CREG" else "cgreg_n"
            if op == "?":
                return [f"{name}: {getattr(self, attr)},{self.reg_stat()}"]
            return self._setting(op, arg, attr, (0, 1, 2))
        if name == "+CGDCONT":
            return self._cgdcont(op, raw_arg)
        if name == "+COPS":
            if op == "?":
                if self._registered():
                    return [f'+COPS: 0,0,"{self.cell.get("operator", "Viettel")}",7']
                return ["+COPS: 0"]
            if op == "=?":
                return []
            return []
        if name == "+CFUN":
            if op == "?":
                return [f"+CFUN: {self.cfun}"]
            return self._setting(op, arg, "cfun", (0, 1, 4))
        if name == "+CPSI":
            if self._registered():
                return ["+CPSI: LTE,Online,452-04,0x3A2B,12345678,123,EUTRAN-BAND3,1850,5,5,"
                        "-94,-850,-560,15"]
            return ["+CPSI: NO SERVICE,Online"]
        raise _Fail()

    def _setting(self, op: str, arg: str, attr: str, allowed: tuple[int, ...]) -> list[str]:
        if op == "?":
            return [f"+{attr.split('_')[0].upper()}: {getattr(self, attr)}"]
        if op == "=?":
            return []
        if op != "=":
            raise _Fail()
        try:
            value = int(arg.split(",")[0])
        except ValueError:
            raise _Fail(50) from None
        if value not in allowed:
            raise _Fail(50)
        setattr(self, attr, value)
        return []

    def _cpin(self, op: str, raw_arg: str) -> list[str]:
        if op == "=?":
            return []
        if self.sim == "NOT INSERTED":
            raise _Fail(10)
        if op == "?":
            return [f"+CPIN: {self.sim}"]
        if op != "=":
            raise _Fail()
        if self.sim == "READY":
            raise _Fail(3)  # no PIN request pending
        if self.sim == "SIM PUK":
            raise _Fail(12)
        pin = raw_arg.split(",")[0].strip().strip('"')
        if pin != str(self.cell.get("sim_pin")):
            self.pin_tries -= 1
            if self.pin_tries <= 0:
                self.sim = "SIM PUK"
            raise _Fail(16)
        self.sim = "READY"
        self.pin_tries = PIN_TRIES
        self._emit("+CPIN: READY", 1)  # the URC follows the OK
        self._sim_done()
        return []

    def _cgdcont(self, op: str, raw_arg: str) -> list[str]:
        if op == "=?":
            return ['+CGDCONT: (1-24),"IP",,,(0-2),(0-4),(0,1),(0,1)',
                    '+CGDCONT: (1-24),"IPV6",,,(0-2),(0-4),(0,1),(0,1)']
        if op == "?":
            return [f'+CGDCONT: {cid},"{t}","{apn}","0.0.0.0",0,0'
                    for cid, (t, apn) in sorted(self.contexts.items())]
        if op != "=":
            raise _Fail()
        fields = [f.strip() for f in _split(raw_arg, ",")]
        try:
            cid = int(fields[0])
        except (ValueError, IndexError):
            raise _Fail(50) from None
        if not 1 <= cid <= 24:
            raise _Fail(50)
        if len(fields) == 1:
            self.contexts.pop(cid, None)  # AT+CGDCONT=<cid>: undefine it
            return []
        pdp = fields[1].strip('"').upper()
        if pdp not in ("IP", "IPV6", "IPV4V6", "PPP"):
            raise _Fail(50)
        apn = fields[2].strip('"') if len(fields) > 2 else ""
        self.contexts[cid] = (pdp, apn)
        return []

    def _dial(self, number: str) -> list[str]:
        number = number.rstrip(";").replace(" ", "")
        if not number.startswith("*99") or not number.endswith("#"):
            raise _Fail()  # voice and other numbers: not simulated
        self._need_sim()
        cid = 1
        if number.startswith("*99***"):
            try:
                cid = int(number[6:-1])
            except ValueError:
                raise _Fail() from None
        self.dial_cid = cid
        self.mode = "dialing"
        self.dial_due = self.clock() + int(self.cell.get("dial_ms", 200))
        return []

    def imei(self) -> str:
        return str(self.cell.get("imei", "862636051234567"))


def _split(text: str, sep: str = ";") -> list[str]:
    """Split on `sep` outside double quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _parse_ext(up: str) -> tuple[str, str, str]:
    """'+CGREG?' -> ('+CGREG', '?', ''); '+CMEE=2' -> ('+CMEE', '=', '2'); '+CSQ' -> op ''."""
    ends = [i for i in (up.find("="), up.find("?")) if i > 0]
    if not ends:
        return up, "", ""
    i = min(ends)
    if up[i] == "?":
        return up[:i], "?", up[i + 1:]
    if up[i + 1:] == "?":
        return up[:i], "=?", ""
    return up[:i], "=", up[i + 1:]
