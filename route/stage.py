"""The route stage: wz.classified → the office's queue (wz.office.<id>) or wz.triage, and wz.routed."""

from __future__ import annotations

from wenzheng.config import snapshot
from wenzheng.core import envelope
from wenzheng.core.delivery import Out
from wenzheng.core.errors import BadMessage
from wenzheng.core.stage import Stage

from .router import Router


class RouteStage(Stage):
    name = "route"

    def __init__(self, runtime):
        super().__init__(runtime)
        self.router = Router(runtime.config, runtime.offices)
        snapshot(runtime.config, runtime.settings.state.dir)  # what an audit replay routes with

    def inputs(self) -> list[str]:
        return [self.runtime.topics.classified]

    def process(self, value: dict, record) -> list[Out]:
        env = envelope.validate(value)
        if not isinstance(env.get("classification"), dict):
            raise BadMessage("classified message has no classification")
        routing = self.router.route(env)
        routing["routed_at"] = envelope.iso(envelope.now())
        out = {**env, "routing": routing}
        t = self.runtime.topics
        queues = [t.triage] if routing["triage"] else [t.office(o) for o in (routing["office_id"], *routing["co_offices"])]
        return [Out(q, env["id"], out) for q in (*queues, t.routed)]
