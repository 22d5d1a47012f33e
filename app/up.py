"""`wenzheng up`: broker (unless configured), topics, and every stage as its own
process, supervised — a stage that dies is restarted, Ctrl-C stops them all in
order (stages first, so they finish their batch and commit; the broker last)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from kafka import KafkaConsumer, TopicPartition

from wenzheng.config import LoadedConfig, load
from wenzheng.core.command import UsageError
from wenzheng.core.kafka import consumer as make_consumer
from wenzheng.core.registry import REGISTRY
from wenzheng.core.runtime import Runtime

from .broker import EmbeddedBroker, free_port
from .workers import default_port, load_model

log = logging.getLogger(__name__)


K = TypeVar("K")


def stop_processes(procs: Mapping[K, subprocess.Popen], timeout: float) -> list[K]:
    """SIGTERM every process of ``procs`` (name → Popen) still running, give them ``timeout``
    seconds in all to exit, then SIGKILL the rest; the names of those killed."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed: list[K] = []
    for name, p in procs.items():
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            killed.append(name)
    return killed


class Supervisor:
    def __init__(self, config: LoadedConfig, env: dict[str, str], log_dir: Path | None, ports: dict[str, int]):
        self.config, self.env, self.log_dir, self.ports = config, env, log_dir, ports
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: Counter[str] = Counter()
        self.stopping = False

    def spawn(self, kind: str) -> None:
        cmd = [sys.executable, "-m", "wenzheng.app", "worker", kind, "--port", str(self.ports[kind])]
        if self.config.directory:
            cmd += ["--config", str(self.config.directory)]
        if self.log_dir:  # the worker's log rotates; its raw output (a crash) goes beside it
            cmd[3:3] = ["--log-file", str(self.log_dir / f"{kind}.log")]
        out = open(self.log_dir / f"{kind}.out", "ab") if self.log_dir else None  # noqa: SIM115
        try:
            self.procs[kind] = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        finally:
            if out:
                out.close()  # the child has its own copy
        log.info("started worker", extra={"stage": kind, "pid": self.procs[kind].pid})

    def watch(self) -> None:
        for kind, p in list(self.procs.items()):
            if p.poll() is not None and not self.stopping:
                self.restarts[kind] += 1
                log.warning("worker exited with %s; restarting", p.returncode, extra={"stage": kind})
                time.sleep(min(5, self.restarts[kind]))
                self.spawn(kind)

    def stop(self, timeout: float = 15) -> None:
        self.stopping = True
        for kind in stop_processes(self.procs, timeout):
            log.warning("worker did not stop in time; killed", extra={"stage": kind})


