"""The web-form channel against the real embedded broker and a fake CMS backend on 127.0.0.1.

Connectors are driven directly (``poll`` / ``run_once``) so each test owns its timing;
every test has its own topic prefix, state directory and fake.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml

from tests.conftest import TEST_KEY, expected_id, write_config
from tests.kafka_util import read_values
from wenzheng.config import load
from wenzheng.config.schema import WebFormChannel
from wenzheng.core import envelope
from wenzheng.core.delivery import Publisher
from wenzheng.core.errors import TransientError
from wenzheng.core.kafka import producer as make_producer
from wenzheng.core.privacy import contains_pii, pseudonym
from wenzheng.core.runtime import Runtime
from wenzheng.ingest.fakes.webform import FakeWebForm
from wenzheng.ingest.open311 import Open311Connector
from wenzheng.ingest.webform import WebFormAuthError, WebFormConnector

TOKEN = "webform-test-token"


def wf(ref: object) -> str:
    return expected_id("webform", ref)


def configure(runtime, **webform) -> None:
    """channels.webform of this test's runtime (validated: the constructor, not model_copy's update)."""
    s = runtime.settings
    runtime.settings = s.model_copy(update={"channels": s.channels.model_copy(
        update={"webform": WebFormChannel(enabled=True, **webform)})})


def connector(runtime) -> WebFormConnector:
    """A new connector, as after a restart: its own publisher, the checkpoint read from disk."""
    publisher = Publisher(runtime.settings, make_producer(runtime.settings), runtime.journal, "ingest.webform")
    return WebFormConnector(runtime, publisher, "webform")


def intake(bootstrap, runtime) -> Counter:
    return Counter(v["id"] for v in read_values(bootstrap, runtime.topics.intake))


@pytest.fixture
def fake():
    with FakeWebForm(TOKEN, lifetime=60) as f:
        yield f


@pytest.fixture
def conns():
    made = []
    yield made
    for c in made:
        c.publisher.close()


def test_same_second_across_page_boundaries_none_skipped_none_repeated(runtime, bootstrap, fake, conns):
    ids = fake.add(250, per_second=37)  # 37 submissions share each second; pages of 10 split them
    configure(runtime, base_url=fake.url, token=TOKEN, page_size=10)
    conns.append(c := connector(runtime))
    assert c.poll() == 250
    assert intake(bootstrap, runtime) == Counter(wf(i) for i in ids)
    assert sorted(fake.served) == ids  # each item fetched exactly once: the cursor neither re-reads nor skips
    assert fake.count() == 25  # 25 full pages; the last says has_more: false
    assert c.checkpoint.state == {"updated_at": fake.items[ids[-1]]["updated_at"], "id": ids[-1]}

    item = fake.items[ids[0]]
    env = next(v for v in read_values(bootstrap, runtime.topics.intake) if v["id"] == wf(ids[0]))
    assert env["text"] == item["content"] and env["title"] == item["title"]
    assert env["posted_at"] == item["created_at"].replace(" ", "T") + "+08:00"
    assert env["author"] == pseudonym(TEST_KEY.encode(), "webform", item["phone"])
    assert env["pii"] == {"name": item["name"], "phone": item["phone"], "id_card": item.get("id_card")}
    assert env["location"]["text"] == item["address"]
    public = json.dumps({k: v for k, v in env.items() if k != "pii"}, ensure_ascii=False)
    assert item["phone"] not in public and item["name"] not in public  # the address is on intake, as written
    assert not contains_pii(json.dumps(envelope.masked(env, key=TEST_KEY.encode()), ensure_ascii=False))
    with_photos = next(v for v in read_values(bootstrap, runtime.topics.intake) if v["attachments"])
    assert {a["kind"] for a in with_photos["attachments"]} == {"image"}


def test_a_second_poll_publishes_only_new_ones_and_edits_are_not_new_messages(runtime, bootstrap, fake, conns):
    first = fake.add(40, per_second=40)  # all in one second
    configure(runtime, base_url=fake.url, token=TOKEN, page_size=15)
    conns.append(c := connector(runtime))
    assert c.poll() == 40
    # More in the very same second as the cursor (higher ids), an edit of an old one, then a new second.
    same_second = fake.add(7, per_second=7, at=fake.items[first[-1]]["updated_at"])
    fake.edit(first[3], title="（已补充）路灯不亮", content="补充：路灯还是不亮")
    later = fake.add(8, per_second=3)
    assert c.poll() == 15
    assert c.poll() == 0
    seen = intake(bootstrap, runtime)
    assert seen == Counter(wf(i) for i in first + same_second + later)
    env = next(v for v in read_values(bootstrap, runtime.topics.intake) if v["id"] == wf(first[3]))
    assert env["text"] != "补充：路灯还是不亮"  # the first version stands; the edit was read past, not published
    assert c.checkpoint.state["id"] == later[-1]


def test_restart_from_the_checkpoint_does_not_double(runtime, bootstrap, fake, conns):
    ids = fake.add(60, per_second=20)
    configure(runtime, base_url=fake.url, token=TOKEN, page_size=25)
    conns.append(c := connector(runtime))

    def crash():  # killed after Kafka acknowledged the first page, before the checkpoint was saved
        raise KeyboardInterrupt("killed")

    c.checkpoint.save = crash
    with pytest.raises(KeyboardInterrupt):
        c.poll()
    assert intake(bootstrap, runtime) == Counter(wf(i) for i in ids[:25])

    conns.append(again := connector(runtime))  # the restart: the cursor is still at the beginning
    assert again.checkpoint.state == {}
    assert again.poll() == 35  # page 1 fetched again: its ids are known as published, not sent twice
    assert intake(bootstrap, runtime) == Counter(wf(i) for i in ids)

    before = fake.count()
    conns.append(third := connector(runtime))  # a clean restart resumes from the saved cursor
    assert third.poll() == 0
    assert fake.count() == before + 1
    assert fake.requests[-1]["query"]["after_id"] == str(ids[-1])


@pytest.mark.parametrize("fault, error", [(401, WebFormAuthError), (429, TransientError), (500, TransientError),
                                          ("slow:3", TransientError)])
def test_upstream_faults_back_off_and_recover(runtime, bootstrap, fake, conns, fault, error):
    ids = fake.add(12, per_second=4)
    configure(runtime, base_url=fake.url, token=TOKEN, page_size=5)
    conns.append(c := connector(runtime))
    c.timeout = 0.5
    fake.fail(fault)
    with pytest.raises(error):
        c.poll()
    assert c.checkpoint.state == {}

    fake.fail(fault)
    assert c.run_once() == 0  # never raises: it backs off
    assert c._backoff >= 2.0
    asked = fake.count()
    assert c.run_once() == 0 and fake.count() == asked  # backing off: upstream is not asked again
    c._resume_at = 0.0  # the back-off has passed
    assert c.run_once() == 12
    assert c._backoff == 0.0
    assert intake(bootstrap, runtime) == Counter(wf(i) for i in ids)


def test_a_wrong_token_is_refused(runtime, fake, conns):
    fake.add(3)
    configure(runtime, base_url=fake.url, token="not-the-token")
    conns.append(c := connector(runtime))
    with pytest.raises(WebFormAuthError, match="token"):
        c.poll()
    assert fake.count(401) == 1


def test_malformed_items_are_dead_lettered_while_the_rest_flow(runtime, bootstrap, fake, conns):
    good = fake.add(3)
    bad = [
        fake.add_raw({"title": "空留言", "content": "  ", "created_at": "2026-11-22 10:00:00"}),
        fake.add_raw({"content": {"text": "不是字符串"}, "created_at": "2026-11-22 10:00:01"}),
        fake.add_raw({"content": "电话13907971234，时间写错了", "created_at": "昨天下午"}),
        fake.add_raw({"content": "附件不对", "created_at": "2026-11-22 10:00:03", "attachments": "a.jpg"}),
    ]
    fake.add_raw({"id": None, "content": "没有编号的留言", "created_at": "2026-11-22 10:00:04"})
    more = fake.add(3)
    configure(runtime, base_url=fake.url, token=TOKEN, page_size=4)
    conns.append(c := connector(runtime))
    assert c.poll() == 6
    assert intake(bootstrap, runtime) == Counter(wf(i) for i in good + more)
    dead = read_values(bootstrap, runtime.topics.deadletter)
    assert len(dead) == 5
    by_id = {d["id"]: d for d in dead}
    assert set(by_id) >= {wf(i) for i in bad}
    assert by_id[wf(bad[0])]["reason"] == "submission has no content"
    assert by_id[wf(bad[1])]["reason"] == "submission has no content"
    assert "bad time" in by_id[wf(bad[2])]["reason"]
    assert "13907971234" not in json.dumps(dead, ensure_ascii=False)  # excerpts are masked
    assert any(d["reason"] == "item has no id" for d in dead)
    assert c.poll() == 0 and len(read_values(bootstrap, runtime.topics.deadletter)) == 5


def test_from_config_makes_the_poller_and_open311_its_connector(tmp_path, bootstrap):
    cfg = write_config(tmp_path, bootstrap)
    doc = yaml.safe_load((cfg / "channels.yaml").read_text(encoding="utf-8"))
    doc["channels"]["webform"] = {"enabled": True, "base_url": "http://127.0.0.1:9/api", "token": "${WF_TOKEN:-t}",
                                  "poll_seconds": 15}
    (cfg / "channels.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    runtime = Runtime(load(cfg)).connect()
    try:
        made = WebFormConnector.from_config(runtime, lambda name: None)
        made += Open311Connector.from_config(runtime, lambda name: None)
        assert [(type(c), c.name, c.poll_seconds) for c in made] == [
            (WebFormConnector, "webform", 15), (Open311Connector, "open311", 0.0)]
        configure(runtime, base_url="http://127.0.0.1:9", open311=False)
        assert Open311Connector.from_config(runtime, lambda name: None) == []
    finally:
        runtime.journal.close()


def test_items_that_used_to_fail_the_poll_are_dead_lettered_or_cut(runtime, bootstrap, fake, conns):
    """Any exception while reading one submission dead-letters it (it used to fail the poll,
    and the cursor stood before it for ever); an overlong one is cut, not refused by Kafka."""
    good = fake.add(2)
    year_one = fake.add_raw({"content": "电话13907971234", "created_at": "0001-01-01T00:00:00+14:00"})  # was OverflowError
    deep = fake.add_raw({"content": "附件嵌套太深", "created_at": "2026-11-22 10:00:01", "extra": nested(300)})
    long = fake.add_raw({"content": "南康区唐江镇幸福路停水。" + "停水" * 1_500_000, "created_at": "2026-11-22 10:00:02"})
    huge_id = fake.add_raw({"id": 2**70, "content": "编号超出64位", "created_at": "2026-11-22 10:00:03"})
    more = fake.add(2)
    configure(runtime, base_url=fake.url, token=TOKEN, page_size=100)
    conns.append(c := connector(runtime))
    assert c.run_once() == 6 and c._backoff == 0.0
    got = {v["id"]: v for v in read_values(bootstrap, runtime.topics.intake)}
    assert set(got) == {wf(i) for i in [*good, *more, long, huge_id]}
    assert got[wf(long)]["text"].endswith("…[截断：原文 3000012 字]")
    dead = {d["id"]: d["reason"] for d in read_values(bootstrap, runtime.topics.deadletter)}
    assert set(dead) == {wf(year_one), wf(deep)}
    assert dead[wf(year_one)] == "bad time '0001-01-01T00:00:00+14:00'"
    assert "Recursion limit" in dead[wf(deep)]
    assert c.checkpoint.state["id"] == more[-1]


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value
