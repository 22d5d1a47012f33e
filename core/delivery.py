"""Exactly once by message id, on top of an at-least-once Kafka.

Kafka alone gives at-least-once: a worker killed after its output was
acknowledged but before it committed its input offsets (or a connector killed
before it saved its checkpoint) does the same work again after a restart.
Transactions would close that gap on a real cluster, but the embedded broker
accepts them without honouring aborts (see tests/test_broker_gaps.py), so every
stage instead publishes through a :class:`Publisher` backed by a durable
delivery journal keyed by ``(stage, message id, topic)``.

The order of one batch, kept by :meth:`Publisher.publish`:

1. Encode each record's key and value. One that cannot be encoded (a lone
   surrogate, JSON nested deeper than orjson's 255 levels, an integer beyond
   64 bits) is refused now and goes to step 6 without being journaled. Look the
   other keys up in the journal. *Done* keys are skipped: this is a redelivery
   and the output already exists.
2. *Pending* keys were journaled by a worker that died between steps 3 and 5.
   Their target partition is read from the time they were journaled up to the
   high watermark; keys found there are marked done, the rest are sent again.
3. Journal the keys still to send as pending, with their target partition,
   in one transaction (fsync'd).
4. Send them with that explicit partition and wait until Kafka acknowledges
   every record (``acks=all``). A record Kafka refuses for its own sake
   (:data:`REFUSED`: too large, invalid, corrupt) would be refused again on
   every retry, so it does not fail the batch: it waits for step 6, and what
   failed beside it in the same round is sent again. Any other failure (broker
   down, timeout) raises before step 5, and the whole batch is retried later.
5. Mark the acknowledged keys done with their offsets.
6. Replace each refused record by a dead letter (why, where it was going, a
   masked excerpt) delivered by steps 1-5; only then mark the refused key done,
   without an offset. A crash in between sends it again, Kafka refuses it again
   and its dead letter is found done: one dead letter, and the batch moves on.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from kafka.producer.future import FutureRecordMetadata

from . import envelope
from .errors import TransientError
from .kafka import Topics, partition_for, read_partition
from .kafka import consumer as make_consumer
from .privacy import mask_text
from .storage import LocalDB, SharedDB

log = logging.getLogger(__name__)

DONE = "done"
VERIFY_SKEW_MS = 120_000  # producer clocks may differ this much from the journal's
REFUSED: tuple[type[KafkaError], ...] = (MessageSizeTooLargeError, RecordListTooLargeError, InvalidRecordError,
                                         CorruptRecordError)
"""What Kafka answers about one record for its own sake: it would answer it again on
every retry. kafka-python splits a batch refused as too large and sends its records
again, so a record that gets one of these got it alone."""
RECORD_OVERHEAD = 16 * 1024
"""Room under the producer's ``max_request_size`` for a record's key, headers and batch framing."""
EXCERPT_CHARS = 300

Key = tuple[str, str]
"""(message id, topic): what is delivered once per stage."""
Entry = tuple[str, int, int | None, int]
"""A key's journal entry: (state, partition, offset, journaled_ms)."""
Record = tuple["Out", bytes, bytes]
"""An output with its encoded key and value."""
Refusal = tuple["Out", str]
"""An output Kafka (or the encoder) refused, and why."""


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, lone surrogates written as ``\\udc80`` so it encodes."""
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def dead_letter_value(stage: str, reason: str, *, msg_id: str, source: dict[str, Any],
                      excerpt: str = "") -> dict[str, Any]:
    """The value of a dead-letter record: the reason, where the input is, a masked excerpt — never raw PII."""
    return {
        "schema": "wenzheng.deadletter/1",
        "id": msg_id,
        "stage": stage,
        "reason": reason,
        "at": envelope.iso(envelope.now()),
        "source": source,
        "excerpt": mask_text(excerpt[:500]),
    }


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

    def mark_done(self, stage: str, items: Sequence[tuple[str, str, int | None]]) -> None:
        """Journal (msg_id, topic, offset) as acknowledged by Kafka; no offset: refused by
        Kafka and dead-lettered instead (step 6)."""
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
        self.refused = 0  # records Kafka refused, replaced by dead letters
        self.deadletter_topic = Topics(settings.kafka.topic_prefix).deadletter

    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            parts = self.producer.partitions_for(topic)
            if not parts:
                raise TransientError(f"topic {topic} does not exist")
            self._partitions[topic] = len(parts)
        return self._partitions[topic]

    @property
    def max_value_bytes(self) -> int:
        """The largest record value this publisher's producer sends."""
        return int(self.producer.config.get("max_request_size", 1 << 20)) - RECORD_OVERHEAD

    def publish(self, outs: list[Out], timeout: float = 30.0) -> list[Out]:
        """Deliver ``outs`` (steps 1–6 above); return the records actually sent now, the
        dead letters that replaced refused ones included."""
        records, refused = self._encode(outs)
        sent, by_kafka = self._deliver(records, timeout)
        refused += by_kafka
        if not refused:
            return sent
        letters, unencodable = self._encode([self._letter(o, why) for o, why in refused])
        more, again = self._deliver(letters, timeout)
        if unencodable or again:  # a dead letter is small and printable: never its own fault
            raise TransientError(f"Kafka refused a dead letter: {(unencodable + again)[0][1]}")
        self.journal.mark_done(self.stage, [(o.id, o.topic, None) for o, _ in by_kafka])
        self.refused += len(refused)
        return sent + more

    def _encode(self, outs: list[Out]) -> tuple[list[Record], list[Refusal]]:
        """Step 1's encoding: the records that encode, and those that cannot."""
        records: list[Record] = []
        refused: list[Refusal] = []
        for o in outs:
            try:
                records.append((o, o.id.encode(), envelope.encode(o.value)))
            except (TypeError, UnicodeEncodeError) as exc:  # orjson.JSONEncodeError is a TypeError
                refused.append((o, f"cannot be written as UTF-8 JSON: {printable(str(exc), 200)}"))
        return records, refused

    def _deliver(self, records: list[Record], timeout: float) -> tuple[list[Out], list[Refusal]]:
        """Steps 1–5: the records sent and acknowledged now, and those Kafka refused."""
        to_send = self._unsent(records)
        if not to_send:
            return [], []
        parts = [partition_for(key, self.partitions(o.topic)) for o, key, _ in to_send]
        self.journal.mark_pending(self.stage, [(o.id, o.topic, p) for (o, _, _), p in zip(to_send, parts, strict=True)])
        acked, refused = self._send(list(zip(to_send, parts, strict=True)), timeout)
        self.journal.mark_done(self.stage, [(o.id, o.topic, offset) for o, offset in acked])
        return [o for o, _ in acked], refused

    def _unsent(self, records: list[Record]) -> list[Record]:
        """Steps 1–2: the records neither journaled done nor found in Kafka."""
        unique: dict[Key, Record] = {}
        for r in records:
            unique.setdefault((r[0].id, r[0].topic), r)
        known = self.journal.lookup(self.stage, list(unique))
        to_send: list[Record] = []
        pending: dict[Key, Entry] = {}
        for key, record in unique.items():
            state = known.get(key)
            if state is None:
                to_send.append(record)
            elif state[0] == DONE:
                self.skipped += 1
            else:
                pending[key] = state
        if pending:
            resend = {(o.id, o.topic) for o in self._verify(pending, {k: r[0] for k, r in unique.items()})}
            to_send.extend(r for k, r in unique.items() if k in resend)
        return to_send

    def _send(self, batch: list[tuple[Record, int]], timeout: float) -> tuple[list[tuple[Out, int]], list[Refusal]]:
        """Step 4 in rounds: a round that had a refusal sends what failed beside it again;
        a round with failures and no refusal raises."""
        acked: list[tuple[Out, int]] = []
        refused: list[Refusal] = []
        while batch:
            before = len(refused)
            futures = [self._send_one(record, p, refused) for record, p in batch]
            try:
                self.producer.flush(timeout)
            except KafkaError as exc:
                raise TransientError(f"Kafka did not acknowledge: {exc}") from exc
            failed: list[tuple[Record, int]] = []
            error: KafkaError | None = None
            for item, fut in zip(batch, futures, strict=True):
                if fut is None:
                    continue
                try:
                    acked.append((item[0][0], fut.get(timeout=timeout).offset))
                except REFUSED as exc:
                    refused.append((item[0][0], f"Kafka refused the record: {exc}"))
                except KafkaError as exc:
                    failed.append(item)
                    error = exc
            if failed and len(refused) == before:
                raise TransientError(f"Kafka did not acknowledge: {error}") from error
            batch = failed
        return acked, refused

    def _send_one(self, record: Record, partition: int, refused: list[Refusal]) -> FutureRecordMetadata | None:
        out, key, value = record
        try:
            return self.producer.send(out.topic, key=key, value=value, partition=partition, headers=out.headers or None)
        except REFUSED as exc:  # the producer's own check: larger than its max_request_size
            refused.append((out, f"Kafka refused the record: {exc}"))
            return None
        except KafkaError as exc:  # no metadata within max_block_ms: the broker is away
            raise TransientError(f"Kafka did not take the record: {exc}") from exc

    def _letter(self, out: Out, reason: str) -> Out:
        """The dead letter that stands for a refused record (step 6)."""
        msg_id = printable(out.id, 300)
        text = next((v for k in ("text", "excerpt", "title") if isinstance(v := out.value.get(k), str)), "")
        value = dead_letter_value(self.stage, reason, msg_id=msg_id, source={"topic": out.topic, "key": msg_id},
                                  excerpt=printable(text, EXCERPT_CHARS))
        log.warning("dead-lettered a record Kafka refused: %s", reason, extra={"stage": self.stage, "id": msg_id})
        return Out(self.deadletter_topic, f"{self.stage}:{msg_id}", value)

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
