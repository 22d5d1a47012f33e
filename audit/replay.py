"""Audit replay: re-read a topic over a time or offset range and decide again.

``wenzheng replay`` answers "why did this message go to that office, and what would
today's model have done?" from the topics alone:

* **Read-only.** A consumer without a group (nothing committed) is assigned the
  topic's partitions; the start is found by time (``offsets_for_times``) or given as
  an offset, the end likewise, else the high watermark the fetch responses report —
  never ``end_offsets``, which Tansu answers wrongly. Records are also filtered by
  their own timestamps: Tansu looks times up among its append times and says "none"
  as offset 0 (both in tests/test_broker_gaps.py), so its answers are only bounds.
* **Decide again.** Each message is classified and routed again with a chosen
  model and configuration. By default the ones recorded on the message
  (``classification.model_version``, ``routing.config_hash``): the model is found by
  its version among the machine's model directories, the configuration in the
  snapshot a route worker keeps at start (``<state.dir>/configs/<hash>.json``). With
  those the replay must reproduce every decision; the report says if it did not.
* **Compare and report.** Category, type, jurisdiction, lead and co-offices, triage,
  the rule and the deadlines are compared with what was decided at the time; the
  differing messages go to ``diffs.jsonl`` with why (which model, which rule), and a
  summary — agreement per category, jurisdiction and office — to the terminal,
  ``summary.csv`` and ``report.html``.
* **Republish.** ``--republish-to`` writes the replayed decisions to a topic that is
  not one of the live ones. Replaying the dead-letter topic into the intake topic
  re-feeds what was dead-lettered: the original intake record (classify's dead
  letters) or the quarantined hotline file parsed again (after a connector fix).
  Both go through the delivery journal, so a second re-feed writes nothing twice.

The parts: ``read`` (ranges and records), ``decide`` (classify and route again, in
this process or a pool), ``report`` (the audit's files and terminal summary) and
``refeed`` (dead letters back into intake); :class:`Replay` runs them in order.
"""

from __future__ import annotations

import sys
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from wenzheng.config import LoadedConfig
from wenzheng.core import envelope
from wenzheng.core.delivery import Out
from wenzheng.core.errors import BadMessage

from .decide import decisions, default_workers, prepare
from .read import BATCH, ReplayError, fetcher, plan, read, read_only_consumer
from .refeed import check_target, refeed_all
from .report import Audit, progress

__all__ = ["Replay", "ReplayError", "Request", "default_workers", "run"]


@dataclass(frozen=True)
class Request:
    """What to replay: ``topic`` (default: the routed decisions) over a time range
    (``start``, ``end``) or offsets (``partition``, ``start_offset``, ``end_offset``); with
    which ``model`` and ``config_version`` (``recorded``, ``current``, a directory, a version
    or hash; ``models``: more model directories); the report into ``out``; the decisions
    written to ``republish_to``; ``workers`` processes deciding (1: this one)."""

    topic: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    partition: int | None = None
    start_offset: int | None = None
    end_offset: int | None = None
    model: str = "recorded"
    config_version: str = "recorded"
    models: Sequence[str] = ()
    out: str | Path | None = None
    republish_to: str | None = None
    show_progress: bool | None = None
    workers: int = 1


def run(config: LoadedConfig, *, echo=print, **request) -> dict:
    """Replay as ``request`` (the fields of :class:`Request`) asks; returns the summary, and
    ``echo`` gets the lines for a person."""
    return Replay(config, Request(**request)).run(echo)


