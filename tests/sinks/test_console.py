"""The workbench console and the case API's authorisation, over HTTP, on SQLite and PostgreSQL.

Each test serves the ledger worker's routes and console through one ``Service`` (as
``wenzheng worker ledger`` does) and talks to it with Starlette's test client: cookies,
forms and CSRF tokens as a browser sends them. The assignment test publishes through a
real embedded broker and reads the topics back.
"""

from __future__ import annotations

import random
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests.conftest import write_config
from tests.sinks.test_ledger import routed
from wenzheng.app.demo import to_call
from wenzheng.config import load
from wenzheng.core.service import Service
from wenzheng.sinks.accounts import Accounts, failures_t
from wenzheng.sinks.api import TrackGuard
from wenzheng.sinks.api import routes as api_routes
from wenzheng.sinks.cases import Ledger, cases_t, outbox_t
from wenzheng.sinks.console.app import Console

SH = ZoneInfo("Asia/Shanghai")
TRIAGE = "360700-wzb"
A, B = "360703-cgj", "360702-cgj"  # 南康区 and 章贡区 城市管理局
PASSWORD = "correct-horse-9"
PHONE = to_call({"text": ""}, 3)["caller_number"]  # a number the demo's hotline calls carry
NAME = "王建国"


def triage_message(msg_id: str, text: str, **kw) -> dict:
    m = routed(msg_id, text, **kw)
    m["routing"].update(office_id=TRIAGE, office_name="赣州市网络问政办公室", triage=True, rule="fallback:triage")
    m["classification"].update(category_confidence=0.21, jurisdiction_source="place:唐江镇")
    return m


class Site:
    """One ledger worker's HTTP face over a fresh ledger, with an account per role."""

    def __init__(self, config, url: str, schema: str | None, publisher=None):
        settings = config.settings
        self.ledger = Ledger(url, prefix="GZ", schema=schema)
        self.accounts = Accounts.from_settings(self.ledger.engine, settings)
        for name, role, office in (("disp", "dispatcher", None), ("clerk_a", "clerk", A), ("clerk_b", "clerk", B),
                                   ("super", "supervisor", None)):
            self.accounts.add(name, role, PASSWORD, office)
        guard = TrackGuard.from_settings(settings)
        self.console = Console(self.ledger, self.accounts, config, guard, publisher)
        self.service = Service("127.0.0.1", 0, "ledger")
        self.service.add(*api_routes(self.ledger, self.accounts, guard))
        self.service.mount("/", self.console.app())

    def client(self, name: str | None = None, address: str = "testclient") -> TestClient:
        c = TestClient(self.service.app, follow_redirects=False, client=(address, 50000))
        if name:
            assert login(c, name).status_code == 303
        return c

    def case(self, msg_id: str, text: str, **kw) -> str:
        return self.ledger.record(triage_message(msg_id, text, **kw))["tracking_no"]

    def office_case(self, msg_id: str, text: str, office: str = A) -> str:
        return self.ledger.record(routed(msg_id, text, office=office))["tracking_no"]


def csrf(c: TestClient, page: str = "/console/login") -> str:
    if "csrftoken" not in c.cookies:
        c.get(page)
    return c.cookies["csrftoken"]


def login(c: TestClient, name: str, password: str = PASSWORD):
    return c.post("/console/login", data={"name": name, "password": password, "csrftoken": csrf(c)})


def form(c: TestClient, url: str, **data):
    return c.post(url, data={**data, "csrftoken": csrf(c)})


@pytest.fixture
def city(tmp_path):
    return load(write_config(tmp_path))


@pytest.fixture
def site(city, ledger_url):
    s = Site(city, *ledger_url)
    yield s
    s.ledger.dispose()


def test_anonymous_callers_get_the_login_page_or_401(site):
    t = site.office_case("wechat:1", "唐江镇幸福路的路灯坏了")
    c = site.client()
    for page in ("/console/", "/console/triage", "/console/office", "/console/supervisor", f"/console/cases/{t}"):
        r = c.get(page)
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next=")
    assert 'id="login-form"' in c.get("/console/login").text
    assert c.post(f"/cases/{t}/claim", json={}).status_code == 401
    assert c.post(f"/cases/{t}/claim", json={}, headers={"Authorization": "Bearer wz_guessed"}).status_code == 401
    assert site.ledger.get(t)["status"] == "routed"


