"""The workbench as people use it: each role in a real Chromium against a real ledger worker.

The ledger worker runs as ``wenzheng worker ledger`` does (its stage consuming ``wz.routed`` on
the embedded broker, its HTTP service with the case API and the console) in this process;
the cases are opened by routed messages it reads from Kafka (``seed.py``). Every test signs
in through the login form, clicks what a person clicks and asserts on what the page shows.
Each page is saved, full length at 1280 px, to ``test-artifacts/screenshots/<role>-<page>.png``
(look at them: Chinese must render, the layout must read), and checked for the personal data
the citizens gave — no page may show it.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``./dev test`` when it can); each
launch gets a fresh temporary profile from Playwright. Without Chromium or Playwright the
tests skip and say which is missing.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.kafka_util import read_values
from tests.sinks.console.seed import Spec, Workbench, routed
from wenzheng.route.router import Router

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover — said in the skip below
    sync_playwright = None

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if sync_playwright is None:
    pytest.skip("Playwright for Python is not installed (pip install '.[test]')", allow_module_level=True)
if CHROMIUM is None:
    pytest.skip("no Chromium on PATH (./dev test installs Debian's chromium when run as root)",
                allow_module_level=True)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "test-artifacts" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PASSWORD = "browser-test-9"
OFFICE, OTHER = "360702-cgj", "360703-cgj"  # 章贡区 and 南康区 城市管理局
PHONE, PHONE2, NAME, NAME2 = "13979701234", "13979705678", "王建国", "李秀英"
SECRETS = (PHONE, PHONE2, NAME, NAME2, "13979709999")
ACCOUNTS = (("disp", "dispatcher", None), ("clerk", "clerk", OFFICE), ("super", "supervisor", None),
            ("admin", "admin", None))
UM, TRIAGE = "urban_management", dict(confidence=0.31, category="environment")
SPECS = {
    # the 章贡区城市管理局's queue: 督办 colours by the share of the claim milestone gone
    "red": Spec(f"章贡区解放街道和平路的路灯坏了一个星期，晚上走路很黑。我叫{NAME}，电话{PHONE}", 30, UM, "360702",
                place="和平路"),
    "orange": Spec("章贡区南外街道滨江社区门口的垃圾桶满了三天没人清运，臭气熏天", 22, UM, "360702"),
    "yellow": Spec("章贡区东外街道牛岭社区有人占道经营卖水果，把人行道堵死了", 19, UM, "360702"),
    "fresh": Spec("章贡区水南街道长征路社区绿化带的大树被风刮倒了，压住了路边的车", 1, UM, "360702"),
    "reply": Spec("章贡区黄金岭街道金岭路社区的井盖丢了，晚上很危险", 3, UM, "360702"),
    "misrouted": Spec("章贡区赣江街道厚德路社区的小区物业乱收停车费，业主都不同意", 5, UM, "360702"),
    "extend_yes": Spec("章贡区沙河镇站北社区有人违章搭建铁皮棚，占了消防通道", 6, UM, "360702"),
    "extend_no": Spec("章贡区水东镇七里社区的户外广告牌松动了，一刮风就摇摇晃晃", 7, UM, "360702"),
    "track": Spec(f"章贡区蟠龙镇蟠龙街社区路边垃圾堆放点气味很大，我是{NAME2}，手机{PHONE2}", 8, UM, "360702"),
    # another office's: overdue, and one on time
    "overdue": Spec("南康区蓉江街道东山大道的路灯成片不亮，半个月了", 12 * 24, UM, "360703"),
    "other": Spec("南康区唐江镇卢屋村的垃圾池满了没人清", 2, UM, "360703"),
    # the 问政办's triage queue
    "assign": Spec("南康区唐江镇新圩路一个建筑工程晚上十二点还在打桩，吵得整栋楼睡不着", 2, jurisdiction="360703",
                   place="唐江镇", channel="hotline", runners_up=(("housing_construction", 0.27), (UM, 0.18)), **TRIAGE),
    "spam": Spec("加微信领红包，转发抽奖 http://x.example/abc", 4, jurisdiction="unknown", channel="weibo", **TRIAGE),
    "repeat": Spec("和平路的路灯还是不亮，上周就打过电话了，到现在也没人来修", 3, jurisdiction="unknown", **TRIAGE),
    "old": Spec("咨询一下新生儿医保怎么办理，需要带什么材料", 26, jurisdiction="unknown", mtype="consultation",
                channel="hotline", **TRIAGE),
}


def seed(wb: Workbench, bootstrap: str) -> None:
    """The accounts, and the specs' messages through the worker: ``wb.numbers`` and ``wb.ids`` by spec."""
    for name, role, office in ACCOUNTS:
        wb.accounts.add(name, role, PASSWORD, office)
    router, now = Router(wb.config, wb.runtime.offices), datetime.now(wb.ledger.tz)
    messages = {key: routed(router, f"B-{key}", spec, now) for key, spec in SPECS.items()}
    numbers = wb.feed(bootstrap, list(messages.values()))
    wb.ids = {key: m["id"] for key, m in messages.items()}
    wb.numbers = {key: numbers[m["id"]] for key, m in messages.items()}
    assert len(set(wb.numbers.values())) == len(SPECS), "the seed messages must open a case each"


