"""The classify stage, as the registry knows it."""

from __future__ import annotations

from wenzheng.core.registry import Registry, StageSpec


def register(r: Registry) -> None:
    r.add_stage(StageSpec(
        name="classify", port_offset=1,
        summary="mask, then category, type and jurisdiction with the promoted model",
        factory="wenzheng.classify.stage:make", inputs=("intake",), outputs=("classified", "deadletter")))
