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
directory (shared by the workers of one machine, WAL mode) and forgets ids after
``state.dedup_retention_days``.

What this does not cover: a "zombie" worker that lost its partitions but keeps
producing (Kafka's fencing needs transactions); it is logged, not prevented.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from kafka import TopicPartition
from kafka.errors import KafkaError

from . import envelope
from .errors import TransientError
from .kafka import consumer as make_consumer
from .kafka import partition_for, read_partition

log = logging.getLogger(__name__)

PENDING, DONE = "pending", "done"
VERIFY_SKEW_MS = 120_000  # producer clocks may differ this much from the journal's


@dataclass
class Out:
    """One record a stage wants in a topic exactly once."""

    topic: str
    id: str
    value: dict
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class Journal:
    """The durable record of what each stage has delivered, by message id."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS delivery (
        stage TEXT NOT NULL, msg_id TEXT NOT NULL, topic TEXT NOT NULL,
        partition INTEGER NOT NULL, state TEXT NOT NULL, "offset" INTEGER,
        journaled_ms INTEGER NOT NULL,
        PRIMARY KEY (stage, msg_id, topic)
    );
    CREATE INDEX IF NOT EXISTS delivery_age ON delivery (journaled_ms);
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(self.SCHEMA)

    def lookup(self, stage: str, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
        """(msg_id, topic) → (state, partition, offset, journaled_ms) for the keys known."""
        found: dict[tuple[str, str], tuple] = {}
        with self._lock:
            for i in range(0, len(keys), 400):
                chunk = keys[i : i + 400]
                ids = sorted({k[0] for k in chunk})
                q = ",".join("?" * len(ids))
                rows = self.db.execute(
                    f'SELECT msg_id, topic, state, partition, "offset", journaled_ms FROM delivery '
                    f"WHERE stage=? AND msg_id IN ({q})",
                    [stage, *ids],
                ).fetchall()
                for mid, topic, *rest in rows:
                    found[(mid, topic)] = tuple(rest)
        return {k: v for k, v in found.items() if k in set(keys)}

    def mark_pending(self, stage: str, items: list[tuple[str, str, int]]) -> None:
        now = int(time.time() * 1000)
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                'INSERT OR REPLACE INTO delivery (stage, msg_id, topic, partition, state, "offset", journaled_ms) '
                "VALUES (?, ?, ?, ?, 'pending', NULL, ?)",
                [(stage, mid, topic, p, now) for mid, topic, p in items],
            )
            self.db.execute("COMMIT")

    def mark_done(self, stage: str, items: list[tuple[str, str, int]]) -> None:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "UPDATE delivery SET state='done', \"offset\"=? WHERE stage=? AND msg_id=? AND topic=?",
                [(off, stage, mid, topic) for mid, topic, off in items],
            )
            self.db.execute("COMMIT")

    def prune(self, retention_days: float) -> int:
        cutoff = int((time.time() - retention_days * 86400) * 1000)
        with self._lock:
            cur = self.db.execute("DELETE FROM delivery WHERE journaled_ms < ? AND state='done'", [cutoff])
        return cur.rowcount

    def close(self) -> None:
        self.db.close()


class Publisher:
    """Publishes a stage's output so each (message id, topic) lands once."""

    def __init__(self, settings, producer, journal: Journal, stage: str):
        self.settings, self.producer, self.journal, self.stage = settings, producer, journal, stage
        self._partitions: dict[str, int] = {}
        self._verifier = None
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
        unique: dict[tuple[str, str], Out] = {}
        for o in outs:
            unique.setdefault((o.id, o.topic), o)
        known = self.journal.lookup(self.stage, list(unique))
        to_send: list[Out] = []
        pending: dict[tuple[str, str], tuple] = {}
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

    def _verify(self, pending: dict[tuple[str, str], tuple], unique: dict[tuple[str, str], Out]) -> list[Out]:
        """Find which pending keys did reach Kafka; return the ones that did not."""
        by_tp: dict[tuple[str, int], list[tuple[str, str]]] = defaultdict(list)
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
