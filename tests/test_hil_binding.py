"""Which boards a HIL run binds: virtual kinds, counts, kinds per port, serial numbers, MACs."""

from __future__ import annotations

import os

import pytest

from hil_tests.binding import BindOptions, normalise_mac, resolve, split, virtual_kinds
from hil_tests.capabilities import capabilities, missing_reason, role_reason
from hil_tests.errors import HILError, PortNotFound, UsageError
from hil_tests.slots import VIRTUAL
from provisioning.boards import default_boards_path, load_boards


@pytest.fixture(scope="module")
def boards():
    return load_boards(default_boards_path())


def _no_mac(port: str) -> str:
    raise AssertionError("no MAC should be read")


@pytest.fixture
def ports():
    """Two real device nodes that exist (ptys), standing in for /dev/ttyUSB*."""
    fds = [os.openpty() for _ in range(2)]
    yield [os.ttyname(s) for _, s in fds]
    for m, s in fds:
        os.close(m)
        os.close(s)


def test_comma_lists_and_repeats_split_alike():
    assert split(["a,b", " c ", ""]) == ("a", "b", "c")
    assert split(None) == ()


def test_virtual_plays_every_esp32_kind_with_a_virtual_section(boards):
    slots = resolve(BindOptions(ports=(VIRTUAL,)), boards, _no_mac)
    names = [s.kind.name for s in slots]
    assert names == [k.name for k in virtual_kinds(boards)]
    assert {s.kind.role for s in slots} == {"water_level", "boat", "truck"}
    assert "water-level-s3" not in names  # an esp32s3: the virtual board is an esp32
    assert all(s.virtual for s in slots)
    assert len({s.id for s in slots}) == len(slots)


def test_board_count_multiplies_virtual_boards_per_kind(boards):
    slots = resolve(BindOptions(ports=(VIRTUAL,), kinds=("boat-gps-cell",), count=3), boards,
                    _no_mac)
    assert [s.kind.name for s in slots] == ["boat-gps-cell"] * 3
    assert len({s.id for s in slots}) == 3


def test_a_kind_a_virtual_board_cannot_play_is_refused(boards):
    with pytest.raises(UsageError, match="water-level-s3"):
        resolve(BindOptions(ports=(VIRTUAL,), kinds=("water-level-s3",)), boards, _no_mac)


def test_an_unknown_kind_names_the_known_ones(boards):
    with pytest.raises(UsageError, match="unknown board kind 'nope'.*known: boat-gps-cell"):
        resolve(BindOptions(ports=(VIRTUAL,), kinds=("nope",)), boards, _no_mac)


def test_virtual_does_not_mix_with_serial_ports(boards, ports):
    with pytest.raises(UsageError, match="do not mix"):
        resolve(BindOptions(ports=(VIRTUAL, ports[0])), boards, _no_mac)


def test_serial_ports_get_one_kind_or_one_kind_each(boards, ports):
    one = resolve(BindOptions(ports=tuple(ports), kinds=("truck-gps-cell",)), boards, _no_mac)
    assert [(s.port, s.kind.name) for s in one] == [(p, "truck-gps-cell") for p in ports]
    each = resolve(BindOptions(ports=tuple(ports), kinds=("boat-gps-cell", "truck-gps-cell")),
                   boards, _no_mac)
    assert [s.kind.name for s in each] == ["boat-gps-cell", "truck-gps-cell"]
    none = resolve(BindOptions(ports=tuple(ports)), boards, _no_mac)
    assert [s.kind for s in none] == [None, None]
    with pytest.raises(UsageError, match="3 --board kinds for 2 boards"):
        resolve(BindOptions(ports=tuple(ports), kinds=("boat-gps-cell",) * 3), boards, _no_mac)


def test_board_count_checks_how_many_boards_were_bound(boards, ports):
    with pytest.raises(UsageError, match="--board-count 3, but 2 board"):
        resolve(BindOptions(ports=tuple(ports), count=3), boards, _no_mac)


def test_a_missing_port_fails_before_any_test(boards):
    with pytest.raises(PortNotFound, match="^/dev/ttyHIL-gone: no such serial port"):
        resolve(BindOptions(ports=("/dev/ttyHIL-gone",)), boards, _no_mac)


def test_binding_by_mac_keeps_the_asked_boards_in_the_asked_order(boards, ports):
    macs = {ports[0]: "240ac4000001", ports[1]: "240ac4000002"}
    slots = resolve(BindOptions(ports=tuple(ports), macs=("24:0A:C4:00:00:02", "240ac4000001")),
                    boards, macs.__getitem__)
    assert [(s.port, s.mac) for s in slots] == [(ports[1], "240ac4000002"),
                                                (ports[0], "240ac4000001")]


def test_an_unknown_mac_says_what_each_port_had(boards, ports):
    def read(port: str) -> str:
        if port == ports[0]:
            raise HILError(f"{port}: no answer to the raw REPL")
        return "240ac4000002"

    with pytest.raises(PortNotFound) as info:
        resolve(BindOptions(ports=tuple(ports), macs=("240ac4999999",)), boards, read)
    text = str(info.value)
    assert "240ac4999999" in text and "no answer" in text and "240ac4000002" in text


def test_a_malformed_mac_is_a_usage_error():
    assert normalise_mac("24-0A-C4-12-34-56") == "240ac4123456"
    with pytest.raises(UsageError, match="12 hex digits"):
        normalise_mac("24:0a:c4")


def test_an_unknown_serial_number_lists_the_attached_ones(boards, monkeypatch):
    monkeypatch.setattr("hil_tests.binding.ports_by_serial_number",
                        lambda: {"0001": "/dev/ttyUSB0"})
    with pytest.raises(PortNotFound, match=r"ABC123.*0001 \(/dev/ttyUSB0\)"):
        resolve(BindOptions(serials=("ABC123",)), boards, _no_mac)


def test_capabilities_follow_the_kind_and_the_bench(boards, ports):
    [hw] = resolve(BindOptions(ports=(ports[0],), kinds=("water-level-devkitc",)), boards,
                   _no_mac)
    caps = capabilities(hw)
    assert {"water_level", "level", "battery", "deep_sleep", "link_wifi"} <= caps
    assert "power_control" not in caps and "gps" not in caps
    assert "--power-cmd" in missing_reason(hw, ("power_control",), caps)
    assert "power_control" in capabilities(hw, power_cmd="uhubctl -a cycle -p 2")
    virtual = resolve(BindOptions(ports=(VIRTUAL,), kinds=("truck-gps-cell",)), boards, _no_mac)
    vcaps = capabilities(virtual[0])
    assert {"power_control", "wifi_control", "gps", "position", "ignition"} <= vcaps
    assert role_reason(virtual[0], ("boat",)) == \
        "truck-gps-cell has role truck, this test is for boat"
    assert role_reason(virtual[0], ("truck",)) is None
