"""Reading topics back in tests, judged by the high watermark (not end_offsets)."""

from __future__ import annotations

import json
import time

from kafka import KafkaConsumer, TopicPartition

from wenzheng.core.kafka import read_partition


def read_topic(bootstrap: str, topic: str) -> list:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        records = []
        for p in sorted(c.partitions_for_topic(topic) or []):
            records.extend(read_partition(c, TopicPartition(topic, p), 0))
        return records
    finally:
        c.close()


def read_values(bootstrap: str, topic: str) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(bootstrap, topic)]


def read_prefix(bootstrap: str, prefix: str, timeout: float = 60.0) -> dict[str, list]:
    """Every topic named ``prefix…``, read whole by one consumer over all their partitions at
    once (a city has ~150 office queues: one at a time, their empty partitions cost minutes)."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        topics = sorted(t for t in c.topics() if t.startswith(prefix))
        tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or [])]
        c.assign(tps)
        c.seek_to_beginning()
        out: dict[str, list] = {t: [] for t in topics}
        deadline = time.monotonic() + timeout
        while True:
            for tp, recs in c.poll(timeout_ms=300, max_records=10_000).items():
                out[tp.topic].extend(recs)
            if all((hw := c.highwater(tp)) is not None and c.position(tp) >= hw for tp in tps):
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"reading the {prefix}* topics did not reach their ends in {timeout}s")
    finally:
        c.close()


class Watcher:
    """Follows every partition of some topics from the beginning, without a group."""

    def __init__(self, bootstrap: str, topics: list[str]):
        self.c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                               auto_offset_reset="earliest")
        tps = [TopicPartition(t, p) for t in topics for p in (self.c.partitions_for_topic(t) or [])]
        self.c.assign(tps)
        self.c.seek_to_beginning()
        self.records: list = []

    def poll(self) -> list:
        for recs in self.c.poll(timeout_ms=200, max_records=5000).values():
            self.records.extend(recs)
        return self.records

    def close(self) -> None:
        self.c.close()
