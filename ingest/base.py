"""The connector contract: fetch from a channel, publish to wz.intake, checkpoint.

Delivery order for every connector — the guarantee lives in this order:

1. Fetch what is new since the checkpoint (a cursor, since-id, or file list).
2. Turn each item into an intake envelope; an item that cannot be read becomes
   a dead-letter record with its reason (and the item is quarantined, where
   the channel has somewhere to put it).
3. Publish through the :class:`~wenzheng.delivery.Publisher`: journaled, sent,
   acknowledged by Kafka (``acks=all``), journaled done.
4. Only then advance and save the checkpoint (atomically: write, fsync, rename).

A crash between 3 and 4 fetches the same items again; the publisher recognises
their ids, so nothing is doubled. A crash before 3 completes loses nothing,
because the checkpoint has not moved.

A fifth channel is a new module with a ``Connector`` subclass and a config
entry; register it in :data:`wenzheng.ingest.worker.CONNECTORS`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from wenzheng.delivery import Out, Publisher
from wenzheng.runtime import Runtime
from wenzheng.service import DEADLETTERED, ERRORS, MESSAGES_IN, MESSAGES_OUT
from wenzheng.stage import deadletter

log = logging.getLogger(__name__)


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


class Connector(ABC):
    """A channel account that wenzheng polls (or that pushes to it)."""

    channel: str

    def __init__(self, runtime: Runtime, publisher: Publisher, name: str):
        self.runtime, self.publisher, self.name = runtime, publisher, name
        self.checkpoint = Checkpoint(runtime.state_dir / "checkpoints" / f"{name}.json")
        self._lock = threading.Lock()  # one poll at a time per connector

    @property
    def stage(self) -> str:
        return f"ingest.{self.name}"

    @abstractmethod
    def poll(self) -> int:
        """Fetch, publish and checkpoint once; return how many messages were published."""

    def run_once(self) -> int:
        """The scheduler's entry point: never raises, so one bad poll never stops the schedule."""
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            return self.poll()
        except Exception as exc:
            ERRORS.labels(self.stage, "transient" if getattr(exc, "transient", False) else "poll").inc()
            log.exception("poll failed", extra={"connector": self.name})
            return 0
        finally:
            self._lock.release()

    def publish(self, envelopes: list[dict], dead: list[Out] = ()) -> None:
        """Steps 3 of the order above; the caller saves the checkpoint after it returns."""
        outs = [Out(self.runtime.topics.intake, e["id"], e) for e in envelopes] + list(dead)
        MESSAGES_IN.labels(self.stage).inc(len(outs))
        sent = self.publisher.publish(outs)
        for o in sent:
            MESSAGES_OUT.labels(self.stage, o.topic).inc()
        DEADLETTERED.labels(self.stage).inc(len(dead))

    def dead(self, reason: str, msg_id: str, source: dict, excerpt: str = "") -> Out:
        log.warning("dead-lettered: %s", reason, extra={"connector": self.name, "id": msg_id})
        return deadletter(self.runtime, self.stage, reason, msg_id=msg_id, source=source, excerpt=excerpt)

    def close(self) -> None:  # noqa: B027 — optional hook: most connectors hold nothing open
        """Release what the connector holds open (HTTP sessions, SFTP connections)."""
