"""The ledger stage: wz.routed → the case ledger, and the supervision job beside it.

Every routed message is recorded in one ledger transaction (idempotent by message id,
see :mod:`wenzheng.sinks.cases`); the stage publishes nothing of its own, so its
offsets are committed right after the batch's transactions committed. Between
batches it runs the supervision job (:mod:`wenzheng.sinks.supervise`) every
``supervision.every_seconds``, and publishes what workbench actions left in the
ledger's outbox unsent (Kafka was away when the dispatcher assigned).

Its HTTP service carries the case API (:mod:`wenzheng.sinks.api`) and, unless
``console.enabled`` is off, the workbench console (:mod:`wenzheng.sinks.console`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from wenzheng.core import envelope
from wenzheng.core.delivery import Out, Publisher
from wenzheng.core.errors import BadMessage, TransientError
from wenzheng.core.kafka import producer as make_producer
from wenzheng.core.service import Mounted
from wenzheng.core.stage import Stage

from .accounts import Accounts
from .cases import Ledger
from .dispatch import STAGE as CONSOLE_STAGE
from .dispatch import flush
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
        self.accounts = Accounts.from_settings(self.ledger.engine, runtime.settings)
        self.job = None
        producer = make_producer(runtime.settings)
        self.console_publisher = Publisher(runtime.settings, producer, runtime.journal, CONSOLE_STAGE)
        if supervise:
            self.job = SupervisionJob(runtime, self.ledger, Publisher(runtime.settings, producer, runtime.journal,
                                                                       "supervise"))
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

    def process_many(self, items: list[tuple[dict, object]]) -> list[Out]:
        """The whole batch in one ledger transaction; a bad record makes the worker go one by one."""
        envs = [envelope.validate(value) for value, _ in items]
        if any(not isinstance(e.get("routing"), dict) or not isinstance(e.get("classification"), dict) for e in envs):
            raise BadMessage("routed message without routing or classification")
        for result in self.ledger.record_many(envs):
            self.created += result["created"]
            self.merged += result["merged"]
        return []

    def between_batches(self) -> None:
        if time.monotonic() < self._next_run:
            return
        self._next_run = time.monotonic() + self.runtime.settings.supervision.every_seconds
        jobs = {"outbox": lambda: flush(self.ledger, self.console_publisher)}
        if self.job is not None:
            jobs["supervision"] = self.job.run
        for what, job in jobs.items():
            try:
                job()
            except TransientError as exc:
                log.warning("%s run failed: %s", what, exc)
            except Exception:  # neither job may stop the ledger
                log.exception("%s run failed", what)

    def routes(self) -> list[Route | Mounted]:
        from .api import TrackGuard, routes  # the case API (it imports the CLI's command base)
        from .console.app import Console

        settings = self.runtime.settings
        guard = TrackGuard.from_settings(settings)  # one limit for /track and GET /cases/<no>
        out: list[Route | Mounted] = [*routes(self.ledger, self.accounts, guard)]
        if settings.console.enabled:
            console = Console(self.ledger, self.accounts, self.runtime.config, guard, self.console_publisher)
            out.append(Mounted("/", console.app()))
        return out

    def health(self) -> dict:
        return {"cases_created": self.created, "merged": self.merged, **self.ledger.counts(),
                "supervision": self.job.last if self.job else None}
