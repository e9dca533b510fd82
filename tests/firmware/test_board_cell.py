# firmware/lib/board_cell.py: the modem's AT dialogue against a fake UART that
# answers like a SIM7600/SIM800-class modem (echo on until ATE0, CR LF framing,
# replies split across reads, data mode left by "+++" only with its guard times,
# power on/off by PWRKEY presses and a STATUS pin), on CPython and in the VM. A
# virtual clock makes the timeouts instant.

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
    or None for silence. `chunk` splits replies across read() calls.
    data_mode: a call from before a chip reset is up, so every byte is PPP's
    until "+++" with 1 s of silence before and after (V.250); then ATH ends it.
    on=False: powered down until PWRKEY is held >= 100 ms (>= 2.5 s powers it
    down); deaf: running but answers nothing (a hung modem) until powered down."""

    def __init__(self, answers=None, pin_needed=False, boot_silent=0, chunk=7, data_mode=False,
                 on=True, deaf=False):
        self.clock = Clock()  # link() shares the link's clock with the modem
        self.echo = True
        self.pin_needed = pin_needed
        self.pin_entered = None
        self.boot_silent = boot_silent  # commands ignored while the modem boots
        self.chunk = chunk
        self.data_mode = data_mode
        self.on = on
        self.deaf = deaf
        self.sent = []
        self.out = bytearray()
        self.creg_polls = 0
        self.hangups = 0
        self.presses = []  # how long PWRKEY was held each time, ms
        self.key_down = None
        self.last_rx = -10000
        self.plus_at = None
        self.answers = {
            "AT": ["OK"],
            "ATE0": ["OK"],
            "AT+CSQ": ["+CSQ: 18,99", "", "OK"],
            "AT+CGREG?": ["+CGREG: 0,1", "OK"],
            "ATD*99#": ["CONNECT 150000000"],
        }
        self.answers.update(answers or {})

    def _guard(self):
        # the escape happens once 1 s has passed after "+++" with nothing sent
        if self.plus_at is not None and self.clock.t - self.plus_at >= 1000:
            self.plus_at = None
            self.data_mode = False
            self.out.extend(b"\r\nOK\r\n")

    def write(self, data):
        now = self.clock.t
        self._guard()
        quiet = now - self.last_rx
        self.last_rx = now
        self.plus_at = None  # anything sent within the guard after "+++": no escape
        for part in bytes(data).split(b"\r"):
            if part:
                cmd = part.decode()
                self.sent.append(cmd)
                if self.data_mode:
                    if cmd == "+++" and quiet >= 1000:
                        self.plus_at = now
                elif self.on and not self.deaf:
                    self._command(cmd)
        return len(data)

    def _command(self, cmd):
        if self.boot_silent:
            self.boot_silent -= 1
            self.out.extend(b"\x00\xff")  # line noise while booting
            return
        if self.echo:
            self.out.extend(cmd.encode() + b"\r\r\n")
        if cmd == "ATE0":
            self.echo = False
        if cmd == "ATH":
            self.hangups += 1
            ans = ["OK"]
        elif cmd == "AT+CPIN?":
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
        if cmd == "ATD*99#" and ans[0].startswith("CONNECT"):
            self.data_mode = True

    def read(self, n=-1):
        self._guard()
        if not self.out:
            return None
        k = self.chunk if n is None or n < 0 else min(n, self.chunk)
        d = bytes(self.out[:k])
        self.out = self.out[k:]
        return d

    def key(self, level):
        """PWRKEY through the board's transistor: pin high = key pressed."""
        if level:
            if self.key_down is None:
                self.key_down = self.clock.t
            return
        if self.key_down is None:
            return
        held = self.clock.t - self.key_down
        self.key_down = None
        self.presses.append(held)
        if not self.on and held >= 100:
            self.on, self.echo, self.data_mode = True, True, False
        elif self.on and held >= 2500:
            self.on = self.deaf = False


class KeyPin:
    def __init__(self, modem):
        self.modem = modem
        self.v = 0

    def value(self, v=None):
        if v is None:
            return self.v
        self.v = 1 if v else 0
        self.modem.key(self.v)


class StatusPin:
    def __init__(self, modem):
        self.modem = modem

    def value(self, v=None):
        return 1 if self.modem.on else 0


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
    c = modem.clock
    return CellLink(modem, "m3-world", pin, ppp, c.sleep_ms, c.ticks_ms, **kw), c


