"""The connector contract: fetch from a channel, publish to wz.intake, checkpoint.

Delivery order for every connector — the guarantee lives in this order:

1. Fetch what is new since the checkpoint (a cursor, since-id, or file list).
2. Turn each item into an intake envelope; an item that cannot be read becomes
   a dead-letter record with its reason (and the item is quarantined, where
   the channel has somewhere to put it).
3. Publish through the :class:`~wenzheng.core.delivery.Publisher`: journaled, sent,
   acknowledged by Kafka (``acks=all``), journaled done.
4. Only then advance and save the checkpoint (atomically: write, fsync, rename).

A crash between 3 and 4 fetches the same items again; the publisher recognises
their ids, so nothing is doubled. A crash before 3 completes loses nothing,
because the checkpoint has not moved.

Push channels (WeChat callbacks, Open311) cannot wait for Kafka inside an
HTTP request: they :meth:`Connector.spool` the envelopes — a durable local
write, fsync'd, de-duplicated by message id — answer at once, and a drainer
publishes the spool in the order above and deletes what Kafka acknowledged. So a
broker that is briefly down delays messages but loses none.

A fifth channel is a new module with a ``Connector`` subclass (``from_config``
makes one per configured account) and a config entry; register it in
:data:`wenzheng.ingest.worker.CONNECTORS`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from wenzheng.core import envelope
from wenzheng.core.delivery import Out, Publisher
from wenzheng.core.metrics import DEADLETTERED, ERRORS, MESSAGES_IN, MESSAGES_OUT
from wenzheng.core.runtime import Runtime
from wenzheng.core.stage import deadletter

FETCHED = Counter("wenzheng_connector_fetched_total", "Items fetched from upstream", ["connector"])
PUBLISHED = Counter("wenzheng_connector_published_total", "Messages published to the intake topic", ["connector"])
CONNECTOR_DEAD = Counter("wenzheng_connector_deadlettered_total", "Items dead-lettered", ["connector"])
CONNECTOR_ERRORS = Counter("wenzheng_connector_errors_total", "Failed polls", ["connector", "kind"])
LAG = Gauge("wenzheng_connector_lag_seconds", "Now minus the newest upstream item's time", ["connector"])
SPOOLED = Gauge("wenzheng_connector_spooled", "Pushed messages waiting in the local spool", ["connector"])

log = logging.getLogger(__name__)


def _epoch(iso_time: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso_time).timestamp()
    except ValueError:
        return time.time()


class Checkpoint:
    """One connector's state: a format version and a dict, saved atomically."""

    VERSION = 1

    def __init__(self, path: Path):
        self.path = path
        self.state: dict[str, Any] = {}
        if path.exists():
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("version") != self.VERSION:
                raise ValueError(f"{path}: checkpoint format {doc.get('version')} (expected {self.VERSION})")
            self.state = doc["state"]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": self.VERSION, "state": self.state}, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class Spool:
    """Pushed messages, durable on local disk until Kafka has them (one file per worker state)."""

    def __init__(self, path: Path):
        self._lock = threading.Lock()
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS spool (connector TEXT, msg_id TEXT, payload BLOB, "
                        "spooled_ms INTEGER, PRIMARY KEY (connector, msg_id))")

    def add(self, connector: str, envelopes: list[dict]) -> int:
        now = int(time.time() * 1000)
        with self._lock:
            before = self.db.total_changes
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR IGNORE INTO spool VALUES (?, ?, ?, ?)",
                                [(connector, e["id"], envelope.encode(e), now) for e in envelopes])
            self.db.execute("COMMIT")
            return self.db.total_changes - before

    def take(self, connector: str, limit: int = 500) -> list[dict]:
        with self._lock:
            rows = self.db.execute("SELECT payload FROM spool WHERE connector=? ORDER BY spooled_ms LIMIT ?",
                                   [connector, limit]).fetchall()
        return [json.loads(r[0]) for r in rows]

    def remove(self, connector: str, ids: list[str]) -> None:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM spool WHERE connector=? AND msg_id=?", [(connector, i) for i in ids])
            self.db.execute("COMMIT")

    def count(self, connector: str) -> int:
        with self._lock:
            return self.db.execute("SELECT COUNT(*) FROM spool WHERE connector=?", [connector]).fetchone()[0]


_spools: dict[Path, Spool] = {}


def spool_for(runtime: Runtime) -> Spool:
    path = runtime.state_dir / "spool.sqlite3"
    if path not in _spools:
        _spools[path] = Spool(path)
    return _spools[path]


