# The board layer: the only firmware module that touches `machine` and
# `network` (plus `esp32` and `ntptime`, guarded: the virtual board and some
# builds lack them). node.py talks to a Board only through the methods below,
# so tests drive the runtime with a fake object of the same shape.
#
# Board(cfg) interface used by node.py:
#   reset_cause() -> "power_on" | "hard" | "wdt" | "deepsleep" | "soft" | "brownout"
#   uid_hex() -> the base MAC as 12 hex digits
#   wdt(timeout_ms) -> object with feed()
#   pin(name, out=False, pull=None), adc(name), uart(rx_name, tx_name, baud)
#     -> machine objects for the config's pin map (names as in boards.yaml);
#     None when the config has no such pin
#   time_pulse_us(pin, level, timeout_us), sleep_us(us), sleep_ms(ms), ticks_ms()
#   now() -> (unix seconds int, clock valid bool); set_time(unix); sync_time() -> bool
#   free_heap(), deepsleep(ms), reset()
#   rtc_read() -> bytes, rtc_write(bytes): RTC slow memory (survives deep
#     sleep and resets, not a power cut), else a file on flash
#   link(secrets, feed) -> WifiLink or CellLink (board_cell.py) per the config's
#     `link`; feed() is called while a cellular dial-up waits; a CellLink gets
#     the modem_pwrkey and modem_status pins (None when the pin map lacks them)
#   connect_tcp(host, port, tls, timeout_ms) -> a connected socket
#
# Clock: the ESP32's RTC counts from 2000-01-01 (time.gmtime(0)[0] == 2000),
# so EPOCH_OFFSET is added to get unix seconds. After a power cut the RTC
# restarts at its epoch: the clock counts as valid only after ntptime (or a
# GPS fix via set_time) set it this boot, or when it already reads a plausible
# date (kept through deep sleep and soft resets).

import gc
import socket
import time

import machine

try:
    import network
except ImportError:  # a build without networking (unix VM): the links raise OSError
    network = None
try:
    import ntptime
except ImportError:
    ntptime = None


EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
VALID_AFTER = 1735689600  # 2025-01-01: an RTC reading earlier than this was never set

_CAUSES = {
    machine.PWRON_RESET: "power_on",
    machine.HARD_RESET: "hard",
    machine.WDT_RESET: "wdt",
    machine.DEEPSLEEP_RESET: "deepsleep",
    machine.SOFT_RESET: "soft",
}
_BROWNOUT = getattr(machine, "BROWNOUT_RESET", None)  # ports that tell it apart
if _BROWNOUT is not None:
    _CAUSES[_BROWNOUT] = "brownout"

_GPS_UART = 2
_MODEM_UART = 1


def unix_time():
    """Seconds since 1970 UTC from the RTC, an int (whatever the port's epoch)."""
    return int(time.time()) + EPOCH_OFFSET


class _NoWdt:
    def feed(self):
        pass


class WifiLink:
    """network.WLAN(STA_IF): up() starts a connection and returns at once; the
    ESP32 keeps retrying by itself, so isconnected() is polled."""

    kind = "wifi"

    def __init__(self, ssid, password):
        if network is None:
            raise OSError("no network module")
        self.ssid = ssid
        self.password = password
        self.wlan = network.WLAN(network.STA_IF)

    def up(self):
        w = self.wlan
        if not w.active():
            w.active(True)
        if not w.isconnected():
            w.connect(self.ssid, self.password)

    def isconnected(self):
        return self.wlan.isconnected()

    def rssi(self):
        try:
            return self.wlan.status("rssi")
        except (OSError, ValueError):
            return None

    def down(self):
        self.wlan.disconnect()