def powered(modem, **kw):
    """A link with the board's PWRKEY and STATUS pins wired to the modem."""
    return link(modem, pwrkey=KeyPin(modem), status=StatusPin(modem), **kw)


DIALOGUE = ["ATE0", "AT+CPIN?", "AT+CSQ", "AT+CGREG?", 'AT+CGDCONT=1,"IP","m3-world"',
            "ATD*99#"]


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
    m = FakeModem(boot_silent=6)
    lk, clock = link(m)
    lk.up()
    # two tries, the escape (harmless in command mode), then AT until the boot is over
    assert m.sent[:7] == ["AT", "AT", "+++", "ATH", "AT", "AT", "AT"] and lk.isconnected()
    assert m.sent[7:] == DIALOGUE and clock.t >= 5 * 500 + 2000


def test_a_modem_that_never_answers_fails_in_bounded_time():
    m = FakeModem(boot_silent=1000)
    lk, clock = link(m, sync_tries=4)
    e = raises(CellError, lk.up)
    assert isinstance(e, OSError) and "no answer to AT" in str(e)
    assert m.sent == ["AT", "AT", "+++", "ATH"] + ["AT"] * 4
    assert clock.t <= 2 * 500 + 2000 + 1000 + 4 * 500 + 100


def test_modem_left_in_data_mode_by_a_chip_reset_is_escaped_and_hung_up():
    m = FakeModem(data_mode=True)  # its power stayed on: the last boot's call is still up
    lk, clock = link(m)
    lk.up()
    # "AT" is PPP data to it; "+++" counts only with 1 s of silence on both sides
    assert m.sent == ["AT", "AT", "+++", "ATH", "AT"] + DIALOGUE
    assert m.hangups == 1 and lk.isconnected() and clock.t >= 2 * 500 + 2000


def test_plus_plus_plus_without_its_guard_time_is_no_escape():
    m = FakeModem(data_mode=True)
    m.write(b"AT\r")
    m.clock.sleep_ms(500)
    m.write(b"+++")  # half the guard time after data: more data
    m.clock.sleep_ms(1000)
    assert m.read() is None and m.data_mode
    m.clock.sleep_ms(1000)
    m.write(b"+++")
    m.clock.sleep_ms(200)
    m.write(b"AT\r")  # within the guard after it: no escape
    m.clock.sleep_ms(2000)
    assert m.read() is None and m.data_mode


def test_a_powered_down_modem_is_switched_on_with_a_pwrkey_press():
    m = FakeModem(on=False)
    lk, clock = powered(m)
    assert lk.pwrkey.value() == 0
    lk.up()
    assert len(m.presses) == 1 and 500 <= m.presses[0] < 2500  # on, not the power-down hold
    assert lk.pwrkey.value() == 0 and m.on and lk.isconnected()
    assert m.sent == ["AT", "AT", "+++", "ATH"] + ["AT"] * 10 + ["AT"] + DIALOGUE


def test_a_modem_booting_after_the_press_is_not_pressed_again():
    m = FakeModem(on=False, boot_silent=1000)  # once on, it boots longer than one attempt waits
    lk, clock = powered(m, sync_tries=3, boot_ms=20000)
    e = raises(CellError, lk.up)
    assert "after PWRKEY" in str(e) and len(m.presses) == 1 and m.on
    e = raises(CellError, lk.up)  # within boot_ms: a second press could power it down
    assert "booting" in str(e) and len(m.presses) == 1 and clock.t < 20000
    m.boot_silent = 0
    lk.up()
    assert lk.isconnected() and len(m.presses) == 1


def test_a_running_but_deaf_modem_is_powered_down_then_up_again():
    m = FakeModem(deaf=True)  # STATUS high, yet no answer in either mode
    lk, clock = powered(m)
    e = raises(CellError, lk.up)
    assert "powered down" in str(e) and not m.on
    assert len(m.presses) == 1 and m.presses[0] >= 2500
    lk.up()  # STATUS low now: the next attempt presses it on
    assert len(m.presses) == 2 and 500 <= m.presses[1] < 2500 and lk.isconnected()


def test_a_silent_modem_without_a_pwrkey_pin_is_a_clear_error():
    m = FakeModem(on=False)
    e = raises(CellError, link(m)[0].up)
    assert str(e) == "modem: no answer to AT, nor after +++ and ATH"


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


