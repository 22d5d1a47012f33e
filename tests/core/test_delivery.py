"""The delivery journal: each (stage, id, topic) lands in Kafka once, whatever dies when."""

from kafka import KafkaProducer

from tests.kafka_util import read_topic
from wenzheng.core.delivery import Journal, Out, Publisher
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
