"""The connector template without a broker: the order of a page, failures, dead letters, formats.

A connector here is only a ``fetch`` generator; the publisher is a recorder that
can be told Kafka is down.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from wenzheng.core import envelope
from wenzheng.core.errors import TransientError
from wenzheng.core.kafka import Topics
from wenzheng.ingest.base import Connector, Page


class Recorder:
    def __init__(self, events: list):
        self.events, self.down = events, False

    def publish(self, outs, timeout=30.0):
        if self.down:
            raise TransientError("Kafka did not acknowledge: broker unreachable")
        self.events.append(("publish", [o.id for o in outs]))
        return outs


def env(i: int) -> dict:
    return envelope.make(channel="webform", account="t", source_id=str(i), text=f"第{i}条", posted_at=envelope.now())


class Paged(Connector):
    channel = "webform"

    def __init__(self, tmp_path, pages, events):
        runtime = SimpleNamespace(state_dir=tmp_path, topics=Topics("t."))
        super().__init__(runtime, Recorder(events), "paged")
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
    assert events == [("publish", ["webform:1", "webform:2"]), ("acked", 1), ("saved",), ("publish", []),
                      ("publish", ["webform:3"]), ("acked", 2), ("closed",)]
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

    c = Down(SimpleNamespace(state_dir=tmp_path, topics=Topics("t.")), Recorder([]), "down")
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
    assert events[0] == ("publish", ["webform:1", "ingest.paged:webform:9"])
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