def test_registration_is_waited_for_briefly_then_roaming_accepted():
    m = FakeModem({"AT+CGREG?": lambda n: ["+CGREG: 0,%d" % (2 if n < 3 else 5), "OK"]})
    lk, clock = link(m)
    lk.up()
    assert m.creg_polls == 3 and 2000 <= clock.t <= 3000 and lk.isconnected()


def test_a_searching_modem_fails_the_attempt_soon_and_a_later_one_connects():
    # a coverage gap: the modem searches (2) for its first 6 polls, then is home (1)
    m = FakeModem({"AT+CGREG?": lambda n: ["+CGREG: 0,%d" % (2 if n <= 6 else 1), "OK"]})
    lk, clock = link(m)
    e = raises(CellError, lk.up)
    assert str(e) == "modem: not registered (CGREG 2)" and not lk.isconnected()
    assert clock.t <= 3000 + 500 and "ATD*99#" not in m.sent  # the default: a few seconds
    assert m.creg_polls == 4  # at 0, 1, 2 and 3 s
    clock.sleep_ms(5000)  # the node's loop runs; its backoff calls up() again
    lk.up()
    assert m.creg_polls == 7 and lk.isconnected() and m.sent.count("ATD*99#") == 1


def test_registration_denied_fails_the_attempt():
    m = FakeModem({"AT+CGREG?": lambda n: ["+CGREG: 0,3", "OK"]})  # 3: denied
    lk, clock = link(m, reg_timeout_ms=5000)
    e = raises(CellError, lk.up)
    assert "not registered" in str(e) and "3" in str(e) and 5000 <= clock.t <= 6500


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
    t = clock.t
    lk.down()
    assert not ppp.on and lk.ppp is None and not lk.isconnected()
    assert m.sent[-2:] == ["+++", "ATH"] and clock.t - t >= 2000
    assert m.hangups == 1 and not m.data_mode  # the guard times made "+++" an escape


def test_redial_after_a_dropped_call_stops_the_old_ppp_first():
    m = FakeModem()
    lk, _ = link(m)
    lk.up()
    old = lk.ppp
    m.data_mode = False  # NO CARRIER: the call dropped, back in command mode
    m.out.extend(b"\r\nNO CARRIER\r\n")
    lk.up()
    assert not old.on and lk.ppp is not old and lk.isconnected()
    assert m.sent.count("ATD*99#") == 2 and "+++" not in m.sent


class Wdt:
    def feed(self):
        pass


class NodeBoard:
    """What node.Node's link handling asks of its board, on the link's clock."""

    def __init__(self, lk, clock):
        self.lk = lk
        self.clock = clock

    def ticks_ms(self):
        return self.clock.t

    def link(self, secrets, feed=None):
        return self.lk

    def sync_time(self):
        return False


def test_the_node_asks_a_searching_modem_again_within_the_cell_retry_cap():
    import node as nodemod

    m = FakeModem({"AT+CGREG?": lambda n: ["+CGREG: 0,%d" % (2 if n <= 40 else 1), "OK"]})
    lk, clock = link(m)
    cfg = {"device": "trk-1", "topic_prefix": "nodes", "role": "truck",
           "link": {"type": "cell", "apn": "m3-world"}}
    logs = []
    n = nodemod.Node(cfg, {}, NodeBoard(lk, clock), backoff_base_ms=1000,
                     backoff_cap_ms=600000, link_timeout_ms=30000, log=logs.append)
    n.wdt = Wdt()
    n.next_link = clock.t
    gaps = []
    for _ in range(10):  # a long coverage gap: backoff_cap_ms alone would allow 10 minutes
        start = clock.t
        assert n._link_up(start) is False
        assert clock.t - start <= 3500  # the attempt: the registration wait and a little
        gaps.append(n.next_link - clock.t)
        clock.t = n.next_link
    assert max(gaps) <= nodemod.CELL_RETRY_CAP_MS and m.creg_polls == 40
    assert logs == ["node: cell: modem: not registered (CGREG 2)"] * 10
    assert n._link_up(clock.t) is True and logs[-1] == "node: cell up"
    assert n.next_link - clock.t >= 30000  # dialled: PPP gets link_timeout_ms to come up
