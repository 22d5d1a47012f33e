"""Deadlines from the message's type, per the city's time limits.

For now working days skip Saturdays and Sundays only; statutory holidays and
make-up working days (chinese-calendar) come with the case ledger.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from wenzheng.config.schema import TimeLimits
from wenzheng.envelope import iso


def _add_working_days(start: datetime, days: float) -> datetime:
    whole, frac = int(days), days - int(days)
    t = start
    while whole > 0:
        t += timedelta(days=1)
        if t.weekday() < 5:
            whole -= 1
    return t + timedelta(days=frac)


def deadlines(limits: TimeLimits, message_type: str, received: datetime) -> dict[str, str]:
    rest_day = received.weekday() >= 5
    first = received + timedelta(hours=limits.first_response_hours_rest_day if rest_day else limits.first_response_hours)
    out = {"first_response_due": iso(first)}
    if (limit := limits.by_type.get(message_type)) is not None:
        out["answer_due"] = iso(_add_working_days(received, limit.working_days))
    return out
