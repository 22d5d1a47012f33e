"""A consumer-driven stage (classify, route): read a topic, publish results.

Delivery, per batch — the order is the guarantee:

1. ``poll`` a batch from the stage's consumer group.
2. Process each record; a record that cannot be processed becomes a
   dead-letter record with its reason (it never stops the records behind it).
3. Publish every output through the :class:`~wenzheng.core.delivery.Publisher`
   (journal → send → wait for acks → journal done); transient failures are
   retried with back-off, the batch is never half-committed.
4. Commit the batch's offsets. A crash before this step redelivers the batch;
   step 3 recognises its records by id, so nothing is doubled.

SIGINT/SIGTERM set ``running`` to false: the batch in hand is finished and
committed, the consumer leaves its group, and the worker exits.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from . import envelope
from .delivery import Out, Publisher
from .errors import BadMessage, TransientError
from .kafka import consumer as make_consumer
from .kafka import producer as make_producer
from .metrics import DEADLETTERED, DUPLICATES, ERRORS, LAG, MESSAGES_IN, MESSAGES_OUT
from .privacy import mask_reason, mask_text
from .runtime import Runtime
from .service import Mounted, Route

log = logging.getLogger(__name__)
T = TypeVar("T")
CHECK_SECONDS = 5.0
"""How often an idle or failing stage asks whether the broker still has its topics."""
PRUNE_SECONDS = 3600.0
"""How often the delivery journal forgets ids older than ``state.dedup_retention_days``."""


def pseudonym_key(runtime: Runtime) -> bytes:
    """``privacy.pseudonym_key`` as bytes: authors' pseudonyms, message and dead-letter ids,
    address fingerprints and the spool's seal are all keyed with it."""
    return runtime.settings.privacy.pseudonym_key.get_secret_value().encode()


def deadletter(runtime: Runtime, stage: str, reason: str, *, msg_id: str, source: dict[str, Any],
               excerpt: str = "") -> Out:
    """A dead-letter record: the reason, where the input is, a masked excerpt — never raw PII;
    its id keyed (``envelope.opaque_id``: ``msg_id`` may be a file name or a pre-upgrade key)."""
    msg_id = envelope.opaque_id(msg_id, pseudonym_key(runtime))
    value = {
        "schema": "wenzheng.deadletter/1",
        "id": msg_id,
        "stage": stage,
        "reason": mask_reason(reason),  # reasons quote what failed to parse
        "at": envelope.iso(envelope.now()),
        "source": source,
        "excerpt": mask_text(excerpt[:500]),
    }
    return Out(runtime.topics.deadletter, f"{stage}:{msg_id}", value)


class Stage(ABC):
    """One step of the pipeline: which topics it reads and what it makes of a message."""

    name: str

    def __init__(self, runtime: Runtime):
        self.runtime = runtime

    @abstractmethod
    def inputs(self) -> list[str]: ...

    @abstractmethod
    def process(self, value: dict[str, Any], record: ConsumerRecord) -> list[Out]:
        """Outputs for one decoded record; raise BadMessage to dead-letter it."""

    def process_many(self, items: list[tuple[dict[str, Any], ConsumerRecord]]) -> list[Out]:
        """Outputs for a batch (override to vectorise); if it raises, records go one by one."""
        return [o for value, rec in items for o in self.process(value, rec)]

    def health(self) -> dict[str, Any]:
        return {}

    def between_batches(self) -> None:  # noqa: B027 — optional hook
        """Called after each committed batch (and when idle): e.g. switch to a promoted model."""

    def routes(self) -> list[Route | Mounted]:
        """HTTP routes (wenzheng.core.service.Route), or a whole app (Mounted), to serve beside
        /healthz and /metrics."""
        return []


class _Session:
    """One set of Kafka clients for a stage; rebuilt after the broker lost its state."""

    def __init__(self, runtime: Runtime, stage: Stage) -> None:
        settings = runtime.settings
        inputs = stage.inputs()
        group = runtime.group(stage.name, inputs[0])
        self.consumer = make_consumer(settings, *inputs, group=group)
        log.info("consuming %s as group %s", ", ".join(inputs), group, extra={"stage": stage.name})
        self.publisher = Publisher(settings, make_producer(settings), runtime.journal, stage.name)

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            self.publisher.close()  # and its producer


