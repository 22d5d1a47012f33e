"""The ledger stage: wz.routed → the case ledger, and the supervision job beside it.

Every routed message is recorded in one ledger transaction (idempotent by message id,
see :mod:`wenzheng.sinks.cases`); the stage publishes nothing of its own, so its
offsets are committed right after the batch's transactions committed. Between
batches it runs the supervision job (:mod:`wenzheng.sinks.supervise`) every
``supervision.every_seconds``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from wenzheng.core import envelope
from wenzheng.core.delivery import Out, Publisher
from wenzheng.core.errors import BadMessage, TransientError
from wenzheng.core.kafka import producer as make_producer
from wenzheng.core.stage import Stage

from .cases import Ledger
from .supervise import SupervisionJob

if TYPE_CHECKING:
    from wenzheng.core.service import Route

log = logging.getLogger(__name__)


class LedgerStage(Stage):
    name = "ledger"

    def __init__(self, runtime, ledger: Ledger | None = None, supervise: bool = True):
        super().__init__(runtime)
        self.ledger = ledger or Ledger.from_settings(runtime.settings)
        if n := self.ledger.renormalise_open():
            log.info("open cases renormalised for repeat matching: %d", n)
        self.created = self.merged = 0
        self.job = None
        if supervise:
            publisher = Publisher(runtime.settings, make_producer(runtime.settings), runtime.journal, "supervise")
            self.job = SupervisionJob(runtime, self.ledger, publisher)
        self._next_run = 0.0

    def inputs(self) -> list[str]:
        return [self.runtime.topics.routed]

    def process(self, value: dict, record) -> list[Out]:
        env = envelope.validate(value)
        if not isinstance(env.get("routing"), dict) or not isinstance(env.get("classification"), dict):
            raise BadMessage("routed message without routing or classification")
        result = self.ledger.record(env)
        self.created += result["created"]
        self.merged += result["merged"]
        return []

    def between_batches(self) -> None:
        if self.job is None or time.monotonic() < self._next_run:
            return
        self._next_run = time.monotonic() + self.runtime.settings.supervision.every_seconds
        try:
            self.job.run()
        except TransientError as exc:
            log.warning("supervision run failed: %s", exc)
        except Exception:  # the job must never stop the ledger
            log.exception("supervision run failed")

    def routes(self) -> list[Route]:
        from .api import routes  # the case API (it imports the CLI's command base)

        return routes(self.ledger)

    def health(self) -> dict:
        return {"cases_created": self.created, "merged": self.merged, **self.ledger.counts(),
                "supervision": self.job.last if self.job else None}
