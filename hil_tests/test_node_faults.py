"""Firmware level, every role: no reading is lost to a power cut, a Wi-Fi outage or a hang."""

from __future__ import annotations

import time

import pytest

WAIT_S = 30
# How long the access point stays away: a little over one reading of the role
# with the HIL config (water level in alert: every 5 s scaled to 1 s by
# tune.json; truck: a track payload about every 2 s; boat: a position report
# every normal_s = 10 s of wall time, which tune.json does not scale).
OUTAGE_S = {"water_level": 3.0, "truck": 5.0, "boat": 12.0}
_BT = -3


def _taken(up) -> float | None:
    """When a reading was taken (SenML base time), or None when the node had no clock."""
    return up.pack[0].get(_BT)


def _contiguous(seqs: set[int]) -> bool:
    return seqs == set(range(1, max(seqs) + 1)) if seqs else False


@pytest.mark.needs("power_control")
def test_outbox_survives_a_power_cut_and_is_delivered_in_order(deployed_board, power):
    node = deployed_board
    watch = node.watch
    watch.auto_ack = False  # hold the end-to-end acks: every reading stays in the outbox
    watch.wait(lambda w: len(w.unique()) >= 2, WAIT_S, "two readings")
    boot0 = min(b for b, _ in watch.unique())
    t_cut = time.monotonic()
    power.cycle(wait_repl=False)
    before = {k for k, u in watch.unique().items() if u.at < t_cut}

    def redelivered(w):
        after = w.since(t_cut)
        keys = {u.key for u in after}
        return before <= keys and any(b > boot0 for b, _ in keys) and after

    after = watch.wait(redelivered, WAIT_S, f"{sorted(before)} sent again after the power cut")
    boot1 = max(u.key[0] for u in after)
    assert boot1 > boot0, "the boot counter went up"
    st = watch.wait(lambda w: [s for s in w.online_statuses() if s["boot"] == boot1], WAIT_S,
                    f"a status of boot {boot1}")[0]
    assert st["reset"] == "power_on"

    # a replay is the same message: same (boot, seq), same bytes
    by_key: dict[tuple[int, int], bytes] = {}
    for u in watch.uplinks:
        assert by_key.setdefault(u.key, u.reading.payload) == u.reading.payload, u.key
    # nothing of the old boot is missing, and it came in order (alarms may jump ahead)
    assert _contiguous({s for b, s in by_key if b == boot0})
    first_after: dict[tuple[int, int], object] = {}
    for u in after:
        first_after.setdefault(u.key, u)
    order = [k for k, u in first_after.items() if not u.reading.alarm]
    assert order == sorted(order), f"delivered out of order after the power cut: {order}"

    watch.auto_ack = True
    acked = watch.send_acks()
    assert acked.get(boot0) == max(s for b, s in by_key if b == boot0)


@pytest.mark.needs("wifi_control", "link_wifi")  # a cellular node: test_node_cell.py
def test_node_delivers_what_it_buffered_during_a_wifi_outage(deployed_board, wifi):
    node = deployed_board
    watch = node.watch
    watch.wait(lambda w: w.unique() and w.online_statuses(), WAIT_S, "a first reading")
    boot = max(b for b, _ in watch.unique())
    mark = node.board.mark()
    wall_down = time.time()
    wifi.down()  # virtual: the node's sockets are black-holed from here (vboard/linkproxy.py)
    t_cut = time.monotonic() + 0.5  # what was already on its way may still arrive
    node.board.expect("node: wifi down", timeout=WAIT_S, since=mark)  # real APs: beacon timeout
    last_before = max(s for b, s in watch.unique() if b == boot)
    time.sleep(OUTAGE_S[node.kind.role])
    during = [u.key for u in watch.since(t_cut)]
    heard = [s for s in list(watch.statuses) if s["_at"] >= t_cut]
    wall_up = time.time()
    t_up0 = time.monotonic()  # the will may arrive before wifi.up() returns
    wifi.up()
    t_up = time.monotonic()
    assert not during, f"uplinks got through while the access point was gone: {during}"
    # The node dropped its MQTT session when it saw the link go, but its close went
    # nowhere: the broker publishes no last will while the link is gone.
    assert not heard, f"the broker heard from or about the node during the outage: {heard}"

    online = watch.wait(lambda w: [s for s in w.online_statuses() if s["_at"] > t_up],
                        WAIT_S, "the node back online after the outage")[0]
    # Only now does the broker learn that the old session is gone (the dead connection
    # closes, or the new one takes it over): the last will comes before the node is back.
    wills = [s for s in list(watch.statuses)
             if not s["online"] and t_up0 <= s["_at"] <= online["_at"]]
    assert wills, "no last will (offline status) between the link's return and the node back"

    def buffered(w):
        return [u for (b, s), u in w.unique().items()
                if b == boot and s > last_before and u.at > t_up
                and (_taken(u) is None or _taken(u) <= wall_up)]

    got = watch.wait(buffered, WAIT_S, "readings taken during the outage")
    times = [_taken(u) for u in got if _taken(u) is not None]
    assert not times or min(times) >= int(wall_down) - 1
    watch.wait(lambda w: _contiguous({s for b, s in w.unique() if b == boot}), WAIT_S,
               f"every seq of boot {boot} delivered, no gap")
    # what was buffered came in order once the link was back (alarms may go first)
    order = [s for (b, s), u in watch.unique().items()
             if b == boot and s > last_before and not u.reading.alarm]
    assert order == sorted(order), f"buffered readings delivered out of order: {order}"


def test_watchdog_resets_a_node_whose_main_loop_hangs(deployed_board):
    node = deployed_board
    st0 = node.watch.wait(lambda w: w.online_statuses(), WAIT_S, "an online status")[0]
    # Ctrl-C stops main.py; the watchdog it armed keeps running while this loop hangs
    node.board.launch("while True:\n    pass\n")
    limit = node.config["watchdog_s"] + WAIT_S
    st = node.watch.wait(
        lambda w: [s for s in w.online_statuses() if s["boot"] > st0["boot"]], limit,
        "the node back after a watchdog reset")[0]
    assert st["reset"] == "wdt"
    assert st["boot"] == st0["boot"] + 1
