"""boards.yaml loader: the shipped file, and one exact one-line error per broken variant."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provisioning.boards import Boards, load_boards, parse_boards
from provisioning.errors import BoardsFileError, ProvisioningError, UnknownBoard

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "boards.yaml"

# A small valid file the error cases edit: one board per chip family and link.
BASE = """\
version: 1
boards:
  wl:
    chip: esp32
    flash_size: 4MB
    flash_baud: 460800
    usb: {bridge: CP2102, vid: 0x10C4, pid: 0xEA60}
    role: water_level
    link: wifi
    power: {source: battery+solar, deep_sleep: true}
    pins:
      us_trig: 5
      us_echo: 18
      batt_adc: 34
      p_adc: 35
    sensors:
      - name: level
        type: jsn-sr04t
        pins: {trig: us_trig, echo: us_echo}
        params: {min_range_m: 0.25, max_range_m: 4.5, supply_v: 5.0, echo_divider: 0.667}
      - name: battery
        type: adc-divider
        pins: {adc: batt_adc}
        params: {ratio: 2.0, max_v: 4.2}
      - name: pressure
        type: pressure-4-20ma
        optional: true
        pins: {adc: p_adc}
        params: {shunt_ohms: 120, range_m: 10.0}
    image:
      file: ESP32_GENERIC-20260824-v1.29.0.bin
      version: 1.29.0
      sha256: "0000000000000000000000000000000000000000000000000000000000000000"
      offset: 0x1000
    virtual:
      sensors:
        level: {distance_m: 2.0}
  boat:
    chip: esp32
    flash_size: 8MB
    psram: quad
    flash_baud: 921600
    usb: {bridge: CH9102, vid: 0x1A86, pid: 0x55D4}
    role: boat
    link: cell
    power: {source: vehicle, deep_sleep: false}
    pins:
      modem_tx: 27
      modem_rx: 26
      modem_pwrkey: 4
      gps_tx: 21
      gps_rx: 22
    sensors:
      - name: gps
        type: neo-m8n
        uart: {id: 2, baud: 9600}
        pins: {tx: gps_tx, rx: gps_rx}
    modem:
      type: sim7600
      uart: {id: 1, baud: 115200}
      pins: {tx: modem_tx, rx: modem_rx, pwrkey: modem_pwrkey}
    image:
      file: ESP32_GENERIC-SPIRAM-20260824-v1.29.0.bin
      version: 1.29.0
      sha256: "AB00000000000000000000000000000000000000000000000000000000000001"
      offset: 0x1000
  s3:
    chip: esp32s3
    flash_size: 16MB
    psram: octal
    flash_baud: 921600
    usb: {bridge: native, vid: 0x303A, pid: 0x1001}
    role: water_level
    link: wifi
    power: {source: mains, deep_sleep: false}
    pins:
      us_trig: 4
      us_echo: 47
      aux_tx: 43
      aux_rx: 44
    sensors:
      - name: level
        type: jsn-sr04t
        pins: {trig: us_trig, echo: us_echo}
        params: {min_range_m: 0.25, max_range_m: 4.5, supply_v: 5.0, echo_divider: 0.667}
      - name: gps
        type: neo-m8n
        uart: {id: 0, baud: 9600}
        pins: {tx: aux_tx, rx: aux_rx}
    image:
      file: ESP32_GENERIC_S3-SPIRAM_OCT-20260824-v1.29.0.bin
      version: 1.29.0
      sha256: "0000000000000000000000000000000000000000000000000000000000000000"
      offset: 0x0