@pytest.fixture(scope="module")
def bench(tmp_path_factory, bootstrap):
    wb = Workbench(write_config(tmp_path_factory.mktemp("workbench"), bootstrap))
    try:
        seed(wb, bootstrap)
        yield wb
    finally:
        wb.stop()


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def people(chromium, bench):
    """``people(role)``: a page of a fresh browser context (its own cookies), signed in as that
    role's account through the login form; ``people(None)`` is a citizen's."""
    contexts = []

    def open_page(account: str | None):
        ctx = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN",
                                   timezone_id="Asia/Shanghai", base_url=bench.url)
        ctx.set_default_timeout(15000)
        contexts.append(ctx)
        page = ctx.new_page()
        if account:
            page.goto("/console/")
            page.fill("#name", account)
            page.fill("#password", PASSWORD)
            page.click("#login-submit")
            expect(page.locator("#who")).to_contain_text(account)
        return page

    yield open_page
    for ctx in contexts:
        ctx.close()


def look(page, name: str) -> None:
    """Save the page as ``<role>-<page>.png`` and check it shows none of the citizens' personal data."""
    page.wait_for_load_state("load")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    html = page.content()
    assert not [s for s in SECRETS if s in html], f"{name}: personal data on the page"


def open_case(page, number: str) -> None:
    page.goto(f"/console/cases/{number}")
    expect(page.locator("#case-number")).to_have_text(number)


def flash(page, text: str) -> None:
    expect(page.locator("#flash")).to_contain_text(text)


# --- the dispatcher --------------------------------------------------------------------


