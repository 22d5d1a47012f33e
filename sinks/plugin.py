"""The case ledger sink and its commands, as the registry knows them."""

from __future__ import annotations

from wenzheng.core.registry import Registry, RouteInfo, StageSpec


def register(r: Registry) -> None:
    r.add_stage(StageSpec(
        name="ledger", kind="sink", port_offset=3,
        summary="every routed message into a case (SQLite/PostgreSQL); 督办 grading beside it",
        factory="wenzheng.sinks.stage:LedgerStage", inputs=("routed",), outputs=("supervision", "deadletter"),
        routes=(RouteInfo("GET", "/cases/{tracking_no}", "a citizen's lookup, with the check code"),
                RouteInfo("POST", "/cases/{tracking_no}/{action}", "an office (bearer token): claim, reply, close, reopen"),
                RouteInfo("GET", "/console/", "the workbench console (dispatcher, office, supervisor)"),
                RouteInfo("GET", "/track", "the citizens' lookup page"))))
    r.add_command("wenzheng.sinks.api:CaseCommand")
    r.add_command("wenzheng.sinks.accounts:UserCommand")
    r.add_command("wenzheng.sinks.accounts:OfficeCommand")
    r.add_command("wenzheng.sinks.period_report:ReportCommand")
