# MicroPython code: `machine` for the virtual ESP32 (installed as sys.modules["machine"]).
#
# Peripheral values come from the relay's world model through vb_host.ask(),
# so a scenario on the host side can drive them; resets, deep sleep and the
# watchdog are carried out by the relay, which kills and restarts this VM.
import binascii
import os
import sys
import time

import machine as _unix
import vb_host

# Passed through from the unix port: they work on the VM as on the chip.
PinBase = _unix.PinBase
Signal = _unix.Signal
mem8 = _unix.mem8
mem16 = _unix.mem16
mem32 = _unix.mem32
_unix_time_pulse_us = _unix.time_pulse_us

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

SLEEP = 2
DEEPSLEEP = 4
PIN_WAKE = 2
EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6

_cause = int(os.getenv("VBOARD_CAUSE") or PWRON_RESET)
_wake = int(os.getenv("VBOARD_WAKE") or 0)
_uid = binascii.unhexlify(os.getenv("VBOARD_UID") or "240ac4000001")
_soft = False
_freq = 160000000


def _soft_reset_happened():
    global _soft
    _soft = True


def reset_cause():
    return SOFT_RESET if _soft else _cause


def wake_reason():
    return 0 if _soft else _wake


def reset():
    vb_host.halt({"op": "reset"})


def soft_reset():
    raise SystemExit


def deepsleep(ms=0):
    vb_host.halt({"op": "deepsleep", "ms": int(ms)})


def lightsleep(ms=0):
    if ms:
        time.sleep_ms(ms)


sleep = lightsleep


def unique_id():
    return _uid


def freq(hz=None):
    global _freq
    if hz is None:
        return _freq
    if hz not in (20000000, 40000000, 80000000, 160000000, 240000000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _freq = hz


def idle():
    time.sleep_ms(1)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


# ---- GPIO ---------------------------------------------------------------------

_VALID_PINS = tuple(p for p in range(40) if p not in (6, 7, 8, 9, 10, 11, 20, 24, 28, 29, 30, 31))
_INPUT_ONLY = (34, 35, 36, 37, 38, 39)


def _pin_id(p):
    if isinstance(p, Pin):
        return p._id
    if not isinstance(p, int) or p not in _VALID_PINS:
        raise ValueError("invalid pin")
    return p


class Pin(PinBase):
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    PULL_HOLD = 4
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __init__(self, id, mode=-1, pull=-1, value=None, drive=None, hold=None):
        self._id = _pin_id(id)
        self._mode = Pin.IN
        self._pull = None
        self._out = 0
        self._irq = None
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, value=None, drive=None, hold=None):
        if mode != -1 and mode is not None:
            if mode in (Pin.OUT, Pin.OPEN_DRAIN) and self._id in _INPUT_ONLY:
                raise ValueError("pin can only be input")
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            if self._mode in (Pin.OUT, Pin.OPEN_DRAIN):
                return self._out
            level = vb_host.ask("pin", id=self._id)
            if level is None:  # nothing drives it: the pull decides
                level = 1 if self._pull == Pin.PULL_UP else 0
            return int(level)
        self._out = 1 if v else 0
        vb_host.send({"op": "pin_out", "id": self._id, "v": self._out})

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3, wake=None, hard=False):
        self._irq = (handler, trigger)
        return self

    def trigger(self):
        return self._irq[1] if self._irq else 0

    def __repr__(self):
        return f"Pin({self._id})"


def time_pulse_us(pin, pulse_level, timeout_us=1000000):
    # An input pin the world gives a pulse (world "pulse_us", e.g. an ultrasonic
    # echo whose width follows the simulated distance): wait that long, return it.
    if isinstance(pin, Pin) and pin._mode == Pin.IN:
        us = vb_host.ask("pulse", id=pin._id, level=pulse_level)
        if us is not None:
            us = int(us)
            if us > timeout_us:
                time.sleep_us(timeout_us)
                return -1
            time.sleep_us(us)
            return us
    return _unix_time_pulse_us(pin, pulse_level, timeout_us)


# ---- ADC ----------------------------------------------------------------------

