"""EsptoolFlasher at the esptool boundary: what is written where, and what is never erased.

There is no ESP32 ROM here, so esptool.cmds' functions are replaced by fakes
that record each call against a fake ESPLoader; everything above them
(flash_image's order, the chip and size checks, the offsets from boards.yaml,
the progress routed through esptool's real logger) is the code under test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from esptool import cmds
from esptool.logger import log
from esptool.util import FatalError

from provisioning.boards import load_boards
from provisioning.errors import BoardMismatch, FlashError, RegistryError, TargetError
from provisioning.esptool_flasher import EsptoolFlasher, flash_id_text
from provisioning.flasher import flash_image

REPO = Path(__file__).resolve().parents[2]
BOARDS = load_boards(REPO / "boards.yaml")
ESP32 = BOARDS.get("water-level-devkitc")  # esp32, 4MB, image at 0x1000
ESP32S3 = BOARDS.get("water-level-s3")  # esp32s3, 8MB, image at 0x0
IMAGE = os.urandom(300_000)


class FakePort:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeLoader:
    """The parts of esptool's ESPLoader that EsptoolFlasher touches directly."""

    def __init__(self, chip: str, flash_size: str, calls: list) -> None:
        self.CHIP_NAME = chip
        self.flash_size = flash_size
        self.calls = calls
        self._port = FakePort()

    def read_mac(self) -> tuple[int, ...]:
        return (0x24, 0x0A, 0xC4, 0x12, 0x34, 0x56)

    def flash_id(self) -> int:
        return 0x1640EF  # Winbond W25Q32: manufacturer ef, device 4016

    def change_baud(self, baud: int) -> None:
        self.calls.append(("change_baud", baud))


@pytest.fixture
def rom(monkeypatch):
    """Replace esptool.cmds' functions; returns (calls, set_board(chip, size))."""
    calls: list[tuple] = []
    board = {"chip": "ESP32", "size": "4MB"}

    def detect_chip(port, baud=115200, connect_mode="default-reset", trace_enabled=False,
                    connect_attempts=7):
        calls.append(("detect_chip", port, baud, connect_mode))
        return FakeLoader(board["chip"], board["size"], calls)

    def write_flash(esp, addr_data, **kwargs):
        calls.append(("write_flash", [(a, bytes(d)) for a, d in addr_data], kwargs))
        for _, data in addr_data:  # as esptool does: progress through its logger
            with log.progress(total=len(data), unit="B",
                              disable=kwargs.get("no_progress", False)) as bar:
                for i in range(0, len(data), 0x4000):
                    bar.update(advance=min(0x4000, len(data) - i))

    monkeypatch.setattr(cmds, "detect_chip", detect_chip)
    monkeypatch.setattr(cmds, "run_stub", lambda esp: calls.append(("run_stub",)) or esp)
    monkeypatch.setattr(cmds, "attach_flash", lambda esp: calls.append(("attach_flash",)))
    monkeypatch.setattr(cmds, "detect_flash_size", lambda esp: esp.flash_size)
    monkeypatch.setattr(cmds, "erase_flash", lambda esp: calls.append(("erase_flash",)))
    monkeypatch.setattr(cmds, "write_flash", write_flash)
    monkeypatch.setattr(cmds, "verify_flash", lambda esp, addr_data, **kw: calls.append(
        ("verify_flash", [(a, bytes(d)) for a, d in addr_data])))
    monkeypatch.setattr(cmds, "reset_chip", lambda esp, mode="hard-reset": calls.append(
        ("reset_chip", mode)))

    def set_board(chip: str, size: str) -> None:
        board.update(chip=chip, size=size)

    return calls, set_board


def names(calls: list[tuple]) -> list[str]:
    return [c[0] for c in calls]


def test_esp32_image_is_written_at_0x1000_after_the_erase_and_then_verified(rom):
    calls, _ = rom
    facts = flash_image(EsptoolFlasher("/dev/ttyUSB0", flash_baud=460800), ESP32, IMAGE)
    assert (facts.chip, facts.mac, facts.flash_size) == ("esp32", "24:0a:c4:12:34:56", "4MB")
    order = names(calls)
    assert order.index("erase_flash") < order.index("write_flash") < order.index("verify_flash")
    (write,) = [c for c in calls if c[0] == "write_flash"]
    assert write[1] == [(0x1000, IMAGE)]  # the image bytes, at the esp32 offset
    assert write[2]["flash_size"] == "keep"  # the image's own header is not rewritten
    (verify,) = [c for c in calls if c[0] == "verify_flash"]
    assert verify[1] == [(0x1000, IMAGE)]
    assert order[-1] == "reset_chip" and calls[-1][1] == "hard-reset"  # into the new image
    assert ("change_baud", 460800) in calls  # the kind's flash_baud, after the stub


