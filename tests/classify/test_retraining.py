"""Retraining: corrections from the labels topic, explicit promotion, and running
workers switching to the promoted model between batches — none lost or doubled."""

import json
import threading
import time

from kafka import KafkaProducer

from tests.conftest import expected_id, make_envelope
from tests.kafka_util import read_values
from wenzheng.app.cli import main
from wenzheng.classify.model import Classifier
from wenzheng.classify.registry import ModelFollower, promote
from wenzheng.classify.stage import ClassifyStage
from wenzheng.classify.training import merge_corrections, split
from wenzheng.core import envelope
from wenzheng.core.stage import StageWorker

HISTORY = [
    {"id": f"h{i}", "text": t, "category": c, "type": "complaint"}
    for i, (t, c) in enumerate([
        ("路灯坏了晚上很黑", "urban_management"), ("占道经营烧烤摊扰民", "urban_management"),
        ("垃圾没人清运", "urban_management"), ("拖欠工资三个月", "labour_social_security"),
        ("社保断缴怎么补", "labour_social_security"), ("工伤认定太慢", "labour_social_security"),
    ] * 3)
]


def test_corrections_replace_history_by_id_and_latest_wins():
    rows = merge_corrections(HISTORY[:2], [{"id": "h1", "text": "占道经营", "category": "market_commerce"},
                                           {"id": "h1", "text": "占道经营", "category": "transport"},
                                           {"id": "n1", "text": "新的", "category": "health"}])
    assert [r["id"] for r in rows] == ["h0", "h1", "n1"]
    assert rows[1]["category"] == "transport"


def test_holdout_is_time_ordered_when_records_have_times():
    rows = [{"id": str(i), "text": "x", "posted_at": f"2026-11-{i + 1:02d}"} for i in range(10)]
    train, test, how = split(rows)
    assert [r["id"] for r in test] == ["8", "9"] and "time-ordered" in how
    _, _, how = split([{"id": "a", "text": "x"}])
    assert "hash" in how


def test_train_reads_the_labels_topic(runtime, bootstrap, config_dir, tmp_path, capsys):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for r in HISTORY:
        p.send(runtime.topics.labels, key=r["id"].encode(), value=json.dumps(r, ensure_ascii=False).encode())
    p.send(runtime.topics.labels, value=b"not json")
    p.close()
    data = tmp_path / "h.jsonl"
    data.write_text(json.dumps({"id": "x1", "text": "医院排队太久", "category": "health"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    assert main(["train", "--config", str(config_dir), "--data", str(data), "--labels", "--out",
                 str(tmp_path / "m"), "--report"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["train"] + out["test"] == len(HISTORY) + 1
    assert (out["corrections"], out["labels_weight"]) == (len(HISTORY), 5)
    meta = json.loads((tmp_path / "m" / "meta.json").read_text(encoding="utf-8"))
    assert set(meta["labels"]["category"]) == {"urban_management", "labour_social_security", "health"}


def test_evaluate_writes_a_report_with_confusion_matrix_png(tiny_model, tmp_path, capsys):
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in HISTORY), encoding="utf-8")
    assert main(["evaluate", "--model", str(tiny_model), "--data", str(data), "--report", str(tmp_path / "r")]) == 0
    assert json.loads(capsys.readouterr().out)["category"]["per_class"]
    png = (tmp_path / "r" / "confusion_category.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert "| urban_management |" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")


def test_running_worker_switches_to_the_promoted_model_between_batches(runtime, bootstrap, tmp_path):
    first = Classifier.train(HISTORY, runtime.settings)
    first.meta["version"] = "first"
    first.save(tmp_path / "first")
    second = Classifier.train(HISTORY, runtime.settings)
    second.meta["version"] = "second"
    second.save(tmp_path / "second")
    promote(runtime.settings, tmp_path / "first")

    stage = ClassifyStage(runtime, ModelFollower(runtime.settings, check_every=0))
    worker = StageWorker(runtime, stage, poll_ms=100)
    thread = threading.Thread(target=worker.run)
    thread.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")

    def send(n, start):
        for i in range(start, start + n):
            env = make_envelope(channel="wechat", account="gz", source_id=f"m{i}", text="路灯坏了",
                                posted_at=envelope.now())
            producer.send(runtime.topics.intake, key=env["id"].encode(), value=envelope.encode(env))
        producer.flush()

    def wait(n):
        deadline = time.monotonic() + 60
        while worker.processed < n and time.monotonic() < deadline:
            time.sleep(0.1)

    send(20, 0)
    wait(20)
    promote(runtime.settings, tmp_path / "second", note="test")
    time.sleep(0.5)
    send(20, 20)
    wait(40)
    worker.stop()
    thread.join(30)
    producer.close()
    versions = {v["id"]: v["classification"]["model_version"] for v in read_values(bootstrap, runtime.topics.classified)}
    assert len(versions) == 40 == len(read_values(bootstrap, runtime.topics.classified))
    assert {versions[expected_id("wechat", f"m{i}")] for i in range(20)} == {"first"}
    assert {versions[expected_id("wechat", f"m{i}")] for i in range(20, 40)} == {"second"}


def test_a_correction_counts_five_times_on_the_training_side_only():
    from wenzheng.classify.training import CORRECTION_WEIGHT, weigh_corrections

    train = [{"id": "a", "text": "x", "category": "transport"}, {"id": "b", "text": "y", "category": "health"},
             {"text": "no id", "category": "health"}]
    corrections = [{"id": "a", "text": "x", "category": "transport"}, {"text": "no id", "category": "health"},
                   {"id": "held-out", "text": "z", "category": "health"}]
    got = weigh_corrections(train, corrections)
    assert CORRECTION_WEIGHT == 5 and len(got) == 3 + 2 * 4
    assert sum(r.get("id") == "a" for r in got) == 5 and sum(r.get("id") == "b" for r in got) == 1
    assert sum(r["text"] == "no id" for r in got) == 5 and not any(r.get("id") == "held-out" for r in got)
    assert weigh_corrections(train, corrections, 1) == train