class Board:
    """The real ESP32 (or the virtual board, which simulates the same modules)."""

    def __init__(self, cfg, rtc_file="/data/rtc.bin"):
        self.cfg = cfg
        self.pins = cfg["pins"]
        self.rtc_file = rtc_file
        self._clock_set = False
        try:
            self._rtc = machine.RTC()
        except (AttributeError, OSError):
            self._rtc = None

    # ---- chip ----

    def reset_cause(self):
        return _CAUSES.get(machine.reset_cause(), "power_on")

    def uid_hex(self):
        return "".join("%02x" % b for b in machine.unique_id())

    def wdt(self, timeout_ms):
        try:
            return machine.WDT(timeout=timeout_ms)
        except (AttributeError, ValueError, OSError):
            return _NoWdt()

    def free_heap(self):
        gc.collect()
        return gc.mem_free()

    def deepsleep(self, ms):
        machine.deepsleep(max(1, int(ms)))

    def reset(self):
        machine.reset()

    # ---- pins ----

    def pin(self, name, out=False, pull=None):
        n = self.pins.get(name)
        if n is None:
            return None
        if out:
            return machine.Pin(n, machine.Pin.OUT, value=0)
        if pull == "up":
            return machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_UP)
        if pull == "down":
            return machine.Pin(n, machine.Pin.IN, machine.Pin.PULL_DOWN)
        return machine.Pin(n, machine.Pin.IN)

    def adc(self, name):
        n = self.pins.get(name)
        if n is None:
            return None
        return machine.ADC(machine.Pin(n), atten=machine.ADC.ATTN_11DB)  # 150..2450 mV

    def uart(self, rx_name, tx_name, baud, uid=_GPS_UART, rxbuf=1024):
        rx = self.pins.get(rx_name)
        tx = self.pins.get(tx_name)
        if rx is None:
            return None
        if tx is None:
            return machine.UART(uid, baud, rx=rx, rxbuf=rxbuf, timeout=0)
        return machine.UART(uid, baud, rx=rx, tx=tx, rxbuf=rxbuf, timeout=0)

    def time_pulse_us(self, pin, level, timeout_us):
        return machine.time_pulse_us(pin, level, timeout_us)

    def sleep_us(self, us):
        time.sleep_us(us)

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def ticks_ms(self):
        return time.ticks_ms()

    # ---- clock ----

    def now(self):
        t = unix_time()
        return t, self._clock_set or t >= VALID_AFTER

    def set_time(self, unix):
        """Set the RTC from a trusted source (a GPS fix)."""
        if self._rtc is None:
            return
        tm = time.gmtime(unix - EPOCH_OFFSET)
        self._rtc.datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))
        self._clock_set = True

    def sync_time(self):
        """NTP over the current link; False when there is no ntptime or it fails."""
        if ntptime is None:
            return False
        try:
            ntptime.settime()
        except (OSError, OverflowError, IndexError):
            return False
        self._clock_set = True
        return True

    # ---- state across deep sleep ----

    def rtc_read(self):
        if self._rtc is not None:
            try:
                return bytes(self._rtc.memory())
            except (AttributeError, OSError):
                pass
        try:
            with open(self.rtc_file, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def rtc_write(self, data):
        if self._rtc is not None:
            try:
                self._rtc.memory(data)
                return
            except (AttributeError, OSError, ValueError):
                pass
        with open(self.rtc_file, "wb") as f:
            f.write(data)

    # ---- network ----

    def link(self, secrets, feed=None):
        lk = self.cfg["link"]
        if lk["type"] == "wifi":
            return WifiLink(lk["ssid"], secrets.get("wifi_pass"))
        u = self.uart("modem_rx", "modem_tx", 115200, _MODEM_UART)
        if u is None:
            raise OSError("no modem UART in the pin map")
        ppp = getattr(network, "PPP", None) if network is not None else None
        # PWRKEY through the board's transistor (pin high = key pressed) and STATUS:
        # CellLink powers a silent modem on (or a deaf one off) with them
        from board_cell import CellLink  # only cellular nodes pay for its ~4 KB

        return CellLink(u, lk["apn"], lk.get("pin"), ppp, self.sleep_ms, self.ticks_ms, feed,
                        pwrkey=self.pin("modem_pwrkey", out=True),
                        status=self.pin("modem_status"))

    def connect_tcp(self, host, port, tls, timeout_ms):
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
        s = socket.socket()
        try:
            s.settimeout(timeout_ms / 1000)
            s.connect(addr)
            if tls:
                import ssl  # only TLS nodes pay for it

                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                s = ctx.wrap_socket(s, server_hostname=host)
        except Exception:
            s.close()
            raise
        return s


def reset():
    """Hard reset without a Board (main.py's crash handler)."""
    machine.reset()
