"""The connector template: a channel yields pages, the base class delivers them.

A connector says only what is specific to its upstream: :meth:`Connector.fetch`
reads from a cursor and yields :class:`Page` objects. The base class owns the
loop, its order and its retries, so no connector writes them. For each page —
the guarantee lives in this order:

1. ``fetch`` reads one page of what is new since the cursor (an API page, the
   files that have settled, one window of records). The cursor is a copy of the
   checkpoint state: a connector cannot move the checkpoint by changing it.
2. It turns each item into an intake envelope. An item that cannot be read
   becomes a dead letter in the page, with its reason (masked like the excerpt):
   it never fails the page nor backs the connector off. The page carries the
   checkpoint state after it (:attr:`Page.state`).
3. The base publishes the page through the :class:`~wenzheng.core.delivery.Publisher`:
   journaled, sent, acknowledged by Kafka (``acks=all``), journaled done.
4. Then :attr:`Page.acked` runs: what must follow Kafka's acknowledgement and
   precede the checkpoint (quarantine a page's unreadable files, record its ids
   as published).
5. Only then the checkpoint becomes the page's state, saved atomically (write,
   fsync, rename), and ``fetch`` is asked for its next page.

A crash between 3 and 5 fetches the same page again; the publisher recognises
its ids, so nothing is doubled. A crash before 3 completes loses nothing,
because the checkpoint has not moved.

**Retries.** Whatever ``fetch`` raises (upstream down or throttling us:
:class:`~wenzheng.core.errors.TransientError`; a broken contract, a refused
token) and whatever ``publish`` raises (Kafka down) ends the poll where it is —
pages already delivered stay delivered — and :meth:`Connector.run_once` backs the
connector off, exponentially with jitter (2 s, 4 s, … up to 15 minutes), before
it asks upstream again. Never a tight loop.

**Checkpoint formats.** A checkpoint file carries a format version
(:attr:`Connector.CHECKPOINT_VERSION`). A connector that changes its cursor's
format bumps it and implements :meth:`Connector.migrate_checkpoint` from the
older formats (the file is rewritten once, when loaded); a checkpoint without a
migration stops the connector rather than re-read or skip upstream. The four
polling connectors are at version 1: moving them to pages kept their cursors.

**Push channels** (WeChat callbacks, Open311) cannot wait for Kafka inside an
HTTP request: they :meth:`Connector.spool` the envelopes (and dead letters) — a
durable local write, fsync'd, de-duplicated by message id — answer at once, and a
drainer publishes the spool in the order above and deletes what Kafka
acknowledged. So a broker that is briefly down delays messages but loses none.

A fifth channel is a new module with a ``Connector`` subclass (``from_config``
makes one per configured account, ``fetch`` yields its pages) and a config entry,
registered with the ingest worker.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from wenzheng.core import envelope
from wenzheng.core.delivery import Out, Publisher
from wenzheng.core.metrics import DEADLETTERED, ERRORS, MESSAGES_IN, MESSAGES_OUT
from wenzheng.core.privacy import mask_text
from wenzheng.core.runtime import Runtime
from wenzheng.core.service import Route
from wenzheng.core.stage import deadletter
from wenzheng.core.storage import LocalDB, shared

FETCHED = Counter("wenzheng_connector_fetched_total", "Items fetched from upstream", ["connector"])
PUBLISHED = Counter("wenzheng_connector_published_total", "Messages published to the intake topic", ["connector"])
CONNECTOR_DEAD = Counter("wenzheng_connector_deadlettered_total", "Items dead-lettered", ["connector"])
CONNECTOR_ERRORS = Counter("wenzheng_connector_errors_total", "Failed polls", ["connector", "kind"])
LAG = Gauge("wenzheng_connector_lag_seconds", "Now minus the newest upstream item's time", ["connector"])
SPOOLED = Gauge("wenzheng_connector_spooled", "Pushed messages waiting in the local spool", ["connector"])

log = logging.getLogger(__name__)

State = dict[str, Any]
Pages = Generator["Page", None, None]
BACKOFF_FIRST, BACKOFF_MAX = 2.0, 900.0


def _epoch(iso_time: str) -> float:
    try:
        return datetime.fromisoformat(iso_time).timestamp()
    except ValueError:
        return time.time()


@dataclass
class Page:
    """One page of upstream, as :meth:`Connector.fetch` yields it."""

    envelopes: list[dict[str, Any]] = field(default_factory=list)
    dead: list[Out] = field(default_factory=list)
    """Dead letters of the items that could not be read (:meth:`Connector.dead`)."""
    state: State | None = None
    """The checkpoint state once this page is delivered; None: the checkpoint stays."""
    fetched: int = 0
    """Items read upstream for this page, published or not (the fetched metric)."""
    acked: Callable[[], None] | None = None
    """Runs once Kafka acknowledged the page, before the checkpoint moves (step 4)."""


class Checkpoint:
    """One connector's state: a format version and a dict, saved atomically."""

    def __init__(self, path: Path, version: int = 1,
                 migrate: Callable[[int, State], State] | None = None) -> None:
        self.path, self.version = path, version
        self.state: State = {}
        if not path.exists():
            return
        doc = json.loads(path.read_text(encoding="utf-8"))
        found = doc.get("version")
        if found == version:
            self.state = doc["state"]
            return
        if not isinstance(found, int) or found > version or migrate is None:
            raise ValueError(f"{path}: checkpoint format {found} (expected {version}, no migration)")
        self.state = migrate(found, doc["state"])
        self.save()
        log.info("checkpoint migrated from format %s to %s", found, version, extra={"file": str(path)})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": self.version, "state": self.state}, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class Spool:
    """Pushed messages, durable on local disk until Kafka has them (one file per worker state)."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS spool (connector TEXT, msg_id TEXT, payload BLOB, "
              "spooled_ms INTEGER, PRIMARY KEY (connector, msg_id))")

    def __init__(self, path: Path) -> None:
        self.db = LocalDB(path, self.SCHEMA)

    def add(self, connector: str, values: list[dict[str, Any]]) -> int:
        """Keep ``values`` (each with an ``id``); return how many were new."""
        now = int(time.time() * 1000)
        with self.db.transaction() as tx:
            return tx.executemany("INSERT INTO spool VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                  [(connector, v["id"], envelope.encode(v), now) for v in values]).rowcount

    def take(self, connector: str, limit: int = 500) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT payload FROM spool WHERE connector=? ORDER BY spooled_ms LIMIT ?",
                             [connector, limit])
        return [json.loads(r[0]) for r in rows]

    def remove(self, connector: str, ids: list[str]) -> None:
        with self.db.transaction() as tx:
            tx.executemany("DELETE FROM spool WHERE connector=? AND msg_id=?", [(connector, i) for i in ids])

    def count(self, connector: str) -> int:
        return int(self.db.query("SELECT COUNT(*) FROM spool WHERE connector=?", [connector])[0][0])


def spool_for(runtime: Runtime) -> Spool:
    return shared(Spool, runtime.state_dir / "spool.sqlite3")


class Connector:
    """A channel account that wenzheng polls (or that pushes to it)."""

    channel: str
    poll_seconds: float = 0.0
    """How often the ingest worker calls :meth:`run_once`; 0: push only, never polled."""
    CHECKPOINT_VERSION = 1
    """The format of this connector's checkpoint state (see the module docstring)."""

    def __init__(self, runtime: Runtime, publisher: Publisher, name: str) -> None:
        self.runtime, self.publisher, self.name = runtime, publisher, name
        path = runtime.state_dir / "checkpoints" / f"{name}.json"
        self.checkpoint = Checkpoint(path, self.CHECKPOINT_VERSION, self.migrate_checkpoint)
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

    def routes(self) -> list[Route]:
        """HTTP routes a push channel serves on the ingest worker."""
        return []

    @property
    def stage(self) -> str:
        return f"ingest.{self.name}"

    # --- what a connector supplies ---------------------------------------------------

    def fetch(self, cursor: State) -> Pages:
        """Pages of what is new since ``cursor`` (steps 1–2), in upstream order.

        The generator is resumed only after the page it yielded was delivered and
        checkpointed, so it may keep its place in local variables. Push-only
        connectors keep this default: nothing to fetch."""
        yield from ()

    def migrate_checkpoint(self, version: int, state: State) -> State:
        """The checkpoint state of an older ``version`` in this connector's current format."""
        raise ValueError(f"{self.name}: no migration from checkpoint format {version}")

    # --- the loop --------------------------------------------------------------------

    def poll(self) -> int:
        """Fetch page by page from the checkpoint, each one published, then checkpointed;
        return how many messages were published. Raises what fetch or publish raised."""
        published = 0
        with closing(self.fetch(copy.deepcopy(self.checkpoint.state))) as pages:
            for page in pages:
                published += self._deliver(page)
        return published

    def _deliver(self, page: Page) -> int:
        """Steps 3–5 for one page."""
        FETCHED.labels(self.name).inc(page.fetched)
        self.publish(page.envelopes, page.dead)  # raises unless Kafka acknowledged everything
        if page.acked is not None:
            page.acked()
        if page.state is not None and page.state != self.checkpoint.state:
            self.checkpoint.state = copy.deepcopy(page.state)
            self.checkpoint.save()
        return len(page.envelopes)

    def run_once(self) -> int:
        """The scheduler's entry point: drain the spool, then poll. Never raises, so one
        bad poll never stops the schedule; after a failure it backs off (module docstring)."""
        if time.monotonic() < self._resume_at or not self._lock.acquire(blocking=False):
            return 0
        try:
            n = self.drain() + self.poll()
            self._backoff = 0.0
            return n
        except Exception as exc:
            self._back_off(exc)
            return 0
        finally:
            self._lock.release()

    def _back_off(self, exc: Exception) -> None:
        kind = "transient" if getattr(exc, "transient", False) else "poll"
        ERRORS.labels(self.stage, kind).inc()
        CONNECTOR_ERRORS.labels(self.name, kind).inc()
        self._backoff = min(BACKOFF_MAX, max(BACKOFF_FIRST, self._backoff * 2))
        self._resume_at = time.monotonic() + self._backoff * random.uniform(0.5, 1.0)
        if kind == "transient":
            log.warning("poll failed, backing off %.0fs: %s", self._backoff, exc, extra={"connector": self.name})
        else:
            log.exception("poll failed, backing off %.0fs", self._backoff, extra={"connector": self.name})

    # --- the push path ---------------------------------------------------------------

    @property
    def dead_spool(self) -> str:
        """The spool key of this connector's dead letters (beside its messages)."""
        return f"{self.name}#dead"

    def spool(self, envelopes: list[dict[str, Any]], dead: Sequence[Out] = ()) -> int:
        """The push path: keep the envelopes (and dead letters) durably and return at once;
        a drainer publishes them. Returns how many envelopes were new.

        The drainer thread wakes at once, so a push reaches Kafka in milliseconds
        while the broker is up; while it is down the scheduled :meth:`run_once`
        keeps retrying with back-off."""
        spool = spool_for(self.runtime)
        added = spool.add(self.name, envelopes) if envelopes else 0
        if dead:
            spool.add(self.dead_spool, [o.value for o in dead])
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
        """Publish what the push path spooled, then forget it (after Kafka acknowledged);
        return how many messages were published."""
        with self._drain_lock:
            total = self._drain(self.name, self.publish)
            self._drain(self.dead_spool, lambda values: self.publish([], [self._dead_out(v) for v in values]))
            SPOOLED.labels(self.name).set(spool_for(self.runtime).count(self.name))
        return total

    def _drain(self, key: str, publish: Callable[[list[dict[str, Any]]], None]) -> int:
        spool, total = spool_for(self.runtime), 0
        while batch := spool.take(key):
            publish(batch)
            spool.remove(key, [v["id"] for v in batch])
            total += len(batch)
        return total

    def _dead_out(self, value: dict[str, Any]) -> Out:
        """A spooled dead letter as it was made (:func:`~wenzheng.core.stage.deadletter`'s key)."""
        return Out(self.runtime.topics.deadletter, f"{value['stage']}:{value['id']}", value)

    # --- publishing ------------------------------------------------------------------

    def publish(self, envelopes: list[dict[str, Any]], dead: Sequence[Out] = ()) -> None:
        """Step 3: returns once Kafka acknowledged every record."""
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

    def dead(self, reason: str, msg_id: str, source: dict[str, Any], excerpt: str = "") -> Out:
        """The dead letter of an unreadable item; the reason is masked like the excerpt, since
        it may quote the item (``bad time '13907971234'``)."""
        reason = mask_text(reason)
        log.warning("dead-lettered: %s", reason, extra={"connector": self.name, "id": msg_id})
        return deadletter(self.runtime, self.stage, reason, msg_id=msg_id, source=source, excerpt=excerpt)

    def close(self) -> None:
        """Release what the connector holds open (HTTP sessions, SFTP connections)."""
