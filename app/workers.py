"""Start one stage as a long-lived service: `wenzheng worker ingest|classify|route`."""

from __future__ import annotations

import logging
import signal

from wenzheng.config import LoadedConfig
from wenzheng.core.runtime import Runtime
from wenzheng.core.service import Service

log = logging.getLogger(__name__)

STAGES = ("ingest", "classify", "route", "ledger")


def load_model(runtime_or_settings, model_dir: str | None = None):
    """The model a classify run uses (see wenzheng.classify.registry for the order)."""
    from wenzheng.classify.registry import load_current

    return load_current(getattr(runtime_or_settings, "settings", runtime_or_settings), model_dir)


def default_port(config: LoadedConfig, kind: str) -> int:
    return config.settings.http.port + STAGES.index(kind)


def run(config: LoadedConfig, kind: str, port: int | None = None, model_dir: str | None = None) -> int:
    runtime = Runtime(config).connect()
    if kind == "ingest":
        from wenzheng.ingest.worker import IngestWorker

        worker = IngestWorker(runtime)
        health = worker.health
    else:
        from wenzheng.core.stage import StageWorker

        if kind == "classify":
            from wenzheng.classify.registry import ModelFollower
            from wenzheng.classify.stage import ClassifyStage

            stage = ClassifyStage(runtime, ModelFollower(runtime.settings, pinned=model_dir))
        elif kind == "route":
            from wenzheng.route.stage import RouteStage

            stage = RouteStage(runtime)
        else:
            from wenzheng.sinks.stage import LedgerStage

            stage = LedgerStage(runtime)
        worker = StageWorker(runtime, stage)

        def health() -> dict:
            return {"processed": worker.processed, "last_batch_at": worker.last_batch_at, **stage.health()}

    service = Service(config.settings.http.host, default_port(config, kind) if port is None else port, kind)
    service.health = health
    for method, prefix, handler in worker.routes():
        service.add(method, prefix, handler)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: worker.stop())
    service.start()
    try:
        worker.run()
    finally:
        service.stop()
    return 0
