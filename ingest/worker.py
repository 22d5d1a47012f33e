"""The ingest worker: every enabled connector on an APScheduler schedule."""

from __future__ import annotations

import logging
import threading

from apscheduler.schedulers.background import BackgroundScheduler

from wenzheng.delivery import Publisher
from wenzheng.kafka import producer as make_producer
from wenzheng.runtime import Runtime

from .base import Connector
from .hotline import HotlineConnector

log = logging.getLogger(__name__)

#: channel name → (connector class, how to read its enabled flag and poll interval)
CONNECTORS: dict[str, type[Connector]] = {"hotline": HotlineConnector}


class IngestWorker:
    name = "ingest"

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.producer = make_producer(runtime.settings)
        self.connectors: list[tuple[Connector, float]] = []
        channels = runtime.settings.channels
        for channel, cls in CONNECTORS.items():
            cfg = getattr(channels, channel)
            if cfg.enabled:
                pub = Publisher(runtime.settings, self.producer, runtime.journal, f"ingest.{channel}")
                self.connectors.append((cls(runtime, pub), cfg.poll_seconds))
        self.scheduler = BackgroundScheduler(timezone=runtime.settings.city.timezone)
        self._stop = threading.Event()

    def health(self) -> dict:
        return {"connectors": [c.name for c, _ in self.connectors]}

    def run(self) -> None:
        for connector, seconds in self.connectors:
            self.scheduler.add_job(connector.run_once, "interval", seconds=seconds, id=connector.name,
                                   max_instances=1, coalesce=True)
            connector.run_once()  # at once, not one interval from now
        self.scheduler.start()
        log.info("ingest started", extra={"connectors": [c.name for c, _ in self.connectors]})
        self._stop.wait()
        self.scheduler.shutdown(wait=True)  # a poll in progress finishes and checkpoints
        for connector, _ in self.connectors:
            connector.close()
            connector.publisher.close(producer=False)  # shared, closed below
        self.producer.close(timeout=5)
        log.info("ingest stopped")

    def stop(self) -> None:
        self._stop.set()