class Summary:
    """Counts what each topic holds, read without a consumer group (no commits, no lag)."""

    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.counts: Counter[str] = Counter()
        self.channels: Counter[str] = Counter()
        self.first_routed_at: float | None = None
        self.c = self._reader()
        self.degraded: dict[str, str] = {}
        """Workers whose /healthz says degraded, with the reason."""
        self.in_offices: set[bytes] = set()  # message ids: a 联合办理 message is in several queues
        self.notes: list[str] = []
        """Lines shown under the figures (the console's address)."""
        self.ledger = None
        try:
            from wenzheng.sinks.cases import Ledger

            self.ledger = Ledger.from_settings(runtime.settings)
        except Exception as exc:  # noqa: BLE001 — the summary must not stop `up`
            log.warning("summary without the case ledger: %s", exc)

    def _reader(self) -> KafkaConsumer:
        c = make_consumer(self.rt.settings, group=None, client_id="wenzheng-summary")
        t = self.rt.topics
        topics = [t.intake, t.classified, t.triage, t.deadletter] + [t.office(o) for o in self.rt.office_queue_ids()]
        c.assign([TopicPartition(tp, p) for tp in topics for p in (c.partitions_for_topic(tp) or [])])
        c.seek_to_beginning()
        return c

    def reopen(self) -> None:
        """After the broker restarted empty: read its new topics from their start (the counts go on)."""
        self.c.close()
        self.c = self._reader()

    def update(self) -> None:
        for tp, recs in self.c.poll(timeout_ms=200, max_records=5000).items():
            self.counts[tp.topic] += len(recs)
            if tp.topic == self.rt.topics.intake:
                self.channels.update(r.key.split(b":", 1)[0].decode() for r in recs if r.key)
            if tp.topic == self.rt.topics.triage or ".office." in tp.topic:
                self.first_routed_at = self.first_routed_at or time.time()
            if ".office." in tp.topic:
                self.in_offices.update(r.key for r in recs)

    def close(self) -> None:
        self.c.close()
        if self.ledger:
            self.ledger.dispose()

    def render(self, started: float) -> str:
        t, c = self.rt.topics, self.counts
        offices = {k: v for k, v in c.items() if ".office." in k}
        routed = len(self.in_offices)
        names = self.rt.offices.offices
        lines = [
            f"wenzheng — {self.rt.settings.city.name} — {time.time() - started:5.0f}s",
            f"  intake {c[t.intake]:6d}   classified {c[t.classified]:6d}   routed to offices {routed:6d}"
            f"   triage {c[t.triage]:5d}   dead letters {c[t.deadletter]:4d}",
            "  by channel: " + ", ".join(f"{k} {v}" for k, v in sorted(self.channels.items())),
        ]
        lines += [f"  DEGRADED {kind}: {reason}" for kind, reason in sorted(self.degraded.items())]
        if self.ledger:
            try:
                held = self.ledger.counts()
                lines.append(f"  cases in the ledger {held['cases']:6d}   messages linked {held['messages']:6d}"
                             f"   (repeats merged {held['messages'] - held['cases']})")
            except Exception:  # noqa: BLE001
                pass
        if self.ledger:
            try:
                latest = self.ledger.latest(5)
            except Exception:  # noqa: BLE001 — the ledger worker may not have made its tables yet
                latest = []
            if latest:
                lines.append("  latest cases (try `wenzheng case show <no>`):")
                lines += [f"    {c['tracking_no']}  {c['status']:8s} {c['office_name'] or ''}  {c['category'] or ''}"
                          for c in latest]
        if self.first_routed_at:
            lines.append(f"  first routed case after {self.first_routed_at - started:.1f}s")
        for topic, n in sorted(offices.items(), key=lambda kv: -kv[1])[:10]:
            oid = topic.rsplit(".office.", 1)[1]
            lines.append(f"  {n:5d}  {names[oid].name if oid in names else oid}  ({topic})")
        return "\n".join([*lines, *self.notes])


def plan_ports(config: LoadedConfig, base: int | None) -> dict[str, int]:
    """Each stage's HTTP port: ``base`` (default ``http.port``) plus its registry offset, or
    with base 0, free ports picked now. A port in use is one line, not a traceback."""
    host = config.settings.http.host
    if base == 0:
        return {spec.name: free_port(host) for spec in REGISTRY.ordered_stages()}
    ports = {spec.name: default_port(config, spec.name, base) for spec in REGISTRY.ordered_stages()}
    for kind, port in ports.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the workers bind: TIME_WAIT is no obstacle
            try:
                s.bind((host, port))
            except OSError:
                raise UsageError(f"port {port} ({kind} worker's HTTP) is in use: "
                                 "give --port BASE, --port 0 for free ports, or set http.port") from None
    return ports


