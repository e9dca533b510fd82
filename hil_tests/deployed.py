"""DeployedNode: a board running the firmware with a HIL config, and its gateway side.

`deploy_node` puts the firmware and a fresh config on the target's board,
starts a NodeWatch on the broker under test before the node boots (so the
first message is not missed), and resets the board so main.py runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from provisioning.boards import BoardKind

from .deploy import Deployment, deploy
from .errors import HILError
from .kind_world import gps_sensor
from .node_config import (
    HIL_TUNE,
    VIRTUAL_SSID,
    VIRTUAL_WIFI_PASS,
    Broker,
    new_device_id,
    node_config,
)
from .node_watch import NodeWatch
from .serial_board import SerialBoard
from .target import Target
from .vboard import VBoardControl
from .vboard.modem import wiring

VIRTUAL_APN = "hil.apn"  # the only APN a virtual board's simulated network accepts
# A real SIM7600 takes 10-15 s to boot and seconds to register; the HIL suite
# keeps the order of events and shortens the waits. The modem is powered on when
# the firmware is deployed and the node is started once it runs (a hard reset on a
# powered board: the modem keeps running), so the firmware finds it in command mode;
# a power cut restarts both, and the firmware then meets a booting modem.
VIRTUAL_MODEM = {"boot_ms": 300, "reg_after_ms": 100, "dial_ms": 100, "ppp_ms": 100, "csq": 20,
                 "reg": 1}
MODEM_BOOT_WAIT_S = 10.0  # boot_ms, with room for a loaded bench


class NotDeployable(Exception):
    """The bench lacks what this kind needs (Wi-Fi credentials, an APN): skip, with why."""


@dataclass
class DeployedNode:
    target: Target
    kind: BoardKind
    deployment: Deployment
    watch: NodeWatch

    @property
    def board(self) -> SerialBoard:
        assert self.target.board is not None
        return self.target.board

    @property
    def device(self) -> str:
        return self.deployment.device

    @property
    def config(self) -> dict[str, Any]:
        return self.deployment.config

    def start(self) -> None:
        """Hard-reset the board so boot.py and main.py run; the console is followed."""
        self.board.reset(wait_repl=False)


def link_for(target: Target, kind: BoardKind) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config link, secrets) for the bench; NotDeployable when something is missing."""
    s = target.settings
    if target.slot.virtual:
        if kind.link == "cell" and modem_world(kind) is not None:
            return {"type": "cell", "apn": VIRTUAL_APN}, {}
        return {"type": "wifi", "ssid": VIRTUAL_SSID}, {"wifi_pass": VIRTUAL_WIFI_PASS}
    if kind.link == "wifi":
        if not s.wifi_ssid:
            raise NotDeployable(f"{kind.name} joins Wi-Fi: pass --wifi-ssid SSID and set "
                                f"HIL_WIFI_PASS")
        secrets = {"wifi_pass": s.wifi_pass} if s.wifi_pass else {}
        return {"type": "wifi", "ssid": s.wifi_ssid}, secrets
    if not s.apn:
        raise NotDeployable(f"{kind.name} uses a cellular modem: pass --apn APN")
    return {"type": "cell", "apn": s.apn}, {}


def modem_world(kind: BoardKind) -> dict[str, Any] | None:
    """World `cell` values wiring a simulated SIM7600 as the kind's modem (None: it has none
    on a UART): its UART id and the GPIOs of PWRKEY and STATUS, from boards.yaml."""
    wired = wiring(kind)
    return None if wired is None else {**wired, "apn": VIRTUAL_APN, **VIRTUAL_MODEM}


def _wait_modem_running(control: VBoardControl, status_gpio: int) -> None:
    """Until the simulated modem has booted: its STATUS output reads 1."""
    deadline = time.monotonic() + MODEM_BOOT_WAIT_S
    while control.state()["world"]["pins"].get(str(status_gpio)) != 1:
        if time.monotonic() > deadline:
            raise HILError(f"the virtual board's modem did not boot within "
                           f"{MODEM_BOOT_WAIT_S:g} s (STATUS, GPIO {status_gpio}, stayed low)")
        time.sleep(0.02)


def deploy_node(target: Target, kind: BoardKind, broker: Broker, watch_host: str,
                watch_port: int) -> DeployedNode:
    board = target.board
    assert board is not None
    link, secrets = link_for(target, kind)
    device = new_device_id(kind)
    start = None
    found = gps_sensor(kind)
    if found is not None and target.slot.virtual:
        start = (float(found[1]["lat"]), float(found[1]["lon"]))
    cfg = node_config(kind, device, broker, link, target.slot.virtual, start)
    # The virtual world's modem and GPS start first, as if the board had been powered
    # for a while: they boot and get a fix while the firmware goes on the flash.
    control = target.vboard.control if target.vboard is not None else None
    cell = modem_world(kind) if control is not None and link["type"] == "cell" else None
    if control is not None and cell is not None:
        control.set_world({"cell": cell})  # powers the modem on
    target.start_world()
    deployment = deploy(board, cfg, secrets, HIL_TUNE)
    watch = NodeWatch(watch_host, watch_port, device, kind.role,
                      prefix=deployment.prefix).start()
    if control is not None and cell is not None and cell.get("status") is not None:
        _wait_modem_running(control, int(cell["status"]))
    target.wait_world()
    node = DeployedNode(target, kind, deployment, watch)
    node.start()
    return node

