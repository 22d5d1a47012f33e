"""The connector template without a broker: the order of a page, failures, dead letters, formats.

A connector here is only a ``fetch`` generator; the publisher is a recorder that
can be told Kafka is down.
"""

from __future__ import annotations

import json
import time
from functools import partial
from types import SimpleNamespace

import pytest

from tests.conftest import TEST_KEY, expected_id, make_envelope
from wenzheng.config.schema import PrivacySettings
from wenzheng.core import envelope
from wenzheng.core.errors import BadMessage, TransientError
from wenzheng.core.kafka import Topics
from wenzheng.ingest.base import Connector, Page, spool_for


class Recorder:
    def __init__(self, events: list):
        self.events, self.down = events, False

    def publish(self, outs, timeout=30.0):
        if self.down:
            raise TransientError("Kafka did not acknowledge: broker unreachable")
        self.events.append(("publish", [o.id for o in outs]))
        return outs


def wf(ref: object) -> str:
    return expected_id("webform", ref)


def env(i: int) -> dict:
    return make_envelope(channel="webform", account="t", source_id=str(i), text=f"第{i}条", posted_at=envelope.now())


def fake_runtime(tmp_path, max_text_chars: int = 256 * 1024):
    return SimpleNamespace(state_dir=tmp_path, topics=Topics("t."),
                           settings=SimpleNamespace(channels=SimpleNamespace(max_text_chars=max_text_chars),
                                                    privacy=PrivacySettings(pseudonym_key=TEST_KEY)))


class Paged(Connector):
    channel = "webform"

    def __init__(self, tmp_path, pages, events):
        super().__init__(fake_runtime(tmp_path), Recorder(events), "paged")
        self.pages, self.events, self.cursors = pages, events, []

    def fetch(self, cursor):
        self.cursors.append(dict(cursor))
        cursor["n"] = -1  # a connector changing its cursor must not move the checkpoint
        try:
            yield from self.pages
        finally:
            self.events.append(("closed",))


def test_each_page_is_published_then_acked_then_checkpointed(tmp_path):
    events: list = []
    pages = [Page([env(1), env(2)], state={"n": 2}, fetched=2, acked=lambda: events.append(("acked", 1))),
             Page(state={"n": 2}),  # unchanged: not saved again
             Page([env(3)], fetched=1, acked=lambda: events.append(("acked", 2)))]  # no state: the cursor stays
    c = Paged(tmp_path, pages, events)
    saves = []
    save = c.checkpoint.save
    c.checkpoint.save = lambda: (saves.append(dict(c.checkpoint.state)), events.append(("saved",)), save())
    assert c.poll() == 3
    assert events == [("publish", [wf(1), wf(2)]), ("acked", 1), ("saved",), ("publish", []),
                      ("publish", [wf(3)]), ("acked", 2), ("closed",)]
    assert saves == [{"n": 2}] and c.cursors == [{}]
    assert json.loads(c.checkpoint.path.read_text(encoding="utf-8")) == {"version": 1, "state": {"n": 2}}


def test_kafka_down_keeps_the_checkpoint_and_backs_off_without_a_tight_loop(tmp_path):
    events: list = []
    acked = []
    c = Paged(tmp_path, [Page([env(1)], state={"n": 1}, acked=lambda: acked.append(1))], events)
    c.publisher.down = True
    assert c.run_once() == 0  # never raises
    assert c.checkpoint.state == {} and not acked and not c.checkpoint.path.exists()
    assert events == [("closed",)]  # the generator was closed, not left hanging
    assert c._backoff == 2.0 and c._resume_at > time.monotonic()
    c.publisher.down = False
    assert c.run_once() == 0 and c.cursors == [{}]  # backing off: upstream is not asked
    c._resume_at = 0.0
    assert c.run_once() == 1 and acked == [1] and c.checkpoint.state == {"n": 1}
    assert c._backoff == 0.0


def test_back_off_doubles_up_to_fifteen_minutes(tmp_path):
    class Down(Connector):
        channel = "webform"

        def fetch(self, cursor):
            raise TransientError("upstream down")

    c = Down(fake_runtime(tmp_path), Recorder([]), "down")
    waits = []
    for _ in range(12):
        c._resume_at = 0.0
        c.run_once()
        waits.append(c._backoff)
    assert waits[:4] == [2.0, 4.0, 8.0, 16.0] and waits[-1] == 900.0


def test_a_bad_item_is_a_masked_dead_letter_and_never_backs_off(tmp_path):
    events: list = []
    c = Paged(tmp_path, [], events)
    dead = c.dead("bad time '13907971234'", "webform:9", {"id": "9"}, "电话13907971234")
    c.pages = [Page([env(1)], [dead], state={"n": 9}, fetched=2)]
    assert c.run_once() == 1
    assert events[0] == ("publish", [wf(1), f"ingest.paged:{wf(9)}"])  # the id keyed: the item's own
    assert "13907971234" not in json.dumps(dead.value, ensure_ascii=False)
    assert c._backoff == 0.0 and c.checkpoint.state == {"n": 9}


def write_checkpoint(tmp_path, version, state) -> None:
    path = tmp_path / "checkpoints" / "paged.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": version, "state": state}), encoding="utf-8")


