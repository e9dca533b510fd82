"""Several boards at once (the `boards` fixture): a bench must tell its boards apart."""

from __future__ import annotations


def test_every_bound_board_answers_and_has_a_mac_of_its_own(boards):
    macs = [b.unique_id() for b in boards]
    assert len(set(macs)) == len(boards), f"boards share a MAC: {macs}"
    ports = [b.port for b in boards]
    assert len(set(ports)) == len(ports)
    for b in boards:
        assert b.eval("__import__('sys').platform") == "esp32"
