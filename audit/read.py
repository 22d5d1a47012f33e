"""Reading a topic for an audit, read-only: per-partition ranges planned by time or
offset, then the records of those ranges, and single records fetched by position.

No consumer group anywhere: nothing is committed and no live group is disturbed.
Tansu's answers about offsets are only bounds (tests/test_broker_gaps.py): it looks
times up among its append times, says "none" as offset 0, and answers ``end_offsets``
wrongly. So the end is the high watermark the fetch responses report, and records are
filtered by their own timestamps as they are read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from wenzheng.core import envelope
from wenzheng.core.errors import TransientError
from wenzheng.core.kafka import consumer as make_consumer
from wenzheng.core.kafka import read_partition

BATCH = 2000
END_SLACK_MS = 60_000

Ranges = dict[TopicPartition, tuple[int, int | None]]


class ReplayError(Exception):
    """A replay that cannot be done as asked (said in one line)."""


def read_only_consumer(settings) -> KafkaConsumer:
    """No group: nothing is committed, no live group is disturbed."""
    return make_consumer(settings, group=None, max_poll_records=BATCH,
                         fetch_max_bytes=64 << 20, max_partition_fetch_bytes=16 << 20)


def _ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=envelope.TZ)
    return int(value.timestamp() * 1000)


def plan(c: KafkaConsumer, topic: str, *, start: datetime | None = None, end: datetime | None = None,
         partition: int | None = None, start_offset: int | None = None, end_offset: int | None = None) -> Ranges:
    """Per partition, [first offset, end offset) — end None: up to the high watermark."""
    parts = c.partitions_for_topic(topic)
    if not parts:
        raise ReplayError(f"topic {topic} does not exist")
    if partition is not None and partition not in parts:
        raise ReplayError(f"topic {topic} has no partition {partition} (it has {len(parts)})")
    tps = [TopicPartition(topic, p) for p in sorted(parts) if partition is None or p == partition]
    begin = c.beginning_offsets(tps)
    starts = c.offsets_for_times({tp: _ms(start) for tp in tps}) if start else {}
    # Record timestamps are the producers' clocks: the end is looked up a little later and
    # records are filtered by their own timestamps as they are read (see read()).
    ends = c.offsets_for_times({tp: _ms(end) + END_SLACK_MS for tp in tps}) if end else {}
    out = {}
    for tp in tps:
        if start is not None:
            if (found := _found(starts.get(tp))) is None:
                continue  # nothing at or after the start
            first = found
        else:
            first = max(begin[tp], start_offset or 0)
        last = _found(ends.get(tp)) if end is not None else end_offset
        if last is None or first < last:
            out[tp] = (first, last)
    return out


def _found(answer) -> int | None:
    """An offsets_for_times answer; Tansu says "none" as offset 0 with timestamp -1."""
    if answer is None or answer.offset < 0 or answer.timestamp < 0:
        return None
    return answer.offset


def read(c: KafkaConsumer, ranges: Ranges, start: datetime | None = None, end: datetime | None = None,
         idle_timeout: float = 30.0) -> Iterator:
    """The records of ``ranges``, partition batches interleaved; ends at each range's end or
    at the high watermark of the fetch responses, whichever is first. With ``start`` or
    ``end``, records whose own timestamp is outside [start, end) are passed over."""
    lo = _ms(start) if start else None
    hi = _ms(end) if end else None
    if not ranges:
        return
    c.assign(list(ranges))
    for tp, (first, _) in ranges.items():
        c.seek(tp, first)
    open_ = dict(ranges)
    progress = time.monotonic()
    while open_:
        for tp, recs in c.poll(timeout_ms=500).items():
            if tp not in open_:
                continue
            last = open_[tp][1]
            for r in recs:
                if last is not None and r.offset >= last:
                    break
                if (lo is None or r.timestamp >= lo) and (hi is None or r.timestamp < hi):
                    yield r
            progress = time.monotonic()
        _close_finished(c, open_)
        if time.monotonic() - progress > idle_timeout:
            raise TransientError(f"no records for {idle_timeout:.0f}s from {sorted(str(tp) for tp in open_)}")


def _close_finished(c: KafkaConsumer, open_: Ranges) -> None:
    """Drop the partitions read to their range's end or to the high watermark; the rest stay
    assigned at their positions, so a finished partition is fetched no more."""
    for tp in list(open_):
        last, hw, pos = open_[tp][1], c.highwater(tp), c.position(tp)
        if (last is not None and pos >= last) or (hw is not None and pos >= hw):
            del open_[tp]
    if open_:
        c.assign(list(open_))


class fetcher:  # noqa: N801 — used like the function it was: fetch = fetcher(settings)
    """``fetch(topic, partition, offset)``: that one record, or None when it is gone; ``fetch.close()``."""

    def __init__(self, settings: Any) -> None:
        self.consumer = read_only_consumer(settings)

    def __call__(self, topic: str, partition: int, offset: int) -> Any:
        try:
            for r in read_partition(self.consumer, TopicPartition(topic, partition), offset, timeout=10):
                return r if r.offset == offset else None  # a later one: that offset is gone
        except TransientError:
            pass
        return None

    def close(self) -> None:
        self.consumer.close()
