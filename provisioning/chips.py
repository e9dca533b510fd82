"""What each ESP32 family allows on its pins, from Espressif's datasheets.

boards.yaml is checked against these facts so that a wrong GPIO is caught
on the bench, not after a board bricks itself on a flash pin in the field.
Strapping pins (ESP32: 0, 2, 5, 12, 15) are not refused: boards use them
deliberately; avoid pulling them at reset.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chip:
    name: str
    gpios: frozenset[int]
    input_only: frozenset[int]
    flash_pins: frozenset[int]
    # PSRAM mode -> GPIOs the PSRAM takes; a mode missing here is not possible.
    psram_pins: dict[str, frozenset[int]]
    # UART0 TX/RX: the REPL console nodectl provisions through (when not on native USB).
    console_pins: frozenset[int]
    # USB D-/D+ when the board is connected through the chip's own USB.
    usb_pins: frozenset[int]
    # ADC2 cannot be read while Wi-Fi runs, so analogue sensors need ADC1.
    adc1: frozenset[int]
    uarts: int
    # Where MicroPython's combined .bin (bootloader + partitions + app) is written.
    image_offset: int
    # Prefix of the official MicroPython image names for this chip.
    image_family: str

    def unusable(self, gpio: int, *, psram: str, native_usb: bool) -> str | None:
        """Why a GPIO cannot be used at all on this board, or None."""
        if gpio not in self.gpios:
            low, high = min(self.gpios), max(self.gpios)
            if low <= gpio <= high:
                return f"GPIO {gpio} does not exist on {self.name}"
            return f"GPIO {gpio} is out of range for {self.name} ({low}-{high})"
        if gpio in self.flash_pins:
            return f"GPIO {gpio} is a flash pin"
        if gpio in self.psram_pins.get(psram, frozenset()):
            return f"GPIO {gpio} is taken by the {psram} PSRAM"
        if native_usb and gpio in self.usb_pins:
            return f"GPIO {gpio} is a USB data pin (the board is on native USB)"
        if not native_usb and gpio in self.console_pins:
            return f"GPIO {gpio} is the UART0 console nodectl provisions through"
        return None


def _span(low: int, high: int) -> frozenset[int]:
    return frozenset(range(low, high + 1))


CHIPS: dict[str, Chip] = {
    "esp32": Chip(
        name="esp32",
        gpios=_span(0, 39) - {24, 28, 29, 30, 31},
        input_only=_span(34, 39),
        flash_pins=_span(6, 11),
        psram_pins={"none": frozenset(), "quad": frozenset({16, 17})},  # WROVER modules
        console_pins=frozenset({1, 3}),
        usb_pins=frozenset(),
        adc1=_span(32, 39),
        uarts=3,
        image_offset=0x1000,
        image_family="ESP32_GENERIC",
    ),
    "esp32s3": Chip(
        name="esp32s3",
        gpios=_span(0, 48) - _span(22, 25),
        input_only=frozenset(),
        flash_pins=_span(26, 32),
        psram_pins={"none": frozenset(), "quad": frozenset(), "octal": _span(33, 37)},
        console_pins=frozenset({43, 44}),
        usb_pins=frozenset({19, 20}),
        adc1=_span(1, 10),
        uarts=3,
        image_offset=0x0,
        image_family="ESP32_GENERIC_S3",
    ),
    "esp32c3": Chip(
        name="esp32c3",
        gpios=_span(0, 21),
        input_only=frozenset(),
        flash_pins=_span(12, 17),
        psram_pins={"none": frozenset()},
        console_pins=frozenset({20, 21}),
        usb_pins=frozenset({18, 19}),
        adc1=_span(0, 4),
        uarts=2,
        image_offset=0x0,
        image_family="ESP32_GENERIC_C3",
    ),
}