def test_an_office_acts_only_on_its_own_cases_and_is_never_told_whose_they_are(site):
    t = site.office_case("wechat:1", "唐江镇幸福路的路灯坏了", office=A)
    b = site.client("clerk_b")
    names = [site.console.office_name(o) for o in (A, B)] + [A, B, "南康", "章贡"]
    for r in (b.get(f"/console/cases/{t}"), form(b, f"/console/cases/{t}/claim"),
              form(b, f"/console/cases/{t}/return", reason="不是我们的")):
        assert r.status_code == 403
        assert not [n for n in names if n in r.text.split('id="main"')[1]], r.text
    token_b = site.accounts.new_token(B, "b-system")
    r = b.post(f"/cases/{t}/claim", json={"actor": "x"}, headers={"Authorization": f"Bearer {token_b}"})
    assert r.status_code == 403 and not [n for n in names if n in r.text]
    token_a = site.accounts.new_token(A, "a-system")
    r = b.post(f"/cases/{t}/claim", json={"actor": "张三"}, headers={"Authorization": f"Bearer {token_a}"})
    assert r.status_code == 200 and r.json() == {"tracking_no": t, "status": "claimed"}  # never the whole case
    assert site.ledger.get(t)["events"][-1] | {"at": None} == {
        "at": None, "event": "claimed", "office_id": A, "actor": "张三", "note": None, "account": f"token:{A}",
        "client": "testclient"}
    site.accounts.revoke_tokens(A)
    assert b.post(f"/cases/{t}/reply", json={"text": "x"}, headers={"Authorization": f"Bearer {token_a}"}).status_code == 401


def test_a_form_without_its_csrf_token_is_refused(site):
    t = site.office_case("wechat:1", "唐江镇幸福路的路灯坏了")
    a = site.client("clerk_a")
    r = a.post(f"/console/cases/{t}/claim", data={})
    assert r.status_code == 403 and site.ledger.get(t)["status"] == "routed"
    assert a.post(f"/console/cases/{t}/claim", data={"csrftoken": "forged"}).status_code == 403
    assert form(a, f"/console/cases/{t}/claim").status_code == 303
    assert site.ledger.get(t)["status"] == "claimed"
    fresh = site.client()  # a login form posted from another site carries no cookie at all
    assert fresh.post("/console/login", data={"name": "disp", "password": PASSWORD}).status_code == 403
    assert fresh.post("/track", data={"tracking_no": t, "code": "000000"}).status_code == 403


def test_twenty_wrong_passwords_lock_the_account_until_the_lock_expires(site):
    c = site.client()
    answers = [login(c, "clerk_a", f"guess-{i}") for i in range(20)]
    assert [r.status_code for r in answers[:10]] == [401] * 10
    assert {r.status_code for r in answers[10:]} == {429} and "锁定" in answers[-1].text
    r = login(c, "clerk_a")
    assert r.status_code == 429 and "wz_session" not in r.headers.get("set-cookie", "")
    assert c.get("/console/office").status_code == 303  # still not signed in
    with site.ledger.engine.begin() as db:  # fifteen minutes later
        db.execute(failures_t.update().values(at=failures_t.c.at - timedelta(minutes=16)))
    assert login(c, "clerk_a").status_code == 303 and c.get("/console/office").status_code == 200


def test_one_address_guessing_many_accounts_is_locked_too(site):
    c = site.client()
    codes = [login(c, f"user{i}", "x").status_code for i in range(31)]
    assert codes[:30] == [401] * 30 and codes[30] == 429
    assert login(c, "disp").status_code == 429


