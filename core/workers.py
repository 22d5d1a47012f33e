"""Start one stage as a long-lived service: `wenzheng worker ingest|classify|route`."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from wenzheng.config import LoadedConfig

from .runtime import Runtime
from .service import Service

log = logging.getLogger(__name__)

STAGES = ("ingest", "classify", "route")


def load_model(runtime_or_settings, model_dir: str | None = None):
    from wenzheng.classify.model import Classifier, baseline

    settings = getattr(runtime_or_settings, "settings", runtime_or_settings)
    model_dir = model_dir or settings.classifier.model_dir
    if model_dir:
        return Classifier.load(model_dir, settings)
    return baseline(settings, Path(settings.state.dir) / "models")


def default_port(config: LoadedConfig, kind: str) -> int:
    return config.settings.http.port + STAGES.index(kind)


def run(config: LoadedConfig, kind: str, port: int | None = None, model_dir: str | None = None) -> int:
    runtime = Runtime(config).connect()
    if kind == "ingest":
        from wenzheng.ingest.worker import IngestWorker

        worker = IngestWorker(runtime)
        health = worker.health
    else:
        from .stage import StageWorker

        if kind == "classify":
            from wenzheng.classify.stage import ClassifyStage

            stage = ClassifyStage(runtime, load_model(runtime, model_dir))
        else:
            from wenzheng.route.stage import RouteStage

            stage = RouteStage(runtime)
        worker = StageWorker(runtime, stage)

        def health() -> dict:
            return {"processed": worker.processed, "last_batch_at": worker.last_batch_at, **stage.health()}

    service = Service(config.settings.http.host, default_port(config, kind) if port is None else port, kind)
    service.health = health
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: worker.stop())
    service.start()
    try:
        worker.run()
    finally:
        service.stop()
    return 0
