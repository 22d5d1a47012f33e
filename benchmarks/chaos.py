"""Chaos under load: four channels, every stage on two machines, random SIGKILLs, then a
broker restart. Every message id is checked end to end.

    python -m benchmarks chaos [--messages 100000] [--kills 100] [--rate 100] [--restart-messages N]

**Set-up.** One embedded broker. PostgreSQL (``WENZHENG_BENCH_POSTGRES_URL``, default the
test database) holds, in a schema made for the run and dropped after it, the delivery
journal every worker shares (``state.url``) and the case ledger (``ledger.url``). Two
"machines", A and B, each with its own configuration directory and ``state.dir``
(checkpoints, spool) and its own ``wenzheng worker`` process per stage: ingest, classify,
route and ledger twice, eight processes. Upstream are the fakes, real HTTP servers on
127.0.0.1.

**Who owns which upstream**, as it would be deployed:

* 12345 files: each machine has its own drop folder and the call centre's files are split
  between them. A drop folder is a local disk; one shared by two hosts needs a network
  filesystem, and a folder has nothing to fail over to anyway.
* WeChat pushes go to A or B in turn, as a load balancer sends them; a push that fails
  (that machine's ingest is down) is sent to the other, as WeChat retries. So one message
  may sit in both spools; the shared journal publishes it once.
* Weibo accounts and the web-form backend are polled by both machines, each from its own
  checkpoint: two pollers of one upstream are how polling survives a machine. Both read
  the same items; the shared journal de-duplicates by message id. Two publishers that
  look an id up in the same instant both send it (the journal has no lease on a pending
  id), so ``wz.intake`` may hold an item twice; classify's journal drops the second. Those
  are counted apart (``intake_duplicates``); everything after intake must be exactly once.

**Phase 1.** Feeders send ``--messages`` at ``--rate`` a second (40 % hotline, 20 % each
WeChat, Weibo, web form) while a driver SIGKILLs a random worker ``--kills`` times at
random moments and restarts it at once. A fault's recovery time runs from the SIGKILL to
the replacement's first output (a connector's published count or a stage's committed
records, from its /metrics or /healthz). Once the ledger stops moving, every id is looked
for on intake, classified, routed, in each office queue its routing names (or triage) and
in the ledger: ``lost`` are the ids missing anywhere from routed on, ``doubled`` the
(queue or topic, id) pairs held more than once after intake, and the ledger must link
exactly the messages sent.

**Phase 2.** ``--restart-messages`` more, sent over at least ``PHASE_TWO_S`` seconds
(slower than ``--rate`` if need be), and halfway through the embedded broker is
restarted (``EmbeddedBroker.restart``, as ``up`` does; memory storage, so it comes back
empty). What was only in the broker — records acknowledged to a stage's publisher but
consumed by nobody yet — is lost; each such loss is classified by the last topic it
reached and counted as what a durable Kafka would have kept when the journal shows the
broker had acknowledged it. "Before" and "after" the restart are split at the moment
the old broker process is gone: on SIGTERM Tansu takes ~5 s to exit and acknowledges
writes until then, so a file published in those seconds is lost with the broker
(measured: 5 hotline files, counted wrongly as "after" while the split was the
SIGTERM). What had not reached the broker (unread files, spooled
pushes, upstream items past the pollers' cursors) must arrive; every message sent after
the restart must arrive exactly once. Recovery: from the restart to each stage's first
output again.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson
import sqlalchemy as sa
import yaml
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from benchmarks import PRIVACY
from wenzheng.app.broker import EmbeddedBroker, free_port
from wenzheng.app.demo import to_call
from wenzheng.app.up import stop_processes
from wenzheng.classify.model import Classifier, corpus_files, read_labelled
from wenzheng.config import DEFAULT_DIR, load
from wenzheng.core import envelope
from wenzheng.core.runtime import Runtime
from wenzheng.ingest.fakes.webform import FakeWebForm
from wenzheng.ingest.fakes.wechat import PushClient, text_xml
from wenzheng.ingest.fakes.weibo import FakeWeibo

PG_URL = os.environ.get("WENZHENG_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MACHINES, STAGES = ("a", "b"), ("ingest", "classify", "route", "ledger")
SHARES = {"hotline": 0.4, "wechat": 0.2, "weibo": 0.2, "webform": 0.2}
APPID, TOKEN, AES = "wxchaos000000001", "chaostoken", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
WEIBO_ACCOUNTS = 4
KEY = PRIVACY["pseudonym_key"].encode()


def expected_id(channel: str, source_id: str) -> str:
    """The id wenzheng gives an item, through the code's own function (the format is not ours to assume)."""
    return envelope.message_id(channel, source_id, KEY)