def test_a_thousand_guesses_at_track_are_rate_limited_and_find_nothing(site):
    t = site.case("wechat:1", "唐江镇幸福路的路灯坏了")
    c = site.client()
    csrf(c, "/track")
    rng = random.Random(1)
    statuses = []
    for _ in range(1000):
        r = c.post("/track", data={"tracking_no": t, "code": f"{rng.randrange(10**6):06d}",
                                   "csrftoken": c.cookies["csrftoken"]})
        statuses.append(r.status_code)
        assert 'id="track-result"' not in r.text
    assert statuses.count(429) >= 985 and set(statuses) == {200, 429}
    api = [c.get(f"/cases/{t}", params={"code": "123456"}).status_code for _ in range(20)]
    assert set(api) == {429}  # the API's lookup shares the limit


def test_track_shows_the_public_case_and_answers_alike_for_unknown_and_wrong(site):
    t = site.office_case("wechat:1", f"我是{NAME}，电话{PHONE}，唐江镇幸福路的路灯坏了")
    code = site.ledger.get(t)["check_code"]
    a = site.client("clerk_a")
    form(a, f"/console/cases/{t}/claim")
    form(a, f"/console/cases/{t}/reply", text=f"已修复。如有问题请联系{NAME}，电话{PHONE}")
    c = site.client()
    csrf(c, "/track")

    def look(number, check):
        return c.post("/track", data={"tracking_no": number, "code": check, "csrftoken": c.cookies["csrftoken"]})

    found = look(t.lower(), code)
    assert 'id="track-result"' in found.text and "已答复" in found.text and "南康区城市管理局" in found.text
    assert "已修复" in found.text and PHONE not in found.text and NAME not in found.text
    assert "clerk_a" not in found.text and "testclient" not in found.text
    wrong, unknown = look(t, "000000" if code != "000000" else "111111"), look("GZ20990101-000001", code)
    assert wrong.status_code == unknown.status_code == 200 and wrong.text == unknown.text
    other = site.client(address="10.0.0.2")  # the limit is per address: this one has its own
    assert other.get(f"/cases/{t}", params={"code": code}).json()["history"][-1]["reply"].startswith("已修复")
    wrong, unknown = other.get(f"/cases/{t}", params={"code": "x"}), other.get("/cases/GZ20990101-1", params={"code": code})
    assert wrong.status_code == unknown.status_code == 404 and wrong.json() == unknown.json()


def test_returned_case_goes_back_to_triage_and_extension_moves_the_deadline(site):
    t = site.office_case("wechat:1", "唐江镇幸福路的路灯坏了", office=A)
    u = site.office_case("wechat:2", "唐江镇解放路的井盖丢了", office=A)
    a, d = site.client("clerk_a"), site.client("disp")
    form(a, f"/console/cases/{t}/claim")
    r = form(a, f"/console/cases/{t}/return", reason="路灯归供电公司")
    assert r.status_code == 303
    case = site.ledger.get(t)
    assert (case["status"], case["office_id"], case["triage"]) == ("returned", TRIAGE, True)
    assert t in d.get("/console/triage").text and t not in a.get("/console/office").text
    assert a.get(f"/console/cases/{t}").status_code == 403  # no longer the office's
    before = site.ledger.get(u)["answer_due"]
    assert form(a, f"/console/cases/{u}/extend", until=f"{before + timedelta(days=10):%Y-%m-%d}",
                reason="需协调施工单位").status_code == 303
    triage_page = d.get("/console/triage").text
    assert f'id="extension-{u}"' in triage_page
    assert form(d, f"/console/cases/{u}/approve").status_code == 303
    after = site.ledger.get(u)
    assert after["answer_due"].date() == (before + timedelta(days=10)).date() and after["extension"] is None
    assert [e["event"] for e in after["events"]][-2:] == ["extension", "ext_approved"]
    assert after["events"][-1]["account"] == "disp" and after["events"][-1]["client"] == "testclient"
    form(a, f"/console/cases/{u}/extend", until=f"{after['answer_due'] + timedelta(days=5):%Y-%m-%d}", reason="再延")
    form(d, f"/console/cases/{u}/refuse")
    assert site.ledger.get(u)["answer_due"] == after["answer_due"]


