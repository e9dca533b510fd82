"""Typed board kinds, as boards.yaml defines them once validated."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Scalar = str | int | float | bool

FLASH_SIZES = {"2MB": 2, "4MB": 4, "8MB": 8, "16MB": 16}  # MiB
ROLES = ("water_level", "boat", "truck")
LINKS = ("wifi", "cell")
POWER_SOURCES = ("battery", "battery+solar", "vehicle", "mains")
PSRAM_MODES = ("none", "quad", "octal")
FLASH_BAUDS = (115200, 230400, 460800, 921600, 1500000, 2000000)
NATIVE_USB = "native"  # usb.bridge value for the chip's own USB-Serial/JTAG
PLACEHOLDER_SHA256 = "0" * 64


@dataclass(frozen=True)
class Usb:
    """How the board shows up on the technician's laptop."""

    bridge: str  # CP2102, CH340C, CH9102, ... or "native"
    vid: int
    pid: int

    @property
    def native(self) -> bool:
        return self.bridge == NATIVE_USB

    @property
    def id(self) -> str:
        """`vid:pid` as lsusb prints it."""
        return f"{self.vid:04x}:{self.pid:04x}"


@dataclass(frozen=True)
class Image:
    """The MicroPython firmware image a board kind runs."""

    file: str
    version: str
    sha256: str
    offset: int

    @property
    def placeholder(self) -> bool:
        """True until the real image's sha256 has been recorded (`nodectl images add`)."""
        return self.sha256 == PLACEHOLDER_SHA256


@dataclass(frozen=True)
class Power:
    source: str
    deep_sleep: bool


@dataclass(frozen=True)
class Uart:
    id: int
    baud: int


@dataclass(frozen=True)
class Peripheral:
    """A part wired to the board: its type, pins by role, bus and parameters."""

    name: str
    type: str
    pins: dict[str, str]  # role -> pin name in BoardKind.pins
    gpios: dict[str, int]  # role -> GPIO number, resolved through BoardKind.pins
    uart: Uart | None
    params: dict[str, Scalar]
    line: int


@dataclass(frozen=True)
class Sensor(Peripheral):
    optional: bool = False  # fitted on some boards of the kind only


@dataclass(frozen=True)
class Modem(Peripheral):
    pass


@dataclass(frozen=True)
class Virtual:
    """What a virtual board of this kind simulates: sensor name -> settings."""

    sensors: dict[str, dict[str, Scalar]]


@dataclass(frozen=True)
class BoardKind:
    """One kind of node hardware: chip, wiring, role and the image it runs."""

    name: str
    line: int
    description: str
    chip: str
    module: str
    flash_size: str
    psram: str
    flash_baud: int
    usb: Usb
    role: str
    link: str
    power: Power
    pins: dict[str, int]
    sensors: tuple[Sensor, ...]
    modem: Modem | None
    image: Image
    virtual: Virtual | None = field(default=None)

    @property
    def flash_bytes(self) -> int:
        return FLASH_SIZES[self.flash_size] * 1024 * 1024

    def sensor(self, name: str) -> Sensor:
        for sensor in self.sensors:
            if sensor.name == name:
                return sensor
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (what `nodectl --json boards` prints)."""
        data = asdict(self)
        data["sensors"] = list(data["sensors"])  # JSON has lists, not tuples
        return data