class SortedWebForm(FakeWebForm):
    """The fake web-form backend answering by bisection: items are added in (updated_at, id)
    order, and the fake's sort of every item at every request would cost more CPU than
    the machines under test at 20,000 items."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.keys: list[tuple[datetime, int]] = []
        self.rows: list[dict] = []

    def add(self, n: int, per_second: int = 1, at: str | None = None) -> list[int]:
        ids = super().add(n, per_second, at)
        with self._lock:
            for sid in ids:
                self.rows.append(self.items[sid])
                self.keys.append(self._key(self.items[sid]))
        return ids

    def _page(self, q: dict) -> tuple[int, dict]:
        limit, after = self.cursor(q)
        if isinstance(after, dict):
            return limit, after
        start = bisect_right(self.keys, after) if after is not None else 0
        page = self.rows[start : start + limit]
        return 200, {"items": [dict(r) for r in page], "has_more": start + limit < len(self.rows)}


# --- the two machines ----------------------------------------------------------------


@dataclass
class Setup:
    root: Path
    broker: EmbeddedBroker
    db_url: str
    model: Path
    weibo: FakeWeibo
    webform: SortedWebForm
    uids: list[str] = field(default_factory=lambda: [str(3_100_000_000 + i) for i in range(WEIBO_ACCOUNTS)])
    ports: dict[tuple[str, str], int] = field(default_factory=dict)

    def config(self, machine: str) -> Path:
        return self.root / machine / "config"

    def drop(self, machine: str) -> Path:
        return self.root / machine / "drop"

    def write(self, machine: str) -> Path:
        cfg = self.config(machine)
        cfg.mkdir(parents=True)
        for f in DEFAULT_DIR.glob("*.yaml"):
            shutil.copy(f, cfg / f.name)
        runtime = yaml.safe_load((cfg / "runtime.yaml").read_text(encoding="utf-8"))
        runtime.update(kafka={**runtime["kafka"], "bootstrap_servers": [self.broker.bootstrap]},
                       http={**runtime.get("http", {}), "host": "127.0.0.1", "port": self.ports[(machine, "ingest")]},
                       state={"dir": str(self.root / machine / "state"), "url": self.db_url},
                       ledger={"url": self.db_url}, classifier={"model_dir": str(self.model)}, privacy=PRIVACY)
        (cfg / "runtime.yaml").write_text(yaml.safe_dump(runtime, allow_unicode=True), encoding="utf-8")
        channels = {"channels": {
            "hotline": {"enabled": True, "drop_dir": str(self.drop(machine)), "poll_seconds": 1, "settle_seconds": 0.2},
            "wechat": {"enabled": True, "accounts": {"gz": {"appid": APPID, "token": TOKEN, "encoding_aes_key": AES}}},
            "weibo": {"enabled": True, "api_base": self.weibo.url, "poll_seconds": 1, "max_pages": 5,
                      "accounts": {f"wb{i}": {"uid": u, "cookie": self.weibo.cookie(u)} for i, u in enumerate(self.uids)}},
            "webform": {"enabled": True, "base_url": self.webform.url, "token": self.webform.token, "poll_seconds": 1,
                        "page_size": 100, "open311": False}}}
        (cfg / "channels.yaml").write_text(yaml.safe_dump(channels, allow_unicode=True), encoding="utf-8")
        self.drop(machine).mkdir(parents=True, exist_ok=True)
        return cfg


class Workers:
    """The eight worker processes: started, SIGKILLed, started again; their output so far. A
    worker that exits by itself is started again too, as ``up`` or systemd would, and counted."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.procs: dict[tuple[str, str], subprocess.Popen] = {}
        self.crashes: list[dict] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        (setup.root / "logs").mkdir(exist_ok=True)

    def start(self, machine: str, stage: str) -> subprocess.Popen:
        port = self.setup.ports[(machine, stage)]
        with open(self.setup.root / "logs" / f"{machine}-{stage}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "wenzheng.app", "worker", stage, "--config",
                                     str(self.setup.config(machine)), "--port", str(port)],
                                    stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.procs[(machine, stage)] = proc
        return proc

    def kill(self, machine: str, stage: str) -> subprocess.Popen:
        """SIGKILL the worker and start it again at once; the new process."""
        with self.lock:
            old = self.procs[(machine, stage)]
            if old.poll() is None:
                os.kill(old.pid, signal.SIGKILL)
            old.wait()
            return self.start(machine, stage)

    def supervise(self) -> None:
        """Until stopped: start again a worker that exited by itself, with the last line it logged."""
        while not self.stopping.wait(1.0):
            with self.lock:
                for (machine, stage), proc in list(self.procs.items()):
                    if proc.poll() is not None and not self.stopping.is_set():
                        log = (self.setup.root / "logs" / f"{machine}-{stage}.log").read_text(errors="replace")
                        last = next((line for line in reversed(log.splitlines()) if line.strip()), "")
                        self.crashes.append({"worker": f"{machine}/{stage}", "status": proc.returncode,
                                             "last_line": last[-300:]})
                        self.start(machine, stage)

    def output(self, machine: str, stage: str) -> float | None:
        """What the worker has put out since it started: messages a connector published (ingest)
        or records a stage committed; None while it does not answer."""
        port = self.setup.ports[(machine, stage)]
        path = "metrics" if stage == "ingest" else "healthz"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=2) as r:
                body = r.read().decode()
        except urllib.error.HTTPError as exc:  # 503: degraded, but it says what it processed
            body = exc.read().decode()
        except OSError:
            return None
        if stage != "ingest":
            return float(json.loads(body).get("processed") or 0)
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                   if line.startswith("wenzheng_connector_published_total{"))

    def stage_output(self, stage: str) -> float:
        return sum(self.output(m, stage) or 0.0 for m in MACHINES)

    def stop(self) -> None:
        self.stopping.set()
        stop_processes(self.procs, 30)


