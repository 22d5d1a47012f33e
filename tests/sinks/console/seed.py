"""A ledger worker in this process, and routed messages as the pipeline makes them, for the
console's browser tests and benchmark.

:class:`Workbench` is ``wenzheng worker ledger`` (app/workers.py) on a thread: the ledger stage
consuming ``wz.routed``, its HTTP service with the case API and the console.

Each message is an intake envelope (with what a citizen says of themselves), masked as the classify
stage masks it, given a classification, and routed by the route stage's own ``Router`` (its
office table, rules and working-time deadlines), received ``hours_ago``. Publishing them to
``wz.routed`` lets a real ledger worker open the cases, as it does in production.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from kafka import KafkaProducer

from wenzheng.app.workers import http_limits, make_worker
from wenzheng.config import load
from wenzheng.core import envelope
from wenzheng.core.runtime import Runtime
from wenzheng.core.service import Service
from wenzheng.route.router import Router

MODEL = "console-seed"


@dataclass(frozen=True)
class Spec:
    """One citizen's message and what the model made of it."""

    text: str
    hours_ago: float
    category: str
    jurisdiction: str
    confidence: float = 0.93
    mtype: str = "complaint"
    channel: str = "wechat"
    place: str | None = None
    """The place name the model found (the dispatcher sees it)."""
    runners_up: tuple[tuple[str, float], ...] = ()
    """The model's second and third categories, with their confidence."""


def routed(router: Router, source_id: str, spec: Spec, now: datetime | None = None) -> dict:
    """The routed envelope of ``spec``, as the route stage publishes it to ``wz.routed``."""
    at = envelope.iso((now or envelope.now()) - timedelta(hours=spec.hours_ago))
    env = {"schema": envelope.SCHEMA, "id": f"{spec.channel}:{source_id}", "channel": spec.channel, "account": "gz",
           "source_id": source_id, "posted_at": at, "received_at": at, "author": None, "title": "", "text": spec.text,
           "attachments": [], "location": None, "raw_ref": None}  # as a connector makes it, received then
    out = envelope.masked(env)
    out["classification"] = {
        "category": spec.category, "category_confidence": spec.confidence, "type": spec.mtype,
        "type_confidence": 0.8, "jurisdiction": spec.jurisdiction,
        "jurisdiction_source": f"place:{spec.place}" if spec.place else "county", "model_version": MODEL,
        "category_top": [{"category": c, "confidence": p} for c, p in ((spec.category, spec.confidence),
                                                                       *spec.runners_up)]}
    out["routing"] = {**router.route(out), "routed_at": at}
    return out


def publish(bootstrap: str, topic: str, messages: list[dict]) -> None:
    """Messages onto ``topic`` keyed by their id, acknowledged before returning."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for m in messages:
            producer.send(topic, key=m["id"].encode(), value=json.dumps(m, ensure_ascii=False).encode())
        producer.flush(30)
    finally:
        producer.close()


class Workbench:
    """A ledger worker as ``wenzheng worker ledger`` runs it, in this process, on 127.0.0.1."""

    def __init__(self, config_dir: Path):
        self.config = load(config_dir)
        self.runtime = Runtime(self.config).connect()
        self.worker = make_worker(self.runtime, "ledger")
        self.service = Service("127.0.0.1", 0, "ledger", http_limits(self.config.settings.http))
        self.service.health = self.worker.health
        self.service.add(*self.worker.routes())
        self.service.start()
        self.thread = threading.Thread(target=self.worker.run, name="ledger", daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.service.port}"
        self.ledger = self.worker.stage.ledger
        self.accounts = self.worker.stage.accounts
        self.numbers: dict[str, str] = {}
        self.ids: dict[str, str] = {}

    def feed(self, bootstrap: str, messages: list[dict], timeout: float = 60) -> dict[str, str]:
        """Messages onto wz.routed; once the worker recorded them all, {message id: tracking no}."""
        publish(bootstrap, self.runtime.topics.routed, messages)
        ids, deadline = {m["id"] for m in messages}, time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = datetime.now(self.ledger.tz)
            found = {m: c["tracking_no"] for c in self.ledger.cases(now - timedelta(days=400), now + timedelta(days=1))
                     for m in c["message_ids"] if m in ids}
            if len(found) == len(ids):
                return found
            time.sleep(0.2)
        raise AssertionError(f"the ledger worker recorded {len(found)} of {len(ids)} messages")

    def stop(self) -> None:
        """As the worker process ends: the stage's own producer (console and 督办 records) closed too,
        or it goes on dialling the broker after the session stops it."""
        self.worker.stop()
        self.thread.join(30)
        self.service.stop()
        stage = self.worker.stage
        stage.console_publisher.close()
        if stage.job is not None:
            stage.job.publisher.close(producer=False)
        self.ledger.dispose()
        self.runtime.journal.close()
