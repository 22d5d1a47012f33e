"""The ingest worker: every enabled channel of the registry on an APScheduler
schedule, and the push channels' HTTP routes on the worker's service."""

from __future__ import annotations

import logging
import random
import threading
from datetime import datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from wenzheng.core.delivery import Publisher
from wenzheng.core.errors import TransientError
from wenzheng.core.kafka import producer as make_producer
from wenzheng.core.registry import REGISTRY, resolve
from wenzheng.core.runtime import Runtime
from wenzheng.core.stage import CHECK_SECONDS, PRUNE_SECONDS

from .base import Connector

log = logging.getLogger(__name__)


class IngestWorker:
    name = "ingest"

    def __init__(self, runtime: Runtime, poll_threads: int = 16):
        self.runtime = runtime
        self.producer = make_producer(runtime.settings)
        self.connectors: list[Connector] = []
        self.problem: str | None = None
        """Why the worker cannot publish now (None: it can); /healthz says "degraded"."""
        channels = runtime.settings.channels
        for spec in REGISTRY.load(runtime.settings.plugins).channels.values():
            if spec.is_enabled(channels):
                self.connectors.extend(resolve(spec.connector).from_config(runtime, self.make_publisher))
        self.scheduler = BackgroundScheduler(timezone=runtime.settings.city.timezone,
                                             executors={"default": ThreadPoolExecutor(poll_threads)})
        self._stop = threading.Event()

    def make_publisher(self, name: str) -> Publisher:
        return Publisher(self.runtime.settings, self.producer, self.runtime.journal, f"ingest.{name}")

    def routes(self):
        return [r for c in self.connectors for r in c.routes()]

    def health(self) -> dict:
        ok = self.problem is None
        return {"ok": ok, **({} if ok else {"reason": self.problem}), "connectors": len(self.connectors)}

    def watch_broker(self) -> None:
        """Every few seconds: has the broker lost its state (a memory broker restarted)? Then
        recreate the topics, give every connector new Kafka clients and end its back-off.
        While the broker cannot be reached, pushes wait in the spool and polls back off."""
        problem = self.runtime.check()
        if problem is None:
            self.problem = None
            return
        self.problem = problem
        log.warning("broker: %s", problem)
        try:
            self.runtime.recover()
        except TransientError:
            return  # still unreachable: the next check tries again
        old, self.producer = self.producer, make_producer(self.runtime.settings)
        for c in self.connectors:
            c.resume(self.make_publisher(c.name))
        old.close(timeout=1)  # `problem` stays until the next check finds the broker well

    def run(self) -> None:
        now = datetime.now(self.scheduler.timezone)
        for c in self.connectors:
            every = c.poll_seconds or 2.0  # push-only connectors still drain their spool
            # Spread the first polls over one interval so 500 accounts do not hit upstream at once.
            first = now + timedelta(seconds=random.uniform(0, min(every, 10)))
            self.scheduler.add_job(c.run_once, "interval", seconds=every, id=c.name, max_instances=1,
                                   coalesce=True, next_run_time=first, jitter=every * 0.1,
                                   misfire_grace_time=max(1, int(every)))
        self.scheduler.add_job(self.watch_broker, "interval", seconds=CHECK_SECONDS, id="watch-broker",
                               max_instances=1, coalesce=True)
        self.scheduler.add_job(self.runtime.prune, "interval", seconds=PRUNE_SECONDS, id="prune-journal",
                               max_instances=1, coalesce=True, next_run_time=now)
        self.scheduler.start()
        log.info("ingest started", extra={"connectors": [c.name for c in self.connectors][:20]})
        self._stop.wait()
        self.scheduler.shutdown(wait=True)  # a poll in progress finishes and checkpoints
        for c in self.connectors:
            c.close()
            c.publisher.close(producer=False)  # shared, closed below
        self.producer.close(timeout=5)
        log.info("ingest stopped")

    def stop(self) -> None:
        self._stop.set()