# --- traffic ---------------------------------------------------------------------------


class Feed:
    """The four channels' traffic at a steady rate; every id sent, with its channel and when."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        rows = read_labelled(corpus_files())
        random.Random(7).shuffle(rows)
        self.rows = rows
        self.sent: dict[str, tuple[str, float]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.failovers = 0  # pushes that failed on their machine and were sent to the other
        self.clients = {m: PushClient(f"http://127.0.0.1:{setup.ports[(m, 'ingest')]}/wechat/gz", TOKEN, APPID, AES)
                        for m in MACHINES}

    def run(self, phase: int, total: int, rate: float) -> list[threading.Thread]:
        """Start the channels' senders for ``total`` messages; their threads."""
        counts = {c: int(total * s) for c, s in SHARES.items()}
        counts["hotline"] += total - sum(counts.values())
        threads = []
        for channel, share in SHARES.items():
            n, send = counts[channel], getattr(self, f"_{channel}")
            senders = 2 if channel == "wechat" else 1  # a push waits for its answer
            for k in range(senders):
                t = threading.Thread(target=self._paced, args=(phase, range(k, n, senders), rate * share / senders,
                                                               send), daemon=True, name=f"feed-{channel}-{k}")
                t.start()
                threads.append(t)
        return threads

    def _paced(self, phase: int, items: range, rate: float, send: Callable[[int, int], tuple[str, str]]) -> None:
        t0 = time.monotonic()
        for j, i in enumerate(items):
            if self.stop.wait(max(0.0, t0 + j / rate - time.monotonic())):
                return
            channel, source_id = send(phase, i)
            with self.lock:
                self.sent[expected_id(channel, source_id)] = (channel, time.monotonic())

    def count(self) -> int:
        with self.lock:
            return len(self.sent)

    def _text(self, phase: int, i: int) -> dict:
        return self.rows[(phase * 7919 + i) % len(self.rows)]

    def _hotline(self, phase: int, i: int) -> tuple[str, str]:
        call = dict(to_call(self._text(phase, i), i), call_id=f"CHAOS-{phase}-{i:06d}")
        folder = self.setup.drop(MACHINES[i % 2])
        tmp = folder / f".{call['call_id']}.tmp"
        tmp.write_text(json.dumps(call, ensure_ascii=False), encoding="utf-8")
        tmp.rename(folder / f"{call['call_id']}.json")
        return "hotline", call["call_id"]

    def _wechat(self, phase: int, i: int) -> tuple[str, str]:
        msg_id = phase * 10**9 + i
        xml = text_xml(self._text(phase, i)["text"], msg_id=msg_id, from_user=f"oCHAOS{i % 997:04d}")
        first = MACHINES[i % 2]
        while not self.stop.is_set():
            for machine in (first, *(m for m in MACHINES if m != first)):
                try:
                    if self.clients[machine].push(xml, encrypt=True)[0] == 200:
                        return "wechat", f"{APPID}:{msg_id}"
                except OSError:
                    pass
                self.failovers += machine == first
            time.sleep(0.2)
        return "wechat", f"{APPID}:{msg_id}"

    def _weibo(self, phase: int, i: int) -> tuple[str, str]:
        uid = self.setup.uids[i % len(self.setup.uids)]
        text = self._text(phase, i)["text"][:120]
        return "weibo", self.setup.weibo.add_mention(uid, f"{text}（第{phase}-{i}条）")["mid"]

    def _webform(self, phase: int, i: int) -> tuple[str, str]:
        return "webform", str(self.setup.webform.add(1)[0])


