"""The delivery journal: each (stage, id, topic) lands in Kafka once, whatever dies when."""

import json
from types import SimpleNamespace

import pytest
from kafka import KafkaProducer
from kafka.errors import InvalidRecordError, KafkaError, RequestTimedOutError

from tests.kafka_util import read_topic, read_values
from wenzheng.core.delivery import Journal, Out, Publisher
from wenzheng.core.errors import TransientError
from wenzheng.core.kafka import partition_for
from wenzheng.core.kafka import producer as make_producer


def outs(runtime, n, start=0):
    return [Out(runtime.topics.classified, f"hotline:c{i}", {"id": f"hotline:c{i}", "text": "路灯不亮"})
            for i in range(start, start + n)]


def test_redelivery_is_skipped(runtime, bootstrap):
    p = Publisher(runtime.settings, make_producer(runtime.settings), runtime.journal, "classify")
    assert len(p.publish(outs(runtime, 10))) == 10
    assert p.publish(outs(runtime, 10)) == []  # the same batch again: nothing sent
    assert len(p.publish(outs(runtime, 10, start=5))) == 5  # only the new half
    keys = [r.key for r in read_topic(bootstrap, runtime.topics.classified)]
    assert len(keys) == 15 and len(set(keys)) == 15
    assert p.skipped == 15
    p.close()


def test_a_worker_that_died_after_sending_is_not_doubled(runtime, bootstrap):
    """Journaled pending, sent and acknowledged, then killed before `done`: the next worker checks Kafka."""
    topic = runtime.topics.classified
    dead_worker = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    journal = Journal(runtime.state_dir / "delivery.sqlite3")
    batch = outs(runtime, 6)
    targets = [(o.id, o.topic, partition_for(o.id.encode(), 3)) for o in batch]
    journal.mark_pending("classify", targets)
    for o, (_, _, part) in zip(batch[:4], targets[:4], strict=True):  # 4 made it, 2 did not
        dead_worker.send(topic, key=o.id.encode(), value=b"{}", partition=part).get(10)
    dead_worker.close()

    p = Publisher(runtime.settings, make_producer(runtime.settings), runtime.journal, "classify")
    sent = p.publish(batch)
    assert sorted(o.id for o in sent) == ["hotline:c4", "hotline:c5"]
    keys = [r.key for r in read_topic(bootstrap, topic)]
    assert sorted(keys) == sorted(o.id.encode() for o in batch)
    assert p.publish(batch) == []
    p.close()
    journal.close()


# --- a record Kafka refuses never stalls its batch --------------------------------------

def intake_outs(runtime, n, prefix="r"):
    return [Out(runtime.topics.intake, f"hotline:{prefix}{i}", {"id": f"hotline:{prefix}{i}", "text": f"第{i}条"})
            for i in range(n)]


def test_a_record_too_large_is_dead_lettered_alone_and_the_rest_published_once(runtime, bootstrap):
    p = Publisher(runtime.settings, make_producer(runtime.settings), runtime.journal, "ingest.hotline")
    batch = intake_outs(runtime, 8)
    huge = Out(runtime.topics.intake, "hotline:huge", {"id": "hotline:huge", "text": "电话13907971234。" + "长" * 1_000_000})
    batch.insert(3, huge)
    sent = p.publish(batch)
    assert sorted(o.id for o in sent) == sorted([o.id for o in batch if o is not huge] + ["ingest.hotline:hotline:huge"])
    assert p.refused == 1
    assert p.publish(batch) == [] and p.refused == 1  # a redelivery: everything done, the refusal included
    keys = [r.key for r in read_topic(bootstrap, runtime.topics.intake)]
    assert sorted(keys) == sorted(o.id.encode() for o in batch if o is not huge)
    (letter,) = read_values(bootstrap, runtime.topics.deadletter)
    assert letter["id"] == "hotline:huge" and letter["stage"] == "ingest.hotline"
    assert "MessageSizeTooLarge" in letter["reason"] and letter["source"] == {"topic": runtime.topics.intake,
                                                                               "key": "hotline:huge"}
    assert "13907971234" not in json.dumps(letter, ensure_ascii=False) and "139****1234" in letter["excerpt"]
    assert len(letter["excerpt"]) <= 500
    p.close()


