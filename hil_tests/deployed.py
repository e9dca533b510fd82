"""DeployedNode: a board running the firmware with a HIL config, and its gateway side.

`deploy_node` puts the firmware and a fresh config on the target's board,
starts a NodeWatch on the broker under test before the node boots (so the
first message is not missed), and resets the board so main.py runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provisioning.boards import BoardKind

from .deploy import Deployment, deploy
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
from .vboard.modem import wiring

VIRTUAL_APN = "hil.apn"  # the only APN a virtual board's simulated network accepts
# A real SIM7600 takes 10-15 s to boot and seconds to register; the HIL suite
# keeps the order of events and shortens the waits.
VIRTUAL_MODEM = {"boot_ms": 1000, "reg_after_ms": 1000, "csq": 20, "reg": 1}


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
    deployment = deploy(board, cfg, secrets, HIL_TUNE)
    watch = NodeWatch(watch_host, watch_port, device, kind.role,
                      prefix=deployment.prefix).start()
    if target.vboard is not None and target.vboard.control and link["type"] == "cell":
        target.vboard.control.set_world({"cell": modem_world(kind)})  # powers the modem on
    target.start_world()
    node = DeployedNode(target, kind, deployment, watch)
    node.start()
    return node

