# firmware/lib/board_cell.py: the modem's AT dialogue against a fake UART that
# answers like a SIM7600/SIM800-class modem (echo on until ATE0, CR LF framing,
# replies split across reads), on CPython and in the VM. A virtual clock makes
# the timeouts instant.

from board_cell import CellError, CellLink, csq_dbm
from fwtest import raises


class Clock:
    def __init__(self):
        self.t = 0

    def ticks_ms(self):
        return self.t

    def sleep_ms(self, ms):
        self.t += ms


class FakeModem:
    """A UART whose peer is a modem. answers: command -> list of reply lines,
    or None for silence. `chunk` splits replies across read() calls."""

    def __init__(self, answers=None, pin_needed=False, boot_silent=0, chunk=7):
        self.echo = True
        self.pin_needed = pin_needed
        self.pin_entered = None
        self.boot_silent = boot_silent  # commands ignored while the modem boots
        self.chunk = chunk
        self.sent = []
        self.out = bytearray()
        self.creg_polls = 0
        self.answers = {
            "AT": ["OK"],
            "ATE0": ["OK"],
            "AT+CSQ": ["+CSQ: 18,99", "", "OK"],
            "AT+CGREG?": ["+CGREG: 0,1", "OK"],
            "ATD*99#": ["CONNECT 150000000"],
            "ATH": ["OK"],
        }
        self.answers.update(answers or {})

    def write(self, data):
        for part in bytes(data).split(b"\r"):
            if part:
                self._command(part.decode())
        return len(data)

    def _command(self, cmd):
        self.sent.append(cmd)
        if self.boot_silent:
            self.boot_silent -= 1
            self.out.extend(b"\x00\xff")  # line noise while booting
            return
        if self.echo:
            self.out.extend(cmd.encode() + b"\r\r\n")
        if cmd == "ATE0":
            self.echo = False
        if cmd == "AT+CPIN?":
            ans = ["+CPIN: SIM PIN" if self.pin_needed else "+CPIN: READY", "OK"]
        elif cmd.startswith("AT+CPIN="):
            self.pin_entered = cmd[9:-1]
            self.pin_needed = self.pin_entered != "1234"
            ans = ["OK"] if not self.pin_needed else ["+CME ERROR: incorrect password"]
        elif cmd.startswith("AT+CGDCONT="):
            ans = ["OK"]
        elif cmd == "AT+CGREG?" and callable(self.answers[cmd]):
            self.creg_polls += 1
            ans = self.answers[cmd](self.creg_polls)
        else:
            ans = self.answers.get(cmd, ["ERROR"])
        if ans is None:
            return
        for line in ans:
            self.out.extend(b"\r\n" + line.encode() + b"\r\n")

    def read(self, n=-1):
        if not self.out:
            return None
        k = self.chunk if n is None or n < 0 else min(n, self.chunk)
        d = bytes(self.out[:k])
        self.out = self.out[k:]
        return d


class FakePPP:
    made = []

    def __init__(self, stream):
        self.stream = stream
        self.on = False
        self.connected = False
        FakePPP.made.append(self)

    def active(self, on=None):
        if on is None:
            return self.on
        self.on = on

    def connect(self):
        self.connected = True

    def isconnected(self):
        return self.on and self.connected


def link(modem, pin=None, ppp=FakePPP, **kw):
    c = Clock()
    return CellLink(modem, "m3-world", pin, ppp, c.sleep_ms, c.ticks_ms, **kw), c


def test_csq_index_to_dbm():
    assert [csq_dbm(i) for i in (0, 1, 2, 18, 30, 31)] == [-113, -111, -109, -77, -53, -51]
    assert csq_dbm(99) is None and csq_dbm(32) is None and csq_dbm(-1) is None


def test_up_runs_the_dialogue_in_order_and_starts_ppp_on_the_uart():
    m = FakeModem()
    lk, _ = link(m)
    assert not lk.isconnected()
    lk.up()
    assert m.sent == ["AT", "ATE0", "AT+CPIN?", "AT+CSQ", "AT+CGREG?",
                      'AT+CGDCONT=1,"IP","m3-world"', "ATD*99#"]
    assert lk.rssi() == -77 and lk.kind == "cell"
    assert lk.ppp.stream is m and lk.ppp.on and lk.isconnected()


