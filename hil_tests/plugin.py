"""The HIL pytest plugin: options, board fixtures, capability markers, failure reports.

Loaded by hil_tests/conftest.py. Without `--board-port` (or HIL_BOARD_PORT)
every test that needs a board is skipped with the reason; with
`--board-port virtual` each test gets fresh virtual boards, one per board
kind a virtual board can play; with serial ports, the attached boards.
See hil_tests/README.md for the commands QA runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_agent.brokerurl import parse_broker_url
from provisioning.boards import default_boards_path, load_boards
from provisioning.errors import ProvisioningError

from .binding import BindOptions, resolve, split
from .board import Board
from .capabilities import (
    CELL,
    HINTS,
    POWER,
    WIFI,
    capabilities,
    missing_reason,
    role_reason,
)
from .deploy import runtime_present
from .deployed import DeployedNode, NotDeployable, deploy_node
from .errors import BoardExecError, HILError
from .faults import Cell, Power, VirtualCellSwitch, Wifi
from .mosquitto import BrokerError, Mosquitto
from .node_config import Broker
from .serial_board import SerialBoard
from .slots import BoardSlot
from .target import Settings, Target

__all__ = [
    "board",
    "boards",
    "cell",
    "deployed_board",
    "hil_broker",
    "hil_slot",
    "hil_settings",
    "hil_target",
    "power",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_report_header",
    "pytest_runtest_makereport",
    "wifi",
]

NO_BOARD = "no board: pass --board-port PORT or --board-port virtual"
NO_RUNTIME = "firmware runtime not deployed yet"
SLOTS = pytest.StashKey[list[BoardSlot]]()
SETTINGS = pytest.StashKey[Settings]()
TARGETS = pytest.StashKey[list[Target]]()


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("hil", "hardware-in-the-loop boards (see hil_tests/README.md)")
    g.addoption("--board-port", action="append", metavar="PORT",
                help="serial port of a board (/dev/ttyUSB0, /dev/pts/3), or 'virtual' to start "
                     "virtual boards; repeat or comma-separate for several "
                     "[env HIL_BOARD_PORT]")
    g.addoption("--board", action="append", metavar="KIND",
                help="board kind from boards.yaml: one for all boards, or one per board "
                     "(virtual: the kinds to simulate, default every esp32 kind with a "
                     "`virtual` section) [env HIL_BOARD]")
    g.addoption("--board-count", type=int, metavar="N",
                help="number of boards: per kind for virtual boards (default 1); a check "
                     "that N boards were bound for serial ones [env HIL_BOARD_COUNT]")
    g.addoption("--board-serial", action="append", metavar="SERIAL",
                help="bind a board by its USB serial number (pyserial list_ports)")
    g.addoption("--board-mac", action="append", metavar="MAC",
                help="bind a board by its MAC (machine.unique_id(), read over the REPL) among "
                     "the --board-port ports, or every USB serial port")
    g.addoption("--boards-file", metavar="PATH", help="boards.yaml to read kinds from")
    g.addoption("--board-baud", type=int, default=115200, help="serial baud rate (115200)")
    g.addoption("--broker-url", metavar="URL",
                help="mqtt://HOST:PORT of a broker the attached boards can reach (virtual "
                     "boards get a mosquitto of their own) [env HIL_BROKER_URL]")
    g.addoption("--power-cmd", metavar="CMD",
                help="shell command that power-cycles the board on {port} (a switchable USB "
                     "hub, a relay) [env HIL_POWER_CMD]")
    g.addoption("--wifi-cmd", metavar="CMD",
                help="shell command that takes the access point {state}=down|up "
                     "[env HIL_WIFI_CMD]")
    g.addoption("--wifi-ssid", metavar="SSID",
                help="access point attached Wi-Fi boards join (password: env HIL_WIFI_PASS) "
                     "[env HIL_WIFI_SSID]")
    g.addoption("--apn", metavar="APN", help="APN for cellular boards [env HIL_APN]")
    g.addoption("--vboard-heap", metavar="SIZE",
                help="heap of each virtual board's VM, e.g. 110K (default 256K)")


def _bind_options(config: pytest.Config) -> BindOptions:
    opt = config.getoption
    ports = split(opt("board_port") or ([_env("HIL_BOARD_PORT")] if _env("HIL_BOARD_PORT")
                                          else None))
    kinds = split(opt("board") or ([_env("HIL_BOARD")] if _env("HIL_BOARD") else None))
    count = opt("board_count")
    if count is None and _env("HIL_BOARD_COUNT"):
        try:
            count = int(os.environ["HIL_BOARD_COUNT"])
        except ValueError:
            raise pytest.UsageError(f"HIL_BOARD_COUNT={os.environ['HIL_BOARD_COUNT']!r}: "
                                    f"not a number") from None
    return BindOptions(ports=ports, kinds=kinds, count=count,
                       serials=split(opt("board_serial")), macs=split(opt("board_mac")))


def _settings(config: pytest.Config) -> Settings:
    opt = config.getoption
    return Settings(
        baudrate=opt("board_baud"),
        power_cmd=opt("power_cmd") or _env("HIL_POWER_CMD"),
        wifi_cmd=opt("wifi_cmd") or _env("HIL_WIFI_CMD"),
        broker_url=opt("broker_url") or _env("HIL_BROKER_URL"),
        wifi_ssid=opt("wifi_ssid") or _env("HIL_WIFI_SSID"),
        wifi_pass=_env("HIL_WIFI_PASS"),
        apn=opt("apn") or _env("HIL_APN"),
        vm_heap=opt("vboard_heap"),
    )


def _read_mac(settings: Settings):  # type: ignore[no-untyped-def]
    def read(port: str) -> str:
        with SerialBoard(port, baudrate=settings.baudrate, connect_timeout=5,
                         soft_reset=False) as b:
            return b.unique_id()
    return read


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "role(*roles): run only on boards of these roles "
                                       "(water_level, boat, truck)")
    config.addinivalue_line("markers", "needs(*capabilities): skip on a board that lacks one "
                                       "(power_control, wifi_control, gps, level, ...)")
    settings = _settings(config)
    config.stash[SETTINGS] = settings
    opts = _bind_options(config)
    if not (opts.ports or opts.serials or opts.macs):
        config.stash[SLOTS] = []
        return
    try:
        path = config.getoption("boards_file") or default_boards_path()
        boards = load_boards(path)
        config.stash[SLOTS] = resolve(opts, boards, _read_mac(settings))
    except (HILError, ProvisioningError) as e:
        raise pytest.UsageError(str(e)) from e


def pytest_report_header(config: pytest.Config) -> str:
    slots = config.stash.get(SLOTS, [])
    if not slots:
        return f"hil: {NO_BOARD} (HIL tests skip)"
    return "hil: " + "; ".join(s.describe() for s in slots)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hil_slot" not in metafunc.fixturenames:
        return
    slots = metafunc.config.stash.get(SLOTS, [])
    reason = NO_BOARD
    roles = [str(a) for m in metafunc.definition.iter_markers("role") for a in m.args]
    if roles and slots:
        # a role's test runs on the boards of that role only (or on boards of unknown kind,
        # which then skip saying that --board is missing)
        slots = [s for s in slots if s.kind is None or s.kind.role in roles]
        reason = f"no board of role {'/'.join(roles)} among the bound boards"
    if slots:
        metafunc.parametrize("hil_slot", slots, ids=[s.id for s in slots], indirect=True)
    else:
        metafunc.parametrize("hil_slot", [pytest.param(None, marks=pytest.mark.skip(reason))],
                             ids=["no-board"], indirect=True)


def _marker_args(item: pytest.Item, name: str) -> tuple[str, ...]:
    out: list[str] = []
    for m in item.iter_markers(name):
        out += [str(a) for a in m.args]
    return tuple(out)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash.get(SETTINGS, Settings())
    slots = config.stash.get(SLOTS, [])
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if not names & {"hil_slot", "boards"}:
            continue
        item.add_marker(pytest.mark.hil)
        if "boards" in names and not slots:
            item.add_marker(pytest.mark.skip(reason=NO_BOARD))
            continue
        if "deployed_board" in names and not runtime_present():
            item.add_marker(pytest.mark.skip(reason=NO_RUNTIME))
            continue
        callspec = getattr(item, "callspec", None)
        slot = callspec.params.get("hil_slot") if callspec else None
        if not isinstance(slot, BoardSlot):
            continue
        caps = capabilities(slot, settings.power_cmd, settings.wifi_cmd)
        roles = _marker_args(item, "role")
        reason = role_reason(slot, roles) if roles else None
        reason = reason or missing_reason(slot, _marker_args(item, "needs"), caps)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """A failed test's report gets each of its boards' console tail and log path."""
    outcome: Any = yield
    rep = outcome.get_result()
    if not rep.failed or rep.when == "teardown":
        return
    err = call.excinfo.value if call.excinfo else None
    if rep.when == "setup" and isinstance(err, HILError) and not isinstance(err, BoardExecError):
        # a port or connection problem: its one line says it all, mpremote's frames do not
        rep.longrepr = f"{type(err).__module__}.{type(err).__name__}: {err}"
    for target in item.stash.get(TARGETS, []):
        title, text = target.console_report()
        text = text or "(the board printed nothing)"
        if hasattr(rep.longrepr, "addsection"):
            rep.longrepr.addsection(title, text)
        else:
            rep.longrepr = f"{rep.longrepr}\n{'-' * 8} {title}\n{text}"


# ---- fixtures ----


@pytest.fixture(scope="session")
def hil_settings(pytestconfig: pytest.Config) -> Settings:
    return pytestconfig.stash.get(SETTINGS, Settings())


@pytest.fixture
def hil_slot(request: pytest.FixtureRequest) -> BoardSlot:
    """The slot this test instance runs on (parametrised over every bound board)."""
    return request.param


def _start(request: pytest.FixtureRequest, slot: BoardSlot, workdir: Path,
           settings: Settings) -> Target:
    target = Target(slot, workdir, settings)
    request.node.stash.setdefault(TARGETS, []).append(target)
    try:
        target.start()
    except HILError:
        target.stop()
        raise
    return target


@pytest.fixture
def hil_target(request: pytest.FixtureRequest, hil_slot: BoardSlot, tmp_path: Path,
               hil_settings: Settings) -> Iterator[Target]:
    """The test's board brought up: a fresh virtual board, or the attached one opened."""
    target = _start(request, hil_slot, tmp_path / "target", hil_settings)
    yield target
    target.stop()


