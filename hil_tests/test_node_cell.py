"""Firmware level, cellular kinds (boat, truck): the node's link is its SIM7600 and PPP.

On a virtual board the modem is simulated (hil_tests/vboard/modem.py): the
firmware's own AT dialogue (board_cell.py) dials it and `network.PPP` carries
the MQTT session only while the call is in data mode and the network is up.
"""

from __future__ import annotations

import time

import pytest

WAIT_S = 30
# The outage spans at least one reading of the role (see test_node_faults.py), plus one
# redial attempt (up to ~4 s with its AT+CGREG? polls) that may delay that reading.
OUTAGE_S = {"truck": 5.0, "boat": 16.0}
CSQ_DBM = -113 + 2 * 20  # the virtual modem's AT+CSQ index 20 (deployed.VIRTUAL_MODEM)
_BT = -3


def _taken(up) -> float | None:
    return up.pack[0].get(_BT)


def _contiguous(seqs: set[int]) -> bool:
    return seqs == set(range(1, max(seqs) + 1)) if seqs else False


def _modem_log(node) -> str:
    """What the board wrote on its modem UART (virtual boards keep it)."""
    assert node.target.vboard is not None and node.target.vboard.control is not None
    st = node.target.vboard.control.state()["world"]
    uart = st["cell"]["uart"]
    return st["uart_tx"].get(str(uart), "")


@pytest.mark.needs("link_cell")
def test_cellular_node_dials_up_and_reaches_the_broker_over_ppp(deployed_board, hil_slot):
    node = deployed_board
    assert node.config["link"]["type"] == "cell"
    node.board.expect("node: cell up", timeout=WAIT_S)
    st = node.watch.wait(lambda w: w.online_statuses(), WAIT_S, "an online status")[0]
    assert st["link"] == "cell"
    node.watch.wait(lambda w: w.unique(), WAIT_S, "a first reading")
    if hil_slot.virtual:
        assert st["rssi"] == CSQ_DBM  # AT+CSQ's index, as dBm (27.007 8.5)
        log = _modem_log(node)
        apn = node.config["link"]["apn"]
        steps = ["AT\r", "ATE0\r", "AT+CPIN?\r", "AT+CSQ\r", "AT+CGREG?\r",
                 f'AT+CGDCONT=1,"IP","{apn}"\r', "ATD*99#\r"]
        at = [log.find(s) for s in steps]
        assert -1 not in at and at == sorted(at), f"the AT dialogue, in order: {log!r}"
        cell = node.target.vboard.control.state()["world"]["cell"]
        assert cell["call"] >= 1 and cell["data_mode"] is True


# Found by the simulated modem: CellLink.up() used to poll AT+CGREG? for up to
# 60 s inside the node's loop, so a boat took no position report during a
# coverage gap. Now each attempt waits a few seconds at most and the node
# retries within CELL_RETRY_CAP_MS, measuring in between.
@pytest.mark.needs("cell_control")
def test_node_buffers_during_a_cell_outage_then_redials_and_delivers_in_order(
        deployed_board, cell):
    node = deployed_board
    watch = node.watch
    watch.wait(lambda w: w.unique() and w.online_statuses(), WAIT_S, "a first reading")
    boot = max(b for b, _ in watch.unique())
    dials = _modem_log(node).count("ATD*99#")
    mark = node.board.mark()
    wall_down = time.time()
    cell.down()  # the call in data mode ends: NO CARRIER, PPP down
    node.board.expect("node: cell down", timeout=WAIT_S, since=mark)
    t_noticed = time.monotonic()
    last_before = max(s for b, s in watch.unique() if b == boot)
    time.sleep(OUTAGE_S[node.kind.role])
    during = [u.key for u in watch.since(t_noticed + 0.5)]
    wall_up = time.time()
    cell.up()
    t_up = time.monotonic()
    assert not during, f"uplinks got through while the cell network was gone: {during}"

    node.board.expect("node: cell up", timeout=WAIT_S, since=mark)
    assert _modem_log(node).count("ATD*99#") > dials, "the node dialled again"
    watch.wait(lambda w: [s for s in w.online_statuses() if s["_at"] > t_up], WAIT_S,
               "the node back online after the outage")

    def buffered(w):
        return [u for (b, s), u in w.unique().items()
                if b == boot and s > last_before and u.at > t_up
                and (_taken(u) is None or _taken(u) <= wall_up)]

    got = watch.wait(buffered, 10, "readings taken during the outage")  # the backlog goes first
    times = [_taken(u) for u in got if _taken(u) is not None]
    assert not times or min(times) >= int(wall_down) - 1
    watch.wait(lambda w: _contiguous({s for b, s in w.unique() if b == boot}), WAIT_S,
               f"every seq of boot {boot} delivered, no gap")
    firsts: dict[tuple[int, int], float] = {}
    for u in watch.uplinks:
        firsts.setdefault(u.key, u.at)
    after = sorted((at, k) for k, at in firsts.items() if at > t_up)
    order = [k for _, k in after if not watch.unique()[k].reading.alarm]
    assert order == sorted(order), f"delivered out of order after the outage: {order}"


