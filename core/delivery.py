"""Exactly once by message id, on top of an at-least-once Kafka.

Kafka alone gives at-least-once: a worker killed after its output was
acknowledged but before it committed its input offsets (or a connector killed
before it saved its checkpoint) does the same work again after a restart.
Transactions would close that gap on a real cluster, but the embedded broker
accepts them without honouring aborts (see tests/test_broker_gaps.py), so every
stage instead publishes through a :class:`Publisher` backed by a durable
delivery journal keyed by ``(stage, message id, topic)``.

The order of one batch, kept by :meth:`Publisher.publish`:

1. Look the batch's keys up in the journal. *Done* keys are skipped: this is a
   redelivery and the output already exists.
2. *Pending* keys were journaled by a worker that died between steps 3 and 5.
   Their target partition is read from the time they were journaled up to the
   high watermark; keys found there are marked done, the rest are sent again.
3. Journal the keys still to send as pending, with their target partition,
   in one transaction (fsync'd).
4. Send them with that explicit partition and wait until Kafka acknowledges
   every record (``acks=all``); any failure raises before step 5.
5. Mark them done with their offsets.

Only after ``publish`` returns does a worker commit its input offsets, or a
connector advance its checkpoint. The journal is SQLite under the state
directory (:mod:`~wenzheng.core.storage`: shared by the workers of one machine,
fsync'd) and forgets ids after
``state.dedup_retention_days``.

What this does not cover: a "zombie" worker that lost its partitions but keeps
producing (Kafka's fencing needs transactions); it is logged, not prevented.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from . import envelope
from .errors import TransientError
from .kafka import consumer as make_consumer
from .kafka import partition_for, read_partition
from .storage import LocalDB, SharedDB

log = logging.getLogger(__name__)

DONE = "done"
VERIFY_SKEW_MS = 120_000  # producer clocks may differ this much from the journal's

Key = tuple[str, str]
"""(message id, topic): what is delivered once per stage."""
Entry = tuple[str, int, int | None, int]
"""A key's journal entry: (state, partition, offset, journaled_ms)."""


@dataclass
class Out:
    """One record a stage wants in a topic exactly once."""

    topic: str
    id: str
    value: dict[str, Any]
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class Journal:
    """The durable record of what each stage has delivered, by message id."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS delivery (
        stage TEXT NOT NULL, msg_id TEXT NOT NULL, topic TEXT NOT NULL,
        partition INTEGER NOT NULL, state TEXT NOT NULL, "offset" BIGINT,
        journaled_ms BIGINT NOT NULL,
        PRIMARY KEY (stage, msg_id, topic)
    );
    CREATE INDEX IF NOT EXISTS delivery_age ON delivery (journaled_ms);
    """
    CHUNK = 400  # ids per lookup query, under SQLite's bound-parameter limit

    def __init__(self, path: str | Path, url: str = "") -> None:
        """SQLite at ``path`` on this machine, or with ``url`` (``state.url``) the shared
        PostgreSQL every machine's workers use."""
        self.path = Path(path)
        self.db: LocalDB | SharedDB = SharedDB(url, self.SCHEMA) if url else LocalDB(self.path, self.SCHEMA)

    def lookup(self, stage: str, keys: list[Key]) -> dict[Key, Entry]:
        """(msg_id, topic) → (state, partition, offset, journaled_ms) for the keys known."""
        wanted = set(keys)
        found: dict[Key, Entry] = {}
        ids = sorted({k[0] for k in keys})
        for i in range(0, len(ids), self.CHUNK):
            chunk = ids[i : i + self.CHUNK]
            rows = self.db.query(
                f'SELECT msg_id, topic, state, partition, "offset", journaled_ms FROM delivery '
                f"WHERE stage=? AND msg_id IN ({','.join('?' * len(chunk))})",
                [stage, *chunk],
            )
            for mid, topic, state, partition, offset, ms in rows:
                if (mid, topic) in wanted:
                    found[(mid, topic)] = (state, partition, offset, ms)
        return found

    def mark_pending(self, stage: str, items: list[tuple[str, str, int]]) -> None:
        """Journal (msg_id, topic, partition) as about to be sent."""
        now = int(time.time() * 1000)
        with self.db.transaction() as tx:
            tx.executemany(
                'INSERT INTO delivery (stage, msg_id, topic, partition, state, "offset", journaled_ms) '
                "VALUES (?, ?, ?, ?, 'pending', NULL, ?) ON CONFLICT (stage, msg_id, topic) DO UPDATE SET "
                "partition=excluded.partition, state='pending', \"offset\"=NULL, journaled_ms=excluded.journaled_ms",
                [(stage, mid, topic, p, now) for mid, topic, p in items],
            )

    def mark_done(self, stage: str, items: list[tuple[str, str, int]]) -> None:
        """Journal (msg_id, topic, offset) as acknowledged by Kafka."""
        with self.db.transaction() as tx:
            tx.executemany(
                "UPDATE delivery SET state='done', \"offset\"=? WHERE stage=? AND msg_id=? AND topic=?",
                [(off, stage, mid, topic) for mid, topic, off in items],
            )

    def prune(self, retention_days: float) -> int:
        cutoff = int((time.time() - retention_days * 86400) * 1000)
        with self.db.transaction() as tx:
            return tx.execute("DELETE FROM delivery WHERE journaled_ms < ? AND state='done'", [cutoff]).rowcount

    def close(self) -> None:
        self.db.close()


