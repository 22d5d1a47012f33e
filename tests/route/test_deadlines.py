"""Deadlines in Chinese working time, against hand-computed answers.

2026 facts (State Council schedule, as chinese-calendar has it): 10-01..10-07 National
Day + Mid-Autumn, make-up working days Sunday 09-20 and Saturday 10-10; Spring
Festival 02-15..02-23 with make-up Saturdays 02-14 and 02-28.
Office hours: 08:30-12:00, 14:30-17:30.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from wenzheng.config import load
from wenzheng.route.deadlines import deadlines
from wenzheng.route.workcal import WorkCalendar

SH = ZoneInfo("Asia/Shanghai")


def t(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=SH)


@pytest.fixture(scope="module")
def settings():
    return load().settings


@pytest.fixture(scope="module")
def cal(settings):
    return WorkCalendar.from_settings(settings)


@pytest.mark.parametrize("received, hours, due", [
    ("2026-11-23 09:00", 1, "2026-11-23 10:00"),   # Monday morning
    ("2026-11-23 11:30", 1, "2026-11-23 15:00"),   # 30 min before lunch, 30 after
    ("2026-11-23 12:30", 1, "2026-11-23 15:30"),   # over lunch: clock starts at 14:30
    ("2026-11-23 20:00", 1, "2026-11-24 09:30"),   # evening: next opening
    ("2026-11-27 16:50", 1, "2026-11-30 08:50"),   # Friday 16:50 → Monday (40 min + 10)
    ("2026-09-30 17:00", 1, "2026-10-08 09:00"),   # eve of National Day: 30 min, then 10-08
    ("2026-10-10 10:00", 1, "2026-10-10 11:00"),   # make-up Saturday is a working day
    ("2026-02-13 17:00", 2, "2026-02-14 10:00"),   # Friday → make-up Saturday 02-14
    ("2026-11-23 09:00", 8, "2026-11-24 10:30"),   # 6.5 h a day
])
def test_working_hours(cal, received, hours, due):
    assert cal.add_working_hours(t(received), hours) == t(due)


@pytest.mark.parametrize("received, days, due", [
    ("2026-11-24 10:00", 1, "2026-11-25 17:30"),   # Tuesday → Wednesday close
    ("2026-11-24 23:00", 1, "2026-11-25 17:30"),   # the hour of receipt does not matter
    ("2026-11-27 10:00", 1, "2026-11-30 17:30"),   # Friday → Monday
    ("2026-11-27 10:00", 5, "2026-12-04 17:30"),
    ("2026-09-30 10:00", 1, "2026-10-08 17:30"),   # before National Day → first day after
    ("2026-09-30 10:00", 5, "2026-10-13 17:30"),   # 10-08, 10-09, 10-10 (make-up Sat), 10-12, 10-13
    ("2026-09-18 10:00", 1, "2026-09-20 17:30"),   # Friday → make-up Sunday 09-20
    ("2026-10-03 09:00", 1, "2026-10-08 17:30"),   # during the holiday
    ("2026-02-12 10:00", 5, "2026-02-26 17:30"),   # 02-13, 02-14 (make-up Sat), 02-24, 02-25, 02-26
])
def test_working_days(cal, received, days, due):
    assert cal.add_working_days(t(received), days) == t(due)


def test_deadlines_by_type_and_rest_day(settings, cal):
    tl = settings.time_limits
    d = deadlines(tl, cal, "consultation", "wechat", t("2026-11-27 16:50"))
    assert d == {"first_response_due": "2026-11-30T08:50:00+08:00", "answer_due": "2026-11-30T17:30:00+08:00"}
    # on a rest day the first response is 8 clock hours
    d = deadlines(tl, cal, "complaint", "weibo", t("2026-10-03 09:00"))
    assert d["first_response_due"] == "2026-10-03T17:00:00+08:00"
    assert d["answer_due"] == "2026-10-13T17:30:00+08:00"  # 10-08, 10-09, 10-10 (make-up), 10-12, 10-13
    assert "answer_due" not in deadlines(tl, cal, "", "hotline", t("2026-11-23 09:00"))


def test_channel_override_and_next_year(tmp_path):
    from tests.conftest import write_config

    cfg = write_config(tmp_path, "127.0.0.1:9")
    text = (cfg / "time_limits.yaml").read_text(encoding="utf-8")
    text = text.replace("  # by_channel:\n  #   hotline:\n  #     by_type: {consultation: {working_days: 1}}",
                        "  by_channel:\n    hotline:\n      first_response_hours: 0.5\n"
                        "      by_type: {complaint: {working_days: 2}}")
    text = text.replace("    holidays: []\n    workdays: []",
                        "    holidays: [2027-01-01, 2027-02-08]\n    workdays: [2027-01-02]")
    (cfg / "time_limits.yaml").write_text(text, encoding="utf-8")
    settings = load(cfg).settings
    cal = WorkCalendar.from_settings(settings)
    d = deadlines(settings.time_limits, cal, "complaint", "hotline", t("2026-11-23 09:00"))
    assert d == {"first_response_due": "2026-11-23T09:30:00+08:00", "answer_due": "2026-11-25T17:30:00+08:00"}
    # 2027 is beyond chinese-calendar 1.11: the overrides decide, else Monday-Friday
    assert not cal.is_workday(t("2027-01-01 10:00").date())
    assert cal.is_workday(t("2027-01-02 10:00").date())       # a Saturday, made a working day
    assert cal.add_working_days(t("2026-12-31 10:00"), 2) == t("2027-01-04 17:30")  # 01-02 (Sat), 01-04
    assert cal.add_working_days(t("2027-02-05 10:00"), 1) == t("2027-02-09 17:30")  # 02-08 a holiday


def test_bad_calendar_config_names_the_key(tmp_path):
    from tests.conftest import write_config
    from wenzheng.config import ConfigError

    cfg = write_config(tmp_path, "127.0.0.1:9")
    text = (cfg / "time_limits.yaml").read_text(encoding="utf-8").replace("    holidays: []", "    holidays: [2027-13-01]")
    (cfg / "time_limits.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="time_limits.yaml.*month must be in 1..12"):
        load(cfg)
    text = text.replace("[2027-13-01]", "[next friday]")
    (cfg / "time_limits.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="time_limits.yaml: time_limits.calendar.holidays.0"):
        load(cfg)