def test_modem_still_booting_is_retried_until_it_answers():
    m = FakeModem(boot_silent=3)
    lk, clock = link(m)
    lk.up()
    assert m.sent[:4] == ["AT", "AT", "AT", "AT"] and lk.isconnected()
    assert clock.t >= 3 * 500  # each silent try waited its timeout


def test_a_modem_that_never_answers_fails_in_bounded_time():
    m = FakeModem(boot_silent=1000)
    lk, clock = link(m, sync_tries=4)
    e = raises(CellError, lk.up)
    assert isinstance(e, OSError) and "timeout" in str(e)
    assert m.sent == ["AT"] * 4 and clock.t <= 4 * 500 + 100


def test_sim_pin_is_entered_when_asked():
    m = FakeModem(pin_needed=True)
    lk, _ = link(m, pin="1234")
    lk.up()
    assert m.pin_entered == "1234" and 'AT+CPIN="1234"' in m.sent and lk.isconnected()


def test_sim_pin_needed_without_one_or_wrong_fails_with_a_clear_error():
    e = raises(CellError, link(FakeModem(pin_needed=True))[0].up)
    assert "PIN" in str(e)
    e = raises(CellError, link(FakeModem(pin_needed=True), pin="0000")[0].up)
    assert "+CME ERROR: incorrect password" in str(e)


def test_registration_is_waited_for_then_roaming_accepted():
    m = FakeModem({"AT+CGREG?": lambda n: ["+CGREG: 0,%d" % (2 if n < 3 else 5), "OK"]})
    lk, clock = link(m)
    lk.up()
    assert m.creg_polls == 3 and clock.t >= 2000 and lk.isconnected()


def test_no_registration_times_out():
    m = FakeModem({"AT+CGREG?": lambda n: ["+CGREG: 0,3", "OK"]})  # 3: denied
    lk, _ = link(m, reg_timeout_ms=5000)
    e = raises(CellError, lk.up)
    assert "not registered" in str(e) and "3" in str(e)


def test_dial_failure_is_an_oserror():
    m = FakeModem({"ATD*99#": ["NO CARRIER"]})
    lk, _ = link(m)
    e = raises(OSError, lk.up)
    assert "NO CARRIER" in str(e) and not lk.isconnected()


def test_missing_ppp_support_is_reported_not_crashed():
    lk, _ = link(FakeModem(), ppp=None)
    e = raises(CellError, lk.up)
    assert "PPP" in str(e)


def test_at_returns_the_reply_lines_and_skips_echo_and_noise():
    m = FakeModem({"ATI": ["SIMCOM_SIM7600E", "Revision: LE20B04", "OK"]}, chunk=3)
    lk, _ = link(m)
    assert lk.at("ATI") == ["SIMCOM_SIM7600E", "Revision: LE20B04"]  # echo on: skipped
    m.out.extend(b"\r\nRING\r\n")  # an unsolicited line before the command is dropped
    assert lk.at("ATI") == ["SIMCOM_SIM7600E", "Revision: LE20B04"]


def test_overlong_garbage_does_not_grow_the_buffer():
    m = FakeModem({"AT+JUNK": ["x" * 1000]}, chunk=64)
    lk, _ = link(m)
    seen = []
    read = m.read

    def spy(n=-1):
        seen.append(len(lk._buf))
        return read(n)

    m.read = spy
    raises(CellError, lk.at, "AT+JUNK", 200)  # no final result code: a timeout
    assert len(seen) > 10 and max(seen) <= 128 + 64


def test_down_stops_ppp_and_hangs_up():
    m = FakeModem()
    lk, clock = link(m)
    lk.up()
    ppp = lk.ppp
    lk.down()
    assert not ppp.on and lk.ppp is None and not lk.isconnected()
    assert m.sent[-2:] == ["+++", "ATH"] and clock.t >= 2000
