"""Routed messages as the pipeline makes them, for the console's browser tests and benchmark.

Each is an intake envelope (with what a citizen says of themselves), masked as the classify
stage masks it, given a classification, and routed by the route stage's own ``Router`` (its
office table, rules and working-time deadlines), received ``hours_ago``. Publishing them to
``wz.routed`` lets a real ledger worker open the cases, as it does in production.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from kafka import KafkaProducer

from wenzheng.core import envelope
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


def routed(router: Router, source_id: str, spec: Spec, now: datetime | None = None) -> dict:
    """The routed envelope of ``spec``, as the route stage publishes it to ``wz.routed``."""
    at = (now or envelope.now()) - timedelta(hours=spec.hours_ago)
    env = envelope.make(channel=spec.channel, account="gz", source_id=source_id, text=spec.text, posted_at=at)
    env["received_at"] = envelope.iso(at)
    out = envelope.masked(env)
    out["classification"] = {
        "category": spec.category, "category_confidence": spec.confidence, "type": spec.mtype,
        "type_confidence": 0.8, "jurisdiction": spec.jurisdiction,
        "jurisdiction_source": f"place:{spec.place}" if spec.place else "county", "model_version": MODEL}
    out["routing"] = {**router.route(out), "routed_at": envelope.iso(at + timedelta(seconds=3))}
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
