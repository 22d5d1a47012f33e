"""The supervisor's dashboard: cases by status, the red and overdue ones, each office's
on-time rate and the month's charts (the period report's, with names in Chinese).

A month's report reads every case of the month: it is built at most once a minute
(``REPORT_SECONDS``) and shared by the page and its two charts; the red and overdue cases
are counted in the database and the ``FLAGGED`` most overdue listed.
"""

from __future__ import annotations

import threading

from starlette.responses import Response

from wenzheng.core.command import UsageError

from ..cases import DISCARDED
from ..period_report import build, category_names, period
from . import labels
from .views import colour
from .web import error, page, render

REPORT_SECONDS = 60
FLAGGED = 100
_DRAWING = threading.Lock()
"""matplotlib's pyplot and rc settings are global: two charts drawn at once on two handler threads
undo each other's CJK font setting, and one of them comes out in boxes (the page loads both at once)."""


def _report(console, request):
    now = console.now()
    month = request.query_params.get("month") or f"{now:%Y-%m}"
    start, end = period(month, None, None, console.tz)

    def make():
        cases = (c for c in console.ledger.cases(start, end) if c["status"] not in DISCARDED)
        return build(cases, start, end, now, category_names(console.settings))

    return month, console.cached(("report", month), make, REPORT_SECONDS)


@page("supervisor")
def dashboard(console, request, account, form) -> Response:
    try:
        month, rep = _report(console, request)
    except UsageError:
        return error(request, 400, "月份格式应为 YYYY-MM。")
    now, sv = console.now(), console.settings.supervision
    hours = {"claim": sv.claim_hours, "reply": sv.reply_hours, "close": sv.close_hours}
    late, flagged = console.ledger.late(now, hours, FLAGGED)
    for c in flagged:
        worst, grades = colour(console, c, now)
        c.update(colour=worst, left=labels.left(c["answer_due"], now),
                 missed=[labels.MILESTONE[g["milestone"]] for g in grades if g["grade"] == "red"])
    offices = sorted(rep.offices.values(), key=lambda r: (-r.received, r.key))
    return render(request, "supervisor.html", month=month, report=rep, offices=offices, flagged=flagged, late=late,
                  counts=console.ledger.status_counts(), statuses=labels.STATUS, months=_months(now, month),
                  every=REPORT_SECONDS)


def _months(now, shown: str) -> list[str]:
    """The month picker's choices: this month and the eleven before it (and the one shown, if older).
    A list, not ``<input type=month>``, whose text follows the browser's language, not the page's."""
    months = [f"{now.year - (now.month - i <= 0):04d}-{(now.month - i - 1) % 12 + 1:02d}" for i in range(12)]
    return months if shown in months else [*months, shown]


@page("supervisor")
def chart(console, request, account, form) -> Response:
    group = request.path_params["group"]
    if group not in ("offices", "categories"):
        return error(request, 404, "没有这张图。")
    try:
        month, rep = _report(console, request)
    except UsageError:
        return error(request, 400, "月份格式应为 YYYY-MM。")

    def draw() -> bytes:
        with _DRAWING:
            return rep.chart_png(group)

    png = console.cached(("chart", month, group), draw, REPORT_SECONDS)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})
