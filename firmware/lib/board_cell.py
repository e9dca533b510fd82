# Cellular link over a modem's AT commands (3GPP TS 27.007 / V.250), then PPP.
# Part of the board layer, but it imports no `machine`: it drives any UART-like
# object (read() -> bytes or None without blocking, write(b)) and, for power,
# any pin-like objects (value([v])) board.py passes in, so the tests answer the
# AT commands with a fake UART and fake pins on both runtimes.
#
# up() is one bounded attempt: it returns with PPP started, or raises CellError
# (an OSError, so the node's link backoff retries it later while its loop keeps
# measuring). Each attempt runs:
#   AT              up to twice (0.5 s each) for OK; when the modem stays silent:
#                   - +++ escape: 1 s guard, "+++", 1 s guard (V.250 S12), then ATH.
#                     A chip reset (watchdog, machine.reset()) does not power the
#                     modem down, so it may still be in data mode from the last
#                     boot, taking "AT" for PPP bytes;
#                   - AT again, sync_tries times (5 s: a modem still booting answers);
#                   - PWRKEY (SIM7600: the board's pin drives the key through a
#                     transistor, pin high = key pressed): STATUS low (or no STATUS
#                     pin) -> a 0.5 s press powers it on, then AT until it answers;
#                     STATUS high yet deaf -> a 3 s press powers it down (this
#                     attempt fails, the next one powers it on). No press again
#                     within boot_ms of a power-on press: it may be booting still.
#   ATE0            echo off, so replies are only replies
#   AT+CPIN?        "+CPIN: READY", or "+CPIN: SIM PIN" -> AT+CPIN="<pin>"
#   AT+CSQ          "+CSQ: <rssi>,<ber>" -> dBm (27.007 8.5: 0 -> -113, n -> -113 + 2n,
#                   31 -> -51 or better, 99 -> unknown)
#   AT+CGREG?       once a second for at most reg_timeout_ms (3 s): registered, home (1)
#                   or roaming (5); else CellError("not registered ..."). The modem keeps
#                   searching on its own, so a coverage gap costs a few seconds per
#                   attempt, not the node's readings (the node retries within
#                   CELL_RETRY_CAP_MS, node.py).
#   AT+CGDCONT=1,"IP","<apn>"
#   ATD*99#         "CONNECT": the modem is in data mode
#   network.PPP(uart).active(True); .connect()
# A final "ERROR", "+CME ERROR: ..." or "NO CARRIER" raises CellError.
# Worst case, a modem that never answers: about 15 s of blocking per attempt
# (AT 1 s, escape 3 s, AT 5 s, press 0.5 s, AT 5 s), the watchdog fed throughout.
#
# RAM: one line buffer of at most MAXLINE bytes; replies are short lists of str.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:
    from time import ticks_diff
except ImportError:  # CPython

    def ticks_diff(a, b):
        return a - b


MAXLINE = const(128)
GUARD_MS = const(1000)  # V.250 S12 = 50 (1/50 s): silence before and after "+++"
PWRKEY_ON_MS = const(500)  # SIM7600: key low >= 100 ms (500 typical) powers it on
PWRKEY_OFF_MS = const(3000)  # ... >= 2.5 s powers a running one down
REG_POLL_MS = const(1000)
_FAIL = ("ERROR", "NO CARRIER", "BUSY", "NO DIALTONE", "NO ANSWER")


class CellError(OSError):
    pass


def csq_dbm(rssi):
    """The +CSQ rssi index as dBm, or None when unknown (99)."""
    if not isinstance(rssi, int) or rssi < 0 or rssi > 31:
        return None
    return -113 + 2 * rssi