@pytest.fixture
def board(hil_target: Target) -> Board:
    """A connected board in the raw REPL (soft-reset): one test instance per bound board."""
    assert hil_target.board is not None
    return hil_target.board


@pytest.fixture
def boards(request: pytest.FixtureRequest, pytestconfig: pytest.Config, tmp_path: Path,
           hil_settings: Settings) -> Iterator[list[Board]]:
    """Every bound board at once, connected (for tests about several boards)."""
    targets = []
    try:
        for slot in pytestconfig.stash.get(SLOTS, []):
            targets.append(_start(request, slot, tmp_path / f"target{slot.index}",
                                  hil_settings))
        yield [t.board for t in targets if t.board is not None]
    finally:
        for t in targets:
            t.stop()


@pytest.fixture
def power(hil_target: Target) -> Power:
    """power.cycle(): cut the board's power and restore it; skips when there is no way to."""
    switch = hil_target.power_switch
    if switch is None:
        pytest.skip(f"{hil_target.slot.describe()} lacks {POWER}: {HINTS[POWER]}")
    assert hil_target.board is not None
    return Power(switch, hil_target.board)


@pytest.fixture
def wifi(hil_target: Target) -> Iterator[Wifi]:
    """wifi.down() / wifi.up(): the board's access point; skips when there is no way to."""
    switch = hil_target.wifi_switch
    if switch is None:
        pytest.skip(f"{hil_target.slot.describe()} lacks {WIFI}: {HINTS[WIFI]}")
    w = Wifi(switch)
    yield w
    if not w.is_up:
        w.up()  # never leave a bench's access point down


