"""Edge agent figures: durable throughput against a mosquitto bridge, end-to-end latency,
backlog drain, memory, and many devices. Not a test: it prints figures and writes them.

Run: .venv/bin/python bench/edge_agent_bench.py [--runs 3] [--quick] [--no-write]

Every figure is the median of --runs runs (3 by default). Paths measured, all on this
machine, every broker on 127.0.0.1:
- agent:  node simulators -> local mosquitto -> `edge-agent run` (SQLite WAL, fsync per
  group commit, then PUBACK and end-to-end ack) -> upstream mosquitto -> a subscriber;
- bridge: node simulators -> local mosquitto with a bridge to the upstream (persistence
  on, QoS1 out, `cleansession false`) -> upstream mosquitto -> a subscriber.
Both brokers of both paths use the same settings (hil_tests/mosquitto.py: persistence
on, max_queued_messages unlimited; plus max_inflight_messages 1000, gateway.conf's value,
which also sets the bridge's window to the upstream). Node simulators are paho
clients in separate processes, each publishing QoS1 for many devices over one
connection; they do not subscribe to their acks (the bridge sends none either). The
subscriber is a process of its own and counts distinct (device, boot, seq).

Measurements:
1. throughput: --n readings from --devices devices, published as fast as the publishers
   go; time from the first publish to the last reading at the subscriber; agent / bridge.
   Over that window, the CPU time (user + system) of every process of the path per
   reading: publishers and subscriber count their own (os.times), the bench reads the
   brokers' and the agent's from /proc/<pid>/stat, and the machine's idle share and the
   CPU of everything else come from /proc/stat.
2. latency at --rate readings/s for --seconds: each envelope carries its send time in an
   extension key (16, ignored by the agent); p50/p99 of arrival minus send, agent path
   (the bridge's for reference).
3. backlog drain: --drain readings put straight into the store (the agent's own insert
   path, before the agent starts), then the time to forward them all upstream; the
   agent's RSS sampled every 0.5 s meanwhile.
4. many devices: throughput with --many distinct devices (5 readings each by default).

It writes the figures into docs/benchmarks.md between the edge-agent markers.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edge_agent.registry import add_device  # noqa: E402
from edge_agent.store import Store  # noqa: E402
from edge_agent.validate import Reading  # noqa: E402
from hil_tests.mosquitto import Mosquitto  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- edge-agent-bench:begin -->", "<!-- edge-agent-bench:end -->"
BT = 1_763_900_000
EXE = Path(sys.executable).with_name("edge-agent")
# QoS1 messages in flight from a broker to one client (the agent, the bridge's remote end,
# the subscriber), on both brokers of both paths: gateway.conf's setting.
INFLIGHT = 1000


# --- payloads ---

def envelope(dev: str, boot: int, seq: int, sent: float | None = None) -> bytes:
    """A water-level reading as a node sends it (docs/wire-format.md); key 16 (an
    extension the agent ignores) carries the send time for the latency figures."""
    env: dict[int, Any] = {0: 1, 1: dev, 2: boot, 3: seq, 4: "water_level", 5: [
        {-3: BT + seq, 0: "level", 1: "m", 2: 2.31}, {0: "distance", 1: "m", 2: 1.19},
        {0: "rise", 1: "m/s", 2: -0.0004}, {0: "temp", 1: "Cel", 2: 29.5},
        {0: "battery", 1: "V", 2: 3.92}]}
    if sent is not None:
        env[16] = sent
    return cbor2.dumps(env)


def device_names(n: int) -> list[str]:
    return [f"wl-{i:05d}" for i in range(n)]


# --- CPU accounting ---

TICK = os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds (user + system, all threads, waited-for children) of this process."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def proc_cpu(pid: int) -> float:
    """CPU seconds of another process: utime + stime + cutime + cstime of /proc/<pid>/stat
    (fields 14-17; the text after the last ')' starts at field 3)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from the first line of /proc/stat;
    idle and iowait are the idle part."""
    vals = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(vals) - vals[3] - vals[4], sum(vals)


# --- processes: publishers and the subscriber ---

def publisher(port: int, idx: int, devices: list[str], per_device: int, rate: float,
              start_at: float, out: Any) -> None:
    """Publish per_device readings for each device, interleaved, QoS1, at `rate`/s in
    total (0: as fast as paho goes); report when the last PUBACK is in, and the CPU
    used from the start to then."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{idx}",
                    clean_session=True)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = own_cpu()
    t0 = time.monotonic()
    info = None
    i = 0
    for seq in range(1, per_device + 1):
        for dev in devices:
            info = c.publish(f"nodes/{dev}/up", envelope(dev, 1, seq, time.time()), qos=1)
            i += 1
            if rate:
                ahead = i / rate - (time.monotonic() - t0)
                if ahead > 0.002:
                    time.sleep(ahead)
            elif i % 200 == 0:
                while len(c._out_messages) > 5000:  # noqa: SLF001 (paho's queue length)
                    time.sleep(0.001)
    if info is not None:
        info.wait_for_publish(120)
    out.put(("published", idx, time.time(), own_cpu() - cpu0))
    c.disconnect()
    c.loop_stop()


