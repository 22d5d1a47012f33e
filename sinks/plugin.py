"""The case ledger sink and its commands, as the registry knows them."""

from __future__ import annotations

from wenzheng.core.registry import Registry, RouteInfo, StageSpec


def register(r: Registry) -> None:
    r.add_stage(StageSpec(
        name="ledger", kind="sink", port_offset=3,
        summary="every routed message into a case (SQLite/PostgreSQL); 督办 grading beside it",
        factory="wenzheng.sinks.stage:LedgerStage", inputs=("routed",), outputs=("supervision", "deadletter"),
        routes=(RouteInfo("GET", "/cases/{tracking_no}", "a case, public fields"),
                RouteInfo("POST", "/cases/{tracking_no}/{action}", "claim, reply, close or reopen"))))
    r.add_command("wenzheng.sinks.api:CaseCommand")
    r.add_command("wenzheng.sinks.period_report:ReportCommand")
