"""Which model classifies: promotion is explicit, and running workers follow it.

``wenzheng model promote DIR`` records the model directory in
``<state.dir>/models/promoted.json`` (and appends to ``promotions.jsonl``, the
history an auditor reads). Classify workers look at that file between batches;
when it names another model they load it and switch before the next batch, so
each message is classified by exactly one model, recorded on it
(``classification.model_version``), and none is lost or doubled by the switch.

The model a worker uses, in order: ``--model`` (pinned, never switched), the
promoted model, ``classifier.model_dir`` of the config, the packaged baseline.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from .model import Classifier, baseline

log = logging.getLogger(__name__)


def models_dir(settings) -> Path:
    return Path(settings.state.dir).expanduser() / "models"


def promoted(settings) -> dict | None:
    path = models_dir(settings) / "promoted.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def promote(settings, model_dir: str | Path, note: str = "") -> dict:
    model_dir = Path(model_dir).resolve()
    model = Classifier.load(model_dir, None)  # refuses anything that is not a model directory
    record = {"path": str(model_dir), "version": model.version, "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "by": getpass.getuser(), "note": note}
    d = models_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "promoted.json.tmp"
    tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, d / "promoted.json")
    with open(d / "promotions.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return record


def load_current(settings, pinned: str | None = None) -> Classifier:
    if pinned:
        return Classifier.load(pinned, settings)
    if (rec := promoted(settings)) is not None:
        return Classifier.load(rec["path"], settings)
    if settings.classifier.model_dir:
        return Classifier.load(settings.classifier.model_dir, settings)
    return baseline(settings, models_dir(settings))


class ModelFollower:
    """Holds the current model and swaps in a newly promoted one when asked (between batches)."""

    def __init__(self, settings, pinned: str | None = None, check_every: float = 2.0):
        self.settings, self.pinned, self.check_every = settings, pinned, check_every
        self.model = load_current(settings, pinned)
        self._pointer = models_dir(settings) / "promoted.json"
        self._seen = self._stamp()
        self._checked = time.monotonic()

    def _stamp(self):
        try:
            st = self._pointer.stat()
            return (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return None

    def refresh(self) -> bool:
        """Load the promoted model if it changed; True if the model was switched."""
        if self.pinned or time.monotonic() - self._checked < self.check_every:
            return False
        self._checked = time.monotonic()
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        rec = promoted(self.settings)
        if rec is None or rec["version"] == self.model.version:
            return False
        try:
            model = Classifier.load(rec["path"], self.settings)
        except Exception:
            log.exception("promoted model could not be loaded; keeping %s", self.model.version)
            return False
        log.info("switched model", extra={"from": self.model.version, "to": model.version})
        self.model = model
        return True


def model_dirs(settings, extra: Sequence[str | Path] = ()) -> list[Path]:
    """Every model directory this machine knows of: given ones, promoted ones (the
    history in promotions.jsonl), the configured one, and those under the models dir."""
    seen: dict[Path, None] = {}
    history = models_dir(settings) / "promotions.jsonl"
    promoted_paths = []
    if history.is_file():
        for line in history.read_text(encoding="utf-8").splitlines():
            if line.strip():
                promoted_paths.append(json.loads(line)["path"])
    for d in [*extra, *promoted_paths, settings.classifier.model_dir or None]:
        if d:
            seen.setdefault(Path(d).expanduser().resolve(), None)
    root = models_dir(settings)
    if root.is_dir():
        for meta in sorted(root.glob("*/meta.json")):
            seen.setdefault(meta.parent.resolve(), None)
    return [d for d in seen if (d / "meta.json").is_file()]


def find(settings, version: str, extra: Sequence[str | Path] = ()) -> Classifier:
    """The model with this version (as recorded on a classified message), loaded with ``settings``."""
    for d in model_dirs(settings, extra):
        try:
            if json.loads((d / "meta.json").read_text(encoding="utf-8")).get("version") == version:
                return Classifier.load(d, settings)
        except (OSError, ValueError):
            continue
    if version.startswith("baseline-"):  # the packaged corpus's model, rebuilt if the cache is gone
        model = baseline(settings, models_dir(settings))
        if model.version == version:
            return model
    raise ValueError(f"model {version} is not on this machine (looked in {len(model_dirs(settings, extra))} "
                     f"model directories: promoted, configured, {models_dir(settings)}); pass --models DIR")