class Connector(ABC):
    """A channel account that wenzheng polls (or that pushes to it)."""

    channel: str
    poll_seconds: float = 0.0
    """How often the ingest worker calls :meth:`poll`; 0: push only, never polled."""

    def __init__(self, runtime: Runtime, publisher: Publisher, name: str):
        self.runtime, self.publisher, self.name = runtime, publisher, name
        self.checkpoint = Checkpoint(runtime.state_dir / "checkpoints" / f"{name}.json")
        self._lock = threading.Lock()  # one poll at a time per connector
        self._backoff = 0.0
        self._resume_at = 0.0
        self._drain_lock = threading.Lock()
        self._drain_wanted = threading.Event()
        self._drainer: threading.Thread | None = None

    @classmethod
    def from_config(cls, runtime: Runtime, make_publisher: Callable[[str], Publisher]) -> list[Connector]:
        """One connector per configured account of this channel (default: one for the channel)."""
        return [cls(runtime, make_publisher(cls.channel), cls.channel)]

    def routes(self) -> list[tuple[str, str, Callable]]:
        """HTTP routes a push channel serves on the ingest worker: (method, path prefix, handler)."""
        return []

    @property
    def stage(self) -> str:
        return f"ingest.{self.name}"

    @abstractmethod
    def poll(self) -> int:
        """Fetch, publish and checkpoint once; return how many messages were published."""

    def run_once(self) -> int:
        """The scheduler's entry point: never raises, so one bad poll never stops the schedule.

        After a failed poll the connector waits (exponential back-off with jitter,
        up to 15 minutes) before it asks upstream again: never a tight loop."""
        if time.monotonic() < self._resume_at or not self._lock.acquire(blocking=False):
            return 0
        try:
            n = self.drain() + self.poll()
            self._backoff = 0.0
            return n
        except Exception as exc:
            kind = "transient" if getattr(exc, "transient", False) else "poll"
            ERRORS.labels(self.stage, kind).inc()
            CONNECTOR_ERRORS.labels(self.name, kind).inc()
            self._backoff = min(900.0, max(2.0, self._backoff * 2))
            self._resume_at = time.monotonic() + self._backoff * random.uniform(0.5, 1.0)
            if kind == "transient":
                log.warning("poll failed, backing off %.0fs: %s", self._backoff, exc, extra={"connector": self.name})
            else:
                log.exception("poll failed, backing off %.0fs", self._backoff, extra={"connector": self.name})
            return 0
        finally:
            self._lock.release()

    def spool(self, envelopes: list[dict]) -> int:
        """The push path: keep the envelopes durably and return at once; a drainer publishes them.

        The drainer thread wakes at once, so a push reaches Kafka in milliseconds
        while the broker is up; while it is down the scheduled :meth:`run_once`
        keeps retrying with back-off."""
        added = spool_for(self.runtime).add(self.name, envelopes)
        FETCHED.labels(self.name).inc(len(envelopes))
        SPOOLED.labels(self.name).inc(added)
        if self._drainer is None or not self._drainer.is_alive():
            self._drainer = threading.Thread(target=self._drain_loop, name=f"drain-{self.name}", daemon=True)
            self._drainer.start()
        self._drain_wanted.set()
        return added

    def _drain_loop(self) -> None:
        while self._drain_wanted.wait(timeout=30):
            self._drain_wanted.clear()
            try:
                self.drain()
            except Exception as exc:  # Kafka down: the scheduled run_once retries with back-off
                log.warning("drain failed: %s", exc, extra={"connector": self.name})
                return

    def drain(self) -> int:
        """Publish what the push path spooled, then forget it (after Kafka acknowledged)."""
        spool = spool_for(self.runtime)
        total = 0
        with self._drain_lock:
            while batch := spool.take(self.name):
                self.publish(batch)
                spool.remove(self.name, [e["id"] for e in batch])
                total += len(batch)
            SPOOLED.labels(self.name).set(spool.count(self.name))
        return total

    def publish(self, envelopes: list[dict], dead: list[Out] = ()) -> None:
        """Steps 3 of the order above; the caller saves the checkpoint after it returns."""
        outs = [Out(self.runtime.topics.intake, e["id"], e) for e in envelopes] + list(dead)
        MESSAGES_IN.labels(self.stage).inc(len(outs))
        sent = self.publisher.publish(outs)
        for o in sent:
            MESSAGES_OUT.labels(self.stage, o.topic).inc()
        DEADLETTERED.labels(self.stage).inc(len(dead))
        PUBLISHED.labels(self.name).inc(sum(1 for o in sent if o.topic == self.runtime.topics.intake))
        CONNECTOR_DEAD.labels(self.name).inc(len(dead))
        if envelopes:
            newest = max(e["posted_at"] for e in envelopes)
            LAG.labels(self.name).set(max(0.0, time.time() - _epoch(newest)))

    def dead(self, reason: str, msg_id: str, source: dict, excerpt: str = "") -> Out:
        log.warning("dead-lettered: %s", reason, extra={"connector": self.name, "id": msg_id})
        return deadletter(self.runtime, self.stage, reason, msg_id=msg_id, source=source, excerpt=excerpt)

    def close(self) -> None:  # noqa: B027 — optional hook: most connectors hold nothing open
        """Release what the connector holds open (HTTP sessions, SFTP connections)."""