class Up:
    """One ``wenzheng up``: the broker (unless configured), every stage of the registry as a
    supervised process, and with ``--demo`` sample traffic and a live summary."""

    def __init__(self, config: LoadedConfig, *, demo: bool, duration: float | None, rate: float,
                 port: int | None):
        self.started = time.time()
        self.ports = plan_ports(config, port)
        if demo:
            from .demo import demo_config

            config = load(demo_config(config.directory, Path(config.settings.state.dir).expanduser() / "demo-config"))
        if problem := config.settings.privacy.key_problem():  # --demo writes a random one
            raise UsageError(problem)
        self.config, self.demo, self.duration, self.rate = config, demo, duration, rate
        self.state = Path(config.settings.state.dir).expanduser()
        self.state.mkdir(parents=True, exist_ok=True)
        self.stop = threading.Event()
        self.broker: EmbeddedBroker | None = None
        self.sup: Supervisor | None = None
        self.notes: list[str] = []
        """What ``--demo`` says about the console, printed once and kept under the summary."""

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        try:
            runtime = Runtime(self.config, self._bootstrap()).connect()
            load_model(runtime)  # train/cache the baseline once, before the workers start
            self._start_workers(runtime)
            summary = Summary(runtime) if self.demo else None
            if summary:
                summary.notes = self.notes[:1] + [f"  demo accounts: {self.state / 'demo-accounts.txt'}"]
            self._loop(summary)
        finally:
            if self.sup:
                self.sup.stop()
            if self.broker:
                self.broker.stop()
        return 0

    def _bootstrap(self) -> list[str]:
        bootstrap = list(self.config.settings.kafka.bootstrap_servers)
        if not bootstrap:
            self.broker = EmbeddedBroker(log_file=self.state / "broker.log").start()
            bootstrap = [self.broker.bootstrap]
            print(f"embedded broker on {self.broker.bootstrap} (memory only: stopping it loses every topic)",
                  flush=True)
        return bootstrap

    def _start_workers(self, runtime: Runtime) -> None:
        env = dict(os.environ, WENZHENG_BOOTSTRAP_SERVERS=",".join(runtime.bootstrap), PYTHONUNBUFFERED="1")
        log_dir = self.state / "logs" if self.demo else None
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
            print(f"worker logs in {log_dir}/", flush=True)
        self.sup = Supervisor(self.config, env, log_dir, self.ports)
        host = self.config.settings.http.host
        for kind, port in self.ports.items():
            self.sup.spawn(kind)
            print(f"  {kind:10s} http://{host}:{port}/healthz", flush=True)
        if self.demo:
            from .demo import Feeder, demo_accounts

            self.notes = demo_accounts(self.config, self.state, f"http://{host}:{self.ports['ledger']}/console/")
            print("\n".join(self.notes), flush=True)
            feeder = Feeder(self.config.settings, self.ports["ingest"])
            threading.Thread(target=feeder.run, args=(self.stop, self.rate), daemon=True, name="demo-feed").start()

    def _loop(self, summary: Summary | None) -> None:
        last_print, shown = 0.0, dict[str, str]()
        tty = sys.stdout.isatty()
        while not self.stop.is_set():
            if self.duration and time.time() - self.started > self.duration:
                break
            assert self.sup is not None
            self.sup.watch()
            self._watch_broker(summary)
            if summary:
                summary.update()
            if time.time() - last_print >= (2 if tty else 10):
                last_print, degraded = time.time(), self.degraded()
                if summary:
                    summary.degraded = degraded
                    text = summary.render(self.started)
                    print(("\x1b[2J\x1b[H" + text) if tty else text + "\n", flush=True)
                elif degraded != shown:
                    print("\n".join(f"DEGRADED {k}: {v}" for k, v in degraded.items()) or "all workers ok",
                          flush=True)
                shown = degraded
            self.stop.wait(0.5)
        if summary:
            summary.update()
            print(summary.render(self.started), flush=True)
            summary.close()

    def _watch_broker(self, summary: Summary | None) -> None:
        """The embedded broker died: start it again on its port with its cluster id (what it
        held is lost; the workers notice and recreate their topics)."""
        if self.broker is None or self.broker.alive:
            return
        print("embedded broker stopped: starting it again (memory only: every topic it held is lost)", flush=True)
        log.warning("embedded broker died; restarting it")
        self.broker.restart()
        Runtime(self.config, [self.broker.bootstrap]).connect()  # the topics again, before the workers look
        if summary:
            summary.reopen()

    def degraded(self) -> dict[str, str]:
        """The workers whose /healthz answers degraded (or not at all), with the reason."""
        host = self.config.settings.http.host
        out = {}
        for kind, port in self.ports.items():
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=0.5) as r:
                    body = json.loads(r.read())
            except urllib.error.HTTPError as exc:
                body = json.loads(exc.read() or b"{}")
            except (OSError, ValueError):
                body = {"status": "degraded", "reason": "not answering (starting?)"}
            if body.get("status") != "ok":
                out[kind] = str(body.get("reason") or "degraded")
        return out


def run_up(config: LoadedConfig, demo: bool = False, duration: float | None = None, rate: float = 2.0,
           port: int | None = None) -> int:
    return Up(config, demo=demo, duration=duration, rate=rate, port=port).run()