@pytest.mark.role("truck")  # CellLink is shared by the cellular kinds: one shows it
@pytest.mark.needs("cell_control")
def test_registration_denied_is_logged_and_retried_until_the_network_accepts(
        deployed_board):
    node = deployed_board
    control = node.target.vboard.control
    node.board.expect("node: cell up", timeout=WAIT_S)
    mark = node.board.mark()
    control.set_world({"cell": {"reg": 3}})  # the network refuses the SIM: the call ends
    node.board.expect("node: cell down", timeout=WAIT_S, since=mark)
    # each CellLink.up() polls AT+CGREG? for a few seconds, then the node retries soon
    polls = _modem_log(node).count("AT+CGREG?")
    deadline = time.monotonic() + WAIT_S
    while _modem_log(node).count("AT+CGREG?") < polls + 2:
        assert time.monotonic() < deadline, "the node stopped asking for registration"
        time.sleep(0.2)
    cell_state = control.state()["world"]["cell"]
    assert cell_state["call"] == 0 and not cell_state["data_mode"], "no call while denied"
    mark = node.board.mark()
    t_accept = time.monotonic()
    control.set_world({"cell": {"reg": 5}})  # roaming is accepted
    node.board.expect("node: cell up", timeout=WAIT_S, since=mark)
    node.watch.wait(lambda w: [s for s in w.online_statuses() if s["_at"] > t_accept], WAIT_S,
                    "the node back online once registered")


# Found by the simulated modem: after a chip reset (watchdog, machine.reset()) the
# SIM7600 is still in data mode from the last boot and takes the AT sync for PPP
# bytes; CellLink.up() escapes (1 s guard, "+++", 1 s guard, ATH) when AT stays silent.
@pytest.mark.role("truck")  # CellLink is shared by the cellular kinds: one shows it
@pytest.mark.needs("cell_control")
def test_node_gets_its_modem_back_after_a_chip_reset_in_data_mode(deployed_board):
    node = deployed_board
    node.board.expect("node: cell up", timeout=WAIT_S)
    control = node.target.vboard.control
    call = control.state()["world"]["cell"]["call"]
    escapes = _modem_log(node).count("+++ATH\r")
    mark = node.board.mark()
    node.board.reset(wait_repl=False)  # machine.reset(): the ESP32 restarts, the modem does not
    node.board.expect("node: cell up", timeout=15, since=mark)
    assert _modem_log(node).count("+++ATH\r") > escapes, "the call was escaped and hung up"
    cell_state = control.state()["world"]["cell"]
    assert cell_state["call"] > call and cell_state["data_mode"] is True, "a new call"


@pytest.mark.role("truck")  # CellLink is shared by the cellular kinds: one shows it
@pytest.mark.needs("cell_control", "power_control")
def test_node_powers_a_silent_modem_on_with_pwrkey(deployed_board, power):
    node = deployed_board
    control = node.target.vboard.control
    node.board.expect("node: cell up", timeout=WAIT_S)
    wired = control.state()["world"]["cell"]
    call = wired["call"]
    # from now on the modem stays off after a power cut until PWRKEY is pressed
    control.set_world({"cell": {"auto_on": False}})
    try:
        mark = node.board.mark()
        power.cycle(wait_repl=False)
        node.board.expect("node: cell up", timeout=WAIT_S, since=mark)
        st = control.state()["world"]
    finally:
        control.set_world({"cell": {"auto_on": True}})
    assert st["cell"]["call"] > call and st["cell"]["data_mode"] is True, "a new call"
    assert st["pin_out"].get(str(wired["pwrkey"])) == 0, "PWRKEY released after the press"
