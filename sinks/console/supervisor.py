"""The supervisor's dashboard: cases by status, the red and overdue ones, each office's
on-time rate and the month's charts (the period report's, with names in Chinese)."""

from __future__ import annotations

from starlette.responses import Response

from wenzheng.core.command import UsageError

from ..cases import DISCARDED
from ..period_report import build, category_names, period
from . import labels
from .views import colour
from .web import error, page, render


def _report(console, request):
    now = console.now()
    month = request.query_params.get("month") or f"{now:%Y-%m}"
    start, end = period(month, None, None, console.tz)
    cases = [c for c in console.ledger.cases(start, end) if c["status"] not in DISCARDED]
    return month, build(cases, start, end, now, category_names(console.settings))


@page("supervisor")
def dashboard(console, request, account, form) -> Response:
    try:
        month, rep = _report(console, request)
    except UsageError:
        return error(request, 400, "月份格式应为 YYYY-MM。")
    now = console.now()
    flagged = []
    for c in console.ledger.open_cases():
        worst, grades = colour(console, c, now)
        overdue = c["answer_due"] is not None and c["replied_at"] is None and c["answer_due"] < now
        if worst == "red" or overdue:
            flagged.append({**c, "colour": worst, "overdue": overdue, "left": labels.left(c["answer_due"], now),
                            "missed": [labels.MILESTONE[g["milestone"]] for g in grades if g["grade"] == "red"]})
    offices = sorted(rep.offices.values(), key=lambda r: (-r.received, r.key))
    return render(request, "supervisor.html", month=month, report=rep, offices=offices, flagged=flagged,
                  counts=console.ledger.status_counts(), statuses=labels.STATUS)


@page("supervisor")
def chart(console, request, account, form) -> Response:
    group = request.path_params["group"]
    if group not in ("offices", "categories"):
        return error(request, 404, "没有这张图。")
    try:
        _, rep = _report(console, request)
    except UsageError:
        return error(request, 400, "月份格式应为 YYYY-MM。")
    return Response(rep.chart_png(group), media_type="image/png", headers={"Cache-Control": "no-store"})
