"""Whole-pipeline figures on this machine, through the real embedded broker.

* ``first_case``: seconds from ``wenzheng up --demo`` to the first routed case, as a
  newcomer runs it (broker start, topics, baseline model from cache or trained, three
  worker processes, consumer groups joining).
* ``throughput``: N transcript files dropped at once; messages per second from the
  first file to the last routed message, through ingest → classify → route.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from kafka import KafkaConsumer, TopicPartition

from benchmarks import PRIVACY
from wenzheng.app.broker import EmbeddedBroker, free_port
from wenzheng.app.demo import to_call
from wenzheng.classify.model import corpus_files, read_labelled
from wenzheng.config import DEFAULT_DIR, load
from wenzheng.core.runtime import Runtime


def _config(root: Path, bootstrap: str | None) -> Path:
    cfg = root / "config"
    cfg.mkdir(parents=True)
    for f in DEFAULT_DIR.glob("*.yaml"):
        shutil.copy(f, cfg / f.name)
    runtime = {"kafka": {"bootstrap_servers": [bootstrap] if bootstrap else []},
               "http": {"port": free_port()}, "state": {"dir": str(root / "state")}, "privacy": PRIVACY}
    (cfg / "runtime.yaml").write_text(yaml.safe_dump(runtime), encoding="utf-8")
    channels = {"channels": {"hotline": {"drop_dir": str(root / "drop"), "poll_seconds": 1, "settle_seconds": 0.2}}}
    (cfg / "channels.yaml").write_text(yaml.safe_dump(channels, allow_unicode=True), encoding="utf-8")
    return cfg


def first_case() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(Path(tmp), None)
        t0 = time.time()
        out = subprocess.run([sys.executable, "-m", "wenzheng.app", "up", "--demo", "--duration", "45", "--config", str(cfg)],
                             capture_output=True, text=True, timeout=180)
        wall = time.time() - t0
    m = re.findall(r"first routed case after ([0-9.]+)s", out.stdout)
    routed = re.findall(r"routed to offices\s+(\d+)\s+triage\s+(\d+)", out.stdout)
    return {"first_routed_case_s": float(m[-1]) if m else None,
            "routed_in_45s": sum(map(int, routed[-1])) if routed else 0, "wall_s": round(wall, 1),
            "note": "includes training the baseline model (no cache in a fresh state dir)"}


def throughput(n: int) -> dict:
    rows = read_labelled(corpus_files())
    random.Random(3).shuffle(rows)
    calls = [dict(to_call(rows[i % len(rows)], i), call_id=f"B-{i:06d}") for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        root = Path(tmp)
        cfg = _config(root, broker.bootstrap)
        config = load(cfg)
        rt = Runtime(config).connect()
        from wenzheng.app.workers import load_model

        load_model(rt)  # trained once before the workers start
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        procs = []
        for kind in ("ingest", "classify", "route"):
            log = open(root / f"{kind}.log", "ab")  # noqa: SIM115
            procs.append(subprocess.Popen([sys.executable, "-m", "wenzheng.app", "worker", kind, "--config", str(cfg),
                                           "--port", "0"], env=env, stdout=log, stderr=log))
            log.close()
        t = rt.topics
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest")
        topics = [t.triage] + [t.office(o) for o in rt.office_queue_ids()]
        c.assign([TopicPartition(x, p) for x in topics for p in c.partitions_for_topic(x) or []])
        c.seek_to_beginning()
        time.sleep(8)  # let the consumer groups form before the clock starts
        drop = root / "drop"
        drop.mkdir(exist_ok=True)
        t0 = time.time()
        for call in calls:
            (drop / f"{call['call_id']}.json").write_text(json.dumps(call, ensure_ascii=False), encoding="utf-8")
        written = time.time() - t0
        ids: set[bytes] = set()  # distinct messages: a 联合办理 one is in several office queues
        deadline = time.time() + 600
        while len(ids) < n and time.time() < deadline:
            ids.update(r.key for v in c.poll(timeout_ms=500, max_records=10000).values() for r in v)
        got = len(ids)
        elapsed = time.time() - t0
        c.close()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        rt.journal.close()
    return {"messages": n, "routed": got, "seconds": round(elapsed, 2),
            "messages_per_second": round(got / elapsed, 1), "seconds_writing_files": round(written, 2),
            "cores": os.cpu_count()}
