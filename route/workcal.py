"""Chinese working time: statutory holidays, make-up working days and office hours.

Which days are working days comes from the ``chinese-calendar`` package (the State
Council's schedule, 2004 onwards, as far as the installed release knows it), with the
city's overrides on top (``time_limits.calendar.holidays`` / ``workdays``), so next
year's schedule can be added the day it is published. A date that neither knows is
counted as Monday–Friday with one warning per year: never a crash, never a silent gap.

Office hours (``time_limits.office_hours``, default 08:30–12:00 and 14:30–17:30, the
赣州 government's) make a working hour an hour of office time.

How limits are counted (the reading most 网络问政 rules give; tested in
tests/route/test_deadlines.py):

* **N working hours** run only inside office hours of working days, from the moment
  the message was received; received outside office hours, the clock starts at the
  next opening. 1 working hour from 16:50 on a Friday → 08:50 on the next working day
  (a make-up Saturday counts).
* **N working days** end at the close of office on the Nth working day *after* the day
  of receipt — the day of receipt does not count, whether the message came at 08:00 or
  at 23:00. 1 working day from Tuesday → Wednesday 17:30; from the Friday before the
  National Day holiday → the close of the first working day after it.
* **M clock hours** are plain hours (the rest-day first response: 8 hours).
"""

from __future__ import annotations

import logging
import math
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)


class WorkCalendar:
    def __init__(self, *, holidays=(), workdays=(), office_hours=(("08:30", "12:00"), ("14:30", "17:30")),
                 timezone: str = "Asia/Shanghai"):
        self.holidays = {_date(d) for d in holidays}
        self.workdays = {_date(d) for d in workdays}
        self.periods = sorted((_time(a), _time(b)) for a, b in office_hours)
        if not self.periods or any(a >= b for a, b in self.periods):
            raise ValueError("office hours must be non-empty (start, end) pairs with start < end")
        self.tz = ZoneInfo(timezone)
        self._warned: set[int] = set()
        self._days: dict[date, bool] = {}

    @classmethod
    def from_settings(cls, settings) -> WorkCalendar:
        tl = settings.time_limits
        return cls(holidays=tl.calendar.holidays, workdays=tl.calendar.workdays,
                   office_hours=[(p.start, p.end) for p in tl.office_hours], timezone=settings.city.timezone)

    # --- days -------------------------------------------------------------------------

    def is_workday(self, d: date) -> bool:
        """Cached: chinese-calendar validates every date it is asked (a third of routing's time)."""
        if (known := self._days.get(d)) is None:
            known = self._days[d] = self._is_workday(d)
        return known

    def _is_workday(self, d: date) -> bool:
        if d in self.workdays:
            return True
        if d in self.holidays:
            return False
        import chinese_calendar

        try:
            return chinese_calendar.is_workday(d)
        except NotImplementedError:
            if d.year not in self._warned:
                self._warned.add(d.year)
                log.warning("no holiday schedule for %d: counting Monday-Friday; add it under "
                            "time_limits.calendar", d.year)
            return d.weekday() < 5

    def next_workday(self, d: date) -> date:
        d += timedelta(days=1)
        while not self.is_workday(d):
            d += timedelta(days=1)
        return d

    # --- deadlines --------------------------------------------------------------------

    def local(self, t: datetime) -> datetime:
        if t.tzinfo is None:
            raise ValueError("a naive datetime: give the time zone")
        return t.astimezone(self.tz)

    def add_working_days(self, start: datetime, days: float) -> datetime:
        """The close of office on the ``days``-th working day after the day of ``start``."""
        d = self.local(start).date()
        for _ in range(max(1, math.ceil(days))):
            d = self.next_workday(d)
        return datetime.combine(d, self.periods[-1][1], self.tz)

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """``hours`` of office time from ``start`` (from the next opening when outside office hours)."""
        left = timedelta(hours=hours)
        t: datetime | None = self.local(start)
        d = start.date() if t is None else t.date()
        if not self.is_workday(d):
            d, t = self.next_workday(d), None
        while True:
            for a, b in self.periods:
                open_, close = datetime.combine(d, a, self.tz), datetime.combine(d, b, self.tz)
                begin = open_ if t is None else max(open_, t)
                if begin >= close:
                    continue
                if begin + left <= close:
                    return begin + left
                left -= close - begin
            d, t = self.next_workday(d), None


def _date(v) -> date:
    return v if isinstance(v, date) else date.fromisoformat(str(v))


def _time(v) -> time:
    return v if isinstance(v, time) else time.fromisoformat(str(v))
