"""The push path: spooled durably, de-duplicated by id, drained to Kafka after acks."""

import time

from tests.kafka_util import read_values
from wenzheng.core import envelope
from wenzheng.core.delivery import Publisher
from wenzheng.core.kafka import producer as make_producer
from wenzheng.ingest.base import Connector, Spool


class Pushed(Connector):
    channel = "wechat"

    def poll(self) -> int:
        return 0


def env(i: int) -> dict:
    return envelope.make(channel="wechat", account="gz", source_id=f"msg{i}", text=f"第{i}条留言：路灯坏了",
                         posted_at=envelope.now())


def test_spool_survives_a_restart_and_ignores_retries(tmp_path):
    s = Spool(tmp_path / "spool.sqlite3")
    assert s.add("wechat.gz", [env(1), env(2)]) == 2
    assert s.add("wechat.gz", [env(2)]) == 0  # WeChat's retry of the same MsgId
    s.db.close()
    again = Spool(tmp_path / "spool.sqlite3")
    assert [e["id"] for e in again.take("wechat.gz")] == ["wechat:msg1", "wechat:msg2"]


def test_pushes_are_drained_to_kafka_once(runtime, bootstrap):
    c = Pushed(runtime, Publisher(runtime.settings, make_producer(runtime.settings), runtime.journal, "ingest.wechat.gz"),
               "wechat.gz")
    for i in range(5):
        c.spool([env(i)])
    c.spool([env(3)])  # a retry after it was already published: the journal knows the id
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(read_values(bootstrap, runtime.topics.intake)) < 5:
        time.sleep(0.2)
    time.sleep(0.5)
    c.drain()
    ids = sorted(v["id"] for v in read_values(bootstrap, runtime.topics.intake))
    assert ids == [f"wechat:msg{i}" for i in range(5)]
    c.publisher.close()
