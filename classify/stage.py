"""The classify stage: wz.intake → wz.classified, masked, with its classification."""

from __future__ import annotations

from wenzheng.core import envelope, privacy
from wenzheng.core.delivery import Out
from wenzheng.core.stage import Stage, pseudonym_key

from .model import Classifier
from .registry import ModelFollower


def make(runtime) -> ClassifyStage:
    """The registry's factory: follows the promoted model unless ``--model`` pins one."""
    return ClassifyStage(runtime, ModelFollower(runtime.settings, pinned=runtime.options.get("model")))


class ClassifyStage(Stage):
    name = "classify"

    def __init__(self, runtime, model: Classifier | ModelFollower):
        super().__init__(runtime)
        self.key = pseudonym_key(runtime)
        self.follower = model if isinstance(model, ModelFollower) else None
        self.model = model.model if isinstance(model, ModelFollower) else model
        if self.model.places is not None:
            privacy.protect(self.model.places.names)  # masking must not eat "我是瑞金…"

    def between_batches(self) -> None:
        if self.follower and self.follower.refresh():
            self.model = self.follower.model

    def inputs(self) -> list[str]:
        return [self.runtime.topics.intake]

    def process(self, value: dict, record) -> list[Out]:
        return self.process_many([(value, record)])

    def process_many(self, items) -> list[Out]:
        """One jieba pass and one matrix product per batch: the stage's cost is tokenising."""
        masked = []
        for value, record in items:
            env = envelope.validate(value)
            raw_ref = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
            masked.append(envelope.masked(env, raw_ref, self.key))
        preds = self.model.predict(masked) if masked else []
        return [self._classified(out, p) for out, p in zip(masked, preds, strict=True)]

    def _classified(self, out: dict, p) -> Out:
        out["classification"] = {**p.record(self.model.version), "classified_at": envelope.iso(envelope.now())}
        return Out(self.runtime.topics.classified, out["id"], out)

    def health(self) -> dict:
        return {"model_version": self.model.version}
