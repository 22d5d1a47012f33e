"""Training data: labelled history, the labels topic, and the held-out split.

Dispatchers' corrections land on ``wz.labels`` as JSON objects with the message
``id``, its ``text`` (masked) and ``title``, and the corrected ``category``,
``type`` and/or ``jurisdiction``. The topic is read from the beginning without
a consumer group (nothing is committed); for one id the latest correction wins,
and a correction replaces the history record with the same id.
"""

from __future__ import annotations

import json
import logging

from kafka import TopicPartition

from wenzheng.core.kafka import Topics, consumer, read_partition

from .model import TIME_FIELDS, split_holdout

log = logging.getLogger(__name__)

def read_labels_topic(settings) -> list[dict]:
    topic = Topics(settings.kafka.topic_prefix).labels
    c = consumer(settings, group=None, client_id="wenzheng-train")
    rows: list[dict] = []
    try:
        for p in sorted(c.partitions_for_topic(topic) or []):
            for rec in read_partition(c, TopicPartition(topic, p), 0, timeout=300):
                try:
                    row = json.loads(rec.value)
                except (ValueError, TypeError):
                    log.warning("skipping a label that is not JSON", extra={"offset": rec.offset, "partition": p})
                    continue
                if isinstance(row, dict) and str(row.get("text") or "").strip():
                    rows.append(row)
    finally:
        c.close()
    return rows


def merge_corrections(history: list[dict], corrections: list[dict]) -> list[dict]:
    latest: dict[str, dict] = {}
    for row in corrections:
        key = str(row.get("id") or row["text"])
        latest[key] = {**latest.get(key, {}), **row}
    merged = [latest.pop(str(r.get("id")), r) if r.get("id") else r for r in history]
    return merged + list(latest.values())


def split(rows: list[dict], fraction: float = 0.2) -> tuple[list[dict], list[dict], str]:
    """:func:`~wenzheng.classify.model.split_holdout`, and a phrase saying which split it was."""
    train, test = split_holdout(rows, fraction)
    field = next((f for f in TIME_FIELDS if rows and all(r.get(f) not in (None, "") for r in rows)), None)
    how = f"time-ordered by {field}: latest {fraction:.0%}" if field else "fixed hash split by id (one in five)"
    return train, test, how
