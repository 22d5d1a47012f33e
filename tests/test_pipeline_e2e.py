"""End to end through the real embedded broker: transcript files in, office queues out.

A worker is SIGKILLed midway and restarted; in the end every good file is one
routed message across the office and triage queues — none lost, none doubled —
and each malformed file is one dead letter with its reason.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter

import pytest

from tests.conftest import expected_id
from tests.kafka_util import Watcher
from wenzheng.app.demo import to_call
from wenzheng.classify.model import corpus_files, read_labelled
from wenzheng.config import load
from wenzheng.core.runtime import Runtime

pytestmark = pytest.mark.slow

MALFORMED = {
    "bad-json.json": b'{"call_id": "X1", "turns": [',
    "utf16.json": json.dumps({"call_id": "X2", "text": "停水了"}, ensure_ascii=False).encode("utf-16"),
    "empty.json": b"",
}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("victim", ["classify", "route"])  # ingest: test_ingest_chaos.py kills it 3 times
def test_kill_a_worker_midway_nothing_lost_nothing_doubled(victim, config_dir, workers, bootstrap, tiny_model, tmp_path):
    config = load(config_dir)
    rt = Runtime(config).connect()  # creates the topics so the watcher can follow them
    t = rt.topics
    routed = Watcher(bootstrap, [t.triage] + [t.office(o) for o in rt.office_queue_ids()])
    dead = Watcher(bootstrap, [t.deadletter])
    drop = tmp_path / "drop"
    drop.mkdir(exist_ok=True)

    rows = read_labelled(corpus_files())
    random.Random(1).shuffle(rows)
    good = [dict(to_call(r, i), call_id=f"E2E-{i:04d}") for i, r in enumerate(rows[:90])]

    workers.start("ingest")
    workers.start("classify", "--model", str(tiny_model))
    workers.start("route")

    def drop_files(calls, start):
        for j, call in enumerate(calls):
            tmp = drop / f".{call['call_id']}.tmp"
            tmp.write_text(json.dumps(call, ensure_ascii=False), encoding="utf-8")
            tmp.replace(drop / f"{call['call_id']}.json")
            if (start + j) % 30 == 10:  # malformed files among the good ones
                name = list(MALFORMED)[(start + j) // 30]
                (drop / name).write_bytes(MALFORMED[name])

    drop_files(good[:45], 0)
    wait_for(lambda: len(routed.poll()) >= 15, 90, "the first routed messages")
    os.kill(workers.procs[victim].pid, signal.SIGKILL)  # midway, with work in flight
    workers.procs[victim].wait()
    drop_files(good[45:], 45)
    workers.start(victim, *(["--model", str(tiny_model)] if victim == "classify" else []))

    wait_for(lambda: len({r.key for r in routed.poll()}) >= len(good), 120, f"{len(good)} routed messages")
    time.sleep(3)  # anything doubled would show up by now
    # Exactly once in each queue a message belongs in: its lead office's (or triage), and
    # each co-handling office's (联合办理).
    placed = [(r.topic, r.key.decode()) for r in routed.poll()]
    assert len(placed) == len(set(placed)), f"{len(placed) - len(set(placed))} doubled"
    assert sorted({i for _, i in placed}) == sorted(expected_id("hotline", c["call_id"]) for c in good)
    queues_of = Counter(i for _, i in placed)
    for r in routed.records:
        routing = json.loads(r.value)["routing"]
        queues = {t.triage} if routing["triage"] else {t.office(o) for o in (routing["office_id"], *routing["co_offices"])}
        assert r.topic in queues and queues_of[r.key.decode()] == len(queues)

    wait_for(lambda: len(dead.poll()) >= len(MALFORMED), 30, "dead letters")
    letters = {json.loads(r.value)["source"]["file"]: json.loads(r.value)["reason"] for r in dead.poll()}
    assert set(letters) == set(MALFORMED)
    assert "bad JSON" in letters["bad-json.json"]
    assert "encoding" in letters["utf16.json"]
    assert letters["empty.json"] == "empty file"
    assert sorted(p.name for p in (drop / "quarantine").glob("*.json")) == sorted(MALFORMED)

    values = [json.loads(r.value) for r in routed.records]
    assert all(v["masked"] and "pii" not in v for v in values)
    assert all(v["routing"]["config_hash"] == config.hash for v in values)
    routed.close()
    dead.close()
    rt.journal.close()