def test_supervisor_reads_everything_and_acts_on_nothing(site):
    t = site.office_case("wechat:1", "唐江镇幸福路的路灯坏了")
    s = site.client("super")
    page = s.get("/console/supervisor", params={"month": "2026-11"})
    assert page.status_code == 200 and 'id="office-rates"' in page.text and "南康区城市管理局" in page.text
    assert A not in page.text.split('id="main"')[1].replace(f"/console/cases/{t}", "")  # offices by name
    png = s.get("/console/charts/offices.png", params={"month": "2026-11"})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert s.get(f"/console/cases/{t}").status_code == 200
    assert form(s, f"/console/cases/{t}/claim").status_code == 403
    assert s.get("/console/triage").status_code == 403
    assert site.ledger.get(t)["status"] == "routed"


def test_no_page_or_answer_shows_the_demos_phone_numbers_or_names(site):
    text = f"我是{NAME}，电话{PHONE}，南康区唐江镇幸福路的路灯坏了一个星期"
    t = site.case("hotline:1", text)
    o = site.office_case("hotline:2", f"我叫李秀英，手机{PHONE}，唐江镇解放路井盖丢了")
    code = site.ledger.get(o)["check_code"]
    d, a, s, anon = site.client("disp"), site.client("clerk_a"), site.client("super"), site.client()
    form(a, f"/console/cases/{o}/claim")
    form(a, f"/console/cases/{o}/reply", text=f"已处理，联系人{NAME} {PHONE}")
    csrf(anon, "/track")
    token = site.accounts.new_token(A)
    answers = [d.get("/console/triage"), d.get(f"/console/cases/{t}"), d.get(f"/console/cases/{o}"),
               a.get("/console/office"), a.get(f"/console/cases/{o}"), s.get("/console/supervisor"),
               s.get(f"/console/cases/{t}"), anon.get("/track"),
               anon.post("/track", data={"tracking_no": o, "code": code, "csrftoken": anon.cookies["csrftoken"]}),
               anon.get(f"/cases/{o}", params={"code": code}),
               anon.post(f"/cases/{o}/close", json={}, headers={"Authorization": f"Bearer {token}"})]
    for r in answers:
        assert r.status_code == 200, (r.url, r.status_code)
        for secret in (PHONE, NAME, "李秀英", PHONE[-8:]):
            assert secret not in r.text, (r.url, secret)


def _routed_to(c: TestClient, t: str, **decision):
    return form(c, f"/console/cases/{t}/assign", **decision)


def test_an_assignment_publishes_to_the_office_queue_once_and_one_correction(runtime, tmp_path):
    from tests.kafka_util import read_values
    from wenzheng.classify.training import merge_corrections, read_labels_topic
    from wenzheng.core.delivery import Publisher
    from wenzheng.core.kafka import producer

    publisher = Publisher(runtime.settings, producer(runtime.settings), runtime.journal, "console")
    site = Site(runtime.config, f"sqlite:///{tmp_path / 'ledger.sqlite3'}", None, publisher)
    try:
        t = site.case("wechat:1", "唐江镇幸福路的路灯坏了一个星期")
        d = site.client("disp")
        decision = {"category": "urban_management", "type": "complaint", "jurisdiction": "360703", "office_id": A}
        assert _routed_to(d, t, **decision).status_code == 303
        assert _routed_to(d, t, **decision).status_code == 303  # a double submit is refused by the ledger
        with site.ledger.engine.begin() as db:  # and a flush retried after a crash publishes nothing more
            db.execute(outbox_t.update().values(sent_at=None, leased_until=None))
        from wenzheng.sinks.dispatch import flush

        assert flush(site.ledger, publisher) == 0
        topics, broker = runtime.topics, runtime.bootstrap[0]
        office = read_values(broker, topics.office(A))
        assert [m["id"] for m in office] == ["wechat:1"]
        sent = office[0]
        assert sent["routing"]["office_id"] == A and sent["routing"]["rule"] == "dispatcher:disp"
        (label,) = read_values(broker, topics.labels)
        assert label["id"] == "wechat:1" and label["category"] == "urban_management" and label["by"] == "disp"
        assert label["predicted"]["category"] == "urban_management" and label["model_version"] == "m1"
        # 退回, then a reassignment: a second correction, the same office queue not sent twice
        a = site.client("clerk_a")
        form(a, f"/console/cases/{t}/return", reason="应由住建局办理")
        assert _routed_to(d, t, **{**decision, "category": "housing_construction", "office_id": "360703-zjj"}).status_code == 303
        assert len(read_values(broker, topics.office(A))) == 1
        assert len(read_values(broker, topics.office("360703-zjj"))) == 1
        corrections = read_labels_topic(runtime.settings)
        assert len(corrections) == 2
        (merged,) = merge_corrections([{"id": "wechat:1", "text": "…", "category": "urban_management"}], corrections)
        assert merged["category"] == "housing_construction"  # the latest correction wins, as training reads it
        with site.ledger.engine.connect() as db:
            assert db.execute(sa.select(sa.func.count()).select_from(outbox_t)
                              .where(outbox_t.c.sent_at.is_(None))).scalar_one() == 0
            assert db.execute(sa.select(cases_t.c.triage).where(cases_t.c.tracking_no == t)).scalar_one() is False
    finally:
        site.ledger.dispose()
        publisher.close()


