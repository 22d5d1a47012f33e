"""Queues longer than a page: the console lists a page of them and counts them all, and the
supervisor's red and overdue cases are counted in the database, the most overdue listed
(``benchmarks/console.py`` measures the pages at 10,000 open cases)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.conftest import write_config
from tests.sinks.test_console import A, Site, triage_message
from tests.sinks.test_ledger import routed
from wenzheng.config import load
from wenzheng.sinks.console.supervisor import FLAGGED
from wenzheng.sinks.console.web import PAGE
from wenzheng.sinks.supervise import grade

NOWHERE = {"jurisdiction": "unknown"}  # repeat matching needs a county: these never join each other


def _ago(hours: float, now: datetime) -> str:
    return (now - timedelta(hours=hours)).isoformat(timespec="seconds")


@pytest.fixture
def city(tmp_path):
    return load(write_config(tmp_path))


@pytest.fixture
def site(city, tmp_path):
    s = Site(city, f"sqlite:///{tmp_path / 'ledger.sqlite3'}", None)
    yield s
    s.ledger.dispose()


def test_a_long_triage_queue_is_paged_oldest_first_and_counted(site):
    now = datetime.now(site.ledger.tz)
    numbers = [site.case(f"wechat:{i}", f"第{i}件：路灯不亮", at=_ago(300 - i, now), **NOWHERE)
               for i in range(PAGE + 30)]
    d = site.client("disp")
    first = d.get("/console/triage").text
    assert f'id="triage-count">{PAGE + 30}</span>' in first
    assert f'id="triage-{numbers[0]}"' in first and f'id="triage-{numbers[PAGE - 1]}"' in first
    assert f'id="triage-{numbers[PAGE]}"' not in first
    assert 'id="pager-next" href="/console/triage?page=2"' in first
    second = d.get("/console/triage", params={"page": 2}).text
    assert f'id="triage-{numbers[PAGE]}"' in second and f'id="triage-{numbers[0]}"' not in second
    assert second.count('class="case-link"') == 30 and 'id="pager-prev"' in second
    assert d.get("/console/triage", params={"page": "x"}).text.count('class="case-link"') == PAGE


def test_an_office_page_lists_the_nearest_deadlines_and_keeps_the_admins_office(site):
    now = datetime.now(site.ledger.tz)
    due = [now + timedelta(hours=(i * 37) % 500 + 1) for i in range(PAGE + 5)]
    for i, d in enumerate(due):
        site.ledger.record(routed(f"wechat:{i}", f"第{i}件：井盖丢了", at=_ago(2, now), office=A,
                                  answer_due=d.isoformat(timespec="seconds"), **NOWHERE))
    site.accounts.add("root", "admin", "correct-horse-9")
    page = site.client("root").get("/console/office", params={"office": A}).text
    assert page.count('class="case-link"') == PAGE and f'id="office-count">{PAGE + 5}</span>' in page
    assert f'href="/console/office?office={A}&amp;page=2"' in page
    dues = sorted(due)
    assert f"{dues[PAGE - 1]:%Y-%m-%d %H:%M}" in page and f"{dues[-1]:%Y-%m-%d %H:%M}" not in page


def test_the_supervisor_counts_every_late_case_and_lists_the_most_overdue(site, city):
    now = datetime.now(site.ledger.tz)
    for i in range(FLAGGED + 40):  # from 250 hours ago to now: some on time, most past a milestone
        site.ledger.record(routed(f"wechat:{i}", f"第{i}件：垃圾桶满了", at=_ago(250 - 1.8 * i, now), office=A,
                                  answer_due=(now + timedelta(hours=i - 60)).isoformat(timespec="seconds"), **NOWHERE))
    site.ledger.record(triage_message("wechat:t", "咨询医保", at=_ago(1, now), **NOWHERE))
    late = [c for c in site.ledger.open_cases()
            if any(g["grade"] == "red" for g in grade(c, now, city.settings))
            or (c["answer_due"] < now and c["replied_at"] is None)]
    assert FLAGGED < len(late) < FLAGGED + 41
    page = site.client("super").get("/console/supervisor").text
    assert f'id="flagged-count">{len(late)}</span>' in page and f"列出超期最久的 {FLAGGED} 件" in page
    listed = [c["tracking_no"] for c in sorted(late, key=lambda c: (c["answer_due"], c["tracking_no"]))]
    table = page.split('id="red-cases"')[1].split("</table>")[0]
    assert table.count('id="flagged-') == FLAGGED and f'id="flagged-{listed[0]}"' in table
    assert f'id="flagged-{listed[-1]}"' not in table
