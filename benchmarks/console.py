"""The workbench console at a city's scale: its queue pages, and a dispatcher's assignment.

A ledger worker (``tests/sinks/console/seed.py``'s :class:`Workbench`: ``wenzheng worker ledger``
on a thread) over a ledger of 10,000 open cases and 1,000 in triage, received over the last
60 days — the packaged corpus's messages, masked, classified as labelled and routed by the
route stage's own ``Router``, recorded through ``Ledger.record`` as the ledger stage records
them, in bulk before the clock starts. The 督办 job has graded them all once before
measuring (its first run publishes ~a grade per case; later runs find them journalled).

* ``pages``: p50/p95 of the three queue pages, each fetched ``requests`` times one after the
  other by a signed-in client (httpx, keep-alive, over 127.0.0.1): the dispatcher's triage
  queue, the busiest office's queue, the supervisor's dashboard. Target: p95 < 200 ms.
* ``assignment``: a dispatcher assigns ``assignments`` triage cases, one at a time; from the
  POST to the message read from the office's Kafka queue (a consumer on it, no group).
  Target: < 1 s.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path

import httpx
from kafka import KafkaConsumer, TopicPartition

from tests.conftest import write_config
from tests.sinks.console.seed import Spec, Workbench, routed
from wenzheng.app.broker import EmbeddedBroker
from wenzheng.classify.model import corpus_files, read_labelled
from wenzheng.core.registry import REGISTRY
from wenzheng.route.router import Router

PASSWORD = "benchmark-password-1"
DAYS = 60
TARGET = "360702-cgj"  # where the assignments go: 章贡区城市管理局


def run(open_cases: int = 10_000, triage: int = 1_000, requests: int = 200, assignments: int = 50) -> dict:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log_file=Path(tmp) / "broker.log") as broker:
        wb = Workbench(write_config(Path(tmp), broker.bootstrap))
        try:
            out = _load(wb, open_cases, triage)
            _graded(wb, open_cases + triage)
            office = max(out.pop("by_office").items(), key=lambda kv: kv[1])
            out["office"] = {"id": office[0], "open_cases": office[1]}
            out["pages"] = _pages(wb, office[0], requests)
            out["assignment"] = _assign(wb, broker.bootstrap, assignments)
        finally:
            wb.stop()
    out["targets"] = {"page_p95_ms": 200, "assignment_to_office_queue_ms": 1000}
    return out


def _messages(wb: Workbench, total: int, triage: int) -> dict[bool, list[dict]]:
    """``total`` corpus messages spread over the last DAYS days, one in ``total // triage`` below
    the triage threshold; by whether they went to triage. A text comes back only weeks later (a
    repeat within the ledger's window joins its case, as it should: a few near-duplicates do)."""
    places = {j.code for j in wb.config.settings.gazetteer}
    channels = REGISTRY.channel_names()
    rows = [r for r in read_labelled(corpus_files()) if r.get("category") and r.get("jurisdiction") in places]
    router, now = Router(wb.config, wb.runtime.offices), datetime.now(wb.ledger.tz)
    out: dict[bool, list[dict]] = {True: [], False: []}
    for i in range(total):
        r = rows[i % len(rows)]
        spec = Spec(r["text"], DAYS * 24 * (1 - i / total), r["category"], r["jurisdiction"],
                    confidence=0.3 if triage and i % (total // triage) == 0 else 0.9,
                    mtype=r.get("type") or "complaint", channel=r.get("channel") if r.get("channel") in channels else "wechat")
        m = routed(router, f"bench-{i:06d}", spec, now)
        out[m["routing"]["triage"]].append(m)
    return out


def _load(wb: Workbench, open_cases: int, triage: int) -> dict:
    """Exactly ``open_cases`` and ``triage`` cases, recorded 500 messages to a transaction
    (``Ledger.record_many``, the ledger stage's way), from a third more messages than cases: the repeats."""
    t0 = time.perf_counter()
    pending = _messages(wb, int((open_cases + triage) * 1.3), int(triage * 1.3))
    t1 = time.perf_counter()
    want = {False: open_cases, True: triage}
    while True:  # an earlier report joining a case gives it its routing: triage or not may change
        short = {g: want[g] - wb.ledger.count_open(triage=g) for g in want}
        group = next((g for g in want if short[g] > 0 and pending[g]), None)
        if group is None:
            break
        n = min(500, short[group])
        batch, pending[group] = pending[group][:n], pending[group][n:]
        wb.ledger.record_many(batch)
    t2 = time.perf_counter()
    for name, role in (("disp", "dispatcher"), ("super", "supervisor")):
        wb.accounts.add(name, role, PASSWORD)
    by_office: dict[str, int] = {}
    for c in wb.ledger.open_cases(triage=False):
        by_office[c["office_id"]] = by_office.get(c["office_id"], 0) + 1
    counts = wb.ledger.counts()
    return {"cases": counts["cases"], "in_triage": wb.ledger.count_open(triage=True),
            "merged_as_repeats": counts["messages"] - counts["cases"], "build_messages_s": round(t1 - t0, 1),
            "record_s": round(t2 - t1, 1), "messages_recorded_per_s": round(counts["messages"] / (t2 - t1)),
            "by_office": by_office}


def _graded(wb: Workbench, n: int, timeout: float = 300) -> None:
    """Wait for the 督办 job's first run over every case (it runs between the worker's batches)."""
    job, deadline = wb.worker.stage.job, time.monotonic() + timeout
    while job is not None and (job.last or {}).get("open_cases", 0) < n * 0.9 and time.monotonic() < deadline:
        time.sleep(1)


def _client(wb: Workbench, name: str, role: str, office: str | None = None) -> httpx.Client:
    """A signed-in session (a new account when ``office`` is given: that office's clerk)."""
    if office:
        wb.accounts.add(name, role, PASSWORD, office)
    c = httpx.Client(base_url=wb.url, follow_redirects=False, timeout=60)
    c.get("/console/login")
    r = c.post("/console/login", data={"name": name, "password": PASSWORD, "csrftoken": c.cookies["csrftoken"]})
    assert r.status_code == 303, r.text[:200]
    return c


def _stats(ms: list[float]) -> dict:
    q = statistics.quantiles(ms, n=100)
    return {"n": len(ms), "p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "max_ms": round(max(ms), 1)}


def _pages(wb: Workbench, office: str, requests: int) -> dict:
    pages = {"triage": ("disp", "dispatcher", None, "/console/triage"),
             "office": ("clerk", "clerk", office, "/console/office"),
             "supervisor": ("super", "supervisor", None, "/console/supervisor")}
    out = {}
    for page, (name, role, office_id, path) in pages.items():
        with closing(_client(wb, name, role, office_id)) as c:
            for _ in range(5):  # warm: templates compiled, connections pooled
                c.get(path).raise_for_status()
            times, size = [], 0
            for _ in range(requests):
                t0 = time.perf_counter()
                r = c.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                size = len(r.content)
        out[page] = {**_stats(times), "kb": round(size / 1024)}
    return out


def _assign(wb: Workbench, bootstrap: str, n: int) -> dict:
    cases = wb.ledger.open_cases(triage=True)[:n]
    topic = wb.runtime.topics.office(TARGET)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []])
    consumer.seek_to_end()
    consumer.poll(timeout_ms=100)
    post, total = [], []
    with closing(_client(wb, "disp", "dispatcher")) as c:
        for case in cases:
            key = wb.ledger.get(case["tracking_no"])["message_ids"][0].encode()
            form = {"category": "urban_management", "type": "complaint", "jurisdiction": "360702",
                    "office_id": TARGET, "csrftoken": c.cookies["csrftoken"]}
            t0 = time.perf_counter()
            r = c.post(f"/console/cases/{case['tracking_no']}/assign", data=form)
            post.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 303 and r.headers["location"] == "/console/triage", r.text[:200]
            while not any(rec.key == key for recs in consumer.poll(timeout_ms=20).values() for rec in recs):
                if time.perf_counter() - t0 > 30:
                    raise AssertionError(f"{key!r} never reached {topic}")
            total.append((time.perf_counter() - t0) * 1000)
    consumer.close()
    return {"post": _stats(post), "to_office_queue": _stats(total)}