def test_sessions_end_when_the_account_is_disabled_or_reset(site):
    c = site.client("clerk_a")
    assert c.get("/console/office").status_code == 200
    site.accounts.reset("clerk_a", "another-password-1")
    assert c.get("/console/office").status_code == 303
    assert login(c, "clerk_a", "another-password-1").status_code == 303
    site.accounts.disable("clerk_a")
    assert c.get("/console/office").status_code == 303
    assert login(c, "clerk_a", "another-password-1").status_code == 401


def test_login_redirects_only_within_the_console(site):
    c = site.client()
    r = c.post("/console/login", data={"name": "disp", "password": PASSWORD, "next": "https://evil.example/",
                                        "csrftoken": csrf(c)})
    assert r.headers["location"] == "/console/triage"
    assert re.search(r"wz_session=[^;]+; path=/; Max-Age=\d+; httponly; samesite=lax", r.headers["set-cookie"])


def test_the_console_is_served_behind_the_services_limits(city, tmp_path):
    site = Site(city, f"sqlite:///{tmp_path / 'l.sqlite3'}", None)
    try:
        c = site.client()
        big = c.post("/console/login", content=b"x" * ((1 << 20) + 1),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert big.status_code == 413
        assert c.get("/console/static/console.css").headers["content-type"].startswith("text/css")
        assert c.get("/healthz").status_code == 200  # the service's own routes come first
    finally:
        site.ledger.dispose()


def test_the_dispatcher_sets_spam_and_repeats_aside(site):
    spam = site.case("weibo:1", "关注我领红包 http://x.example")
    again = site.case("hotline:2", "唐江镇幸福路路灯的事情我上周反映过了，还没修", at="2026-11-24T09:00:00+08:00")
    first = site.ledger.record(routed("wechat:3", "章贡区解放路的路灯坏了一个星期了", jurisdiction="360702",
                                      office=B))["tracking_no"]  # another county: the matcher keeps them apart
    d = site.client("disp")
    assert form(d, f"/console/cases/{spam}/invalid", reason="spam").status_code == 303
    assert form(d, f"/console/cases/{again}/repeat", of="GZ20990101-000001").status_code == 303  # no such case
    assert site.ledger.get(again)["status"] == "routed"
    assert form(d, f"/console/cases/{again}/repeat", of=first.lower()).status_code == 303
    queue = d.get("/console/triage").text
    assert spam not in queue and again not in queue
    assert site.ledger.get(spam)["status"] == "invalid" and site.ledger.get(again)["status"] == "duplicate"
    assert [m["message_id"] for m in site.ledger.get(first)["messages"]] == ["wechat:3", "hotline:2"]
    assert form(d, f"/console/cases/{first}/invalid", reason="spam").status_code == 303  # not a triage case
    assert site.ledger.get(first)["status"] == "routed"
