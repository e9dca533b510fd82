"""Serial ports: opening one for mpremote, and saying why it could not be opened.

mpremote's SerialTransport turns every open failure into "failed to access
PORT"; a technician needs to know which of the usual three it was, so on
failure the port is probed once with pyserial to classify the error.
"""

from __future__ import annotations

import errno
import os

import serial
import serial.tools.list_ports
from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

from .errors import HILError, PortAccessDenied, PortBusy, PortNotFound


def is_url(port: str) -> bool:
    """pyserial URLs (rfc2217://, socket://) have no device node to check."""
    return "://" in port


def open_transport(port: str, baudrate: int = 115200, read_timeout: float = 5.0) \
        -> SerialTransport:
    """mpremote's SerialTransport on `port`, holding pyserial's exclusive lock."""
    if not is_url(port) and not os.path.exists(port):
        raise PortNotFound(f"{port}: no such serial port (unplugged, or a wrong name?)")
    try:
        return SerialTransport(port, baudrate=baudrate, exclusive=True, timeout=read_timeout)
    except TransportError as e:
        raise open_error(port) from e


def open_error(port: str) -> HILError:
    """Why `port` cannot be opened, as one of the harness's exceptions."""
    try:
        probe = serial.Serial(port, exclusive=True)
    except serial.SerialException as e:
        text = str(e)
        err = getattr(e, "errno", None)
        if "exclusively lock" in text or err in (errno.EBUSY, errno.EAGAIN):
            return PortBusy(f"{port}: busy: another program holds the port "
                            f"(a serial monitor, mpremote, esptool, a second test run?)")
        if err == errno.EACCES:
            return PortAccessDenied(f"{port}: permission denied (add the user to the "
                                    f"'dialout' group, then log in again)")
        if err in (errno.ENOENT, errno.ENXIO, errno.ENODEV):
            return PortNotFound(f"{port}: no such serial port (unplugged, or a wrong name?)")
        return HILError(f"{port}: cannot open: {text}")
    probe.close()
    return HILError(f"{port}: could not be opened a moment ago, but can be now (flaky cable?)")


def ports_by_serial_number() -> dict[str, str]:
    """USB serial number -> device path, for every USB serial port the OS lists."""
    return {p.serial_number: p.device for p in serial.tools.list_ports.comports()
            if p.serial_number}


def usb_serial_ports() -> list[str]:
    """Device paths of USB serial ports (those with a VID), for binding by MAC."""
    return [p.device for p in serial.tools.list_ports.comports() if p.vid is not None]
