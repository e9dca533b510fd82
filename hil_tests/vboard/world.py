"""The world a virtual board senses: Wi-Fi, analog inputs, pins, UART traffic.

The relay answers the board's requests from here (vb_host.ask on the VM
side); a scenario file gives the starting values and the control socket
changes them while the board runs; a running scenario (scenario.py) sets
them from time. UART bytes reach the board at the baud rate's pace
(uartstream.UartLine), at the rate the board's UART.init configured.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from .errors import VBoardError
from .modem import cell_defaults, update_cell
from .uartstream import UartLine, parse_speed

_UART_TX_KEEP = 64 * 1024  # bytes of board->host UART traffic kept per UART


def _now_ms() -> int:
    # CLOCK_MONOTONIC in ms: the same clock as time.ticks_ms() in the unix VM
    return int(time.monotonic() * 1000)


class World:
    """Mutable state shared by the relay (host side) and the board (via requests)."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self.wifi: dict[str, Any] = {
            "up": True,
            "ssid": None,  # None: any SSID the firmware asks for exists
            "key": None,  # None: any key is accepted
            "rssi": -60,
            "connect_ms": 300,
            "ip": "10.42.0.50",
            "gw": "10.42.0.1",
            "dns": "10.42.0.1",
            "up_since_ms": 0,
        }
        self.adc_mv: dict[int, float] = {}
        self.pins: dict[int, int] = {}
        self.pin_out: dict[int, int] = {}
        self.pulse_us: dict[int, int] = {}  # pin -> width time_pulse_us sees (an echo)
        self.uart_lines: dict[int, UartLine] = {}
        self.uart_tx: dict[int, bytearray] = {}
        self.rtc_offset = 0.0
        self.rtc_memory = ""
        self.cell: dict[str, Any] = cell_defaults()  # the cellular network (modem.py)
        if initial:
            self.update(initial)

    @classmethod
    def from_file(cls, path: Path | str | None) -> World:
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise VBoardError(f"cannot read scenario {path}: {e}") from e
        if not isinstance(data, dict):
            raise VBoardError(f"scenario {path}: expected a mapping at the top level")
        try:
            return cls(data)
        except (VBoardError, AttributeError, TypeError, ValueError) as e:
            raise VBoardError(f"scenario {path}: {e}") from e

    def update(self, data: dict[str, Any]) -> None:
        """Merge values: {"wifi": {...}, "adc_mv": {pin: mV}, "pins": {pin: 0|1},
        "pulse_us": {pin: us}, "uart_rx": {uart: text},
        "uart_speed": {uart: factor | "instant"}}."""
        for key, value in data.items():
            if key == "wifi":
                if "up" in value:
                    self.set_wifi(bool(value["up"]))
                self.wifi.update({k: v for k, v in value.items() if k != "up"})
            elif key == "adc_mv":
                self.adc_mv.update({int(k): float(v) for k, v in value.items()})
            elif key == "pins":
                self.pins.update({int(k): int(v) for k, v in value.items()})
            elif key == "pulse_us":
                self.pulse_us.update({int(k): int(v) for k, v in value.items()})
            elif key == "uart_rx":
                for k, v in value.items():
                    self.feed_uart(int(k), v.encode() if isinstance(v, str) else bytes(v))
            elif key == "uart_speed":
                for k, v in value.items():
                    self.uart_speed(int(k), v)
            elif key == "cell":
                update_cell(self.cell, value)
            else:
                raise VBoardError(f"unknown world key {key!r}")

    def set_wifi(self, up: bool) -> None:
        if up and not self.wifi["up"]:
            self.wifi["up_since_ms"] = _now_ms()
        self.wifi["up"] = up

    def link_up(self, iface: str) -> bool:
        """Whether the network behind a board interface is there (the link proxy asks):
        "wlan" the access point, "ppp" the cellular network (up when not simulated)."""
        if iface == "wlan":
            return bool(self.wifi.get("up", True))
        if iface == "ppp":
            cell = getattr(self, "cell", None)
            return bool(cell.get("up", True)) if isinstance(cell, dict) else True
        raise VBoardError(f"unknown board interface {iface!r} (known: wlan, ppp)")

    def uart_line(self, uart: int) -> UartLine:
        line = self.uart_lines.get(uart)
        if line is None:
            line = self.uart_lines[uart] = UartLine()
        return line

    def feed_uart(self, uart: int, data: bytes, at: float | None = None) -> None:
        """Send bytes to the board's UART; they arrive at its baud rate from `at`
        (time.monotonic(), default now: a scenario may date a feed it catches up on)."""
        self.uart_line(uart).feed(data, time.monotonic(), at)

    def uart_speed(self, uart: int, speed: object) -> None:
        """Run UART `uart`'s line faster than its baud rate: a factor, or "instant"."""
        try:
            factor = parse_speed(speed)
        except VBoardError as e:
            raise VBoardError(f"uart_speed {uart}: {e}") from None
        self.uart_line(uart).configure(time.monotonic(), speed=factor)

    def power_off(self) -> None:
        """What a power cycle loses: RTC memory and the RTC's time setting."""
        self.rtc_memory = ""
        self.rtc_offset = 0.0

    # ---- the board's side ----

    def answer(self, op: str, msg: dict[str, Any]) -> Any:
        """Reply to a request from the board (vb_host.ask)."""
        if op == "wifi":
            return self.wifi
        if op == "adc":
            return self.adc_mv.get(int(msg["pin"]), 0.0)
        if op == "pin":
            return self.pins.get(int(msg["id"]))
        if op == "pulse":
            return self.pulse_us.get(int(msg["id"]))
        if op == "uart_any":
            return self.uart_line(int(msg["id"])).available(time.monotonic())
        if op == "uart_read":
            n = int(msg.get("n", -1))
            return self.uart_line(int(msg["id"])).take(n, time.monotonic()).hex() or None
        if op == "uart_has_line":
            line = self.uart_line(int(msg["id"]))
            return line.available(time.monotonic()) > 0 and b"\n" in line.fifo
        if op == "uart_readline":
            return self.uart_line(int(msg["id"])).take_line(time.monotonic()).hex() or None
        if op == "cell":
            return self.cell
        if op == "rtc_offset":
            return self.rtc_offset
        if op == "rtc_memory":
            return self.rtc_memory
        raise VBoardError(f"board asked for unknown {op!r}")

    def event(self, op: str, msg: dict[str, Any]) -> None:
        """A one-way report from the board."""
        if op == "pin_out":
            self.pin_out[int(msg["id"])] = int(msg["v"])
        elif op == "uart_init":
            self.uart_line(int(msg["id"])).configure(
                time.monotonic(), baud=int(msg["baud"]), rxbuf=msg.get("rxbuf"))
        elif op == "uart_tx":
            buf = self.uart_tx.setdefault(int(msg["id"]), bytearray())
            buf.extend(bytes.fromhex(msg["data"]))
            del buf[:-_UART_TX_KEEP]
        elif op == "rtc_offset":
            self.rtc_offset = float(msg["v"])
        elif op == "rtc_memory":
            self.rtc_memory = str(msg["v"])

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        for line in self.uart_lines.values():
            line.advance(now)  # the counts as of now, not as of the board's last read
        return {
            "wifi": dict(self.wifi),
            "adc_mv": dict(self.adc_mv),
            "pins": dict(self.pins),
            "pin_out": dict(self.pin_out),
            "pulse_us": dict(self.pulse_us),
            "cell": dict(self.cell),
            "uart_tx": {k: v.decode("latin-1") for k, v in self.uart_tx.items()},
            "uart_rx": {k: v.snapshot() for k, v in self.uart_lines.items()},
        }