_ADC_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
# Usable input range per attenuation on the ESP32 (docs: quickref, ADC)
_FULL_SCALE_MV = (950, 1250, 1750, 2450)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12

    def __init__(self, pin, atten=0):
        self._id = _pin_id(pin)
        if self._id not in _ADC_PINS:
            raise ValueError("invalid Pin for ADC")
        self._atten = atten
        self._bits = 12

    def init(self, atten=None):
        if atten is not None:
            self._atten = atten

    def atten(self, a):
        self._atten = a

    def width(self, bits):
        self._bits = bits if bits > 3 else bits + 9  # accepts WIDTH_nBIT or 0..3

    def _mv(self):
        mv = vb_host.ask("adc", pin=self._id) or 0
        top = _FULL_SCALE_MV[self._atten]
        return min(max(float(mv), 0.0), top), top

    def read_uv(self):
        return int(self._mv()[0] * 1000)

    def read_u16(self):
        mv, top = self._mv()
        return int(mv * 65535 / top + 0.5)

    def read(self):
        mv, top = self._mv()
        return int(mv * ((1 << self._bits) - 1) / top + 0.5)


# ---- UART ---------------------------------------------------------------------


class UART:
    """Bytes the board receives come from the world (relay), paced at the baud rate
    init() reports there; what it sends is logged there."""

    INV_TX = 1
    INV_RX = 2
    RTS = 1
    CTS = 2

    def __init__(self, id, baudrate=115200, **kw):
        if id not in (0, 1, 2):
            raise ValueError(f"UART({id}) does not exist")
        self._id = id
        self._baud = 115200
        self._rxbuf = 256  # the ESP32 port's default ring buffer
        self._timeout = 0
        self.init(baudrate, **kw)

    def init(self, baudrate=None, bits=8, parity=None, stop=1, **kw):
        if baudrate:
            self._baud = int(baudrate)
        if kw.get("rxbuf"):
            self._rxbuf = int(kw["rxbuf"])
        if "timeout" in kw:
            self._timeout = int(kw["timeout"])
        vb_host.send({"op": "uart_init", "id": self._id, "baud": self._baud,
                      "rxbuf": self._rxbuf})

    def deinit(self):
        pass

    def any(self):
        return vb_host.ask("uart_any", id=self._id) or 0

    def _wait(self, enough):
        # Poll the line until enough() or `timeout` ms pass (the chip blocks in the driver).
        if not self._timeout:
            return
        t0 = time.ticks_ms()
        while not enough() and time.ticks_diff(time.ticks_ms(), t0) < self._timeout:
            time.sleep_ms(1)

    def read(self, n=-1):
        n = -1 if n is None else n
        self._wait(lambda: self.any() >= (n if n > 0 else 1))
        data = vb_host.ask("uart_read", id=self._id, n=n)
        return binascii.unhexlify(data) if data else None

    def readline(self):
        self._wait(lambda: vb_host.ask("uart_has_line", id=self._id))
        data = vb_host.ask("uart_readline", id=self._id)
        return binascii.unhexlify(data) if data else None

    def readinto(self, buf, n=-1):
        data = self.read(len(buf) if n < 0 else n)
        if not data:
            return None
        buf[: len(data)] = data
        return len(data)

    def write(self, buf):
        if isinstance(buf, str):
            buf = buf.encode()
        vb_host.send({"op": "uart_tx", "id": self._id, "data": binascii.hexlify(buf).decode()})
        return len(buf)

    def flush(self):
        pass

    def txdone(self):
        return True

    def sendbreak(self):
        pass


# ---- watchdog and RTC -----------------------------------------------------------


class WDT:
    """The relay enforces it: not fed within timeout -> reset with WDT_RESET."""

    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("WDT timeout too short")
        vb_host.send({"op": "wdt", "ms": int(timeout)})

    def feed(self):
        vb_host.send({"op": "feed"})


class RTC:
    """Wall clock from the host (offset kept by the relay); memory() survives
    resets and deep sleep but not a power cycle, like the RTC slow memory."""

    def __init__(self, id=0):
        pass

    def init(self, datetime=None):
        if datetime:
            self.datetime(datetime)

    def datetime(self, dt=None):
        if dt is None:
            t = time.localtime(time.time() + (vb_host.ask("rtc_offset") or 0))
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        secs = time.mktime((dt[0], dt[1], dt[2], dt[4], dt[5], dt[6], 0, 0))
        vb_host.send({"op": "rtc_offset", "v": secs - time.time()})

    def memory(self, data=None):
        if data is None:
            return binascii.unhexlify(vb_host.ask("rtc_memory") or "")
        if len(data) > 2048:
            raise ValueError("buffer too long")
        vb_host.send({"op": "rtc_memory", "v": binascii.hexlify(data).decode()})


def _install():
    sys.modules["machine"] = sys.modules["vb_machine"]
    sys.modules["umachine"] = sys.modules["vb_machine"]
