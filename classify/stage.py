"""The classify stage: wz.intake → wz.classified, masked, with its classification."""

from __future__ import annotations

from wenzheng import envelope
from wenzheng.delivery import Out
from wenzheng.stage import Stage

from .model import Classifier


class ClassifyStage(Stage):
    name = "classify"

    def __init__(self, runtime, model: Classifier):
        super().__init__(runtime)
        self.model = model

    def inputs(self) -> list[str]:
        return [self.runtime.topics.intake]

    def process(self, value: dict, record) -> list[Out]:
        env = envelope.validate(value)
        raw_ref = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        out = envelope.masked(env, raw_ref)
        (p,) = self.model.predict([out])
        out["classification"] = {
            "category": p.category,
            "category_confidence": p.category_confidence,
            "type": p.type,
            "type_confidence": p.type_confidence,
            "jurisdiction": p.jurisdiction,
            "jurisdiction_source": p.jurisdiction_source,
            "model_version": self.model.version,
            "classified_at": envelope.iso(envelope.now()),
        }
        return [Out(self.runtime.topics.classified, env["id"], out)]

    def health(self) -> dict:
        return {"model_version": self.model.version}