class StageWorker:
    def __init__(self, runtime: Runtime, stage: Stage, poll_ms: int = 500):
        self.runtime, self.stage, self.poll_ms = runtime, stage, poll_ms
        self.running = False
        self._stop_requested = False  # a SIGTERM may come while the consumer is still being made
        self.processed = 0
        self.last_batch_at: float | None = None
        self.problem: str | None = None
        """Why the stage cannot consume or produce now (None: it can); /healthz says "degraded"."""
        self._checked = time.monotonic()
        self._next_prune = time.monotonic()
        self._stopped = threading.Event()

    def health(self) -> dict[str, Any]:
        ok = self.problem is None
        return {"ok": ok, **({} if ok else {"reason": self.problem}), "processed": self.processed,
                "last_batch_at": self.last_batch_at, **self.stage.health()}

    def routes(self) -> list[Route | Mounted]:
        return self.stage.routes()

    def stop(self) -> None:
        self._stop_requested = True
        self.running = False

    def run(self) -> None:
        """Sessions of Kafka clients until stopped; a broker that lost its state (a memory-only
        broker restarted, topics deleted) or stopped answering ends a session, and the next
        one starts once the topics are back (``Runtime.recover``)."""
        self.running = not self._stop_requested
        log.info("stage started", extra={"stage": self.stage.name, "inputs": self.stage.inputs()})
        try:
            while self.running:
                session = _Session(self.runtime, self.stage)
                try:
                    self._serve(session)
                finally:
                    session.close()
                if self.running:
                    self._recover()
        finally:
            self._stopped.set()
            log.info("stage stopped", extra={"stage": self.stage.name, "processed": self.processed})

    def _serve(self, s: _Session) -> None:
        """Batches, until the worker stops or the broker needs recovering."""
        while self.running:
            self.stage.between_batches()
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + PRUNE_SECONDS
                self.runtime.prune()
            batch = s.consumer.poll(timeout_ms=self.poll_ms)
            self._report_lag(s.consumer)
            if not batch:
                if self._broker_lost():
                    return
                continue
            records = [rec for recs in batch.values() for rec in recs]
            offsets: dict[TopicPartition, OffsetAndMetadata] = {
                tp: OffsetAndMetadata(recs[-1].offset + 1, "", -1) for tp, recs in batch.items()
            }
            MESSAGES_IN.labels(self.stage.name).inc(len(records))
            outs = self._process(records)
            if outs is None or not self._publish(s.publisher, outs):
                return  # stopping, or the broker is lost: the batch will be redelivered
            try:
                s.consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # Partitions moved to another worker; it will see these ids as done.
                ERRORS.labels(self.stage.name, "commit").inc()
                log.warning("commit failed: %s", exc, extra={"stage": self.stage.name})
            self.processed += len(records)
            self.last_batch_at = time.time()
            self.problem = None

    def _broker_lost(self, now: bool = False) -> bool:
        """Ask the broker (every CHECK_SECONDS while idle, or ``now``): True when the clients
        must be rebuilt. ``problem`` says why, for /healthz, until a batch goes through."""
        if not now and time.monotonic() - self._checked < CHECK_SECONDS:
            return False
        self._checked = time.monotonic()
        self.problem = self.runtime.check()
        if self.problem:
            ERRORS.labels(self.stage.name, "broker").inc()
            log.warning("broker: %s", self.problem, extra={"stage": self.stage.name})
        return self.problem is not None

    def _recover(self) -> None:
        while self.running:
            try:
                self.runtime.recover()
                return
            except TransientError as exc:
                self.problem = str(exc)
                time.sleep(1)

    def _process(self, records: list[ConsumerRecord]) -> list[Out] | None:
        """The fast path for a whole batch; one by one (to isolate the bad record) if it fails.

        A :class:`TransientError` (a database or service the stage writes to is down) is
        not the record's fault: the batch is retried with back-off, never dead-lettered;
        None when the worker stops meanwhile (the batch is redelivered)."""
        def once() -> list[Out]:
            try:
                return self.stage.process_many([(envelope.decode(r.value), r) for r in records])
            except TransientError:
                raise
            except Exception:
                return [o for r in records for o in self._handle(r)]

        ok, outs = self._retry("processing", once)
        return outs if ok else None

    def _retry(self, what: str, fn: Callable[[], T], broker: bool = False) -> tuple[bool, T | None]:
        """``fn()`` until it does not raise TransientError, with back-off: (True, its result),
        or (False, None) once the worker is stopping — or, for ``broker`` work (publishing),
        once the broker is found lost: its clients are rebuilt and the batch redelivered."""
        delay = 0.5
        while True:
            try:
                return True, fn()
            except TransientError as exc:
                ERRORS.labels(self.stage.name, "transient").inc()
                log.warning("%s failed, retrying in %.1fs: %s", what, delay, exc, extra={"stage": self.stage.name})
                if not self.running or (broker and self._broker_lost(now=True)):
                    return False, None
                time.sleep(delay)
                delay = min(delay * 2, 10)

    def _handle(self, rec: ConsumerRecord) -> list[Out]:
        name = self.stage.name
        source = {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
                  "key": rec.key.decode("utf-8", "replace") if rec.key else None}
        try:
            return self.stage.process(envelope.decode(rec.value), rec)
        except TransientError:
            raise
        except BadMessage as exc:
            reason = exc.reason
        except Exception as exc:  # a bug must not stop the records behind this one
            ERRORS.labels(name, "bug").inc()
            log.exception("processing failed", extra={"stage": name, **source})
            reason = f"{type(exc).__name__}: {exc}"
        DEADLETTERED.labels(name).inc()
        # keyed here, not for every record: the HMAC is needed only on this path
        msg_id = envelope.opaque_id(source["key"] or f"{rec.topic}:{rec.partition}:{rec.offset}",
                                    pseudonym_key(self.runtime))
        log.warning("dead-lettered %s[%s] %s: %s", rec.topic, rec.partition, rec.offset, reason,
                    extra={"stage": name, "id": msg_id})
        excerpt = (rec.value or b"")[:600].decode("utf-8", "replace")
        return [deadletter(self.runtime, name, reason, msg_id=msg_id, source=source, excerpt=excerpt)]

    def _publish(self, publisher: Publisher, outs: list[Out]) -> bool:
        def once() -> tuple[list[Out], int]:
            before = publisher.skipped
            return publisher.publish(outs), publisher.skipped - before

        ok, result = self._retry("publish", once, broker=True)
        if not ok or result is None:
            return False
        sent, skipped = result
        for o in sent:
            MESSAGES_OUT.labels(self.stage.name, o.topic).inc()
        DUPLICATES.labels(self.stage.name).inc(skipped)
        return True

    def _report_lag(self, consumer: KafkaConsumer) -> None:
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            if hw is not None:
                LAG.labels(self.stage.name, tp.topic, str(tp.partition)).set(max(0, hw - consumer.position(tp)))
