"""The route stage, as the registry knows it."""

from __future__ import annotations

from wenzheng.core.registry import Registry, StageSpec


def register(r: Registry) -> None:
    r.add_stage(StageSpec(
        name="route", port_offset=2,
        summary="rules and the office table: the lead and co-offices' queues, or triage, with deadlines",
        factory="wenzheng.route.stage:RouteStage", inputs=("classified",),
        outputs=("office.*", "triage", "routed", "deadletter")))