class CellLink:
    kind = "cell"

    def __init__(self, uart, apn, pin=None, ppp_cls=None, sleep_ms=None, ticks_ms=None,
                 feed=None, sync_tries=10, reg_timeout_ms=3000, dial_timeout_ms=30000,
                 pwrkey=None, status=None, boot_ms=30000):
        self.uart = uart
        self.apn = apn
        self.pin = pin
        self.ppp_cls = ppp_cls
        if sleep_ms is None or ticks_ms is None:
            import time

            sleep_ms = sleep_ms or time.sleep_ms
            ticks_ms = ticks_ms or time.ticks_ms
        self.sleep_ms = sleep_ms
        self.ticks_ms = ticks_ms
        self.feed = feed
        self.sync_tries = sync_tries
        self.reg_timeout_ms = reg_timeout_ms
        self.dial_timeout_ms = dial_timeout_ms
        self.pwrkey = pwrkey  # output pin: 1 presses PWRKEY (through the board's transistor)
        self.status = status  # input pin: the modem's STATUS, 1 while it runs
        self.boot_ms = boot_ms  # after a power-on press, how long the modem may stay silent
        self.pressed = None  # ticks of the last power-on press
        self.dbm = None
        self.ppp = None
        self._buf = bytearray()

    # ---- line protocol ----

    def readline(self, timeout_ms):
        """The next non-empty line (str, without CR/LF), or None after timeout_ms."""
        start = self.ticks_ms()
        while True:
            i = self._buf.find(b"\n")
            while i >= 0:
                line = bytes(self._buf[:i]).strip()
                self._buf = self._buf[i + 1 :]
                if line:
                    try:
                        return line.decode()
                    except UnicodeError:  # line noise (baud mismatch, modem booting)
                        pass
                i = self._buf.find(b"\n")
            if ticks_diff(self.ticks_ms(), start) >= timeout_ms:
                return None
            data = self.uart.read()
            if data:
                self._buf.extend(data)
                if len(self._buf) > MAXLINE and self._buf.find(b"\n") < 0:
                    self._buf = bytearray()  # noise, or a line no reply of ours has
            else:
                if self.feed:
                    self.feed()
                self.sleep_ms(10)

    def _drain(self):
        while self.uart.read():
            pass
        self._buf = bytearray()

    def at(self, cmd, timeout_ms=1000, final="OK"):
        """Send cmd, return the reply lines before the final result code `final`.
        CellError on a failure code; CellError("timeout") when nothing final came."""
        self._drain()
        self.uart.write(cmd.encode() + b"\r")
        out = []
        while True:
            line = self.readline(timeout_ms)
            if line is None:
                raise CellError("modem: %s: timeout" % cmd.split("=")[0])
            if line == cmd:  # echo (before ATE0)
                continue
            if line == final or (final != "OK" and line.startswith(final)):
                return out
            if line in _FAIL or line.startswith("+CME ERROR") or line.startswith("+CMS ERROR"):
                raise CellError("modem: %s: %s" % (cmd.split("=")[0], line))
            out.append(line)

    @staticmethod
    def _field(lines, prefix):
        for ln in lines:
            if ln.startswith(prefix):
                return ln[len(prefix) :].strip()
        return None

    # ---- link ----

    def up(self):
        """One bounded attempt to bring the data link up. CellError on failure."""
        self._stop_ppp()  # a dropped call's PPP must not read the UART any more
        self._wake()
        self.at("ATE0")
        state = self._field(self.at("AT+CPIN?", 5000), "+CPIN:")
        if state == "SIM PIN":
            if not self.pin:
                raise CellError("modem: SIM needs a PIN and the config has none")
            self.at('AT+CPIN="%s"' % self.pin, 5000)
            state = self._field(self.at("AT+CPIN?", 5000), "+CPIN:")
        if state != "READY":
            raise CellError("modem: SIM not ready: %s" % state)
        self.signal()
        start = self.ticks_ms()
        while True:
            reg = self._field(self.at("AT+CGREG?"), "+CGREG:")
            stat = reg.split(",")[1].strip() if reg and "," in reg else None
            if stat in ("1", "5"):
                break
            if ticks_diff(self.ticks_ms(), start) >= self.reg_timeout_ms:
                raise CellError("modem: not registered (CGREG %s)" % stat)
            self._pause(REG_POLL_MS)
        self.at('AT+CGDCONT=1,"IP","%s"' % self.apn)
        self.at("ATD*99#", self.dial_timeout_ms, final="CONNECT")
        if self.ppp_cls is None:
            raise CellError("no network.PPP in this firmware build")
        self.ppp = self.ppp_cls(self.uart)
        self.ppp.active(True)
        self.ppp.connect()

    def _sync(self, tries):
        for _ in range(tries):
            try:
                self.at("AT", 500)
                return True
            except CellError:
                pass
        return False

    def _wake(self):
        """Get the modem answering AT in command mode (see the header); CellError if not."""
        if self._sync(2):
            return
        self._escape()  # left in data mode by a chip reset?
        if self._sync(self.sync_tries):  # ... or still booting
            return
        if self.pwrkey is None:
            raise CellError("modem: no answer to AT, nor after +++ and ATH")
        if self.pressed is not None and ticks_diff(self.ticks_ms(), self.pressed) < self.boot_ms:
            raise CellError("modem: no answer to AT yet (booting since PWRKEY)")
        if self.status is not None and self.status.value():
            self._press(PWRKEY_OFF_MS)  # running but deaf: off now, on at the next attempt
            raise CellError("modem: on but no answer to AT: powered down with PWRKEY")
        self._press(PWRKEY_ON_MS)
        self.pressed = self.ticks_ms()
        if not self._sync(self.sync_tries):
            raise CellError("modem: no answer to AT after PWRKEY (booting?)")

    def _press(self, ms):
        self.pwrkey.value(1)
        self._pause(ms)
        self.pwrkey.value(0)

    def _pause(self, ms):
        if self.feed:
            self.feed()
        self.sleep_ms(ms)

    def _escape(self):
        """Data mode -> command mode (V.250: the guard times make "+++" an escape,
        not data), then hang up. Harmless when the modem is in command mode."""
        self._pause(GUARD_MS)
        self.uart.write(b"+++")
        self._pause(GUARD_MS)
        try:
            self.at("ATH", 1000)
        except CellError:
            pass

    def _stop_ppp(self):
        if self.ppp is not None:
            try:
                self.ppp.active(False)
            except OSError:
                pass
            self.ppp = None

    def signal(self):
        """Query AT+CSQ (command mode only); returns and keeps the dBm (None unknown)."""
        v = self._field(self.at("AT+CSQ"), "+CSQ:")
        try:
            self.dbm = csq_dbm(int(v.split(",")[0]))
        except (AttributeError, ValueError):
            self.dbm = None
        return self.dbm

    def isconnected(self):
        return self.ppp is not None and self.ppp.isconnected()

    def rssi(self):
        return self.dbm  # as of the last up(): AT commands cannot run in data mode

    def down(self):
        self._stop_ppp()
        self._escape()