def subscriber(port: int, expected: int, ready: Any, out: Any, timeout: float) -> None:
    """Count distinct readings at the upstream; report first/last arrival, latencies and the
    CPU used while waiting for them."""
    seen: set[tuple[str, int, int]] = set()
    lat: list[float] = []
    first = [0.0]
    done = threading.Event()

    def on_message(cl: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        now = time.time()
        env = cbor2.loads(m.payload)
        key = (env[1], env[2], env[3])
        if key in seen:
            return
        if not seen:
            first[0] = now
        seen.add(key)
        if 16 in env:
            lat.append(now - env[16])
        if len(seen) >= expected:
            done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ioc", clean_session=True)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("nodes/+/up", 1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    cpu0 = own_cpu()
    done.wait(timeout)
    out.put(("received", len(seen), first[0], time.time(), lat, own_cpu() - cpu0))
    c.disconnect()
    c.loop_stop()


# --- the paths ---

def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Setup:
    """One run of one path: brokers, and the agent when there is one."""

    kind: str  # "agent" or "bridge"
    work: Path
    devices: list[str]
    local: Mosquitto | None = None
    upstream: Mosquitto | None = None
    agent: subprocess.Popen[bytes] | None = None
    rss: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.upstream = Mosquitto(self.work / "upstream", extra=broker_extra()).start()
        extra = broker_extra()
        if self.kind == "bridge":
            extra += (f"connection bench-bridge\naddress 127.0.0.1:{self.upstream.port}\n"
                     "topic nodes/+/up out 1\ncleansession false\n"
                     "bridge_protocol_version mqttv311\nlocal_clientid bench-bridge-local\n"
                     "remote_clientid bench-bridge\n")
        self.local = Mosquitto(self.work / "local", extra=extra).start()
        if self.kind == "agent":
            data = self.work / "data"
            data.mkdir(parents=True, exist_ok=True)
            register(data / "agent.db", self.devices)
            conf = self.work / "agent.toml"
            conf.write_text(f'data_dir = "{data}"\nlog_level = "info"\n'
                            f'[local]\nurl = "{self.local.url}"\n'
                            f'[upstream]\nurl = "{self.upstream.url}"\n')
            self.log = open(self.work / "agent.log", "ab")  # noqa: SIM115
            self.agent = subprocess.Popen([str(EXE), "run", "--config", str(conf)],
                                          stdout=self.log, stderr=subprocess.STDOUT)
            self.sampler = threading.Thread(target=self._sample, daemon=True)
            self.sampler.start()
        else:
            time.sleep(1.0)  # the bridge connects

    def _sample(self) -> None:
        assert self.agent is not None
        while self.agent.poll() is None:
            self.rss.append(rss_kb(self.agent.pid))
            time.sleep(0.5)

    def wait_ready(self) -> None:
        """The agent's subscription must exist before anything is published (its first
        run has no broker session to queue into)."""
        if self.agent is None:
            return
        log = self.work / "agent.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "subscribed to" in log.read_text():
                return
            if self.agent.poll() is not None:
                raise RuntimeError(f"agent exited: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("the agent did not subscribe")

    def stop(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(30)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
            self.log.close()
        for b in (self.local, self.upstream):
            if b is not None:
                b.stop()


def broker_extra() -> str:
    """Lines appended to both brokers' configs (the later line wins in mosquitto)."""
    return f"max_inflight_messages {INFLIGHT}\n"


def register(db: Path, devices: list[str]) -> None:
    """What provisioning does, without an fsync per device (this is only a bench)."""
    store = Store(db)
    try:
        store.conn.execute("PRAGMA synchronous=OFF")
        for d in devices:
            add_device(store.conn, d, "water_level", board="bench")
    finally:
        store.close()


@dataclass
class Run:
    count: int
    seconds: float
    rate: float
    lat_p50: float | None = None
    lat_p99: float | None = None
    rss_max_mb: float | None = None
    rss_median_mb: float | None = None
    load: float = 0.0
    # CPU microseconds per reading over the timed window, per component of the path (keys
    # of COMPONENTS, "agent" only on the agent path), and of everything else on the machine.
    cpu: dict[str, float] = field(default_factory=dict)
    other_us: float | None = None
    idle: float | None = None  # the machine's idle share (idle + iowait) over the window

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu.values())


COMPONENTS = [("publishers", "publisher processes"), ("local", "local mosquitto"),
              ("agent", "edge agent"), ("upstream", "upstream mosquitto"),
              ("subscriber", "subscriber")]


def stream_run(kind: str, devices: list[str], per_device: int, publishers: int,
               rate: float = 0.0) -> Run:
    """One run: start the path, the subscriber and the publishers; time it."""
    ctx = mp.get_context("fork")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
        path = Setup(kind, Path(tmp), devices)
        expected = len(devices) * per_device
        out = ctx.Queue()
        ready = ctx.Event()
        try:
            path.start()
            path.wait_ready()
            assert path.upstream is not None and path.local is not None
            timeout = 60 + expected / 200
            sub = ctx.Process(target=subscriber,
                              args=(path.upstream.port, expected, ready, out, timeout))
            sub.start()
            if not ready.wait(30):
                raise RuntimeError("subscriber did not subscribe")
            t_start = time.time() + 0.5
            pubs = []
            for i in range(publishers):
                p = ctx.Process(target=publisher, args=(
                    path.local.port, i, devices[i::publishers], per_device, rate / publishers,
                    t_start, out))
                p.start()
                pubs.append(p)
            # The window: from the first publish to the subscriber's report.
            assert path.local.proc is not None and path.upstream.proc is not None
            pids = {"local": path.local.proc.pid, "upstream": path.upstream.proc.pid}
            if path.agent is not None:
                pids["agent"] = path.agent.pid
            time.sleep(max(0.0, t_start - time.time()))
            cpu0 = {k: proc_cpu(pid) for k, pid in pids.items()}
            m0 = machine_ticks()
            received = None
            pub_cpu: list[float] = []
            while received is None or len(pub_cpu) < publishers:
                msg = out.get(timeout=timeout + 30)
                if msg[0] == "received":
                    received = msg
                    cpu1 = {k: proc_cpu(pid) for k, pid in pids.items()}
                    m1 = machine_ticks()
                else:
                    pub_cpu.append(msg[3])
            for p in pubs:
                p.join(30)
            sub.join(30)
            _, count, first, last, lat, sub_cpu = received
            if count < expected:
                raise RuntimeError(f"{kind}: only {count} of {expected} arrived")
            seconds = last - t_start
            r = Run(count, seconds, count / seconds, load=load)
            secs = {k: cpu1[k] - cpu0[k] for k in pids}
            secs["publishers"], secs["subscriber"] = sum(pub_cpu), sub_cpu
            r.cpu = {k: secs[k] * 1e6 / count for k, _ in COMPONENTS if k in secs}
            busy, total = m1[0] - m0[0], m1[1] - m0[1]
            r.idle = 1 - busy / total if total else None
            r.other_us = busy / TICK * 1e6 / count - r.cpu_total
            if lat:
                q = statistics.quantiles(lat, n=100)
                r.lat_p50, r.lat_p99 = q[49] * 1000, q[98] * 1000
            if path.rss:
                r.rss_max_mb = max(path.rss) / 1024
                r.rss_median_mb = statistics.median(path.rss) / 1024
            return r
        finally:
            path.stop()


def prefill(db: Path, devices: list[str], per_device: int) -> float:
    """Readings put in the store through the agent's own insert path, 10,000 a commit."""
    register(db, devices)
    store = Store(db)
    t0 = time.monotonic()
    try:
        batch: list[Any] = []
        for seq in range(1, per_device + 1):
            for dev in devices:
                batch.append(Reading(dev, 1, seq, "water_level", False, envelope(dev, 1, seq)))
                if len(batch) == 10_000:
                    store.insert_batch(batch)
                    batch = []
        if batch:
            store.insert_batch(batch)
    finally:
        store.close()
    return time.monotonic() - t0


def drain_run(template: Path, devices: list[str], total: int) -> Run:
    """Start the agent on a copy of the prefilled store, with the upstream up; time until
    every reading is at the subscriber."""
    ctx = mp.get_context("fork")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as tmp:
        work = Path(tmp)
        path = Setup("agent", work, devices)
        out = ctx.Queue()
        ready = ctx.Event()
        try:
            path.upstream = Mosquitto(work / "upstream", extra=broker_extra()).start()
            path.local = Mosquitto(work / "local", extra=broker_extra()).start()
            timeout = 120 + total / 500
            sub = ctx.Process(target=subscriber,
                              args=(path.upstream.port, total, ready, out, timeout))
            sub.start()
            if not ready.wait(30):
                raise RuntimeError("subscriber did not subscribe")
            data = work / "data"
            data.mkdir()
            shutil.copy(template, data / "agent.db")
            conf = work / "agent.toml"
            conf.write_text(f'data_dir = "{data}"\nlog_level = "info"\n'
                            f'[local]\nurl = "{path.local.url}"\n'
                            f'[upstream]\nurl = "{path.upstream.url}"\n')
            path.log = open(work / "agent.log", "ab")  # noqa: SIM115
            t0 = time.time()
            path.agent = subprocess.Popen([str(EXE), "run", "--config", str(conf)],
                                          stdout=path.log, stderr=subprocess.STDOUT)
            sampler = threading.Thread(target=path._sample, daemon=True)  # noqa: SLF001
            sampler.start()
            _, count, first, last, _, _ = out.get(timeout=timeout + 30)
            sub.join(30)
            if count < total:
                raise RuntimeError(f"drain: only {count} of {total} arrived")
            seconds = last - t0
            r = Run(count, seconds, count / seconds, load=load)
            r.rss_max_mb = max(path.rss) / 1024
            r.rss_median_mb = statistics.median(path.rss) / 1024
            return r
        finally:
            path.stop()


# --- figures ---

def med(runs: list[Run], get: Callable[[Run], float | None]) -> float:
    vals = [v for v in (get(r) for r in runs) if v is not None]
    return statistics.median(vals) if vals else float("nan")


def spread(runs: list[Run], get: Callable[[Run], float | None], fmt: str) -> str:
    vals = [v for v in (get(r) for r in runs) if v is not None]
    return ", ".join(format(v, fmt) for v in vals)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    mosq_v = mosq.splitlines()[0] if mosq else "mosquitto"
    sqlite = __import__("sqlite3").sqlite_version
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"CPython {platform.python_version()}, SQLite {sqlite}, {mosq_v}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--n", type=int, default=50_000, help="readings per throughput run")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--publishers", type=int, default=2, help="publisher processes")
    ap.add_argument("--rate", type=float, default=1000.0, help="latency run: readings/s")
    ap.add_argument("--seconds", type=float, default=20.0, help="latency run: duration")
    ap.add_argument("--drain", type=int, default=1_000_000, help="readings in the backlog")
    ap.add_argument("--many", type=int, default=10_000, help="devices in the many-device run")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--only", nargs="+", choices=["throughput", "latency", "drain", "many"])
    args = ap.parse_args()
    if args.quick:
        args.n, args.devices, args.seconds, args.drain, args.many = 5000, 50, 5, 20_000, 1000
    if not EXE.exists():
        print(f"edge_agent_bench: {EXE} missing (pip install -e .)", file=sys.stderr)
        return 2
    todo = set(args.only or ["throughput", "latency", "drain", "many"])
    started = datetime.datetime.now().astimezone()
    results: dict[str, Any] = {}
    print(f"machine: {machine()}\nload average at start: {os.getloadavg()}", flush=True)

    if "throughput" in todo:
        # Agent and bridge alternate, so each pair of runs meets the same load from other
        # jobs on this machine; the ratio is taken per pair.
        devs = device_names(args.devices)
        per = max(1, args.n // args.devices)
        results["throughput_agent"], results["throughput_bridge"] = [], []
        for i in range(args.runs):
            for kind in ("agent", "bridge"):
                r = stream_run(kind, devs, per, args.publishers)
                print(f"throughput {kind} run {i + 1}: {r.count} in {r.seconds:.2f} s = "
                      f"{r.rate:.0f}/s (load {r.load:.1f})"
                      + (f", agent RSS max {r.rss_max_mb:.0f} MB" if r.rss_max_mb else ""),
                      flush=True)
                print("  CPU us/reading: " + ", ".join(
                    f"{k} {v:.1f}" for k, v in r.cpu.items()) + f"; total {r.cpu_total:.1f}; "
                    f"everything else {r.other_us:.1f}; machine idle {r.idle:.0%}", flush=True)
                results[f"throughput_{kind}"].append(r)

    if "latency" in todo:
        devs = device_names(args.devices)
        per = max(1, int(args.rate * args.seconds / args.devices))
        for kind in ("agent", "bridge"):
            runs = []
            for i in range(args.runs):
                r = stream_run(kind, devs, per, args.publishers, rate=args.rate)
                print(f"latency {kind} run {i + 1}: {r.count} at {args.rate:.0f}/s: "
                      f"p50 {r.lat_p50:.1f} ms, p99 {r.lat_p99:.1f} ms (load {r.load:.1f})",
                      flush=True)
                runs.append(r)
            results[f"latency_{kind}"] = runs

    if "drain" in todo:
        devs = device_names(1000)
        per = max(1, args.drain // 1000)
        with tempfile.TemporaryDirectory(prefix="bench-prefill-") as tmp:
            template = Path(tmp) / "agent.db"
            secs = prefill(template, devs, per)
            size = template.stat().st_size / 2**20
            print(f"prefill: {len(devs) * per} readings in {secs:.1f} s, store {size:.0f} MB",
                  flush=True)
            runs = []
            for i in range(args.runs):
                r = drain_run(template, devs, len(devs) * per)
                print(f"drain run {i + 1}: {r.count} in {r.seconds:.1f} s = {r.rate:.0f}/s, "
                      f"agent RSS median {r.rss_median_mb:.0f} MB, max {r.rss_max_mb:.0f} MB "
                      f"(load {r.load:.1f})", flush=True)
                runs.append(r)
            results["drain"] = runs
            results["drain_store_mb"] = size

    if "many" in todo:
        devs = device_names(args.many)
        per = 5
        runs = []
        for i in range(args.runs):
            r = stream_run("agent", devs, per, args.publishers)
            print(f"many devices run {i + 1}: {len(devs)} devices, {r.count} in "
                  f"{r.seconds:.2f} s = {r.rate:.0f}/s (load {r.load:.1f})", flush=True)
            runs.append(r)
        results["many"] = runs

    text = report(results, args, started)
    print("\n" + text)
    if not args.no_write and not args.quick:
        write_doc(text)
        print(f"written to {DOC.relative_to(ROOT)}")
    return 0


def report(res: dict[str, Any], args: argparse.Namespace, started: datetime.datetime) -> str:
    lines = [
        "## Edge agent",
        "",
        f"Measured {started:%Y-%m-%d %H:%M %Z} by `bench/edge_agent_bench.py` "
        f"(--runs {args.runs}), medians of {args.runs} runs; the individual runs are in "
        "brackets.",
        "",
        f"Machine: {machine()}. The machine was shared with other jobs while this ran "
        "(several helpers building and testing at once; the load average at the start of "
        "each run is in the bench's output), and every process of a path (publishers, "
        "both brokers, the agent, the subscriber) ran on the same 2 cores: the figures are "
        "what this box gave, not the agent's ceiling on a quiet gateway.",
        "",
        "| figure | value | runs | setup |",
        "|---|---|---|---|",
    ]
    if "throughput_agent" in res:
        a, b = res["throughput_agent"], res["throughput_bridge"]
        ra, rb = med(a, lambda r: r.rate), med(b, lambda r: r.rate)
        pairs = [x.rate / y.rate for x, y in zip(a, b, strict=True)]
        loads = ", ".join(f"{x.load:.1f}/{y.load:.1f}" for x, y in zip(a, b, strict=True))
        lines += [
            f"| durable throughput, agent | {ra:,.0f} readings/s | "
            f"{spread(a, lambda r: r.rate, ',.0f')} | {a[0].count:,} readings from "
            f"{args.devices} devices, {args.publishers} publisher processes, QoS1 |",
            f"| same stream, mosquitto bridge | {rb:,.0f} readings/s | "
            f"{spread(b, lambda r: r.rate, ',.0f')} | persistence on (saved every 30 min by "
            "default), QoS1 out |",
            f"| agent / bridge | {statistics.median(pairs):.2f} (median of the runs' ratios) | "
            f"{', '.join(f'{x:.2f}' for x in pairs)} | "
            "agent and bridge runs alternate, each ratio is one pair; load average at the "
            f"start of each (agent/bridge): {loads}. The agent commits with fsync before "
            "each ack; the bridge acks from memory |",
            f"| agent RSS during the throughput runs | {med(a, lambda r: r.rss_max_mb):.0f} MB "
            f"max | {spread(a, lambda r: r.rss_max_mb, '.0f')} | |",
        ]
    if "latency_agent" in res:
        a, b = res["latency_agent"], res["latency_bridge"]
        lines += [
            f"| end-to-end latency at {args.rate:,.0f}/s, agent | p50 "
            f"{med(a, lambda r: r.lat_p50):.1f} ms, p99 {med(a, lambda r: r.lat_p99):.1f} ms | "
            f"p50 {spread(a, lambda r: r.lat_p50, '.1f')}; p99 "
            f"{spread(a, lambda r: r.lat_p99, '.1f')} | {args.seconds:.0f} s, node publish to "
            "upstream subscriber; the agent commits as soon as the broker has nothing more to "
            "send (at most 500 messages or 0.1 s) |",
            f"| same, mosquitto bridge | p50 {med(b, lambda r: r.lat_p50):.1f} ms, p99 "
            f"{med(b, lambda r: r.lat_p99):.1f} ms | p50 {spread(b, lambda r: r.lat_p50, '.1f')};"
            f" p99 {spread(b, lambda r: r.lat_p99, '.1f')} | |",
        ]
    if "drain" in res:
        d = res["drain"]
        lines += [
            f"| backlog drain | {med(d, lambda r: r.rate):,.0f} readings/s "
            f"({d[0].count:,} in {med(d, lambda r: r.seconds):.0f} s) | "
            f"{spread(d, lambda r: r.rate, ',.0f')} | {d[0].count:,} readings of 1,000 devices "
            f"in the store ({res['drain_store_mb']:.0f} MB), agent started with the upstream "
            "up; time from the start to the last reading upstream |",
            f"| agent RSS while draining | median {med(d, lambda r: r.rss_median_mb):.0f} MB, "
            f"max {med(d, lambda r: r.rss_max_mb):.0f} MB | max "
            f"{spread(d, lambda r: r.rss_max_mb, '.0f')} | sampled every 0.5 s |",
        ]
    if "many" in res:
        m = res["many"]
        lines += [
            f"| throughput with {args.many:,} devices | {med(m, lambda r: r.rate):,.0f} "
            f"readings/s | {spread(m, lambda r: r.rate, ',.0f')} | {m[0].count:,} readings, "
            f"5 per device, all {args.many:,} in the registry |",
        ]
    if "throughput_agent" in res:
        lines += cpu_table(res["throughput_agent"], res["throughput_bridge"], args)
    lines += [
        "",
        "Paths: node simulators (paho, one connection per process, many devices each) -> "
        "local mosquitto 2.0.11 -> `edge-agent run` (SQLite WAL, synchronous=FULL, one fsync "
        "per group commit, then PUBACK and end-to-end ack; forwarding QoS1, 1,000 in flight, "
        "rows deleted on PUBACK) -> upstream mosquitto -> one subscriber process counting "
        "distinct (device, boot, seq). The bridge path replaces the agent by a mosquitto "
        "bridge on the local broker (`topic nodes/+/up out 1`, `cleansession false`). Both "
        "brokers: persistence on, max_inflight_messages 1000 (the shipped gateway.conf; it "
        "is also the bridge's window), max_queued_messages unlimited.",
    ]
    return "\n".join(lines)


def component(key: str) -> Callable[[Run], float | None]:
    return lambda r: r.cpu.get(key)


def cpu_table(a: list[Run], b: list[Run], args: argparse.Namespace) -> list[str]:
    """CPU microseconds per reading of each process of each path over the throughput runs'
    timed windows, and what the totals predict for agent / bridge on a CPU-bound box."""

    def cell(runs: list[Run], get: Callable[[Run], float | None], fmt: str = ".1f") -> str:
        if all(get(r) is None for r in runs):
            return "-"
        return f"{format(med(runs, get), fmt)} ({spread(runs, get, fmt)})"

    lines = [
        "",
        "CPU per reading in the throughput runs above: CPU time (user + system) of each "
        "process of the path from the first publish to the last reading at the subscriber, "
        "divided by the readings; medians, the runs in brackets. Publishers and subscriber "
        "count their own (`os.times`), the brokers' and the agent's are read from "
        "`/proc/<pid>/stat`, the machine's from `/proc/stat` (2 cores: at most 2 s of CPU "
        "per second).",
        "",
        "| CPU per reading (us) | agent path | bridge path |",
        "|---|---|---|",
    ]
    for key, name in COMPONENTS:
        if key == "publishers":
            name = f"{args.publishers} {name}"
        if key == "local":
            name += " (with the bridge, on the bridge path)"
        get = component(key)
        lines.append(f"| {name} | {cell(a, get)} | {cell(b, get)} |")
    lines += [
        f"| **total of the path** | **{cell(a, lambda r: r.cpu_total)}** | "
        f"**{cell(b, lambda r: r.cpu_total)}** |",
        f"| everything else on the machine (its busy CPU minus the path's: other jobs, "
        "the bench itself, kernel work charged to no process) | "
        f"{cell(a, lambda r: r.other_us)} | {cell(b, lambda r: r.other_us)} |",
        f"| machine idle share during the window | {cell(a, lambda r: r.idle, '.0%')} | "
        f"{cell(b, lambda r: r.idle, '.0%')} |",
    ]
    ta, tb = med(a, lambda r: r.cpu_total), med(b, lambda r: r.cpu_total)
    ea, eb = (med(x, lambda r: r.cpu_total + (r.other_us or 0.0)) for x in (a, b))
    pairs = [x.rate / y.rate for x, y in zip(a, b, strict=True)]
    lines += [
        "",
        f"On a CPU-bound box each reading costs its path's total, so agent / bridge would be "
        f"bridge total / agent total = {tb:.0f} / {ta:.0f} = {tb / ta:.2f}; counting "
        f"everything else the box ran in the same windows too (median of total + else), "
        f"{eb:.0f} / {ea:.0f} = {eb / ea:.2f}; measured {statistics.median(pairs):.2f} "
        "(median of the pairs' ratios). An idle share near 0 means the box was saturated.",
    ]
    return lines


def write_doc(text: str) -> None:
    block = f"{BEGIN}\n{text}\n{END}"
    if DOC.exists():
        doc = DOC.read_text()
        if BEGIN in doc and END in doc:
            doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
        else:
            doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    else:
        doc = "# Benchmarks\n\nFigures written by the scripts in `bench/`.\n\n" + block + "\n"
    DOC.write_text(doc)


if __name__ == "__main__":
    sys.exit(main())
