"""The case ledger, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
import threading
import urllib.request
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import free_port
from wenzheng.config import load
from wenzheng.core.service import Service
from wenzheng.sinks.accounts import Accounts
from wenzheng.sinks.api import TrackGuard, routes
from wenzheng.sinks.cases import CaseError, Ledger, NotYours
from wenzheng.sinks.supervise import records

SH = ZoneInfo("Asia/Shanghai")


def routed(msg_id: str, text: str, *, at="2026-11-23T09:00:00+08:00", jurisdiction="360703", office="360703-cgj",
           co=(), category="urban_management", mtype="complaint", channel="wechat", answer_due="2026-11-30T17:30:00+08:00"):
    return {"schema": "wenzheng.envelope/1", "id": msg_id, "channel": channel, "account": "gz",
            "posted_at": at, "received_at": at, "author": "a1", "title": "", "text": text,
            "attachments": [], "location": None, "raw_ref": None,
            "classification": {"category": category, "category_confidence": 0.9, "type": mtype,
                               "jurisdiction": jurisdiction, "model_version": "m1"},
            "routing": {"office_id": office, "office_name": "南康区城市管理局", "co_offices": list(co), "triage": False,
                        "rule": f"table:{category}@{jurisdiction}", "model_version": "m1", "config_hash": "c1",
                        "deadlines": {"first_response_due": "2026-11-23T10:00:00+08:00", "answer_due": answer_due},
                        "routed_at": at}}


@pytest.fixture
def ledger(ledger_url):
    url, schema = ledger_url
    led = Ledger(url, prefix="GZ", schema=schema)
    yield led
    led.dispose()


def test_tracking_numbers_and_idempotency(ledger):
    a = ledger.record(routed("wechat:1", "唐江镇幸福路的路灯坏了一个星期"))
    assert a == {"tracking_no": "GZ20261123-000001", "created": True, "merged": False, "duplicate": False}
    assert ledger.record(routed("wechat:1", "唐江镇幸福路的路灯坏了一个星期"))["tracking_no"] == "GZ20261123-000001"
    b = ledger.record(routed("hotline:9", "蓉江街道工地拖欠农民工工资三个月", category="labour_social_security"))
    c = ledger.record(routed("weibo:5", "唐江镇中学食堂饭菜变质", at="2026-11-24T00:10:00+08:00"))
    assert (b["tracking_no"], c["tracking_no"]) == ("GZ20261123-000002", "GZ20261124-000001")
    assert ledger.counts() == {"cases": 3, "messages": 3}
    case = ledger.get("GZ20261123-000001")
    assert [e["event"] for e in case["events"]] == ["received", "routed"]
    assert case["received_at"] == datetime(2026, 11, 23, 9, tzinfo=SH) and case["status"] == "routed"


def test_repeats_merge_into_one_case_within_the_jurisdiction(ledger):
    first = ledger.record(routed("wechat:1", "南康区唐江镇幸福路的路灯坏了一个星期了，晚上很黑"))
    again = ledger.record(routed("hotline:2", "你好，我反映一下唐江镇幸福路那边路灯坏了，晚上很黑", channel="hotline",
                                 at="2026-11-24T10:00:00+08:00"))
    other_place = ledger.record(routed("weibo:3", "唐江镇解放路的路灯坏了一个星期了，晚上很黑"))
    other_county = ledger.record(routed("wechat:4", "幸福路的路灯坏了一个星期了，晚上很黑", jurisdiction="360702",
                                        office="360702-cgj"))
    assert again == {"tracking_no": first["tracking_no"], "created": False, "merged": True, "duplicate": False}
    assert other_place["created"] and other_county["created"]
    case = ledger.get(first["tracking_no"])
    assert [m["message_id"] for m in case["messages"]] == ["wechat:1", "hotline:2"]
    assert case["events"][-1]["event"] == "merged" and json.loads(case["events"][-1]["note"])["channel"] == "hotline"
    assert next(c for c in ledger.cases(*_nov()) if c["tracking_no"] == first["tracking_no"])["duplicates"] == 1


def test_an_earlier_repeat_arriving_late_starts_the_clock(ledger):
    """Channels reach the ledger in no fixed order: the case must not depend on which came first."""
    late = ledger.record(routed("wechat:1", "南康区唐江镇幸福路的路灯坏了一个星期了，晚上很黑", at="2026-11-24T10:00:00+08:00",
                                answer_due="2026-12-01T17:30:00+08:00"))
    early = ledger.record(routed("hotline:2", "唐江镇幸福路那边路灯坏了一个星期了，晚上很黑", channel="hotline",
                                 office="360703-wzb", answer_due="2026-11-30T17:30:00+08:00"))
    assert early["merged"] and early["tracking_no"] == late["tracking_no"]
    case = ledger.get(late["tracking_no"])
    assert case["received_at"] == datetime(2026, 11, 23, 9, tzinfo=SH)
    assert case["answer_due"] == datetime(2026, 11, 30, 17, 30, tzinfo=SH)
    assert (case["office_id"], case["channel"]) == ("360703-wzb", "hotline")
    # once an office has acted, the case stays with it; only the clock moves
    t = ledger.record(routed("wechat:3", "唐江镇解放路的井盖丢了", at="2026-11-25T10:00:00+08:00"))["tracking_no"]
    ledger.claim(t, "360703-cgj", at=datetime(2026, 11, 25, 11, tzinfo=SH))
    ledger.record(routed("web:4", "唐江镇解放路的井盖丢了好几天", channel="web", office="360703-wzb",
                         at="2026-11-24T10:00:00+08:00"))
    case = ledger.get(t)
    assert (case["office_id"], case["received_at"]) == ("360703-cgj", datetime(2026, 11, 24, 10, tzinfo=SH))


def test_office_actions_and_their_order(ledger):
    t = ledger.record(routed("wechat:1", "唐江镇幸福路的路灯坏了", co=["360703-zjj"]))["tracking_no"]
    with pytest.raises(CaseError, match="cannot reply to it"):
        ledger.reply(t, "360703-cgj", "已修复")
    with pytest.raises(NotYours, match="not a case of your office") as refused:
        ledger.claim(t, "360703-gaj")
    assert "360703" not in str(refused.value).replace(t, "")  # names no office, neither its own nor the case's
    with pytest.raises(CaseError, match="no case GZ20990101-000001"):
        ledger.claim("GZ20990101-000001", "360703-cgj")
    at = datetime(2026, 11, 23, 9, 30, tzinfo=SH)
    ledger.claim(t, "360703-zjj", "李四", at=at)  # a co-handling office may claim
    ledger.reply(t, "360703-cgj", "已安排维修，路灯已恢复", "张三", at=at + timedelta(hours=5))
    case = ledger.close(t, satisfaction=5, at=at + timedelta(days=1))
    assert case["status"] == "closed" and case["satisfaction"] == 5
    assert case["claimed_at"] == at and case["replied_at"] == at + timedelta(hours=5)
    case = ledger.reopen(t, "市民反映路灯又不亮了", at=at + timedelta(days=2))
    assert case["status"] == "reopened" and case["replied_at"] is None and case["closed_at"] is None
    assert [e["event"] for e in case["events"]] == ["received", "routed", "claimed", "replied", "closed", "reopened"]
    with pytest.raises(CaseError, match="satisfaction"):
        ledger.close(t, satisfaction=9)


def test_cases_shape_for_reports(ledger):
    ledger.record(routed("wechat:1", "唐江镇幸福路的路灯坏了"))
    (case,) = list(ledger.cases(*_nov()))
    assert set(case) == {"tracking_no", "message_ids", "office_id", "office_name", "co_offices", "category", "type",
                         "jurisdiction", "channel", "received_at", "first_response_due", "answer_due", "claimed_at",
                         "replied_at", "closed_at", "status", "satisfaction", "duplicates"}
    assert case["answer_due"] == datetime(2026, 11, 30, 17, 30, tzinfo=SH)
    assert list(ledger.cases(datetime(2026, 12, 1, tzinfo=SH), datetime(2027, 1, 1, tzinfo=SH))) == []


def test_two_writers_never_share_a_tracking_number(ledger_url):
    url, schema = ledger_url
    ledgers = [Ledger(url, prefix="GZ", schema=schema) for _ in range(2)]
    texts = ["路灯", "井盖", "噪音", "停水", "欠薪", "垃圾", "占道", "油烟", "学校", "医保"]
    errors = []

    def write(k: int):
        try:
            for i in range(40):
                ledgers[k].record(routed(f"w{k}:{i}", f"第{k}-{i}号 {texts[i % 10]}问题{k * 100 + i}",
                                         jurisdiction=f"3607{k}{i:02d}"))  # no repeats across writers
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    numbers = sorted(c["tracking_no"] for c in ledgers[0].cases(*_nov()))
    assert numbers == [f"GZ20261123-{i:06d}" for i in range(1, 81)]
    for led in ledgers:
        led.dispose()


def test_supervision_grades_and_repeats_red_daily(ledger):
    settings = load().settings
    t = ledger.record(routed("wechat:1", "唐江镇幸福路的路灯坏了"))["tracking_no"]  # received 11-23 09:00
    cases = list(ledger.cases(*_nov()))
    at = datetime(2026, 11, 23, 9, tzinfo=SH)
    assert records(cases, settings, at + timedelta(hours=12), "wz.supervision") == []
    grades = {o.value["milestone"]: o.value["grade"] for o in records(cases, settings, at + timedelta(hours=19), "s")}
    assert grades == {"claim": "yellow"}  # 19/24 ≥ 0.75
    outs = records(cases, settings, at + timedelta(hours=130), "s")  # 130/168 of a week: yellow
    assert {(o.value["milestone"], o.value["grade"]) for o in outs} == {("claim", "red"), ("reply", "red"),
                                                                         ("close", "yellow")}
    red = next(o for o in outs if o.value["milestone"] == "claim")
    assert red.id == f"{t}:claim:red:2026-11-28"  # a red case is announced again each day, never dropped
    ledger.claim(t, "360703-cgj", at=at + timedelta(hours=81))
    cases = list(ledger.cases(*_nov()))
    assert "claim" not in {o.value["milestone"] for o in records(cases, settings, at + timedelta(hours=82), "s")}


def test_http_api_for_offices_and_citizens(ledger):
    """Offices act with their bearer token; a citizen looks up with the check code."""
    t = ledger.record(routed("wechat:1", "唐江镇幸福路的路灯坏了"))["tracking_no"]
    accounts = Accounts(ledger.engine)
    token, other = accounts.new_token("360703-cgj", "cgj-oa"), accounts.new_token("360703-gaj")
    svc = Service("127.0.0.1", free_port(), "ledger")
    svc.add(*routes(ledger, accounts, TrackGuard(60, 10)))
    svc.start()
    base = f"http://127.0.0.1:{svc.port}/cases/{t}"
    try:
        def call(url, body=None, token=token):
            req = urllib.request.Request(url, None if body is None else json.dumps(body).encode(),
                                         method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {token}"} if token else {})})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                with e:
                    return e.code, json.loads(e.read())

        assert call(f"{base}/claim", {}, token=None)[0] == 401
        assert call(f"{base}/reply", {"text": "x"})[0] == 409
        status, answer = call(f"{base}/claim", {"actor": "张三"}, token=other)
        assert status == 403 and "360703" not in answer["error"]
        assert call(f"{base}/claim", {"actor": "张三"}) == (200, {"tracking_no": t, "status": "claimed"})
        assert call(f"{base}/reply", {"text": "已修复"}) == (200, {"tracking_no": t, "status": "replied"})
        assert ledger.get(t)["events"][-1]["account"] == "token:360703-cgj"
        status, public = call(f"{base}?code={ledger.get(t)['check_code']}")
        assert status == 200 and public["status"] == "replied" and public["office_name"] == "南康区城市管理局"
        assert public["history"][-1] == {"at": public["replied_at"], "event": "replied", "reply": "已修复"}
        assert "actor" not in json.dumps(public) and "text" not in public
        assert call(f"{base}?code=000000")[0] == call(f"http://127.0.0.1:{svc.port}/cases/GZ20990101-000009?code=1")[0] == 404
    finally:
        svc.stop()


def _nov():
    return datetime(2026, 11, 1, tzinfo=SH), datetime(2026, 12, 1, tzinfo=SH)


def test_open_cases_normalised_by_an_older_version_are_brought_up_to_date(ledger):
    import sqlalchemy as sa

    from wenzheng.sinks.cases import cases_t

    first = ledger.record(routed("wechat:1", "南康区唐江镇幸福路的路灯坏了，晚上很黑"))
    with ledger.engine.begin() as db:  # as the punctuation-dropping normaliser stored it
        db.execute(sa.update(cases_t).values(norm="南康区唐江镇幸福路的路灯坏了晚上很黑"))
    assert ledger.renormalise_open() == 1 and ledger.renormalise_open() == 0
    again = ledger.record(routed("hotline:2", "唐江镇幸福路那边路灯坏了好几天，晚上很黑", channel="hotline",
                                 at="2026-11-24T10:00:00+08:00"))
    assert again["merged"] and again["tracking_no"] == first["tracking_no"]