class Publisher:
    """Publishes a stage's output so each (message id, topic) lands once."""

    def __init__(self, settings: Any, producer: KafkaProducer, journal: Journal, stage: str) -> None:
        self.settings, self.producer, self.journal, self.stage = settings, producer, journal, stage
        self._partitions: dict[str, int] = {}
        self._verifier: KafkaConsumer | None = None
        self.skipped = 0  # redeliveries recognised as already done

    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            parts = self.producer.partitions_for(topic)
            if not parts:
                raise TransientError(f"topic {topic} does not exist")
            self._partitions[topic] = len(parts)
        return self._partitions[topic]

    def publish(self, outs: list[Out], timeout: float = 30.0) -> list[Out]:
        """Deliver ``outs`` (steps 1–5 above); return the ones actually sent now."""
        if not outs:
            return []
        unique: dict[Key, Out] = {}
        for o in outs:
            unique.setdefault((o.id, o.topic), o)
        known = self.journal.lookup(self.stage, list(unique))
        to_send: list[Out] = []
        pending: dict[Key, Entry] = {}
        for key, out in unique.items():
            state = known.get(key)
            if state is None:
                to_send.append(out)
            elif state[0] == DONE:
                self.skipped += 1
            else:
                pending[key] = state
        if pending:
            to_send.extend(self._verify(pending, unique))
        if not to_send:
            return []
        targets = [(o.id, o.topic, partition_for(o.id.encode(), self.partitions(o.topic))) for o in to_send]
        self.journal.mark_pending(self.stage, targets)
        futures = []
        for o, (_, _, p) in zip(to_send, targets, strict=True):
            futures.append(
                self.producer.send(o.topic, key=o.id.encode(), value=envelope.encode(o.value),
                                   partition=p, headers=o.headers or None)
            )
        self.producer.flush(timeout)
        acked = []
        try:
            for o, fut in zip(to_send, futures, strict=True):
                meta = fut.get(timeout=timeout)
                acked.append((o.id, o.topic, meta.offset))
        except KafkaError as exc:
            raise TransientError(f"Kafka did not acknowledge: {exc}") from exc
        self.journal.mark_done(self.stage, acked)
        return to_send

    def _verify(self, pending: dict[Key, Entry], unique: dict[Key, Out]) -> list[Out]:
        """Find which pending keys did reach Kafka; return the ones that did not."""
        by_tp: dict[tuple[str, int], list[Key]] = defaultdict(list)
        for key, (_, partition, _, _) in pending.items():
            by_tp[(key[1], partition)].append(key)
        if self._verifier is None:
            self._verifier = make_consumer(self.settings, group=None, client_id="wenzheng-verify")
        found: list[tuple[str, str, int]] = []
        for (topic, partition), keys in by_tp.items():
            tp = TopicPartition(topic, partition)
            since = min(pending[k][3] for k in keys) - VERIFY_SKEW_MS
            start = self._verifier.offsets_for_times({tp: since}).get(tp)
            if start is None:
                continue  # nothing written since: none of them arrived
            wanted = {k[0].encode(): k for k in keys}
            for rec in read_partition(self._verifier, tp, start.offset):
                if rec.key in wanted:
                    mid, t = wanted.pop(rec.key)
                    found.append((mid, t, rec.offset))
                    if not wanted:
                        break
        if found:
            self.journal.mark_done(self.stage, found)
            self.skipped += len(found)
        got = {(m, t) for m, t, _ in found}
        resend = [unique[k] for k in pending if k not in got]
        log.info("verified pending deliveries", extra={"stage": self.stage, "found": len(found), "resend": len(resend)})
        return resend

    def close(self, producer: bool = True) -> None:
        if self._verifier is not None:
            self._verifier.close()
            self._verifier = None
        if producer:
            self.producer.close(timeout=5)