def test_a_record_that_cannot_be_encoded_is_dead_lettered_alone(runtime, bootstrap):
    p = Publisher(runtime.settings, make_producer(runtime.settings), runtime.journal, "classify")
    batch = outs(runtime, 3)
    batch.append(Out(runtime.topics.classified, "hotline:s\ud800", {"id": "x", "text": "坏\ud800字"}))
    batch.append(Out(runtime.topics.classified, "hotline:deep", {"text": "深", "raw": nested(300)}))
    sent = p.publish(batch)
    assert len(sent) == 5 and p.refused == 2
    assert sorted(r.key for r in read_topic(bootstrap, runtime.topics.classified)) == [b"hotline:c0", b"hotline:c1",
                                                                                     b"hotline:c2"]
    letters = {v["id"]: v for v in read_values(bootstrap, runtime.topics.deadletter)}
    assert set(letters) == {"hotline:s\\ud800", "hotline:deep"}
    assert "surrogates not allowed" in letters["hotline:s\\ud800"]["reason"]
    assert "Recursion limit" in letters["hotline:deep"]["reason"]
    assert p.publish(batch) == []
    p.close()


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


class RefusingProducer:
    """Kafka's answers to a batch holding one invalid record: that record gets InvalidRecordError,
    its batch-mates a plain KafkaError (kafka-python's "part of a batch which had one more more
    invalid records"); sent again without it, they succeed. ``down``: every record times out."""

    config = {"max_request_size": 1 << 20}

    def __init__(self, bad: bytes, down: bool = False):
        self.bad, self.down, self.rounds, self._round = bad, down, [], []

    def partitions_for(self, topic):
        return {0, 1, 2}

    def send(self, topic, key, value, partition, headers=None):
        self._round.append(key)
        return SimpleNamespace(get=lambda timeout=None, key=key, batch=self._round: self._answer(key, batch))

    def flush(self, timeout=None):
        self.rounds.append(self._round)
        self._round = []

    def _answer(self, key, batch):
        if self.down:
            raise RequestTimedOutError("broker away")
        if key == self.bad:
            raise InvalidRecordError("record failed validation")
        if self.bad in batch:
            raise KafkaError("Failed to append record because it was part of a batch which had invalid records")
        return SimpleNamespace(offset=sum(map(len, self.rounds)))


def fake_publisher(tmp_path, producer):
    settings = SimpleNamespace(kafka=SimpleNamespace(topic_prefix="t."))
    return Publisher(settings, producer, Journal(tmp_path / "journal.sqlite3"), "classify")


def test_batch_mates_of_a_refused_record_are_sent_again_and_only_it_is_dead_lettered(tmp_path):
    producer = RefusingProducer(bad=b"m2")
    p = fake_publisher(tmp_path, producer)
    batch = [Out("t.classified", f"m{i}", {"text": f"第{i}条"}) for i in range(5)]
    sent = p.publish(batch)
    assert [o.id for o in sent] == ["m0", "m1", "m3", "m4", "classify:m2"] and p.refused == 1
    assert producer.rounds[0] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert producer.rounds[1] == [b"m0", b"m1", b"m3", b"m4"]  # what failed beside it, sent again
    assert producer.rounds[2] == [b"classify:m2"]  # its dead letter
    assert sent[-1].topic == "t.deadletter" and "InvalidRecordError" in sent[-1].value["reason"]
    known = p.journal.lookup("classify", [(o.id, o.topic) for o in batch])
    assert all(state == "done" for state, *_ in known.values()) and known[("m2", "t.classified")][2] is None
    p.journal.close()


def test_a_broker_that_is_down_still_fails_the_batch_for_a_retry(tmp_path):
    p = fake_publisher(tmp_path, RefusingProducer(bad=b"none", down=True))
    batch = [Out("t.classified", f"m{i}", {"text": "x"}) for i in range(3)]
    with pytest.raises(TransientError, match="did not acknowledge"):
        p.publish(batch)
    known = p.journal.lookup("classify", [(o.id, o.topic) for o in batch])
    assert {state for state, *_ in known.values()} == {"pending"} and p.refused == 0
    p.journal.close()
