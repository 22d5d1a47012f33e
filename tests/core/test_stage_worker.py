"""The stage runner against the real broker: bad records are dead-lettered and
never block the ones behind them; offsets are committed after the output."""

import json
import threading
import time
import urllib.request

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.conftest import expected_id, free_port, make_envelope
from tests.kafka_util import read_values
from wenzheng.classify.model import Classifier
from wenzheng.classify.stage import ClassifyStage
from wenzheng.core import envelope
from wenzheng.core.stage import StageWorker


def good(i: int) -> bytes:
    env = make_envelope(channel="hotline", account="12345", source_id=f"s{i}", text="南康区唐江镇的路灯坏了，我叫王小明，电话13907971234",
                        posted_at=envelope.now(), pii={"caller_name": "王小明", "caller_number": "13907971234"})
    return envelope.encode(env)


def test_bad_records_go_to_dead_letters_and_the_rest_flow(runtime, bootstrap, tiny_model):
    t = runtime.topics
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    batch = [(b"hotline:s0", good(0)), (b"k-bad", b"\xff\xfe not json"), (b"k-schema", b'{"schema": "other/9"}'),
             (None, b'{"id": 1'), (b"hotline:s1", good(1))]
    for key, value in batch:
        p.send(t.intake, key=key, value=value, partition=0)
    p.flush()
    p.close()

    worker = StageWorker(runtime, ClassifyStage(runtime, Classifier.load(tiny_model, runtime.settings)))
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + 60
    while worker.processed < len(batch) and time.monotonic() < deadline:
        time.sleep(0.2)
    worker.stop()
    thread.join(30)
    assert not thread.is_alive()

    classified = read_values(bootstrap, t.classified)
    assert sorted(v["id"] for v in classified) == sorted(expected_id("hotline", f"s{i}") for i in (0, 1))
    for v in classified:
        assert v["classification"]["jurisdiction"] == "360703"
        assert "13907971234" not in json.dumps(v, ensure_ascii=False) and "王小明" not in v["text"]
        assert v["raw_ref"]["topic"] == t.intake
    dead = {v["source"]["offset"]: v["reason"] for v in read_values(bootstrap, t.deadletter)}
    assert set(dead) == {1, 2, 3}
    assert "not UTF-8" in dead[1] and "unsupported envelope schema" in dead[2] and "not JSON" in dead[3]

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=runtime.group("classify", t.intake))
    assert c.committed(TopicPartition(t.intake, 0)) == len(batch)
    c.close()


def test_worker_serves_health_and_metrics_and_stops_on_sigterm(workers, config_dir):
    port = free_port()
    proc = workers.start("route", "--port", str(port))  # the last --port wins
    body = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            body = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read())
            break
        except OSError:
            time.sleep(0.3)
    assert body and body["status"] == "ok" and body["stage"] == "route"
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    assert "wenzheng_messages_in_total" in metrics and "wenzheng_consumer_lag" in metrics
    proc.terminate()
    assert proc.wait(30) == 0


def test_a_stop_before_the_consumer_is_ready_is_not_lost(runtime, tiny_model):
    """SIGTERM can arrive while run() is still making its consumer (the health port is already up)."""
    worker = StageWorker(runtime, ClassifyStage(runtime, Classifier.load(tiny_model, runtime.settings)))
    worker.stop()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()


def test_a_transient_failure_is_retried_not_dead_lettered(runtime, bootstrap):
    """A database the stage writes to is down for a while: the batch waits, nothing is dead-lettered."""
    from wenzheng.core.delivery import Out
    from wenzheng.core.errors import TransientError
    from wenzheng.core.stage import Stage

    class Flaky(Stage):
        name = "flaky"
        failures = 2

        def inputs(self):
            return [self.runtime.topics.intake]

        def process(self, value, record):
            if Flaky.failures:
                Flaky.failures -= 1
                raise TransientError("ledger: connection refused")
            return [Out(self.runtime.topics.classified, value["id"], value)]

    t = runtime.topics
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(3):
        p.send(t.intake, key=f"hotline:s{i}".encode(), value=good(i), partition=0)
    p.flush()
    p.close()
    worker = StageWorker(runtime, Flaky(runtime))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while worker.processed < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    worker.stop()
    thread.join(30)
    assert Flaky.failures == 0
    assert sorted(v["id"] for v in read_values(bootstrap, t.classified)) == sorted(expected_id("hotline", f"s{i}")
                                                                                   for i in range(3))
    assert read_values(bootstrap, t.deadletter) == []