# --- what arrived ----------------------------------------------------------------------


class Tally:
    """Every record on the pipeline's topics, followed from their start without a group (in a
    thread): records per id on intake, classified, routed and dead letters, per (queue, id)
    in the office queues and triage, and the queues each routed message names."""

    def __init__(self, rt: Runtime) -> None:
        t = rt.topics
        self.triage, self.office = t.triage, t.office
        self.names = {t.intake: "intake", t.classified: "classified", t.routed: "routed", t.deadletter: "dead"}
        queues = [t.triage] + [t.office(o) for o in rt.office_queue_ids()]
        self.seen: dict[str, Counter[str]] = {name: Counter() for name in self.names.values()}
        self.queued: Counter[tuple[str, str]] = Counter()
        self.routes: dict[str, tuple[str, ...]] = {}
        self.c = KafkaConsumer(bootstrap_servers=rt.bootstrap, group_id=None, enable_auto_commit=False,
                               auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20)
        self.c.assign(self._partitions([*self.names, *queues]))
        self.c.seek_to_beginning()
        self._stop, self.errors = threading.Event(), 0
        self._thread = threading.Thread(target=self._follow, daemon=True, name="tally")
        self._thread.start()

    def _partitions(self, topics: list[str], timeout: float = 60.0) -> list[TopicPartition]:
        """Every partition of ``topics``, once the metadata knows them all (just after topics
        are made, it may not yet)."""
        deadline = time.monotonic() + timeout
        while True:
            self.c.topics()  # a metadata refresh
            parts = {t: self.c.partitions_for_topic(t) for t in topics}
            if all(parts.values()) or time.monotonic() > deadline:
                return [TopicPartition(t, p) for t, ps in parts.items() for p in ps or ()]
            time.sleep(0.5)

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:  # just after a broker restart a fetch may fail: the next poll goes on
                batches = self.c.poll(timeout_ms=500, max_records=5000)
            except KafkaError as exc:
                self.errors += 1
                print(f"tally: {exc!r}", file=sys.stderr, flush=True)
                time.sleep(0.5)
                continue
            for tp, records in batches.items():
                name = self.names.get(tp.topic)
                for r in records:
                    if r.key is None:
                        continue
                    key = r.key.decode()
                    if name is None:
                        self.queued[(tp.topic, key)] += 1
                        continue
                    self.seen[name][key] += 1
                    if name == "routed" and key not in self.routes:
                        self.routes[key] = self.queues_of(orjson.loads(r.value)["routing"])

    def queues_of(self, routing: dict) -> tuple[str, ...]:
        """Where the route stage puts a message: triage, or the lead and co-handling offices' queues."""
        if routing["triage"]:
            return (self.triage,)
        return tuple(self.office(o) for o in (routing["office_id"], *routing["co_offices"]))

    def close(self) -> None:
        """Stop following after the poll in hand; the figures stay."""
        self._stop.set()
        self._thread.join(30)
        self.c.close()


