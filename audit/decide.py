"""Deciding again: each message classified and routed with the model and configuration
recorded on it (``classification.model_version``, ``routing.config_hash``) or chosen
ones, in this process or a pool of forked ones, and compared with what was decided.

The model is found by its version among the machine's model directories, the
configuration in the snapshot a route worker keeps at start
(``<state.dir>/configs/<hash>.json``). Each model cuts text with its own dictionary
(``classify.text.Tokenizer``), so several model versions in one replay do not mix.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from wenzheng.config import ConfigError, LoadedConfig, OfficeDirectory, load_snapshot
from wenzheng.core import envelope
from wenzheng.core.errors import BadMessage

log = logging.getLogger(__name__)

CLASSIFICATION = ("category", "type", "jurisdiction")
ROUTING = ("office_id", "co_offices", "triage", "rule", "deadlines")


class Decider:
    """Classifies and routes again with the recorded (or a chosen) model and configuration."""

    def __init__(self, config: LoadedConfig, model: str = "recorded", config_version: str = "recorded",
                 models: Sequence[str] = ()):
        self.config, self.model_choice, self.config_choice = config, model, config_version
        self.state_dir = config.settings.state.dir
        self.extra_models = list(models)
        self._configs: dict[str, tuple[LoadedConfig, object]] = {}
        self._models: dict[tuple[str, str], object] = {}

    def _config(self, recorded: str | None):
        key = self.config_choice if self.config_choice != "recorded" else (recorded or "current")
        if key not in self._configs:
            from wenzheng.route.router import Router

            config = self.config if key in ("current", self.config.hash) else load_snapshot(self.state_dir, key)
            self._configs[key] = (config, Router(config, OfficeDirectory(config.settings)))
        return self._configs[key]

    def _model(self, recorded: str | None, config: LoadedConfig):
        choice = self.model_choice
        if choice == "recorded":
            if not recorded:
                raise BadMessage("no model version recorded on the message (pass --model)")
            choice = recorded
        key = (choice, config.hash)
        if key not in self._models:
            model = self._load(choice, config.settings)
            log.info("replay model", extra={"model": model.version, "config": config.hash[:12]})
            self._models[key] = model
        return self._models[key]

    def _load(self, choice: str, settings):
        """``current`` as the live workers pick it (promoted, configured, baseline), a model
        directory, or a version looked up among the machine's models."""
        from wenzheng.classify import registry
        from wenzheng.classify.model import Classifier, baseline

        if choice == "current":
            live = self.config.settings
            current = (registry.promoted(live) or {}).get("path") or live.classifier.model_dir
            return Classifier.load(current, settings) if current else baseline(settings, registry.models_dir(live))
        if Path(choice).is_dir():
            return Classifier.load(choice, settings)
        return registry.find(settings, choice, self.extra_models)

    def decide(self, items: list[dict]) -> list[dict]:
        """``items``: prepared messages (see :func:`prepare`). Per item, the replayed
        ``{"classification", "routing"}`` or ``{"error": reason}``."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        results: list[dict] = [{} for _ in items]
        for i, it in enumerate(items):
            try:
                config, router = self._config((it.get("routing") or {}).get("config_hash"))
                model = self._model((it.get("classification") or {}).get("model_version"), config)
                groups[(id(model), id(router))].append(i)
                results[i] = {"model": model, "router": router}
            except (BadMessage, ConfigError, ValueError, OSError) as exc:
                results[i] = {"error": str(exc)}
        for idx in groups.values():
            model, router = results[idx[0]]["model"], results[idx[0]]["router"]
            inputs = [{k: v for k, v in items[i].items() if k not in ("classification", "routing")} for i in idx]
            for i, env, p in zip(idx, inputs, self._predict(model, inputs), strict=True):
                if p is None:
                    results[i] = {"error": "the model cannot read this message (no text?)"}
                    continue
                c = p.record(model.version)
                results[i] = {"classification": c, "routing": router.route({**env, "classification": c})}
        return results

    @staticmethod
    def _predict(model, inputs: list[dict]) -> list:
        """The batch at once; one by one (None for the unreadable) if it fails."""
        try:
            return model.predict(inputs)
        except Exception:
            out = []
            for env in inputs:
                try:
                    out.append(model.predict([env])[0])
                except Exception:
                    out.append(None)
            return out


def prepare(value, record) -> dict:
    """A replayable message: routed and classified records as they are (masked already);
    raw intake records validated and masked, as the classify stage would have."""
    if not isinstance(value, dict):
        raise BadMessage("not a JSON object")
    if isinstance(value.get("classification"), dict):
        return value
    env = envelope.validate(value)
    return envelope.masked(env, {"topic": record.topic, "partition": record.partition, "offset": record.offset})


def differences(recorded_c: dict | None, recorded_r: dict | None, c: dict, r: dict) -> list[str]:
    fields = []
    if recorded_c:
        fields += [f for f in CLASSIFICATION if recorded_c.get(f) != c.get(f)]
    if recorded_r:
        fields += [f for f in ROUTING if recorded_r.get(f) != r.get(f)]
    return fields


def why(recorded_c: dict, recorded_r: dict | None, c: dict, r: dict, changed: list[str]) -> str:
    parts = []
    moved = [f for f in CLASSIFICATION if f in changed]
    if moved:
        what = ", ".join(f"{f} {recorded_c.get(f)}→{c.get(f)}" for f in moved)
        parts.append(f"model {recorded_c.get('model_version')}→{c.get('model_version')}: {what}")
    if recorded_r and any(f in changed for f in ROUTING):
        if recorded_r.get("rule") != r.get("rule"):
            parts.append(f"rule {recorded_r.get('rule')}→{r.get('rule')}")
        elif "deadlines" in changed:
            parts.append("deadlines")
        if recorded_r.get("config_hash") != r.get("config_hash"):
            parts.append(f"config {str(recorded_r.get('config_hash'))[:12]}→{str(r.get('config_hash'))[:12]}")
    return "; ".join(parts) or "; ".join(changed)


# --- in this process, or in a pool -----------------------------------------------------


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))


class _Ready:
    """A result already there, read as a pool's AsyncResult is."""

    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


class LocalDecisions:
    """Decides in this process; ``submit`` answers at once."""

    def __init__(self, decider_args: tuple):
        self.decider = Decider(*decider_args)

    def submit(self, msgs: list[dict]) -> _Ready:
        return _Ready(self.decider.decide(msgs))

    def close(self) -> None:
        pass


_WORKER: dict = {}  # in a pool process: its Decider


def _init_worker(args) -> None:
    _WORKER["decider"] = Decider(*args)


def _decide(msgs: list[dict]) -> list[dict]:
    return _WORKER["decider"].decide(msgs)


class PooledDecisions:
    """``workers`` forked processes, each with its own Decider (and so its own models).
    Made before any Kafka client threads exist: a fork copies no running client."""

    def __init__(self, decider_args: tuple, workers: int):
        self.pool = multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker,
                                                              initargs=(decider_args,))

    def submit(self, msgs: list[dict]):
        return self.pool.apply_async(_decide, (msgs,))

    def close(self) -> None:
        self.pool.terminate()


def decisions(decider_args: tuple, workers: int) -> LocalDecisions | PooledDecisions:
    return PooledDecisions(decider_args, workers) if workers > 1 else LocalDecisions(decider_args)
