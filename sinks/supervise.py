"""Supervision (督办): grade the open cases against their milestones, publish the grades.

A scheduled job of the ledger worker (every ``supervision.every_seconds``). Each run:

1. Reads the ledger's open cases (every case not closed, nor marked invalid or a
   repeat by the dispatcher; a closed case that is reopened is open again).
2. Grades each milestone not yet met with :func:`grade`: claimed within
   ``supervision.claim_hours`` of receipt, answered within ``reply_hours`` or by the
   case's answer deadline if that is earlier, closed within ``close_hours``. Yellow
   once ``yellow_at`` of the allowed time is gone, orange at ``orange_at``, red past it.
3. Publishes one record per (case, milestone, grade) to ``wz.supervision``, keyed
   ``<tracking no>:<milestone>:<grade>`` through the delivery journal — so a grade is
   announced once, however often the job runs or restarts — and a red grade again
   every day (``…:red:<date>``) for as long as the milestone is missed: an overdue
   case is never silently dropped from view.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from wenzheng.core import envelope
from wenzheng.core.delivery import Out, Publisher

from .cases import DONE

log = logging.getLogger(__name__)

LOOKBACK = timedelta(days=400)  # open cases older than this are a data problem, still graded below


MILESTONES = (("claim", "claimed_at", "claim_hours"), ("reply", "replied_at", "reply_hours"),
              ("close", "closed_at", "close_hours"))


def grade(case: dict, now: datetime, settings) -> list[dict]:
    """The grades of a case's unmet milestones at ``now``: [{milestone, grade, due, elapsed}]."""
    sv = settings.supervision
    received = case["received_at"]
    out = []
    for milestone, done_field, hours_field in MILESTONES:
        if case.get(done_field) is not None:
            continue
        due = received + timedelta(hours=getattr(sv, hours_field))
        if milestone == "reply" and case.get("answer_due") is not None:
            due = min(due, case["answer_due"])
        span = (due - received).total_seconds()
        share = (now - received).total_seconds() / span if span > 0 else float("inf")
        level = "red" if now >= due else "orange" if share >= sv.orange_at else "yellow" if share >= sv.yellow_at else None
        if level:
            out.append({"milestone": milestone, "grade": level, "due": due, "elapsed": round(min(share, 99.0), 3)})
    return out


def records(cases, settings, now: datetime, topic: str) -> list[Out]:
    """The supervision records due for these cases at ``now`` (pure: no Kafka, no ledger)."""
    outs = []
    tz = now.tzinfo
    for case in cases:
        if case["status"] in DONE:
            continue
        for g in grade(case, now, settings):
            key = f"{case['tracking_no']}:{g['milestone']}:{g['grade']}"
            if g["grade"] == "red":
                key += f":{now.astimezone(tz).date().isoformat()}"
            outs.append(Out(topic, key, {
                "schema": "wenzheng.supervision/1",
                "tracking_no": case["tracking_no"],
                "office_id": case["office_id"],
                "office_name": case.get("office_name"),
                "co_offices": case.get("co_offices", []),
                "category": case.get("category"),
                "jurisdiction": case.get("jurisdiction"),
                "status": case["status"],
                "received_at": envelope.iso(case["received_at"]),
                **{k: (envelope.iso(v) if isinstance(v, datetime) else v) for k, v in g.items()},
                "graded_at": envelope.iso(now),
            }))
    return outs


class SupervisionJob:
    """Grades the ledger's open cases and publishes what changed; called by the scheduler."""

    def __init__(self, runtime, ledger, publisher: Publisher):
        self.runtime, self.ledger, self.publisher = runtime, ledger, publisher
        self.last: dict = {}

    def run(self, now: datetime | None = None) -> int:
        now = now or envelope.now()
        cases = [c for c in self.ledger.cases(now - LOOKBACK, now) if c["status"] not in DONE]
        outs = records(cases, self.runtime.settings, now, self.runtime.topics.supervision)
        sent = self.publisher.publish(outs) if outs else []
        counts: dict[str, int] = {}
        for o in outs:
            counts[o.value["grade"]] = counts.get(o.value["grade"], 0) + 1
        self.last = {"at": envelope.iso(now), "open_cases": len(cases), "graded": counts, "published": len(sent)}
        if sent:
            log.info("supervision: %d new grades", len(sent), extra=self.last)
        return len(sent)
