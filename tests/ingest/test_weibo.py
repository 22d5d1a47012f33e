"""The Weibo channel against the real embedded broker and a fake m.weibo.cn on 127.0.0.1.

One runtime (topic prefix) for the module; every test has its own fake and its own
account, and reads back only its account's messages. Connectors are driven
directly (``poll`` / ``run_once``) so each test owns its timing.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.conftest import TEST_KEY, expected_id, write_config
from tests.kafka_util import read_values
from wenzheng.config import load
from wenzheng.config.schema import WeiboAccount, WeiboChannel
from wenzheng.core.delivery import Publisher
from wenzheng.core.errors import TransientError
from wenzheng.core.kafka import producer as make_producer
from wenzheng.core.privacy import pseudonym
from wenzheng.core.runtime import Runtime
from wenzheng.ingest import weibo
from wenzheng.ingest.fakes.weibo import HOTFLOW_PATH, MENTIONS_PATH, FakeWeibo
from wenzheng.ingest.weibo import LoginRequired, Throttled, WeiboConnector


def wb(ref: object) -> str:
    return expected_id("weibo", ref)


class Env:
    def __init__(self, bootstrap, runtime, producer):
        self.bootstrap, self.runtime, self.producer = bootstrap, runtime, producer
        self._uids = iter(range(2_000_000_001, 2_000_001_000))

    def connector(self, fake: FakeWeibo, aid: str | None = None, uid: str | None = None, **channel) -> WeiboConnector:
        """A connector for a new account (or an existing one: same aid and uid) on ``fake``."""
        uid = uid or str(next(self._uids))
        aid = aid or f"a{uid}"
        fake.account(uid)  # its data, generated now so the test can know what to expect
        account = WeiboAccount(uid=uid, name="赣州问政", cookie=fake.cookie(uid))
        ch = WeiboChannel(enabled=True, api_base=fake.url, **channel)
        name = f"weibo.{aid}"
        pub = Publisher(self.runtime.settings, self.producer, self.runtime.journal, f"ingest.{name}")
        return WeiboConnector(self.runtime, pub, name, aid, account, ch)

    def intake(self, account: str) -> dict[str, list[dict]]:
        by_id: dict[str, list[dict]] = {}
        for v in read_values(self.bootstrap, self.runtime.topics.intake):
            if v.get("account") == account:
                by_id.setdefault(v["id"], []).append(v)
        return by_id

    def dead(self, account: str) -> list[dict]:
        return [v for v in read_values(self.bootstrap, self.runtime.topics.deadletter)
                if v.get("source", {}).get("account") == account]


@pytest.fixture(scope="module")
def env(bootstrap, tmp_path_factory):
    cfg = write_config(tmp_path_factory.mktemp("weibo"), bootstrap)
    runtime = Runtime(load(cfg)).connect()
    producer = make_producer(runtime.settings)
    try:
        yield Env(bootstrap, runtime, producer)
    finally:
        producer.close(timeout=5)
        runtime.journal.close()


@pytest.fixture
def fake():
    weibo.GATES.clear()  # the per-host gate is per api_base; every fake has its own port anyway
    with FakeWeibo(lifetime=60) as f:
        yield f


def citizens(fake: FakeWeibo, uid: str) -> set[str]:
    """Ids of what the account should publish: citizens' mentions and comments, not its own words."""
    return {wb(i) for i, e in fake.expected.items()
            if e["uid"] == uid and not e["own"] and e["kind"] in ("mention", "comment")}


