"""Deadlines from the message's type and channel, in Chinese working time.

Per the city's ``time_limits`` (问政银川's rules by default): a first response within
1 working hour, or 8 clock hours when the message arrives on a rest day; an answer
within N working days by type (consultation 1; complaint, suggestion, help 5);
``by_channel`` overrides either for one channel. How working hours and days are
counted — holidays, make-up days, office hours — is in :mod:`wenzheng.route.workcal`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from wenzheng.core.envelope import iso

from .workcal import WorkCalendar


def deadlines(limits, calendar: WorkCalendar, message_type: str, channel: str, received: datetime) -> dict[str, str]:
    own = limits.by_channel.get(channel)
    if calendar.is_workday(calendar.local(received).date()):
        hours = own.first_response_hours if own and own.first_response_hours is not None else limits.first_response_hours
        first = calendar.add_working_hours(received, hours)
    else:
        first = received + timedelta(hours=limits.first_response_hours_rest_day)
    out = {"first_response_due": iso(first)}
    limit = (own.by_type.get(message_type) if own else None) or limits.by_type.get(message_type)
    if limit is not None:
        out["answer_due"] = iso(calendar.add_working_days(received, limit.working_days))
    return out
