"""Audit replay of N routed messages, against the classify stage's own throughput.

The routed topic is filled with N decisions as the route stage writes them: a pool of
corpus messages is classified and routed once here, and repeated under distinct ids
(replay still classifies and routes every one of them again: nothing is cached). Then
``wenzheng.audit.replay.run`` reads the topic back from the embedded broker with the
recorded model and configuration and compares every decision, timed from its start
to its end (reading, jieba, the model, routing with deadlines, the report).

Replay runs with one process and with its default pool (the cores, at most 4). The
ratio is replay's rate over the classify stage's (one worker process, as
``./dev bench classify`` measures it, on 20,000 messages): replay should not be the
slower of the two.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from kafka import KafkaProducer

from benchmarks import PRIVACY
from wenzheng.app.broker import EmbeddedBroker
from wenzheng.audit.decide import default_workers
from wenzheng.audit.replay import run as replay
from wenzheng.classify import registry
from wenzheng.classify.model import Classifier, corpus_files, is_test, read_labelled
from wenzheng.config import OfficeDirectory, load, snapshot
from wenzheng.core import envelope
from wenzheng.core.runtime import Runtime
from wenzheng.route.router import Router

from . import classify as classify_bench

POOL = 5000


def fill(rt, config, model, n: int) -> None:
    rows = read_labelled(corpus_files())[:POOL]
    router = Router(config, OfficeDirectory(config.settings))
    pool = [envelope.masked(envelope.make(channel="wechat", account="bench", source_id=f"p{i}", text=r["text"],
                                          title=r.get("title") or "", posted_at=envelope.now(),
                                          id_key=PRIVACY["pseudonym_key"].encode()))
            for i, r in enumerate(rows)]
    for env, p in zip(pool, model.predict(pool), strict=True):  # what the classify stage sees: the masked text
        env["classification"] = p.record(model.version)
        env["routing"] = router.route(env)
    prod = KafkaProducer(bootstrap_servers=rt.bootstrap, linger_ms=50, batch_size=1 << 20, acks=1)
    for i in range(n):
        env = dict(pool[i % len(pool)], id=f"wechat:bench:{i}")
        prod.send(rt.topics.routed, key=env["id"].encode(), value=json.dumps(env, ensure_ascii=False).encode())
    prod.flush()
    prod.close()


def run(n: int = 1_000_000, stage_messages: int = 20000) -> dict:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        root = Path(tmp)
        settings = load().settings
        model_dir = Classifier.train([r for r in read_labelled(corpus_files()) if not is_test(r)], settings).save(root / "m")
        stage = classify_bench.stage(broker.bootstrap, root, model_dir, classify_bench._messages(stage_messages), 1)
        config = load(classify_bench._config(root, broker.bootstrap, f"r{int(time.time())}."))
        rt = Runtime(config).connect()
        registry.promote(config.settings, model_dir)
        snapshot(config, config.settings.state.dir)
        t0 = time.perf_counter()
        fill(rt, config, Classifier.load(model_dir, config.settings), n)
        fill_s = time.perf_counter() - t0
        runs = {}
        for workers in (1, default_workers()) if default_workers() > 1 else (1,):
            t0 = time.perf_counter()
            summary = replay(config, out=root / f"report{workers}", show_progress=False, workers=workers,
                             echo=lambda *_: None)
            took = time.perf_counter() - t0
            rate = summary["read"] / took
            runs[f"{workers}_workers"] = {
                "read": summary["read"], "agreement": summary["agreement"], "errors": summary["errors"],
                "replay_s": round(took, 1), "replay_msgs_per_s": round(rate, 1),
                "replay_to_classify_stage_ratio": round(rate / stage["msgs_per_s"], 2) if stage["msgs_per_s"] else None}
        rt.journal.close()
    return {"messages": n, "fill_s": round(fill_s, 1), "classify_stage_msgs_per_s": stage["msgs_per_s"], **runs,
            "main_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "largest_child_incl_broker_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000), indent=2))
