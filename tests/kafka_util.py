"""Reading topics back in tests, judged by the high watermark (not end_offsets)."""

from __future__ import annotations

import json

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


def read_prefix(bootstrap: str, prefix: str) -> dict[str, list]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        topics = sorted(t for t in c.topics() if t.startswith(prefix))
    finally:
        c.close()
    return {t: read_topic(bootstrap, t) for t in topics}


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
