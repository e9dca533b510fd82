"""One board through provisioning steps: identify it, check everything, then change it.

Order, so that a refusal leaves the board and the registry as they were:
1. the port is free (exclusive lock);
2. the board says what it is (chip, MAC, flash size: the ROM through the
   flasher, or MicroPython through the REPL) and that matches the board kind;
3. the registry decides its device id (a known board keeps its id unless
   --force) and, on a resumed run, which steps are still to do;
4. every input those steps need is checked: image, firmware build, config
   (zones, thresholds), broker files, broker credentials for verify;
5. only then the registry row is made and the steps run, each recorded as
   done when it has finished, so a re-run starts at the step that failed.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_agent.wire import DEVICE_RE
from provisioning.bench import Bench
from provisioning.board_kind import BoardKind
from provisioning.checkpoint import checkpoint
from provisioning.deploy import board_info, deploy
from provisioning.errors import (
    BoardError,
    BoardMismatch,
    ProvisioningError,
    RegistryError,
    SettingsError,
)
from provisioning.flasher import BoardFacts, Flasher, check_kind, flash_image, inspect_board
from provisioning.link import SerialLink
from provisioning.mosquitto_auth import (
    locked,
    password_hash,
    reload_broker,
    remove_user,
    set_password,
    write_acl,
)
from provisioning.node_config import build_config, config_hash, node_files, render
from provisioning.registry import INVALIDATES, STEPS, DeviceRow, Registry, auto_device_id
from provisioning.secrets_store import SecretsStore
from provisioning.target import Target, check_free
from provisioning.verify import Expected, check_board, watch_publish

# Stand-in secrets of the right shape: the config is checked before real ones exist.
_PREFLIGHT_SECRETS = {"mqtt_pass": "x" * 32, "key": "00" * 32}


class Events(Protocol):
    """Where a job reports what it is doing (a progress line, a bar, nothing)."""

    def device(self, device_id: str) -> None: ...

    def step(self, name: str) -> None: ...

    def progress(self, done: int, total: int) -> None: ...


class NoEvents:
    def device(self, device_id: str) -> None:
        pass

    def step(self, name: str) -> None:
        pass

    def progress(self, done: int, total: int) -> None:
        pass


@dataclass
class JobResult:
    target: str
    device_id: str | None = None
    board: str | None = None
    mac: str | None = None
    ran: list[str] = field(default_factory=list)
    done: tuple[str, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)  # step -> one-line summary
    step_seconds: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failed_step: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class StepFailed(ProvisioningError):
    def __init__(self, step: str, cause: ProvisioningError) -> None:
        self.step = step
        self.cause = cause
        super().__init__(f"{step}: {cause}")


class BoardJob:
    def __init__(self, bench: Bench, target: Target | None, kind_name: str | None,
                 requested_id: str | None = None, events: Events | None = None) -> None:
        self.bench = bench
        self.target = target
        self.kind_name = kind_name
        self.requested_id = requested_id
        self.events = events or NoEvents()
        self.result = JobResult(target=str(target) if target else (requested_id or "?"))
        self._flasher: Flasher | None = None
        self._link: SerialLink | None = None
        self._facts: BoardFacts | None = None
        self.kind: BoardKind | None = None
        self.device_id = ""

    # ---- connections ----

    def link(self) -> SerialLink:
        if self._link is None:
            assert self.target is not None
            t = self.target
            reset: Callable[[], None] | None = None
            if t.virtual:
                def reset() -> None:
                    t.control().power_cycle(wait=False)
            self._link = SerialLink(t.port, reset=reset)
        return self._link

    def _close(self) -> None:
        if self._flasher is not None:
            self._flasher.close()
            self._flasher = None
        if self._link is not None:
            self._link.close()
            self._link = None

    # ---- the run ----

    def run(self, steps: Sequence[str], *, resume: bool = False) -> JobResult:
        """Run `steps` (in STEPS order); with resume, only those not done yet."""
        t0 = time.monotonic()
        steps = [s for s in STEPS if s in steps]
        try:
            with ExitStack() as stack:
                self._run(stack, steps, resume)
        except StepFailed as e:
            self.result.error, self.result.failed_step = str(e.cause), e.step
        except ProvisioningError as e:
            self.result.error = str(e)
        except Exception as e:  # a bug must not take the other boards' threads down
            if os.environ.get("NODECTL_DEBUG"):
                traceback.print_exc()
            self.result.error = f"unexpected {type(e).__name__}: {e} (NODECTL_DEBUG=1 for more)"
        finally:
            self._close()
            self.result.seconds = time.monotonic() - t0
        return self.result

    def _run(self, stack: ExitStack, steps: list[str], resume: bool) -> None:
        # Read the registry if it exists; it is created only once every check has passed.
        found = Registry.existing(self.bench.registry_path)
        if found is not None:
            stack.enter_context(found)
        row = self._identify(found, steps)
        todo = steps
        if resume and row is not None and not self.bench.force:
            todo = self._still_to_do(row, steps)
        assert self.kind is not None
        self._preflight(todo)
        if self._flasher is not None and "flash" not in todo:
            self._flasher.close()
            self._flasher = None
        reg = found or stack.enter_context(Registry(self.bench.registry_path))
        row = self._assign(reg, row)
        self.events.device(self.device_id)
        self.result.done = row.steps
        for step in todo:
            self.events.step(step)
            t0 = time.monotonic()
            try:
                note = getattr(self, f"_step_{step}")(reg)
            except ProvisioningError as e:
                reg.step_failed(self.device_id, step, str(e))
                raise StepFailed(step, e) from e
            self.result.ran.append(step)
            self.result.notes[step] = note
            self.result.step_seconds[step] = time.monotonic() - t0
            done = reg.by_id(self.device_id)
            self.result.done = done.steps if done else ()

    # ---- 1-3: who is this board ----

    def _identify(self, reg: Registry | None, steps: list[str]) -> DeviceRow | None:
        if self.target is None:  # register by id: no board needed
            row = reg.by_id(self.requested_id or "") if reg else None
            if row is None or row.retired:
                raise RegistryError(f"no live device {self.requested_id!r} in the registry "
                                    f"{self.bench.registry_path}")
            self.kind = self.bench.boards.get(self.kind_name or row.board)
            self.device_id = row.device_id
            self.result.device_id, self.result.board, self.result.mac = (
                row.device_id, row.board, row.mac)
            return row
        check_free(self.target)
        given = self.bench.boards.get(self.kind_name) if self.kind_name else None
        if "flash" in steps:
            baud = given.flash_baud if given else 460800
            self._flasher = self.target.flasher(baud)
            self._facts = inspect_board(self._flasher)
            mac, chip = self._facts.mac, self._facts.chip
        else:
            info = board_info(self.link())
            mac, chip = info.mac, info.chip
        row = reg.live_by_mac(mac) if reg else None
        if given is None and row is None:
            raise SettingsError(f"board {mac} is not in the registry: give its kind with "
                                f"--board (see `nodectl boards`)")
        kind = given or self.bench.boards.get(row.board if row else "")
        self.kind = kind
        self.result.mac, self.result.board = mac, kind.name
        if self._facts is not None:
            check_kind(self._facts, kind)
        elif chip != kind.chip:
            raise BoardMismatch(f"wrong chip: board kind {kind.name!r} is {kind.chip}, the "
                                f"board is {chip}")
        self.device_id = self._decide_id(reg, row, mac, kind)
        self.result.device_id = self.device_id
        return row

    def _decide_id(self, reg: Registry | None, row: DeviceRow | None, mac: str,
                   kind: BoardKind) -> str:
        req, force = self.requested_id, self.bench.force
        if row is not None:
            if req and req != row.device_id and not force:
                raise RegistryError(f"board {mac} is already {row.device_id}: pass --force to "
                                    f"provision it as {req}")
            if row.board != kind.name and not force:
                raise RegistryError(f"board {mac} ({row.device_id}) is a {row.board}: pass "
                                    f"--force to provision it as a {kind.name}")
            device_id = req or row.device_id
        else:
            device_id = req or auto_device_id(kind.role, mac)
        if not DEVICE_RE.fullmatch(device_id):
            raise SettingsError(f"device id {device_id!r} must match [a-z0-9][a-z0-9-]{{0,31}}")
        other = reg.by_id(device_id) if reg else None
        if other is not None and (row is None or other.device_id != row.device_id):
            if not other.retired:
                raise RegistryError(f"device id {device_id} is already board {other.mac}: "
                                    f"choose another --id, or retire {device_id} first")
            if not force:
                raise RegistryError(f"device id {device_id} was retired: pass --force to "
                                    f"give it to board {mac}")
        return device_id

    def _still_to_do(self, row: DeviceRow, steps: list[str]) -> list[str]:
        """Steps not done, and done steps whose result is out of date: a new firmware
        build (deploy) or new settings (configure). Flashing is never redone by itself:
        it wipes the node's outbox (use --force)."""
        kind = self.kind
        assert kind is not None
        done = set(row.steps)
        todo = []
        for step in steps:
            stale = False
            if step == "deploy" and step in done:
                stale = self.bench.build().manifest != row.fw_manifest
            elif step == "configure" and step in done:
                cfg = build_config(kind, self.device_id, self.bench.settings)
                stale = config_hash(render(cfg)) != row.config_hash
            if step not in done or stale:
                todo.append(step)
                done -= set(INVALIDATES[step])
        return todo

    # ---- 4: every input, before anything changes ----

    def _preflight(self, todo: list[str]) -> None:
        kind, bench = self.kind, self.bench
        assert kind is not None
        if "flash" in todo:
            bench.image(kind)
        if "deploy" in todo:
            bench.build()
        if "configure" in todo:
            node_files(kind, self.device_id, bench.settings, _PREFLIGHT_SECRETS,
                       bench.firmware_dir)
        if "register" in todo and bench.broker is None:
            raise SettingsError("register needs the broker's files: --broker-passwd FILE and "
                                "--broker-acl FILE (NODECTL_BROKER_PASSWD, NODECTL_BROKER_ACL)")
        if "register" in todo and "configure" not in todo:
            if SecretsStore(bench.secrets_dir).load(self.device_id) is None:
                raise SettingsError(f"no secrets for {self.device_id} in {bench.secrets_dir}: "
                                    f"configure it first")
        if "verify" in todo and bench.monitor is None:
            raise SettingsError("verify watches the broker as the agent's user: give "
                                "--agent-pass (NODECTL_AGENT_PASS) and the broker address")

    # ---- 5: the registry row, then the steps ----

    def _assign(self, reg: Registry, row: DeviceRow | None) -> DeviceRow:
        kind = self.kind
        assert kind is not None and self.result.mac is not None
        if row is not None and row.device_id == self.device_id:
            if self.bench.force:
                reg.set_steps(row.device_id, (), board=kind.name, role=kind.role,
                              last_error=None)
            found = reg.by_id(row.device_id)
            assert found is not None
            return found
        if row is not None:  # --force with a new id: the old device goes
            retire_device(self.bench, reg, row.device_id)
        return reg.create(self.device_id, self.result.mac, kind.role, kind.name)

    def _step_flash(self, reg: Registry) -> str:
        kind = self.kind
        assert kind is not None and self._flasher is not None
        image = self.bench.image(kind)
        checkpoint("flash")
        facts = flash_image(self._flasher, kind, image.data, progress=self.events.progress,
                            after_erase=lambda: checkpoint("flash", "erased"))
        self._flasher = None  # finish() let the port go
        reg.step_done(self.device_id, "flash", chip=facts.chip, flash_id=facts.flash_id,
                      flash_size=facts.flash_size, micropython=kind.image.version,
                      image_sha256=image.sha256, fw_version=None, fw_manifest=None,
                      config_hash=None)
        trust = "" if image.pinned else " (unverified image)"
        self.result.details["image"] = image.file
        return (f"{image.file} (MicroPython {kind.image.version}) on {facts.chip} "
                f"{facts.mac}, {facts.flash_size}{trust}")

    def _step_deploy(self, reg: Registry) -> str:
        checkpoint("deploy")
        link = self.link()
        r = deploy(link, self.bench.build(), board_info(link), progress=self.events.progress,
                   checkpoint=lambda p: checkpoint("deploy", p))
        reg.step_done(self.device_id, "deploy", fw_version=r.version, fw_manifest=r.manifest,
                      micropython=r.micropython)
        self.result.details["deploy"] = {"copied": list(r.copied), "unchanged": len(r.unchanged),
                                         "removed": list(r.removed)}
        return (f"firmware {r.version}: {len(r.copied)} copied, {len(r.unchanged)} unchanged, "
                f"{len(r.removed)} removed (manifest {r.manifest[:12]})")

    def _step_configure(self, reg: Registry) -> str:
        kind = self.kind
        assert kind is not None
        checkpoint("configure")
        secrets = SecretsStore(self.bench.secrets_dir).load_or_create(self.device_id)
        files = node_files(kind, self.device_id, self.bench.settings, secrets.for_node(),
                           self.bench.firmware_dir)
        link = self.link()
        link.write_file("/config.json", files.config_bytes)
        checkpoint("configure", "config-written")
        link.write_file("/secrets.json", files.secrets_bytes)
        try:  # the firmware itself must accept the files (when it is deployed)
            dev = link.eval("__import__('config').load()['device']")
        except BoardError as e:
            if "ImportError" not in str(e):
                raise BoardError(f"the firmware refuses the config: {e}") from e
            dev = self.device_id
        if dev != self.device_id:
            raise BoardError(f"the board's config names {dev!r}, expected {self.device_id!r}")
        reg.step_done(self.device_id, "configure", config_hash=files.config_hash,
                      key_id=secrets.key_id)
        self.result.details["secrets"] = secrets
        return f"config {files.config_hash[:12]}, key {secrets.key_id}"

    def _step_register(self, reg: Registry) -> str:
        kind, bench = self.kind, self.bench
        assert kind is not None and bench.broker is not None
        checkpoint("register")
        secrets = SecretsStore(bench.secrets_dir).load(self.device_id)
        if secrets is None:
            raise RegistryError(f"no secrets for {self.device_id}: configure it first")
        files = bench.broker
        with locked(bench.secrets_dir):
            set_password(files.passwd, self.device_id, secrets.mqtt_pass)
            devices = {*reg.agent_device_ids(), self.device_id}
            write_acl(files.acl, devices, files.agent_user, bench.settings.topic_prefix)
            how = reload_broker(files)
            checkpoint("register", "files-written")
            reg.add_agent_device(
                self.device_id, kind.role, kind.name,
                mac_key=bytes.fromhex(secrets.key) if bench.require_mac else None,
                password_hash=password_hash(files.passwd, self.device_id) or "")
        reg.step_done(self.device_id, "register", key_id=secrets.key_id)
        return f"broker user and ACL for {self.device_id} ({how})"

    def _step_verify(self, reg: Registry) -> str:
        kind, bench = self.kind, self.bench
        assert kind is not None and bench.monitor is not None
        checkpoint("verify")
        row = reg.by_id(self.device_id)
        assert row is not None
        if not row.fw_version or not row.config_hash:
            raise SettingsError(f"{self.device_id} has no firmware or config on record: "
                                f"deploy and configure first")
        want = Expected(self.device_id, kind.role, row.fw_version, row.config_hash,
                        bench.settings.topic_prefix)
        link = self.link()
        check_board(link, want)
        r = watch_publish(link, bench.monitor, want, bench.verify_timeout)
        reg.step_done(self.device_id, "verify")
        return (f"firmware {r.version}, config ok, status online, a reading of {r.records} "
                f"record(s) in {r.seconds:.1f} s")


def retire_device(bench: Bench, reg: Registry, device_id: str) -> str:
    """Out of service: the agent and the broker forget it; the registry keeps its record."""
    reg.retire(device_id)
    files = bench.broker
    if files is None:
        return "registry only (no broker files given: its broker user stays)"
    with locked(bench.secrets_dir):
        remove_user(files.passwd, device_id)
        write_acl(files.acl, reg.agent_device_ids(), files.agent_user,
                  bench.settings.topic_prefix)
        return reload_broker(files)