class Ledger:
    """The case ledger and the journal, read straight from PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)

    def linked(self) -> set[str]:
        with self.engine.connect() as db:
            return {r[0] for r in db.execute(sa.text("SELECT message_id FROM case_messages"))}

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as db:
            cases, linked = (db.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                             for t in ("cases", "case_messages"))
            return {"cases": cases, "messages_linked": linked}

    def any_linked(self, ids: list[str]) -> bool:
        with self.engine.connect() as db:
            return bool(db.execute(sa.text("SELECT count(*) FROM case_messages WHERE message_id = ANY(:ids)"),
                                   {"ids": ids}).scalar_one())

    def acknowledged(self, ids: set[str]) -> dict[str, str]:
        """Of ``ids``, those some stage's publisher journaled as acknowledged by the broker,
        with the last such stage."""
        order = {"ingest": 0, "classify": 1, "route": 2}
        found: dict[str, str] = {}
        with self.engine.connect() as db:
            rows = db.execute(sa.text("SELECT msg_id, stage FROM delivery WHERE state = 'done' AND msg_id = ANY(:ids)"),
                              {"ids": list(ids)})
            for msg_id, stage in rows:
                stage = stage.split(".")[0]
                if order.get(stage, -1) >= order.get(found.get(msg_id, ""), -1):
                    found[msg_id] = stage
        return found

    def dispose(self) -> None:
        self.engine.dispose()


def settle(ledger: Ledger, want: int, quiet: float, timeout: float) -> float:
    """Wait until the ledger links ``want`` messages or stops moving for ``quiet`` seconds."""
    t0 = last_change = time.monotonic()
    last = -1
    while time.monotonic() - t0 < timeout:
        n = ledger.counts()["messages_linked"]
        if n != last:
            last, last_change = n, time.monotonic()
        if n >= want or time.monotonic() - last_change > quiet:
            break
        time.sleep(2)
    return time.monotonic() - t0


def verdict(ids: set[str], tally: Tally, linked: set[str]) -> dict:
    """Each id end to end: on every topic, in each queue its routing names, in the ledger."""
    seen, routes = tally.seen, tally.routes
    placed = {i for i in ids & routes.keys() if all(tally.queued[(q, i)] for q in routes[i])}
    doubled = Counter()
    for name in ("classified", "routed"):
        doubled[name] = sum(1 for i in ids if seen[name][i] > 1)
    doubled["office_queues"] = sum(1 for (_, i), n in tally.queued.items() if i in ids and n > 1)
    arrived = placed & linked
    return {
        "sent": len(ids), "in_intake": len(ids & seen["intake"].keys()),
        "intake_duplicates": sum(1 for i in ids if seen["intake"][i] > 1),
        "classified": len(ids & seen["classified"].keys()), "routed": len(ids & routes.keys()),
        "in_office_queues": len(placed), "multi_office": sum(1 for i in placed if len(routes[i]) > 1),
        "in_ledger": len(ids & linked), "lost": len(ids - arrived), "doubled": sum(doubled.values()),
        "doubled_by_topic": dict(doubled), "dead_letters": sum(tally.seen["dead"].values()),
        "lost_examples": sorted(ids - arrived)[:5],
    }


def spread(values: list[float]) -> dict:
    if not values:
        return {}
    s = sorted(values)
    p95 = s[max(0, math.ceil(0.95 * len(s)) - 1)]  # nearest rank
    return {"n": len(s), "p50": round(statistics.median(s), 2), "p95": round(p95, 2), "max": round(s[-1], 2)}


# --- faults ----------------------------------------------------------------------------


class Faults:
    """SIGKILLs at random moments, each worker started again at once, and each one's recovery:
    seconds from the SIGKILL until the new process has output (None: it was killed again
    first, or had nothing to do within ``patience``)."""

    def __init__(self, workers: Workers, rng: random.Random, patience: float = 300.0) -> None:
        self.workers, self.rng, self.patience = workers, rng, patience
        self.log: list[dict] = []
        self.watchers: list[threading.Thread] = []
        self.t0 = time.monotonic()

    def run(self, kills: int, seconds: float, stop: threading.Event) -> None:
        moments = sorted(self.rng.uniform(5.0, max(6.0, seconds)) for _ in range(kills))
        for at in moments:
            if stop.wait(max(0.0, self.t0 + at - time.monotonic())):
                return
            machine, stage = self.rng.choice(MACHINES), self.rng.choice(STAGES)
            fault = {"worker": f"{machine}/{stage}", "at_s": round(time.monotonic() - self.t0, 1)}
            killed = time.monotonic()
            proc = self.workers.kill(machine, stage)
            self.log.append(fault)
            watcher = threading.Thread(target=self._recovery, args=(fault, machine, stage, proc, killed), daemon=True)
            watcher.start()
            self.watchers.append(watcher)

    def _recovery(self, fault: dict, machine: str, stage: str, proc: subprocess.Popen, killed: float) -> None:
        """``recovery_s``: until the new process has output; ``stage_moved_s``: until the stage's
        output (the other machine's, or the new process's) moves past what it was at the kill."""
        survivor = self.workers.stage_output(stage)  # the killed one answers nothing, its replacement nothing yet
        while time.monotonic() - killed < self.patience:
            if "stage_moved_s" not in fault and self.workers.stage_output(stage) > survivor:
                fault["stage_moved_s"] = round(time.monotonic() - killed, 2)
            if self.workers.procs[(machine, stage)] is not proc:
                fault["recovery_s"], fault["note"] = None, "killed again before it recovered"
                return
            if (self.workers.output(machine, stage) or 0) > 0:
                fault["recovery_s"] = round(time.monotonic() - killed, 2)
                return
            time.sleep(0.25)
        fault["recovery_s"], fault["note"] = None, f"no output within {self.patience:.0f}s"

    def figures(self) -> dict:
        for watcher in self.watchers:
            watcher.join(self.patience)
        done = [f["recovery_s"] for f in self.log if f.get("recovery_s") is not None]
        per_stage = {s: spread([f["recovery_s"] for f in self.log if f["worker"].endswith(s)
                                and f.get("recovery_s") is not None]) for s in STAGES}
        moved = [f["stage_moved_s"] for f in self.log if f.get("stage_moved_s") is not None]
        return {"kills": len(self.log), "recovery_s": spread(done), "recovery_s_by_stage": per_stage,
                "stage_moved_s": spread(moved),
                "not_recovered": [f for f in self.log if f.get("recovery_s") is None], "faults": self.log}


PHASE_TWO_S = 60.0


def recovery(workers: Workers, ledger: Ledger, feed: Feed, since: float, start: dict[str, float],
             timeout: float = 300.0) -> dict[str, float | None]:
    """Seconds from ``since`` until each stage's output (both machines, against ``start``)
    moves, and until a message sent after ``since`` is in the ledger (``end_to_end``)."""
    moved: dict[str, float | None] = dict.fromkeys([*STAGES, "end_to_end"])
    while time.monotonic() - since < timeout and None in moved.values():
        for s in STAGES:
            if moved[s] is None and workers.stage_output(s) > start[s]:
                moved[s] = round(time.monotonic() - since, 2)
        if moved["end_to_end"] is None:
            with feed.lock:
                fresh = [i for i, (_, at) in feed.sent.items() if at > since]
            if fresh and ledger.any_linked(fresh):
                moved["end_to_end"] = round(time.monotonic() - since, 2)
        time.sleep(0.25)
    return moved


# --- the run -----------------------------------------------------------------------------


class Chaos:
    """The machines running, the traffic, the readers; phase 1 (kills) and phase 2 (the broker)."""

    def __init__(self, setup: Setup, seed: int) -> None:
        self.setup, self.rng = setup, random.Random(seed)
        self.runtime = Runtime(load(setup.config("a"))).connect()  # the topics, before any worker
        self.tally = Tally(self.runtime)
        self.ledger = Ledger(setup.db_url)
        self.feed = Feed(setup)
        self.workers = Workers(setup)

    def start(self) -> None:
        for machine in MACHINES:
            for stage in STAGES:
                self.workers.start(machine, stage)
        threading.Thread(target=self.workers.supervise, daemon=True, name="supervise").start()
        deadline = time.monotonic() + 180
        while any(self.workers.output(m, s) is None for m in MACHINES for s in STAGES):
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not answer within 180 s (see the logs)")
            time.sleep(1)
        time.sleep(8)  # the consumer groups settle before the traffic starts

    def phase_one(self, messages: int, kills: int, rate: float) -> dict:
        t0 = time.monotonic()
        senders = self.feed.run(1, messages, rate)
        faults = Faults(self.workers, self.rng)
        killer = threading.Thread(target=faults.run, args=(kills, messages / rate, self.feed.stop), daemon=True)
        killer.start()
        for t in [*senders, killer]:
            t.join()
        fed = time.monotonic() - t0
        drained = settle(self.ledger, len(self.feed.sent), quiet=180, timeout=3600)
        time.sleep(8)  # a redelivered batch would be republished by now
        with self.feed.lock:
            sent = dict(self.feed.sent)
        figures = verdict(set(sent), self.tally, self.ledger.linked())
        total = time.monotonic() - t0
        return {**figures, "by_channel": dict(Counter(channel for channel, _ in sent.values())),
                "pushes_failed_over": self.feed.failovers, "ledger": self.ledger.counts(),
                "seconds_feeding": round(fed, 1), "seconds_until_the_ledger_settled": round(fed + drained, 1),
                "messages_per_second": round(figures["in_ledger"] / (fed + drained), 1), "wall_s": round(total, 1),
                **faults.figures()}

    def phase_two(self, messages: int, rate: float) -> dict:
        with self.feed.lock:
            earlier = set(self.feed.sent)
        rate = min(rate, messages / PHASE_TWO_S)  # the second half must outlast the broker's ~5 s exit
        senders = self.feed.run(2, messages, rate)
        while self.feed.count() - len(earlier) < messages // 2:
            time.sleep(0.1)
        start = {s: self.workers.stage_output(s) for s in STAGES}
        held, linked_then = self.tally, self.ledger.linked()
        held.close()  # what the broker held, as far as the pipeline's readers had seen it
        stopping = time.monotonic()
        self.setup.broker.stop()  # what restart() does, timed apart: SIGTERM to exit takes Tansu ~5 s,
        restarted = time.monotonic()  # and it acknowledges writes until it is gone
        self.setup.broker.start()
        self.runtime.recover(timeout=30)  # the topics again before the workers look, as `up` does
        took = time.monotonic() - stopping
        moved = recovery(self.workers, self.ledger, self.feed, restarted, start)
        self.tally = Tally(self.runtime)  # from the topics' start: it misses nothing by starting late
        for t in senders:
            t.join()
        with self.feed.lock:
            sent = {i: at for i, (_, at) in self.feed.sent.items() if i not in earlier}
        settle(self.ledger, len(earlier) + len(sent), quiet=120, timeout=1800)
        time.sleep(8)
        linked = self.ledger.linked()
        before = {i for i, at in sent.items() if at < restarted}
        with self.feed.lock:
            missing = [(self.feed.sent[i][0], round(at - restarted, 1)) for i, at in sent.items()
                       if i not in before and i not in linked]
        return {"rate_per_second": round(rate, 1), "sent_before_restart": len(before),
                "sent_after_restart": len(sent) - len(before),
                "after_restart_not_in_ledger": {"by_channel": dict(Counter(c for c, _ in missing)),
                                                "sent_s_after_restart": sorted(t for _, t in missing)[:20]},
                "before_restart": self._losses(before, held, linked_then, linked),
                "after_restart": verdict(set(sent) - before, self.tally, linked),
                "broker_restart_s": round(took, 2), "recovery_s": moved}

    def _losses(self, ids: set[str], held: Tally, linked_then: set[str], linked: set[str]) -> dict:
        """Where the messages sent before the restart were at that moment, and which never reached
        the ledger, by the last topic the readers saw them on. Those the journal shows the broker
        had acknowledged are what a durable Kafka would have kept."""
        def last_topic(i: str) -> str:
            return next((t for t in ("routed", "classified", "intake") if held.seen[t][i]), "not seen on any topic")

        lost = ids - linked
        waiting = ids - linked_then
        acked = self.ledger.acknowledged(lost)
        return {"sent": len(ids), "in_the_ledger_already": len(ids & linked_then),
                "on_the_way_at_restart": dict(Counter(map(last_topic, waiting))),
                "arrived": len(ids & linked), "lost_with_the_broker": len(lost),
                "lost_by_last_topic": dict(Counter(map(last_topic, lost))), "acknowledged_by_the_broker": len(acked),
                "acknowledged_last_by_stage": dict(Counter(acked.values())),
                "a_durable_kafka_would_have_kept": len(acked), "lost_never_acknowledged": len(lost - acked.keys())}

    def close(self) -> None:
        self.feed.stop.set()
        self.workers.stop()
        self.tally.close()
        self.ledger.dispose()
        self.runtime.journal.close()


@contextmanager
def pg_schema():
    """A fresh PostgreSQL schema for the journal and the ledger; its URL. Dropped afterwards."""
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 5})
    schema = f"wz_chaos_{uuid.uuid4().hex[:10]}"
    with engine.begin() as db:
        db.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as db:
            db.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def run(messages: int = 100_000, kills: int = 100, rate: float = 100.0, restart_messages: int | None = None,
        seed: int = 2026, logs: Path | None = None) -> dict:
    restart_messages = max(100, messages // 10) if restart_messages is None else restart_messages
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, pg_schema() as db_url, \
            EmbeddedBroker(log_file=Path(tmp) / "broker.log") as broker, \
            FakeWeibo(mentions=0, mention_comments=0, posts=0, comments_per_post=0, lifetime=0) as weibo, \
            SortedWebForm(lifetime=0) as webform:
        root = Path(tmp)
        model = Classifier.train(read_labelled(corpus_files()), load().settings).save(root / "model")
        setup = Setup(root, broker, db_url, model, weibo, webform)
        setup.ports = {(m, s): free_port() for m in MACHINES for s in STAGES}
        for machine in MACHINES:
            setup.write(machine)
        chaos = Chaos(setup, seed)
        try:
            chaos.start()
            one = chaos.phase_one(messages, kills, rate)
            two = chaos.phase_two(restart_messages, rate) if restart_messages else None
        finally:
            chaos.close()
            if logs:  # the workers' and the broker's logs outlive the run's temporary folder
                shutil.copytree(root / "logs", logs, dirs_exist_ok=True)
                shutil.copy(root / "broker.log", logs)
    return {"messages": messages, "kills": kills, "rate_per_second": rate, "machines": len(MACHINES),
            "workers": len(MACHINES) * len(STAGES), "cores": os.cpu_count(), "phase_1_kills": one,
            "phase_2_broker_restart": two, "workers_that_exited_by_themselves": chaos.workers.crashes,
            "wall_s": round(time.monotonic() - t0, 1)}


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the workers, the broker and the schema are cleaned up on the way out


def main(argv: list[str] | None = None) -> int:
    import argparse

    signal.signal(signal.SIGTERM, _interrupted)
    p = argparse.ArgumentParser(prog="benchmarks.chaos")
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--rate", type=float, default=100.0, help="messages sent per second")
    p.add_argument("--restart-messages", type=int, default=None, help="phase 2 (default: a tenth of --messages)")
    p.add_argument("--logs", type=Path, default=None, help="copy the workers' logs here")
    args = p.parse_args(argv)
    result = run(args.messages, args.kills, args.rate, args.restart_messages, logs=args.logs)
    json.dump({"chaos": result}, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