def test_dispatcher_assigns_a_triage_message_to_a_lead_and_a_co_office(bench, people, bootstrap):
    page, no = people("disp"), bench.numbers["assign"]
    expect(page).to_have_url(f"{bench.url}/console/triage")
    rows = page.locator("#triage-queue tbody tr")
    queue = [bench.numbers[k] for k in ("old", "spam", "repeat", "assign")]  # oldest first
    assert [r.get_attribute("id").removeprefix("triage-") for r in rows.all()] == queue
    expect(page.locator("#triage-count")).to_have_text(str(len(queue)))
    row = page.locator(f"#triage-{no}")
    expect(row).to_contain_text("生态环境")  # the model's guess, with its confidence
    expect(row).to_contain_text("31.0%")
    expect(row).to_contain_text("27.0%")  # and its runners-up
    expect(row).to_contain_text("唐江镇")
    expect(page.locator(f"#triage-{bench.numbers['old']}")).to_have_class("late")  # first response overdue
    expect(page.locator(f"#triage-{bench.numbers['old']} td.due")).to_contain_text("超时")
    look(page, "dispatcher-triage")

    page.click(f"#triage-{no} a.case-link")
    expect(page.locator("#case-status")).to_have_text("待分派")
    expect(page.locator("#model-places")).to_contain_text("唐江镇")
    guesses = page.locator("#model-categories li")  # the model's three likeliest, likeliest first
    expect(guesses).to_have_count(3)
    expect(guesses.nth(0)).to_contain_text("生态环境")
    expect(guesses.nth(1)).to_contain_text("27.0%")
    page.select_option("#category", "environment")
    page.select_option("#type", "complaint")
    page.select_option("#jurisdiction", "360703")
    page.select_option("#office_id", "360703-sthjj")
    page.select_option("#co_offices", ["360703-zjj"])
    look(page, "dispatcher-case")
    page.click("#assign-submit")

    expect(page).to_have_url(f"{bench.url}/console/triage")
    flash(page, f"{no} 已分派至南康区生态环境局")
    expect(page.locator(f"#triage-{no}")).to_have_count(0)
    case = bench.ledger.get(no)
    assert (case["office_id"], case["co_offices"], case["category"]) == ("360703-sthjj", ["360703-zjj"], "environment")
    topics = bench.runtime.topics
    for office in ("360703-sthjj", "360703-zjj"):  # in each office's Kafka queue, once
        assert [m["id"] for m in read_values(bootstrap, topics.office(office))] == [bench.ids["assign"]]
    (label,) = [v for v in read_values(bootstrap, topics.labels) if v["tracking_no"] == no]
    assert (label["category"], label["jurisdiction"], label["by"]) == ("environment", "360703", "disp")


def test_dispatcher_sets_spam_and_a_repeat_aside(bench, people):
    page = people("disp")
    spam, again, first = bench.numbers["spam"], bench.numbers["repeat"], bench.numbers["red"]
    open_case(page, spam)
    page.select_option("#invalid-reason", "spam")
    page.fill("#invalid-note", "广告")
    page.click("#invalid-submit")
    flash(page, "已标记为无效件")
    expect(page.locator(f"#triage-{spam}")).to_have_count(0)

    open_case(page, again)
    page.fill("#repeat-of", first.lower())
    page.click("#repeat-submit")
    flash(page, "已并入原案件")
    expect(page.locator(f"#triage-{again}")).to_have_count(0)
    assert bench.ledger.get(spam)["status"] == "invalid" and bench.ledger.get(again)["status"] == "duplicate"
    open_case(page, first)
    expect(page.locator("#case-events")).to_contain_text(f"并入 {again}")
    look(page, "dispatcher-merged-case")


# --- an office clerk, and the dispatcher answering -----------------------------------------


def test_clerk_sees_the_queue_by_deadline_with_its_colours_and_answers_a_case(bench, people):
    page, n = people("clerk"), bench.numbers
    expect(page).to_have_url(f"{bench.url}/console/office")
    expect(page.locator("h1")).to_contain_text("章贡区城市管理局")
    rows = page.locator("#office-cases tbody tr")
    shown = [r.get_attribute("id").removeprefix("case-") for r in rows.all()]
    assert n["overdue"] not in shown and n["other"] not in shown  # another office's
    assert {n[k] for k in ("red", "orange", "yellow", "fresh")} <= set(shown)
    dues = [r.locator("td").nth(5).inner_text() for r in rows.all()]
    assert dues == sorted(dues), "by answer deadline"
    for key, badge in (("red", "红牌"), ("orange", "橙牌"), ("yellow", "黄牌"), ("fresh", "正常")):
        expect(page.locator(f"#case-{n[key]} .badge")).to_have_text(badge)
    red = page.locator(f"#case-{n['red']} .badge").evaluate("e => getComputedStyle(e).backgroundColor")
    assert red == "rgb(217, 48, 37)"
    expect(page.locator(f"#case-{n['red']} .why")).to_have_text("签收")  # red for the claim, not the answer
    expect(page.locator("#office-legend")).to_contain_text("签收 24 小时")
    look(page, "clerk-office")

    page.click(f"#case-{n['reply']} a.case-link")
    expect(page.locator("#case-status")).to_have_text("待签收")
    page.click("#claim-submit")
    flash(page, "已签收")
    expect(page.locator("#case-status")).to_have_text("办理中")
    page.fill("#reply-text", "已派人补装井盖并设置警示标志。如有问题请拨打13979709999。")
    look(page, "clerk-case")
    page.click("#reply-submit")
    flash(page, "已答复")
    page.select_option("#satisfaction", "5")
    page.click("#close-submit")
    flash(page, "已办结")
    expect(page.locator("#case-status")).to_have_text("已办结")
    expect(page.locator("#handle")).to_have_count(0)
    expect(page.locator("#case-answer-due")).to_contain_text("已答复")  # no countdown to a met deadline
    expect(page.locator("#case-satisfaction")).to_have_text("5 / 5")
    expect(page.locator("#case-events")).to_contain_text("签收")
    expect(page.locator("#case-events")).to_contain_text("办结")
    look(page, "clerk-case-closed")
    page.goto("/console/office")
    expect(page.locator(f"#case-{n['reply']}")).to_have_count(0)