def test_an_older_checkpoint_format_is_migrated_once(tmp_path):
    class V2(Paged):
        CHECKPOINT_VERSION = 2

        def migrate_checkpoint(self, version, state):
            assert version == 1
            return {"cursor": {"id": state["id"]}}

    write_checkpoint(tmp_path, 1, {"id": 41})
    c = V2(tmp_path, [], [])
    assert c.checkpoint.state == {"cursor": {"id": 41}}
    saved = json.loads(c.checkpoint.path.read_text(encoding="utf-8"))
    assert saved == {"version": 2, "state": {"cursor": {"id": 41}}}


@pytest.mark.parametrize("version", [0, 2, None])  # older without a migration, newer, unversioned
def test_a_checkpoint_without_a_migration_stops_the_connector(tmp_path, version):
    write_checkpoint(tmp_path, version, {"id": 41})
    with pytest.raises(ValueError, match="checkpoint format"):
        Paged(tmp_path, [], [])


# --- one item, any exception: its dead letter (step 2) ---------------------------------


def test_any_exception_in_one_item_is_its_dead_letter_and_only_a_transient_one_ends_the_poll(tmp_path):
    c = Paged(tmp_path, [], [])
    page = Page()

    def boom(exc):
        raise exc

    def dead(ref, reason):
        return c.dead(reason, ref, {"ref": ref})

    for ref, exc in [("a", ValueError("invalid literal for int() with base 10: '13907971234x'")),
                     ("b", RecursionError("maximum recursion depth exceeded")), ("c", KeyError("text"))]:
        assert c.read_item(page, partial(boom, exc), partial(dead, ref)) is None
    assert c.read_item(page, partial(env, 1), partial(dead, "d"))["id"] == wf(1)
    assert c.read_item(page, lambda: None, partial(dead, "e")) is None  # skipped: neither
    assert [e["id"] for e in page.envelopes] == [wf(1)]
    assert [o.value["id"] for o in page.dead] == [expected_id("ref", r) for r in "abc"]  # keyed
    reasons = [o.value["reason"] for o in page.dead]
    # where: the innermost frame of wenzheng's own code (here the template's, as the test raised it)
    assert reasons[0].startswith("unreadable: ValueError at wenzheng.ingest.base:")
    assert reasons[0].endswith(" (invalid literal for int() with base 10: '…')")  # the input is never quoted
    assert reasons[2].startswith("unreadable: KeyError at ") and reasons[2].endswith(" ('…')")
    with pytest.raises(TransientError):
        c.read_item(page, partial(boom, TransientError("upstream down mid-item")), partial(dead, "f"))


def test_an_item_that_defeats_its_own_dead_letter_still_gets_one(tmp_path):
    c = Paged(tmp_path, [], [])
    page = Page()

    def describe(reason):
        raise RecursionError("too deep to hash")

    c.read_item(page, partial(int, "x"), describe)
    (out,) = page.dead
    assert out.value["id"].startswith("webform:") and "describing it failed too" in out.value["reason"]


def test_a_long_text_is_cut_with_a_marker_and_raw_keeps_its_short_fields(tmp_path):
    c = Paged(tmp_path, [], [])
    c.max_text_chars = 1000
    e = make_envelope(channel="webform", account="t", source_id="9", text="长" * 5000, context="问" * 10,
                      posted_at=envelope.now(), raw={"content": "长" * 5000, "updated_at": "2026-11-22 09:15:03"})
    out = c.fit(e)
    assert len(out["text"]) == 1000 and out["text"].endswith("…[截断：原文 5000 字]") and out["context"] == "问" * 10
    assert out["raw"] == {"updated_at": "2026-11-22 09:15:03", "_omitted": ["content"]}
    short = make_envelope(channel="webform", account="t", source_id="8", text="短", posted_at=envelope.now(),
                          raw={"content": "短"})
    assert c.fit(dict(short)) == short  # nothing to cut: untouched


def test_an_envelope_is_cut_to_what_the_producer_sends(tmp_path):
    c = Paged(tmp_path, [], [])
    c.publisher.max_value_bytes = 20_000
    e = make_envelope(channel="webform", account="t", source_id="9", text="长" * 9000, context="问" * 9000,
                      posted_at=envelope.now())
    out = c.fit(e)
    assert len(envelope.encode(out)) <= 20_000 and out["text"].endswith("原文 9000 字]")
    big_pii = make_envelope(channel="webform", account="t", source_id="7", text="短", posted_at=envelope.now(),
                            pii={"name": "名" * 20_000})
    with pytest.raises(BadMessage, match="over the record limit"):
        c.fit(big_pii)
    with pytest.raises(BadMessage, match="surrogates not allowed"):
        c.fit(make_envelope(channel="webform", account="t", source_id="6", text="坏\ud800", posted_at=envelope.now()))


def test_a_damaged_spool_row_is_dead_lettered_and_the_drain_goes_on(tmp_path):
    events: list = []
    c = Paged(tmp_path, [], events)
    c._drainer = SimpleNamespace(is_alive=lambda: True)  # no drainer thread: this test drains
    c.spool([env(1), env(2), make_envelope(channel="webform", account="t", source_id="3", text="坏\ud800",
                                           posted_at=envelope.now())])
    spool = spool_for(c.runtime)
    with spool.db.transaction() as tx:
        tx.execute("UPDATE spool SET payload=? WHERE msg_id=?", [b"{not json", wf(2)])
    assert c.drain() == 1
    published = [ids for kind, ids in events if kind == "publish"]
    assert published == [[wf(1), f"ingest.paged:{wf(2)}"], [f"ingest.paged:{wf(3)}"]]
    assert spool.count(c.name) == 0 and spool.count(c.dead_spool) == 0
