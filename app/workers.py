"""Start one stage as a long-lived service: `wenzheng worker <stage>`, any stage in the registry."""

from __future__ import annotations

import logging
import signal
from dataclasses import fields

from wenzheng.config import LoadedConfig
from wenzheng.config.schema import HttpSettings
from wenzheng.core.registry import REGISTRY, resolve
from wenzheng.core.runtime import Runtime
from wenzheng.core.service import Limits, Service
from wenzheng.core.stage import Stage, StageWorker

log = logging.getLogger(__name__)


def load_model(runtime_or_settings, model_dir: str | None = None):
    """The model a classify run uses (see wenzheng.classify.registry for the order)."""
    from wenzheng.classify.registry import load_current

    return load_current(getattr(runtime_or_settings, "settings", runtime_or_settings), model_dir)


def default_port(config: LoadedConfig, kind: str, base: int | None = None) -> int:
    """``http.port`` (or ``base``) plus the stage's offset from the registry; 0 stays 0 (a free port)."""
    base = config.settings.http.port if base is None else base
    return 0 if base == 0 else base + (REGISTRY.stage(kind).port_offset or 0)


def http_limits(http: HttpSettings) -> Limits:
    """The service's limits from ``http.*`` (the settings name each field as Limits does)."""
    return Limits(**{f.name: getattr(http, f.name) for f in fields(Limits)})


def make_worker(runtime: Runtime, kind: str):
    """The registry's factory for ``kind``; a topic-to-topic Stage gets the standard StageWorker."""
    made = resolve(REGISTRY.stage(kind).factory)(runtime)
    return StageWorker(runtime, made) if isinstance(made, Stage) else made


def run(config: LoadedConfig, kind: str, port: int | None = None, model_dir: str | None = None) -> int:
    runtime = Runtime(config).connect()
    if model_dir:
        runtime.options["model"] = model_dir
    worker = make_worker(runtime, kind)
    health = worker.health
    service = Service(config.settings.http.host, default_port(config, kind) if port is None else port, kind,
                      http_limits(config.settings.http))
    service.health = health
    service.add(*worker.routes())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: worker.stop())
    service.start()
    try:
        worker.run()
    finally:
        service.stop()
    return 0