def test_a_misrouted_case_is_returned_with_a_reason_and_assigned_again(bench, people):
    clerk, no = people("clerk"), bench.numbers["misrouted"]
    open_case(clerk, no)
    clerk.click("#return-box summary")
    clerk.fill("#return-reason", "小区物业收费归住建部门管理，不属于城管")
    clerk.click("#return-submit")
    expect(clerk).to_have_url(f"{bench.url}/console/office")
    flash(clerk, "已退回问政办重新分派")
    expect(clerk.locator(f"#case-{no}")).to_have_count(0)

    disp = people("disp")
    expect(disp.locator(f"#triage-{no} td.state")).to_have_text("退回待分派")
    open_case(disp, no)
    expect(disp.locator("#returned-reason")).to_contain_text("小区物业收费归住建部门管理")
    look(disp, "dispatcher-returned-case")
    disp.select_option("#category", "housing_construction")
    disp.select_option("#jurisdiction", "360702")
    disp.select_option("#office_id", "360702-zjj")
    disp.click("#assign-submit")
    flash(disp, "已分派至章贡区住房和城乡建设局")
    assert bench.ledger.get(no)["office_id"] == "360702-zjj"


def test_an_extension_is_requested_then_approved_or_refused(bench, people):
    clerk, disp = people("clerk"), people("disp")
    yes, no = bench.numbers["extend_yes"], bench.numbers["extend_no"]
    before = {k: bench.ledger.get(k)["answer_due"] for k in (yes, no)}
    for number in (yes, no):
        open_case(clerk, number)
        clerk.click("#extend-box summary")
        clerk.fill("#extend-until", f"{before[number] + timedelta(days=10):%Y-%m-%d}")
        clerk.fill("#extend-reason", "需协调消防、街道联合执法")
        clerk.click("#extend-submit")
        flash(clerk, "延期申请已提交")
        expect(clerk.locator("#extension")).to_contain_text("等待问政办审批")
    look(clerk, "clerk-extension")

    disp.goto("/console/triage")
    expect(disp.locator("#extension-count")).to_have_text("2")
    expect(disp.locator(f"#extension-{yes}")).to_contain_text("章贡区城市管理局")
    look(disp, "dispatcher-extensions")
    disp.click(f"#extension-{yes} button[name=approve]")
    flash(disp, "已同意延期")
    disp.goto("/console/triage")
    disp.click(f"#extension-{no} button[name=refuse]")
    flash(disp, "已驳回延期申请")
    disp.goto("/console/triage")
    expect(disp.locator("#extension-empty")).to_be_visible()

    open_case(clerk, yes)
    expect(clerk.locator("#case-answer-due")).to_contain_text(f"{before[yes] + timedelta(days=10):%Y-%m-%d}")
    expect(clerk.locator("#case-events")).to_contain_text("同意延期")
    open_case(clerk, no)
    expect(clerk.locator("#case-answer-due")).to_contain_text(f"{before[no]:%Y-%m-%d %H:%M}")
    expect(clerk.locator("#case-events")).to_contain_text("不同意延期")