def test_from_config_one_connector_per_account(tmp_path, bootstrap):
    cfg = write_config(tmp_path, bootstrap)
    doc = yaml.safe_load((cfg / "channels.yaml").read_text(encoding="utf-8"))
    doc["channels"]["weibo"] = {"enabled": True, "api_base": "http://127.0.0.1:9", "poll_seconds": 30,
                                "max_pages": 2, "accounts": {"gz": {"uid": "1001"}, "nk": {"uid": "1002"}}}
    (cfg / "channels.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    runtime = Runtime(load(cfg)).connect(create_topics=False)
    made = []
    conns = WeiboConnector.from_config(runtime, lambda name: made.append(name) or object())
    assert [c.name for c in conns] == ["weibo.gz", "weibo.nk"] == made
    assert [c.poll_seconds for c in conns] == [30, 30] and conns[0].max_pages == 2 and conns[1].uid == "1002"
    runtime.journal.close()


def test_first_poll_takes_everything_second_only_new_restart_no_double(env, fake):
    c = env.connector(fake)
    want = citizens(fake, c.uid)
    assert c.poll() == len(want)
    got = env.intake(c.account_id)
    assert set(got) == want and all(len(v) == 1 for v in got.values())

    new_m = fake.add_mention(c.uid, "章贡区文清路井盖丢了，很危险")
    post = fake.posts_of(c.uid)[0]
    new_c = fake.add_comment(c.uid, post["mid"], "什么时候修好？")
    fake.add_comment(c.uid, post["mid"], "已转交。", own=True)
    assert c.poll() == 2
    got = env.intake(c.account_id)
    assert {wb(new_m['mid']), wb(new_c['id'])} <= set(got) and all(len(v) == 1 for v in got.values())

    # A restart from the saved checkpoint asks one page per stream and publishes nothing again.
    since = time.monotonic()
    again = env.connector(fake, aid=c.account_id, uid=c.uid)
    assert again.poll() == 0
    assert fake.count(MENTIONS_PATH, since) == 1 and fake.count(HOTFLOW_PATH, since) == 0
    assert all(len(v) == 1 for v in env.intake(c.account_id).values())


def test_paging_stops_at_max_pages_and_resumes(env):
    with FakeWeibo(mentions=12, mention_comments=0, posts=0, page_size=5, lifetime=60) as fake:
        c = env.connector(fake, max_pages=1)
        counts = [c.poll()]
        assert c.checkpoint.state["streams"]["mentions"].get("resume")
        late = fake.add_mention(c.uid, "新来的：赣县区停水两天了")  # arrives while the backlog is read
        counts += [c.poll() for _ in range(4)]
        assert counts == [5, 5, 2, 1, 0]
        got = env.intake(c.account_id)
        assert set(got) == citizens(fake, c.uid) and wb(late['mid']) in got
        assert all(len(v) == 1 for v in got.values())
        assert "resume" not in c.checkpoint.state["streams"]["mentions"]


def test_text_long_html_emoji_own_and_fields(env, fake):
    c = env.connector(fake)
    c.poll()
    got = {k: v[0] for k, v in env.intake(c.account_id).items()}
    long_ids = {wb(m) for m in fake.long_text} & set(got)
    assert long_ids, "the fake makes some citizens' posts long"
    for msg_id, env_ in got.items():
        exp = fake.expected[env_["source_id"]]
        assert env_["text"] == exp["text"], msg_id
        assert "<" not in env_["text"] and "&amp;" not in env_["text"]
        assert env_["channel"] == "weibo" and env_["account"] == c.account_id
        assert env_["posted_at"].endswith("+08:00") and env_["posted_at"].startswith("2026-11-2")
        uid = str(env_["raw"]["user"]["id"])
        assert env_["author"] == pseudonym(TEST_KEY.encode(), "weibo", uid)
        assert env_["pii"] == {"screen_name": env_["raw"]["user"]["screen_name"], "uid": uid}
    for msg_id in long_ids:
        assert "全文" not in got[msg_id]["text"] and len(got[msg_id]["text"]) > 140
    emoji = [e["text"] for e in got.values() if "网页链接" in e["text"]]
    assert emoji and all(any(a in t for a in ("[怒]", "[泪]", "[doge]", "[赞]")) for t in emoji)
    pics = [e for e in got.values() if e["raw"].get("pics")]
    assert pics and all(e["attachments"] and e["attachments"][0]["url"].startswith("https://wx1.sinaimg.cn/large/")
                        for e in pics)
    comments = [e for e in got.values() if fake.expected[e["source_id"]]["kind"] == "comment" and "status" not in e["raw"]]
    assert comments and all(e["context"].startswith("【") for e in comments)  # the post they answer
    own = {wb(i) for i, e in fake.expected.items() if e["uid"] == c.uid and e["own"]}
    assert len(own) > 3 and not own & set(got)


def test_malformed_items_dead_lettered_rest_flow(env, fake):
    c = env.connector(fake)
    good = fake.add_mention(c.uid, "于都县贡江大桥人行道塌了")
    fake.add_raw(c.uid, {"id": "5999000000000001", "mid": "5999000000000001", "created_at": "星期八 25:61",
                         "text": "时间坏了", "user": {"id": 1, "screen_name": "x"}})
    fake.add_raw(c.uid, {"id": "5999000000000002", "created_at": "Sat Nov 22 09:15:03 +0800 2026",
                         "text": "没有用户"})
    fake.add_raw(c.uid, "not an object")
    fake.add_raw(c.uid, {"id": "5999000000000003", "created_at": "Sat Nov 22 09:15:03 +0800 2026",
                         "text": '<span class="url-icon"></span>', "user": {"id": 3}})
    c.poll()
    got = env.intake(c.account_id)
    assert set(got) == citizens(fake, c.uid) and wb(good['mid']) in got
    dead = env.dead(c.account_id)
    reasons = sorted(d["reason"] for d in dead)
    assert len(dead) == 4, reasons
    assert any("created_at" in r for r in reasons) and any("user" in r for r in reasons)
    assert any("not an object" in r for r in reasons) and any("no text" in r for r in reasons)
    assert c.poll() == 0 and len(env.dead(c.account_id)) == 4  # cursor moved past them: not again


@pytest.mark.parametrize("fault", [403, 418, 429, "ok0", "login", "html", "slow:1.5"])
def test_anti_crawling_answers_are_transient(env, fake, fault):
    c = env.connector(fake)
    c.timeout = 0.5
    fake.fail(fault)
    with pytest.raises(TransientError) as err:
        c.poll()
    assert isinstance(err.value, LoginRequired if fault == "login" else (Throttled, TransientError))
    assert env.intake(c.account_id) == {} and c.checkpoint.state == {}
    # Host-wide refusals close the gate every account on this api_base waits for.
    assert (c.gate.until > time.monotonic()) == (fault in (418, 429, "html"))
    c.gate.until = 0.0  # (instead of waiting for it)
    assert c.poll() == len(citizens(fake, c.uid))  # the same account recovers once upstream answers


@pytest.mark.parametrize("fault", [418, "login"])
def test_backoff_without_tight_loop_then_recovery(env, fake, fault):
    c = env.connector(fake)
    fake.block(fault)
    t0 = time.monotonic()
    attempts = 0
    while time.monotonic() - t0 < 2.5:
        assert c.run_once() == 0  # never raises
        attempts += 1
        time.sleep(0.01)
    asked = fake.count(since=t0)
    assert attempts > 100 and 1 <= asked <= 3, (attempts, asked)
    assert c._resume_at > time.monotonic() or c.gate.closed()  # still waiting
    fake.unblock()
    deadline, published = time.monotonic() + 15, 0
    while not published and time.monotonic() < deadline:
        published = c.run_once()
        time.sleep(0.05)
    assert published == len(citizens(fake, c.uid))
    assert set(env.intake(c.account_id)) == citizens(fake, c.uid)


def test_kill_between_publish_and_checkpoint_does_not_double(env, fake):
    c = env.connector(fake)

    def killed():
        raise SystemExit("killed after publish, before the checkpoint was saved")

    c.checkpoint.save = killed
    with pytest.raises(SystemExit):
        c.poll()
    first = env.intake(c.account_id)
    assert first and not c.checkpoint.path.exists()
    fake.add_mention(c.uid, "崇义县阳岭景区门票乱涨价")
    again = env.connector(fake, aid=c.account_id, uid=c.uid)  # the restarted worker: no checkpoint
    again.poll()
    got = env.intake(c.account_id)
    assert set(got) == citizens(fake, c.uid) and all(len(v) == 1 for v in got.values())
    assert again.publisher.skipped >= len(first)
    saved = json.loads(again.checkpoint.path.read_text(encoding="utf-8"))["state"]
    assert saved["streams"]["mentions"]["since"] > 0


@pytest.mark.parametrize("shown, expected", [
    ("Sat Nov 22 09:15:03 +0800 2025", "2025-11-22T09:15:03+08:00"),
    ("Sat Nov 22 01:15:03 +0000 2025", "2025-11-22T09:15:03+08:00"),
    ("刚刚", "2026-12-03T14:30:00+08:00"),
    ("45秒前", "2026-12-03T14:29:15+08:00"),
    ("5分钟前", "2026-12-03T14:25:00+08:00"),
    ("2小时前", "2026-12-03T12:30:00+08:00"),
    ("今天 08:05", "2026-12-03T08:05:00+08:00"),
    ("昨天 23:59", "2026-12-02T23:59:00+08:00"),
    ("11-22", "2026-11-22T00:00:00+08:00"),
    ("12-25", "2025-12-25T00:00:00+08:00"),  # later than today this year: last year's
    ("2024-02-29", "2024-02-29T00:00:00+08:00"),
    ("2024-02-29 10:01", "2024-02-29T10:01:00+08:00"),
])
def test_created_at_in_the_apis_and_the_mobile_sites_forms(shown, expected):
    from datetime import datetime

    now = datetime.fromisoformat("2026-12-03T14:30:00+08:00")
    got = weibo.parse_created(shown, now=now)
    assert got.astimezone(now.tzinfo).isoformat() == expected


@pytest.mark.parametrize("shown", ["", "None", "明天 10:00", "13-40", "Sat Nov 31 09:15:03 +0800 2025", "5年前"])
def test_unreadable_created_at_is_a_bad_message(shown):
    from wenzheng.core.errors import BadMessage

    with pytest.raises(BadMessage, match="bad created_at"):
        weibo.parse_created(shown)


def test_a_bare_list_answer_is_one_page_and_nothing_doubles(env):
    with FakeWeibo(mentions=6, mention_comments=0, posts=0, page_size=20, lifetime=60) as fake:
        fake.bare_lists = True  # {"ok": 1, "data": [...]}, no max_id
        c = env.connector(fake)
        want = {i for i in citizens(fake, c.uid) if i.startswith("weibo:")}
        assert c.poll() == len(want) > 0
        fresh = fake.add_mention(c.uid, "大余县南安镇新华街的下水道堵了")
        assert c.poll() == 1 and c.poll() == 0
        got = env.intake(c.account_id)
        assert wb(fresh['mid']) in got and all(len(v) == 1 for v in got.values())


def test_display_counts_are_read_and_every_later_posts_comments_published(env):
    """m.weibo.cn shows big counts rounded ("100万+", "1.2万"): reading one used to fail the
    whole poll, so the comments of every later post were never read."""
    with FakeWeibo(mentions=0, mention_comments=0, posts=4, comments_per_post=3, lifetime=60) as fake:
        c = env.connector(fake)
        posts = fake.posts_of(c.uid)
        for post, shown in zip(posts, ["100万+", "1.2万", "garbage", 3], strict=True):
            post["comments_count"] = shown
        assert c.poll() == len(citizens(fake, c.uid)) and c._backoff == 0.0
        assert set(env.intake(c.account_id)) == citizens(fake, c.uid)

        # A rounded count hides a new comment: such a post's first page is read at every poll.
        posts[0]["comments_count"] = 0
        late = fake.add_comment(c.uid, posts[0]["mid"], "什么时候修？")
        posts[0]["comments_count"] = "100万+"
        assert c.poll() == 1 and wb(late['id']) in env.intake(c.account_id)
        assert c.poll() == 0


@pytest.mark.parametrize("shown, count, exact", [
    (17, 17, True), ("17", 17, True), ("1,234", 1234, True), (3.0, 3, True),
    ("999+", 999, False), ("1千", 1000, False), ("1.2万", 12000, False), ("10万+", 100000, False),
    ("100万+", 1000000, False), ("2亿", 200000000, False), ("3w", 30000, False),
    (None, None, False), ("", None, False), ("万", None, False), ("1.2.3万", None, False), ([], None, False),
    ("9" * 5000, None, False), (float("inf"), None, False), (True, None, False),
])
def test_counts_as_m_weibo_cn_shows_them(shown, count, exact):
    assert weibo.parse_count(shown) == (count, exact)