@pytest.fixture
def cell(hil_target: Target) -> Iterator[Cell]:
    """cell.down() / cell.up(): the board's cellular network; skips when there is no way to
    (attached boards: nothing takes a real network away yet)."""
    if CELL not in capabilities(hil_target.slot) or hil_target.vboard is None:
        pytest.skip(f"{hil_target.slot.describe()} lacks {CELL}: {HINTS[CELL]}")
    c = Cell(VirtualCellSwitch(hil_target.vboard))
    yield c
    if not c.is_up:
        c.up()


@dataclass(frozen=True)
class HilBroker:
    """The broker under test: `node` is how boards reach it, host/port how tests do."""

    node: Broker
    host: str
    port: int
    process: Mosquitto | None = None


@pytest.fixture(scope="session")
def hil_broker(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory,
               hil_settings: Settings) -> Iterator[HilBroker]:
    """A real mosquitto on 127.0.0.1 for virtual boards; --broker-url for attached ones."""
    slots = pytestconfig.stash.get(SLOTS, [])
    if any(s.virtual for s in slots):
        try:
            with Mosquitto(tmp_path_factory.mktemp("hil-broker")) as m:
                yield HilBroker(Broker("127.0.0.1", m.port), "127.0.0.1", m.port, m)
        except BrokerError as e:
            raise HILError(f"broker for the virtual boards: {e}") from e
        return
    if not hil_settings.broker_url:
        pytest.skip("no broker: pass --broker-url mqtt://HOST:1883 (one the boards can reach)")
    try:
        url = parse_broker_url(hil_settings.broker_url)
    except ValueError as e:
        raise pytest.UsageError(f"--broker-url: {e}") from e
    if url.tls:
        raise pytest.UsageError("--broker-url: the HIL suite speaks plain mqtt:// only")
    yield HilBroker(Broker(url.host, url.port), url.host, url.port)


@pytest.fixture
def deployed_board(hil_target: Target, hil_broker: HilBroker) -> Iterator[DeployedNode]:
    """The firmware and a config for the kind's role on the board, reset and running.

    `.watch` is the gateway side (NodeWatch) on the broker under test;
    `.board` the board, its console followed; `.kind` its boards.yaml kind.
    """
    if not runtime_present():
        pytest.skip(NO_RUNTIME)
    kind = hil_target.slot.kind
    if kind is None:
        pytest.skip(f"{hil_target.slot.describe()}: pass --board KIND to deploy the firmware")
    try:
        node = deploy_node(hil_target, kind, hil_broker.node, hil_broker.host, hil_broker.port)
    except NotDeployable as e:
        pytest.skip(str(e))
    yield node
    node.watch.stop()