# --- the supervisor, the admin, the citizen ---------------------------------------------------


def test_supervisor_sees_the_dashboard_and_cannot_act(bench, people):
    page, n = people("super"), bench.numbers
    expect(page).to_have_url(f"{bench.url}/console/supervisor")
    expect(page.locator("#nav-triage")).to_have_count(0)
    counts = bench.ledger.status_counts()
    expect(page.locator("#status-routed td")).to_have_text(str(counts.get("routed", 0)))
    flagged = page.locator("#red-cases")
    expect(flagged).to_contain_text(n["red"])
    expect(page.locator(f"#flagged-{n['overdue']}")).to_contain_text("南康区城市管理局")
    expect(page.locator(f"#flagged-{n['overdue']} .due")).to_contain_text("超时")
    rates = page.locator("#office-rates")
    expect(rates).to_contain_text("章贡区城市管理局")
    assert OFFICE not in rates.inner_text()  # offices by name, never by code
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#chart-offices").evaluate("i => i.naturalWidth") > 300
    look(page, "supervisor-dashboard")
    month = f"{bench.ledger.get(n['overdue'])['received_at']:%Y-%m}"  # an earlier month, most days
    page.select_option("#month", month)
    page.click("#month-form button")
    expect(page.locator("#month-box h2")).to_contain_text(month)
    expect(page.locator("#office-rates")).to_contain_text("南康区城市管理局")

    open_case(page, n["red"])
    expect(page.locator("#case-office")).to_have_text("章贡区城市管理局")
    assert page.locator("main form").count() == 0, "nothing to act with"
    look(page, "supervisor-case")
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    answer = page.request.post(f"/console/cases/{n['red']}/claim", form={"csrftoken": token})
    assert answer.status == 403
    page.goto("/console/triage")
    expect(page.locator("#error-title")).to_have_text("无权访问")
    assert bench.ledger.get(n["red"])["status"] == "routed"


def test_admin_sees_every_view(bench, people):
    page = people("admin")
    for link in ("#nav-triage", "#nav-supervisor"):
        expect(page.locator(link)).to_be_visible()
    page.goto("/console/supervisor")
    expect(page.locator("#office-rates")).to_be_visible()
    look(page, "admin-supervisor")


def test_citizen_tracks_a_case_with_its_check_code(bench, people):
    no = bench.numbers["track"]
    clerk = people("clerk")
    open_case(clerk, no)
    code = clerk.locator("#case-check-code").inner_text()  # what the clerk reads out to the citizen
    clerk.click("#claim-submit")
    clerk.fill("#reply-text", f"垃圾已清运，已安排每日两次清理。联系人{NAME}，电话13979709999")
    clerk.click("#reply-submit")
    flash(clerk, "已答复")

    page = people(None)
    page.goto("/track")
    look(page, "citizen-track")
    page.fill("#tracking_no", no)
    page.fill("#code", "000000" if code != "000000" else "111111")
    page.click("#track-submit")
    expect(page.locator("#track-missing")).to_be_visible()
    page.fill("#tracking_no", no.lower())
    page.fill("#code", code)
    page.click("#track-submit")
    expect(page.locator("#track-number")).to_have_text(no)
    expect(page.locator("#track-status")).to_have_text("已答复")
    expect(page.locator("#track-office")).to_have_text("章贡区城市管理局")
    history = page.locator("#track-history")
    for step in ("已受理", "已转交承办单位", "承办单位已签收", "已答复"):
        expect(history).to_contain_text(step)
    expect(history.locator(".reply")).to_contain_text("垃圾已清运")
    expect(history.locator(".reply")).to_contain_text("139****9999")
    assert "clerk" not in page.locator("#main").inner_text()
    look(page, "citizen-track-result")


def test_the_login_page_and_a_wrong_password(bench, people):
    page = people(None)
    page.goto("/console/triage")
    expect(page).to_have_url(f"{bench.url}/console/login?next=/console/triage")
    page.fill("#name", "disp")
    page.fill("#password", "not-the-password")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("用户名或密码错误。")
    look(page, "anonymous-login")