"""


def line_at(text: str, needle: str, after: str = "") -> int:
    """1-based line of the first `needle` after `after` (which must be unique)."""
    start = text.index(after) if after else 0
    assert after == "" or text.count(after) == 1, after
    return text[: text.index(needle, start)].count("\n") + 1


def edited(old: str, new: str, after: str = "") -> tuple[str, int]:
    """BASE with the first `old` after `after` replaced; and the line the edit starts on."""
    start = BASE.index(after) if after else 0
    at = BASE.index(old, start)
    assert after or BASE.count(old) == 1, f"ambiguous edit {old!r}"
    return BASE[:at] + new + BASE[at + len(old) :], BASE[:at].count("\n") + 1


def error_of(text: str) -> str:
    with pytest.raises(BoardsFileError) as info:
        parse_boards(text, "boards.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_base_fixture_is_valid():
    boards = parse_boards(BASE)
    assert boards.names() == ["wl", "boat", "s3"]
    assert boards.get("boat").image.sha256.startswith("ab")  # hashes are kept lowercase


# (board, old, new, "field: message"): `old` is the first match after the board's name;
# the error must point at the line of the edit.
# fmt: off
AT_EDIT = [
    ("boat", "gps_tx: 21", "gps_tx: 6", "pins.gps_tx: GPIO 6 is a flash pin"),
    ("boat", "gps_tx: 21", "gps_tx: 11", "pins.gps_tx: GPIO 11 is a flash pin"),
    ("boat", "gps_tx: 21", "gps_tx: 16", "pins.gps_tx: GPIO 16 is taken by the quad PSRAM"),
    ("boat", "gps_tx: 21", "gps_tx: 40", "pins.gps_tx: GPIO 40 is out of range for esp32 (0-39)"),
    ("boat", "gps_tx: 21", "gps_tx: -1", "pins.gps_tx: GPIO -1 is out of range for esp32 (0-39)"),
    ("boat", "gps_tx: 21", "gps_tx: 24", "pins.gps_tx: GPIO 24 does not exist on esp32"),
    ("boat", "gps_tx: 21", "gps_tx: 1",
     "pins.gps_tx: GPIO 1 is the UART0 console nodectl provisions through"),
    ("s3", "us_echo: 47", "us_echo: 49",
     "pins.us_echo: GPIO 49 is out of range for esp32s3 (0-48)"),
    ("s3", "us_echo: 47", "us_echo: 23", "pins.us_echo: GPIO 23 does not exist on esp32s3"),
    ("s3", "us_echo: 47", "us_echo: 30", "pins.us_echo: GPIO 30 is a flash pin"),
    ("s3", "us_echo: 47", "us_echo: 35", "pins.us_echo: GPIO 35 is taken by the octal PSRAM"),
    ("s3", "us_echo: 47", "us_echo: 20",
     "pins.us_echo: GPIO 20 is a USB data pin (the board is on native USB)"),
    ("s3", "us_echo: 47", "us_echo: 4",
     "pins.us_echo: GPIO 4 is already pins.us_trig (line {us_trig_s3})"),
    ("wl", "us_trig: 5", "us_trig: 36",
     "pins.us_trig: GPIO 36 is input-only and cannot be an output (jsn-sr04t 'level' trig)"),
    ("boat", "gps_tx: 21", "gps_tx: 39",
     "pins.gps_tx: GPIO 39 is input-only and cannot be an output (neo-m8n 'gps' tx)"),
    ("boat", "modem_pwrkey: 4", "modem_pwrkey: 34",
     "pins.modem_pwrkey: GPIO 34 is input-only and cannot be an output (sim7600 'modem' pwrkey)"),
    ("wl", "batt_adc: 34", "batt_adc: 4",
     "pins.batt_adc: GPIO 4 is not an ADC1 pin (adc-divider 'battery' adc; "
     "esp32 ADC1 is GPIO 32-39)"),
    ("wl", "us_trig: 5", "us_trig: gpio5",
     "pins.us_trig: expected an integer, got string 'gpio5'"),
    ("wl", "us_trig: 5", "Us-Trig: 5", "pins.Us-Trig: pin names are lower_snake_case"),
    ("wl", "echo: us_echo}", "echo: us_trig}",
     "sensors[0].pins.echo: pin 'us_trig' is already used by sensors[0].pins.trig "
     "(jsn-sr04t 'level' trig)"),
    ("wl", "pins: {adc: batt_adc}", "pins: {adc: bat_adc}",
     "sensors[1].pins.adc: unknown pin 'bat_adc' (pins: us_trig, us_echo, batt_adc, p_adc)"),
    ("wl", "pins: {adc: batt_adc}", "pins: {adc: 34}",
     "sensors[1].pins.adc: give a name from pins, not GPIO 34"),
    ("wl", "pins: {adc: batt_adc}", "pins: {adc: batt_adc, echo: us_echo}",
     "sensors[1].pins.echo: unknown field (expected one of: adc)"),
    ("wl", "pins: {adc: batt_adc}", "uart: {id: 1, baud: 9600}\n        pins: {adc: batt_adc}",
     "sensors[1].uart: adc-divider is not on a UART"),
    ("boat", "uart: {id: 2,", "uart: {id: 3,",
     "sensors[0].uart.id: UART 3 does not exist on esp32 (0-2)"),
    ("boat", "uart: {id: 2,", "uart: {id: 0,",
     "sensors[0].uart.id: UART 0 carries the REPL console nodectl provisions through (use 1-2)"),
    ("boat", "baud: 9600}", "baud: 9601}",
     "sensors[0].uart.baud: 9601 is not a standard UART baud rate "
     "(4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)"),
    ("boat", "uart: {id: 1,", "uart: {id: 2,",
     "modem.uart.id: UART 2 is already used by neo-m8n 'gps'"),
    ("wl", "- name: battery", "- name: level", "sensors[1].name: 'level' is named twice"),
    ("wl", "- name: battery", "- name: Battery", "sensors[1].name: names are lower_snake_case"),
    ("wl", "type: adc-divider", "type: adc_divider",
     "sensors[1].type: expected one of jsn-sr04t, pressure-4-20ma, adc-divider, neo-m8n, "
     "ignition, got string 'adc_divider'"),
    ("boat", "type: sim7600", "type: neo-m8n",
     "modem.type: expected one of sim7600, got string 'neo-m8n'"),
    ("wl", "shunt_ohms: 120", "shunt_ohms: 200",
     "sensors[2].params.shunt_ohms: 20 mA across 200 ohm is 4.00 V, above the 3.3 V ADC range"),
    ("wl", "shunt_ohms: 120", "shunt_ohms: 0",
     "sensors[2].params.shunt_ohms: must be above 0, got 0.0"),
    ("wl", "max_v: 4.2", "max_v: 12",
     "sensors[1].params.max_v: 12 V divided by 2 is 6.00 V at the pin, above 3.3 V"),
    ("wl", "ratio: 2.0, max_v: 4.2", "ratio: 0.5, max_v: 1.0",
     "sensors[1].params.ratio: 0.5 is Vin/Vpin and cannot be below 1"),
    ("wl", "ratio: 2.0", "ratio: two",
     "sensors[1].params.ratio: expected a number, got string 'two'"),
    ("wl", "max_v: 4.2}", "max_v: 4.2, atten_db: 11}",
     "sensors[1].params.atten_db: unknown field (expected one of: ratio, max_v)"),
    ("wl", "echo_divider: 0.667", "echo_divider: 0.9",
     "sensors[0].params.echo_divider: a 5 V echo times 0.9 is 4.50 V at the pin, above 3.6 V"),
    ("wl", "min_range_m: 0.25", "min_range_m: 5",
     "sensors[0].params.min_range_m: 5 m is not below max_range_m 4.5 m"),
    ("wl", "optional: true", "optional: yes please",
     "sensors[2].optional: expected true or false, got string 'yes please'"),
    ("wl", "flash_size: 4MB", "flash_size: 32MB",
     "flash_size: expected one of 2MB, 4MB, 8MB, 16MB, got string '32MB'"),
    ("wl", "flash_size: 4MB", "flash_size: 4",
     "flash_size: expected one of 2MB, 4MB, 8MB, 16MB, got integer 4"),
    ("boat", "role: boat", "role: ferry",
     "role: expected one of water_level, boat, truck, got string 'ferry'"),
    ("boat", "link: cell", "link: lora", "link: expected one of wifi, cell, got string 'lora'"),
    ("s3", "chip: esp32s3", "chip: esp8266",
     "chip: expected one of esp32, esp32s3, esp32c3, got string 'esp8266'"),
    ("boat", "psram: quad", "psram: octal",
     "psram: expected one of none, quad, got string 'octal'"),
    ("wl", "flash_baud: 460800", "flash_baud: 100000",
     "flash_baud: 100000 is not an esptool baud rate "
     "(115200, 230400, 460800, 921600, 1500000, 2000000)"),
    ("wl", "flash_baud: 460800", "flash_baud: fast",
     "flash_baud: expected an integer, got string 'fast'"),
    ("wl", "flash_baud: 460800", "flash_bawd: 460800",
     "flash_bawd: unknown field (expected one of: description, chip, module, flash_size, "
     "psram, flash_baud, usb, role, link, power, pins, sensors, modem, image, virtual)"),
    ("wl", "flash_size: 4MB", "chip: esp32s3",
     "chip: duplicate key (first on line {chip_wl})"),
    ("wl", "vid: 0x10C4", "vid: 0x10C4F", "usb.vid: 0x10c4f is not a 16-bit USB id"),
    ("boat", "pid: 0x55D4", "pid: 0x155D4", "usb.pid: 0x155d4 is not a 16-bit USB id"),
    ("wl", "deep_sleep: true", "deep_sleep: maybe",
     "power.deep_sleep: expected true or false, got string 'maybe'"),
    ("boat", 'sha256: "AB', 'sha256: "AB0',
     "image.sha256: expected 64 hex digits, got 65 characters"),
    ("boat", 'sha256: "AB', 'sha256: "XY',
     "image.sha256: expected 64 hex digits, got non-hex characters"),
    ("wl", 'sha256: "' + "0" * 64 + '"', "sha256: " + "0" * 64,
     "image.sha256: expected a string, got integer 0 (quote it to make it a string)"),
    ("wl", "version: 1.29.0", "version: 1.29",
     "image.version: expected a string, got number 1.29 (quote it to make it a string)"),
    ("wl", "version: 1.29.0", "version: v1.29.0",
     "image.version: expected a version like 1.29.0, got 'v1.29.0'"),
    ("wl", "v1.29.0.bin", "v1.28.0.bin",
     "image.file: 'ESP32_GENERIC-20260824-v1.28.0.bin' is not version 1.29.0 "
     "(no '-v1.29.0' in the name)"),
    ("wl", "file: ESP32_GENERIC-", "file: firmware/ESP32_GENERIC-",
     "image.file: expected a .bin file name, got 'firmware/ESP32_GENERIC-20260824-v1.29.0.bin'"),
    ("s3", "file: ESP32_GENERIC_S3-SPIRAM_OCT", "file: ESP32_GENERIC-SPIRAM",
     "image.file: ESP32_GENERIC images are not for esp32s3 (use ESP32_GENERIC_S3)"),
    ("wl", "offset: 0x1000", "offset: 0x0",
     "image.offset: esp32 images are written at 0x1000, not 0x0"),
    ("s3", "offset: 0x0", "offset: 0x1000",
     "image.offset: esp32s3 images are written at 0x0, not 0x1000"),
    ("wl", "level: {distance_m: 2.0}", "levl: {distance_m: 2.0}",
     "virtual.sensors.levl: not a sensor of this board (sensors: level, battery, pressure)"),
    ("wl", "{distance_m: 2.0}", "{distance_m: [2.0]}",
     "virtual.sensors.level.distance_m: expected a string, number or boolean, got a list"),
    ("wl", "{distance_m: 2.0}", "{distance_m: ~}",
     "virtual.sensors.level.distance_m: expected a string, number or boolean, got null"),
    ("wl", "{distance_m: 2.0}", "{on: true}",
     "virtual.sensors.level: keys must be strings, got boolean true "
     "(quote it: YAML reads yes/no/on/off as booleans)"),
]
# fmt: on


@pytest.mark.parametrize(("board", "old", "new", "expected"), AT_EDIT, ids=[c[3] for c in AT_EDIT])
def test_invalid_value_names_file_line_board_and_field(board, old, new, expected):
    text, line = edited(old, new, after=f"  {board}:")
    expected = expected.format(
        us_trig_s3=line_at(BASE, "us_trig: 4"), chip_wl=line_at(BASE, "chip: esp32")
    )
    assert error_of(text) == f"boards.yaml:{line}: board {board!r}: {expected}"


def test_missing_required_field_points_at_the_board_name():
    text, _ = edited("    flash_size: 4MB\n", "")
    assert error_of(text) == (
        f"boards.yaml:{line_at(BASE, '  wl:')}: board 'wl': flash_size: required field is missing"
    )


def test_missing_nested_field_points_at_its_parent_key():
    text, _ = edited("      offset: 0x1000\n", "", after="wl:")
    line = line_at(BASE, "    image:")
    assert (
        error_of(text) == f"boards.yaml:{line}: board 'wl': image.offset: required field is missing"
    )


def test_missing_required_pin_role_is_named():
    text, line = edited(
        "pins: {tx: modem_tx, rx: modem_rx, pwrkey: modem_pwrkey}",
        "pins: {tx: modem_tx, rx: modem_rx}",
    )
    assert (
        error_of(text)
        == f"boards.yaml:{line}: board 'boat': modem.pins.pwrkey: required field is missing"
    )


def test_missing_required_params_lists_what_the_type_needs():
    text, _ = edited("        params: {ratio: 2.0, max_v: 4.2}\n", "")
    line = line_at(BASE, "- name: battery")
    assert error_of(text) == (
        f"boards.yaml:{line}: board 'wl': sensors[1].params: required field is missing "
        "(adc-divider needs ratio, max_v)"
    )


def test_cell_board_needs_a_modem():
    start = BASE.index("    modem:\n")
    end = BASE.index("    image:", start)
    text = BASE[:start] + BASE[end:]
    assert error_of(text) == (
        f"boards.yaml:{line_at(BASE, '  boat:')}: board 'boat': modem: "
        "required field is missing (link is cell)"
    )


def test_wifi_board_must_not_have_a_modem():
    text, _ = edited("link: cell", "link: wifi")
    assert error_of(text) == (
        f"boards.yaml:{line_at(BASE, '    modem:')}: board 'boat': modem: "
        "a board with link wifi has no modem"
    )


def test_role_needs_a_sensor_that_is_always_fitted():
    text, _ = edited(
        "        type: jsn-sr04t\n",
        "        type: jsn-sr04t\n        optional: true\n",
        after="wl:",
    )
    line = line_at(BASE, "    sensors:")
    assert error_of(text) == (
        f"boards.yaml:{line}: board 'wl': sensors: role water_level needs a level sensor "
        "that is always fitted (jsn-sr04t, pressure-4-20ma)"
    )


def test_uart0_is_free_on_a_native_usb_board_but_its_pins_are_not():
    boards = parse_boards(BASE)
    assert boards.get("s3").sensor("gps").uart.id == 0  # REPL is on USB there
    text, _ = edited("usb: {bridge: native", "usb: {bridge: CP2102N", after="s3:")
    assert error_of(text) == (
        f"boards.yaml:{line_at(BASE, 'aux_tx: 43')}: board 's3': pins.aux_tx: "
        "GPIO 43 is the UART0 console nodectl provisions through"
    )


def test_psram_pins_are_free_without_psram():
    text, _ = edited("gps_tx: 21", "gps_tx: 16")
    text = text.replace("    psram: quad\n", "")
    assert parse_boards(text).get("boat").sensor("gps").gpios["tx"] == 16


@pytest.mark.parametrize("gpio", range(6, 12))
def test_every_esp32_flash_pin_is_refused(gpio):
    text, line = edited("batt_adc: 34", f"batt_adc: {gpio}")
    assert (
        error_of(text)
        == f"boards.yaml:{line}: board 'wl': pins.batt_adc: GPIO {gpio} is a flash pin"
    )


@pytest.mark.parametrize("gpio", range(34, 40))
def test_input_only_pins_may_be_inputs(gpio):
    text, _ = edited("gps_rx: 22", f"gps_rx: {gpio}")
    assert parse_boards(text).get("boat").sensor("gps").gpios["rx"] == gpio


def test_duplicate_board_name_is_detected():
    second = BASE.index("  boat:")
    text = BASE[:second] + BASE[second:].replace("  s3:", "  wl:", 1)
    line, first = line_at(BASE, "  s3:"), line_at(BASE, "  wl:")
    assert error_of(text) == (
        f"boards.yaml:{line}: board 'wl': duplicate board kind (first on line {first})"
    )


def test_bad_board_name():
    text, line = edited("  s3:", "  S3_board:")
    assert error_of(text) == (
        f"boards.yaml:{line}: boards: board names are lowercase letters, digits and '-', "
        "got 'S3_board'"
    )


def test_yaml_syntax_error_names_its_line():
    text, line = edited("      us_echo: 18", "      us_echo: [18")
    message = error_of(text)
    assert re.fullmatch(rf"boards\.yaml:{line + 1}: YAML syntax: .+", message), message


def test_merge_keys_are_refused_rather_than_half_supported():
    text, line = edited("    role: boat\n", "    <<: {role: boat}\n")
    assert error_of(text) == (
        f"boards.yaml:{line}: board 'boat': merge keys (<<) are not supported; write the fields out"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "boards.yaml:1: expected a mapping, got nothing"),
        ("- a\n", "boards.yaml:1: expected a mapping, got a list"),
        ("version: 2\nboards: {}\n", "boards.yaml:1: version: this nodectl reads version 1, got 2"),
        ("version: 1\nboards: {}\n", "boards.yaml:2: boards: expected a mapping of board kinds"),
        ("version: 1\n", "boards.yaml:1: boards: required field is missing"),
        (
            "version: 1\nboard: {}\n",
            "boards.yaml:2: board: unknown field (expected one of: version, boards)",
        ),
        (
            "version: 1\nboards:\n  x: 3\n",
            "boards.yaml:3: board 'x': expected a mapping, got integer 3",
        ),
    ],
)
def test_file_level_errors(text, expected):
    assert error_of(text) == expected


def test_load_boards_reports_a_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(BoardsFileError) as info:
        load_boards(missing)
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"


def test_load_boards_names_the_file_it_read(tmp_path):
    path = tmp_path / "site-boards.yaml"
    text, line = edited("gps_tx: 21", "gps_tx: 6")
    path.write_text(text)
    with pytest.raises(BoardsFileError) as info:
        load_boards(path)
    assert str(info.value).startswith(f"{path}:{line}: board 'boat': pins.gps_tx: ")
    assert (info.value.line, info.value.board, info.value.field) == (line, "boat", "pins.gps_tx")


def test_unknown_board_lists_known_names():
    boards = parse_boards(BASE, "site.yaml")
    with pytest.raises(UnknownBoard) as info:
        boards.get("barge")
    assert isinstance(info.value, ProvisioningError)
    assert str(info.value) == "unknown board kind 'barge' in site.yaml (known: boat, s3, wl)"


# --- the shipped boards.yaml -------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Boards:
    return load_boards(SHIPPED)


def test_shipped_file_has_the_three_required_kinds(shipped):
    assert {"water-level-devkitc", "boat-gps-cell", "truck-gps-cell"} <= set(shipped.names())
    text = SHIPPED.read_text()
    for kind in shipped:
        assert kind.line == line_at(text, f"\n  {kind.name}:") + 1


def test_shipped_water_level_devkitc(shipped):
    k = shipped.get("water-level-devkitc")
    assert (k.chip, k.flash_size, k.role, k.link) == ("esp32", "4MB", "water_level", "wifi")
    assert (k.usb.vid, k.usb.pid) == (0x10C4, 0xEA60)
    assert k.power.source == "battery+solar" and k.power.deep_sleep
    level = k.sensor("level")
    assert level.type == "jsn-sr04t"
    assert level.gpios["trig"] not in range(34, 40)  # an output
    assert level.params["supply_v"] * level.params["echo_divider"] <= 3.6
    battery = k.sensor("battery")
    assert battery.gpios["adc"] in range(32, 40) and battery.params["ratio"] > 1
    pressure = k.sensor("pressure")
    assert pressure.optional and pressure.gpios["adc"] in range(32, 40)
    assert 0.020 * pressure.params["shunt_ohms"] <= 3.3
    assert k.modem is None
    assert k.image.offset == 0x1000 and k.image.file.startswith("ESP32_GENERIC-")


def test_shipped_boat_gps_cell(shipped):
    k = shipped.get("boat-gps-cell")
    assert (k.chip, k.role, k.link, k.psram) == ("esp32", "boat", "cell", "quad")
    assert (k.usb.vid, k.usb.pid) == (0x1A86, 0x55D4)
    gps = k.sensor("gps")
    assert (gps.type, gps.uart.id, gps.uart.baud) == ("neo-m8n", 2, 9600)
    assert k.modem is not None
    assert (k.modem.type, k.modem.uart.id, k.modem.uart.baud) == ("sim7600", 1, 115200)
    assert "pwrkey" in k.modem.gpios
    assert not {16, 17} & set(k.pins.values())  # PSRAM pins on WROVER
    assert "SPIRAM" in k.image.file


def test_shipped_truck_gps_cell(shipped):
    k = shipped.get("truck-gps-cell")
    assert (k.role, k.link) == ("truck", "cell")
    ignition = k.sensor("ignition")
    assert ignition.params["active_low"] is True
    assert k.sensor("gps").uart is not None and k.modem is not None


def test_shipped_images_are_well_formed_and_placeholders_are_marked(shipped):
    for k in shipped:
        assert re.fullmatch(r"[0-9a-f]{64}", k.image.sha256)
        assert f"-v{k.image.version}" in k.image.file
        assert k.image.offset == (0x1000 if k.chip == "esp32" else 0x0)
        assert k.image.placeholder == (set(k.image.sha256) == {"0"})


def test_shipped_pins_are_unique_per_board(shipped):
    for k in shipped:
        assert len(set(k.pins.values())) == len(k.pins), k.name


def test_shipped_virtual_sections_name_real_sensors(shipped):
    for k in shipped:
        if k.virtual:
            assert set(k.virtual.sensors) <= {s.name for s in k.sensors}