class Replay:
    """One replay: open the reader, the deciders and the report; go through the records a
    batch at a time; close everything; summarise."""

    def __init__(self, config: LoadedConfig, request: Request):
        from wenzheng.core.runtime import Runtime

        try:
            self.runtime = Runtime(config).connect(create_topics=False)
        except ValueError as exc:
            raise ReplayError(str(exc)) from None
        self.config, self.request = config, request
        topics = self.runtime.topics
        self.topic = request.topic or topics.routed
        self.refeeding = self.topic == topics.deadletter
        if request.republish_to:
            check_target(topics, self.topic, request.republish_to)
        self.totals: Counter = Counter()
        self.pending: deque = deque()  # batches being decided, in order; at most two per worker
        # opened by _open, closed by _close
        self.deciding: Any = None
        self.consumer: Any = None
        self.publisher: Any = None
        self.fetch: Any = None
        self.bar: Any = None
        self.ranges: dict[Any, tuple[int, int | None]] = {}

    def run(self, echo) -> dict:
        try:
            self._open()
            self._go()
        finally:
            self._close()
        summary = {**self.audit.close(), "topic": self.topic,
                   "ranges": {f"{tp.partition}": [s, e] for tp, (s, e) in self.ranges.items()},
                   **{k.replace(" ", "_"): v for k, v in self.totals.items()}}
        if self.refeeding:
            echo(self.audit.refeed_text(self.totals))
        else:
            echo(self.audit.text(summary))
            if self.totals:
                echo(f"republished to {self.request.republish_to}: {self.totals['republished']} new, "
                     f"{self.totals['already there']} already there")
        return summary

    def _open(self) -> None:
        req, settings = self.request, self.runtime.settings
        if not self.refeeding:  # a pool forks here, before any Kafka client threads exist
            self.deciding = decisions((self.config, req.model, req.config_version, list(req.models)), req.workers)
        self.consumer = read_only_consumer(settings)
        self.ranges = plan(self.consumer, self.topic, start=req.start, end=req.end, partition=req.partition,
                           start_offset=req.start_offset, end_offset=req.end_offset)
        if req.republish_to:
            self.publisher = self._publisher(req.republish_to)
        stamp = datetime.now(envelope.TZ).strftime("%Y%m%d-%H%M%S")
        self.audit = Audit(Path(req.out) if req.out else Path(f"replay-{self.topic}-{stamp}"))
        if self.refeeding and req.republish_to == self.runtime.topics.intake:
            self.fetch = fetcher(settings)
        ends = [(s, e) for s, e in self.ranges.values() if e is not None]
        known = len(ends) == len(self.ranges)
        self.bar = progress(sum(e - s for s, e in ends) if known else None,
                            sys.stderr.isatty() if req.show_progress is None else req.show_progress)

    def _publisher(self, target: str):
        """A publisher to ``target`` through the delivery journal, the topic made if it is new."""
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        from wenzheng.core.delivery import Publisher
        from wenzheng.core.kafka import client_kwargs
        from wenzheng.core.kafka import producer as make_producer

        settings = self.runtime.settings
        admin = KafkaAdminClient(**client_kwargs(settings))
        try:
            if target not in admin.list_topics():
                admin.create_topics([NewTopic(target, len(self.consumer.partitions_for_topic(self.topic)),
                                              settings.kafka.replication_factor)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()
        return Publisher(settings, make_producer(settings), self.runtime.journal, "replay")

    def _go(self) -> None:
        buf = []
        for rec in read(self.consumer, self.ranges, self.request.start, self.request.end):
            self.audit.read += 1
            buf.append(rec)
            if len(buf) >= BATCH:
                self._flush(buf)
                buf = []
        self._flush(buf, last=True)

    def _flush(self, records: list, last: bool = False) -> None:
        if self.refeeding:
            self._publish(refeed_all(self.runtime, records, self.fetch, self.audit.errors, self.totals))
            self.bar.update(len(records))
            return
        msgs, recs = [], []
        for rec in records:
            try:
                msgs.append(prepare(envelope.decode(rec.value), rec))
                recs.append(rec)
            except BadMessage as exc:
                self.audit.errors[exc.reason[:200]] += 1
        self.bar.update(len(records) - len(recs))
        if msgs:
            self.pending.append((msgs, recs, self.deciding.submit(msgs)))
        while self.pending and (last or len(self.pending) > 2 * max(1, self.request.workers) - 1):
            msgs, recs, result = self.pending.popleft()
            self._settle(msgs, recs, result.get())

    def _settle(self, msgs: list[dict], recs: list, results: list[dict]) -> None:
        """Decided batch: into the audit, and to the republish topic if there is one."""
        outs: list[Out] = []
        for msg, rec, result in zip(msgs, recs, results, strict=True):
            self.audit.add(msg, result)
            if self.publisher and self.request.republish_to and "error" not in result:
                outs.append(Out(self.request.republish_to, msg["id"], {
                    **msg, "classification": result["classification"], "routing": result["routing"],
                    "replay": {"of": {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
                               "at": envelope.iso(envelope.now())}}))
        self._publish(outs)
        self.bar.update(len(recs))

    def _publish(self, outs: list[Out]) -> None:
        if outs and self.publisher:
            sent = self.publisher.publish(outs)
            self.totals["republished"] += len(sent)
            self.totals["already there"] += len(outs) - len(sent)
        elif outs:
            self.totals["would re-feed"] += len(outs)

    def _close(self) -> None:
        for part in (self.bar, self.deciding, self.consumer, self.fetch, self.publisher):
            if part is not None:
                part.close()