def test_esp32s3_image_is_written_at_0x0(rom):
    calls, set_board = rom
    set_board("ESP32-S3", "8MB")
    facts = flash_image(EsptoolFlasher("/dev/ttyACM0"), ESP32S3, IMAGE)
    assert facts.chip == "esp32s3"
    (write,) = [c for c in calls if c[0] == "write_flash"]
    assert write[1] == [(0x0, IMAGE)]


def test_wrong_chip_erases_and_writes_nothing(rom):
    calls, set_board = rom
    set_board("ESP32", "8MB")  # an esp32 on the bench, the kind is an esp32s3
    with pytest.raises(BoardMismatch) as e:
        flash_image(EsptoolFlasher("/dev/ttyUSB0"), ESP32S3, IMAGE)
    assert "esp32s3" in str(e.value) and "the board is esp32" in str(e.value)
    assert "nothing was erased" in str(e.value)
    assert not {"erase_flash", "write_flash", "verify_flash"} & set(names(calls))


def test_wrong_flash_size_erases_and_writes_nothing(rom):
    calls, set_board = rom
    set_board("ESP32", "2MB")
    with pytest.raises(BoardMismatch) as e:
        flash_image(EsptoolFlasher("/dev/ttyUSB0"), ESP32, IMAGE)
    assert "4MB" in str(e.value) and "2MB" in str(e.value)
    assert not {"erase_flash", "write_flash", "verify_flash"} & set(names(calls))


def test_a_refusal_before_the_erase_leaves_the_flash_alone(rom):
    calls, _ = rom

    def refuse(facts):
        raise RegistryError(f"board {facts.mac} is already wl-0001")

    with pytest.raises(RegistryError):
        flash_image(EsptoolFlasher("/dev/ttyUSB0"), ESP32, IMAGE, before_erase=refuse)
    assert "erase_flash" not in names(calls)


def test_progress_of_the_write_reaches_the_callback_through_esptools_logger(rom):
    seen: list[tuple[int, int]] = []
    flash_image(EsptoolFlasher("/dev/ttyUSB0"), ESP32, IMAGE,
                progress=lambda done, total: seen.append((done, total)))
    assert len(seen) >= 2
    assert all(total == len(IMAGE) for _, total in seen)
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and dones[-1] == len(IMAGE)


def test_esptool_failure_during_write_is_a_flash_error_naming_what_failed(rom, monkeypatch):
    def broken(esp, addr_data, **kwargs):
        raise FatalError("Failed to write to target RAM (result was 01070000)")

    monkeypatch.setattr(cmds, "write_flash", broken)
    with pytest.raises(FlashError) as e:
        flash_image(EsptoolFlasher("/dev/ttyUSB7"), ESP32, IMAGE)
    assert "writing at 0x1000" in str(e.value) and "Failed to write" in str(e.value)


def test_no_rom_answering_is_a_target_error(monkeypatch):
    def silent(*a, **kw):
        raise FatalError("Failed to connect to ESP32: No serial data received.")

    monkeypatch.setattr(cmds, "detect_chip", silent)
    with pytest.raises(TargetError) as e:
        EsptoolFlasher("/dev/ttyUSB3").chip()
    assert "bootloader" in str(e.value) and "No serial data" in str(e.value)


def test_close_after_a_check_resets_the_board_into_its_program(rom):
    calls, _ = rom
    f = EsptoolFlasher("/dev/ttyUSB0")
    assert f.chip() == "esp32"
    f.close()
    assert calls[-1] == ("reset_chip", "hard-reset")
    assert "erase_flash" not in names(calls)


def test_flash_id_is_printed_as_esptool_does():
    assert flash_id_text(0x1640EF) == "ef4016"
    assert flash_id_text(0x1840C8) == "c84018"
