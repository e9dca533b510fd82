"""Provisioning killed (SIGKILL) at every step, and inside steps, then run again, ends in the
registry state of a run that was never interrupted, with a board that works.

One virtual board and one broker for the module. The uninterrupted run and each
interrupted one use their own registry and secrets directory, so every run
starts from a board nobody has provisioned; the board (its MAC, so its device
id) is the same. Compared: every column of both registry tables except times
and what derives from a random secret (key id, salted password hash), which
are checked for consistency with the secrets instead.
"""

from __future__ import annotations

import json
import os
import select
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from provision_env import ProvisionEnv, have_vm, wait_for

from provisioning.checkpoint import POINTS
from provisioning.mosquitto_auth import check_password
from provisioning.registry import STEPS
from provisioning.secrets_store import key_id

pytestmark = pytest.mark.slow
KIND = "water-level-devkitc"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    if not have_vm():
        pytest.skip("MicroPython unix VM not installed")
    with ProvisionEnv(tmp_path_factory.mktemp("resume")) as env:
        vb = env.board(KIND)
        yield env, vb


def run_env(env: ProvisionEnv, name: str) -> dict[str, str]:
    """Environment for a run with its own registry and secrets."""
    return {"NODECTL_REGISTRY": str(env.root / name / "agent.db"),
            "NODECTL_SECRETS": str(env.root / name / "secrets")}


def args(vb) -> list[str]:
    return ["provision", "--port", f"vboard:{vb.dir}", "--board", KIND, "--link", "wifi",
            "--verify-timeout", "40"]


def state_of(env: ProvisionEnv, name: str, *, volatile: bool = False) -> dict:
    saved = env.registry
    env.registry = env.root / name / "agent.db"
    try:
        return env.registry_state(volatile=volatile)
    finally:
        env.registry = saved


@pytest.fixture(scope="module")
def baseline(bench):
    env, vb = bench
    r = env.nodectl(*args(vb), **run_env(env, "uninterrupted"))
    assert r.returncode == 0, r.stdout + r.stderr
    state = state_of(env, "uninterrupted")
    assert state["provisioning"][0]["steps"] == "flash,deploy,configure,register,verify"
    return state


def kill_at(env: ProvisionEnv, vb, point: str, name: str) -> None:
    proc = env.popen(*args(vb), NODECTL_TEST_PAUSE_AT=point, **run_env(env, name))
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 60
    try:
        while f"test pause at {point}" not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"nodectl never reached {point}: {seen[-500:]}"
            ready, _, _ = select.select([proc.stderr], [], [], left)
            chunk = os.read(proc.stderr.fileno(), 4096).decode() if ready else ""
            assert chunk or proc.poll() is None, f"nodectl ended before {point}: {seen[-500:]}"
            seen += chunk
    finally:
        proc.kill()  # SIGKILL: no cleanup, exactly like a pulled laptop cable
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def connects(port: int, user: str, password: str) -> bool:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-resume-check")
    c.username_pw_set(user, password)
    result: list[int] = []
    c.on_connect = lambda cl, u, f, rc, p: result.append(rc.value)
    c.connect("127.0.0.1", port)
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        c.loop(0.05)
    c.disconnect()
    return result == [0]


@pytest.mark.parametrize("point", POINTS)
def test_killed_then_rerun_ends_as_an_uninterrupted_run(bench, baseline, point):
    env, vb = bench
    name = f"killed-at-{point.replace(':', '-')}"
    kill_at(env, vb, point, name)
    interrupted = state_of(env, name)
    if interrupted:  # stopped part-way: the step it was in is not recorded as done
        assert point.split(":")[0] not in interrupted["provisioning"][0]["steps"].split(",")

    again = env.nodectl("--json", *args(vb), **run_env(env, name))
    assert again.returncode == 0, again.stdout + again.stderr
    step = point.split(":")[0]
    assert json.loads(again.stdout)[0]["ran"] == list(STEPS[STEPS.index(step):])  # from there
    assert state_of(env, name) == baseline

    # what the comparison leaves out must agree with the secrets this run made
    full = state_of(env, name, volatile=True)
    row, agent = full["provisioning"][0], full["devices"][0]
    dev = row["device_id"]
    held = json.loads((env.root / name / "secrets" / f"{dev}.json").read_text())
    on_board = json.loads((vb.dir / "secrets.json").read_text())
    assert (on_board["mqtt_pass"], on_board["key"]) == (held["mqtt_pass"], held["key"])
    assert row["key_id"] == key_id(held["key"])
    assert check_password(held["mqtt_pass"], agent["password_hash"])
    assert wait_for(lambda: connects(env.broker.port, dev, held["mqtt_pass"]), 10,
                    "the broker to take the node's password")
