"""The push path: spooled durably, de-duplicated by id, drained to Kafka after acks."""

import time

from tests.conftest import expected_id, make_envelope
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
    return make_envelope(channel="wechat", account="gz", source_id=f"msg{i}", text=f"第{i}条留言：路灯坏了",
                         posted_at=envelope.now())


def test_spool_survives_a_restart_and_ignores_retries(tmp_path):
    s = Spool(tmp_path / "spool.sqlite3")
    assert s.add("wechat.gz", [env(1), env(2)]) == 2
    assert s.add("wechat.gz", [env(2)]) == 0  # WeChat's retry of the same MsgId
    s.db.close()
    again = Spool(tmp_path / "spool.sqlite3")
    assert sorted(e["id"] for e in again.take("wechat.gz")) == sorted(expected_id("wechat", f"msg{i}") for i in (1, 2))


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
    assert ids == sorted(expected_id("wechat", f"msg{i}") for i in range(5))
    c.publisher.close()


def test_a_spooled_message_is_sealed_on_disk(tmp_path):
    """The spool holds unmasked messages until Kafka has them: on disk (the file, its
    write-ahead log) they are ciphertext, opened only with the pseudonym key."""
    path = tmp_path / "spool.sqlite3"
    s = Spool(path).use_key(b"k" * 32)
    secret = make_envelope(channel="wechat", account="gz", source_id="s1", text="我的手机13907971234，路灯坏了",
                           posted_at=envelope.now())
    assert s.add("wechat.gz", [secret]) == 1
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"13907971234" not in on_disk and "路灯".encode() not in on_disk
    assert s.take("wechat.gz")[0]["text"] == secret["text"]
    other = Spool.__new__(Spool)
    other.db, other._key, other._aead = s.db, b"", None  # the same file, another key
    other.use_key(b"x" * 32)
    assert other.rows("wechat.gz")[0][1] == b""  # another key opens nothing: the drain dead-letters it
