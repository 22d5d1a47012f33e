"""Audit replay against the real broker: route a known stream, promote a new model,
replay — the recorded versions reproduce every decision, the new model's changes are
listed exactly; reading is read-only; dead letters are re-fed after a connector fix."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from types import SimpleNamespace

import pytest
import yaml
from kafka import KafkaAdminClient, KafkaProducer

from tests.conftest import expected_id, make_envelope, write_config
from tests.kafka_util import read_values
from wenzheng.audit.read import plan, read, read_only_consumer
from wenzheng.audit.replay import ReplayError, run
from wenzheng.classify import registry
from wenzheng.classify.model import Classifier, corpus_files, is_test, read_labelled
from wenzheng.classify.stage import ClassifyStage
from wenzheng.config import OfficeDirectory, load
from wenzheng.core import envelope
from wenzheng.core.delivery import Publisher
from wenzheng.core.kafka import producer as make_producer
from wenzheng.core.runtime import Runtime
from wenzheng.core.stage import StageWorker
from wenzheng.route.router import Router
from wenzheng.route.stage import RouteStage

N = 120


def _stream(rt) -> list[str]:
    rows = [r for r in read_labelled(corpus_files()) if is_test(r)][:N]
    p = KafkaProducer(bootstrap_servers=rt.bootstrap, acks="all")
    ids = []
    for i, r in enumerate(rows):
        env = make_envelope(channel="webform", account="web", source_id=f"r{i}", title=r.get("title") or "",
                            text=r["text"], posted_at=envelope.now())
        p.send(rt.topics.intake, key=env["id"].encode(), value=envelope.encode(env))
        ids.append(env["id"])
    p.flush()
    p.close()
    return ids


def _run_until(workers: list[StageWorker], done) -> None:
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while not done() and time.monotonic() < deadline:
        time.sleep(0.3)
    for w in workers:
        w.stop()
    for t in threads:
        t.join(30)
    assert done()


def _groups(bootstrap) -> set:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {g["group_id"] if isinstance(g, dict) else g[0] for g in admin.list_groups()}
    finally:
        admin.close()


@pytest.fixture(scope="module")
def stream(tmp_path_factory, bootstrap, tiny_model):
    """N messages classified and routed by the live stages with ``tiny_model``; then a newer
    model, trained on other data (one category folded into another), promoted."""
    tmp = tmp_path_factory.mktemp("replay")
    cfg = write_config(tmp, bootstrap)
    config = load(cfg)
    s = config.settings
    rt = Runtime(config).connect()
    registry.promote(s, tiny_model)
    ids = _stream(rt)
    classify = StageWorker(rt, ClassifyStage(rt, registry.ModelFollower(s)))
    route = StageWorker(rt, RouteStage(rt))
    _run_until([classify, route], lambda: route.processed >= N)
    routed = read_values(bootstrap, rt.topics.routed)
    assert sorted(v["id"] for v in routed) == sorted(ids)
    assert (tmp / "state" / "configs" / f"{config.hash}.json").is_file()
    rows = [dict(r, category="urban_management" if r.get("category") == "environment" else r.get("category"))
            for r in read_labelled(corpus_files()) if not is_test(r)][::2]
    newer = Classifier.train(rows, s).save(tmp / "models" / "b")
    registry.promote(s, newer)
    yield SimpleNamespace(tmp=tmp, cfg=cfg, config=config, rt=rt, ids=ids, routed=routed, groups=_groups(bootstrap),
                          old=Classifier.load(tiny_model, None).version, new=Classifier.load(newer, s))
    rt.journal.close()


def _expected(stream) -> dict[str, list[str]]:
    """What the newer model changes, worked out here message by message: id → changed fields."""
    model, router = stream.new, Router(stream.config, OfficeDirectory(stream.config.settings))
    inputs = [{k: x for k, x in v.items() if k not in ("classification", "routing")} for v in stream.routed]
    expected = {}
    for v, p in zip(stream.routed, model.predict(inputs), strict=True):
        c = {"category": p.category, "category_confidence": p.category_confidence, "type": p.type,
             "jurisdiction": p.jurisdiction, "model_version": model.version}
        r = router.route({**v, "classification": c})
        changed = [f for f in ("category", "type", "jurisdiction") if c[f] != v["classification"][f]]
        changed += [f for f in ("office_id", "co_offices", "triage", "rule", "deadlines") if r[f] != v["routing"][f]]
        if changed:
            expected[v["id"]] = changed
    return expected


def test_the_recorded_versions_reproduce_every_decision(stream):
    lines: list[str] = []
    same = run(stream.config, out=stream.tmp / "same", show_progress=False, echo=lines.append)
    assert (same["read"], same["compared"], same["agreed"], same["changed"], same["errors"]) == (N, N, N, 0, 0)
    assert (stream.tmp / "same" / "diffs.jsonl").read_text(encoding="utf-8") == ""
    assert "agreement 100.00%" in lines[0]


def test_a_new_model_changes_exactly_what_it_predicts_and_nothing_live_is_touched(stream, bootstrap):
    expected = _expected(stream)
    assert len(expected) >= 5  # environment is gone from the new model
    lines: list[str] = []
    out = stream.tmp / "new"
    new = run(stream.config, model="current", out=out, show_progress=False, workers=2, echo=lines.append)
    diffs = [json.loads(x) for x in (out / "diffs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {d["id"]: d["changed"] for d in diffs} == expected
    assert new["changed"] == len(expected) and new["agreed"] == N - len(expected)
    env_diff = next(d for d in diffs if d["recorded"]["category"] == "environment")
    assert env_diff["why"].startswith(f"model {stream.old}→{stream.new.version}")
    summary = (out / "summary.csv").read_text(encoding="utf-8-sig").splitlines()
    assert summary[0] == "dimension,value,messages,agreed,agreement"
    assert any(line.startswith("category,environment,") and ",0,0.0" in line for line in summary)
    assert "环境" not in lines[0] and "changed" in lines[0]  # codes, and the count, in the terminal
    assert "<table>" in (out / "report.html").read_text(encoding="utf-8")
    # read-only: no consumer group appeared, no live topic grew
    assert _groups(bootstrap) == stream.groups
    assert len(read_values(bootstrap, stream.rt.topics.routed)) == N


def test_the_command_line_names_the_model_by_its_version(stream):
    from wenzheng.app.cli import main

    cfg, out = str(stream.cfg), stream.tmp / "cli"
    assert main(["replay", "--config", cfg, "--model", stream.new.version, "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["changed"] == len(_expected(stream))
    assert main(["replay", "--config", cfg, "--topic", "no.such.topic", "--no-progress"]) == 2
    assert main(["replay", "--config", cfg, "--from", "2026-03-01", "--start-offset", "3"]) == 2


def test_republishing_goes_into_a_new_topic_once(stream, bootstrap):
    config, topics, tmp = stream.config, stream.rt.topics, stream.tmp
    with pytest.raises(ReplayError, match="live topic"):
        run(config, republish_to=topics.routed, out=tmp / "x", show_progress=False, echo=print)
    target = f"{topics.prefix}replay.audit"
    first = run(config, republish_to=target, out=tmp / "r1", show_progress=False, echo=print)
    again = run(config, republish_to=target, out=tmp / "r2", show_progress=False, echo=print)
    assert (first["republished"], again["republished"], again["already_there"]) == (N, 0, N)
    out = read_values(bootstrap, target)
    assert sorted(v["id"] for v in out) == sorted(stream.ids)
    assert all(v["replay"]["of"]["topic"] == topics.routed for v in out)
    assert len(read_values(bootstrap, topics.routed)) == N


def test_a_time_range_reads_exactly_its_messages(tmp_path, bootstrap):
    config = load(write_config(tmp_path, bootstrap))
    rt = Runtime(config).connect()
    topic = rt.topics.routed
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    marks = []
    for wave in range(3):  # three waves, a time mark between them; each wave over the three partitions
        if wave:
            time.sleep(1.2)
            marks.append(datetime.now(envelope.TZ))
            time.sleep(1.2)
        for i in range(wave * 10, wave * 10 + 10):
            p.send(topic, key=f"k{i}".encode(), value=json.dumps({"i": i}).encode())
        p.flush()
    p.close()
    c = read_only_consumer(rt.settings)
    got = [json.loads(r.value)["i"] for r in read(c, plan(c, topic, start=marks[0], end=marks[1]), marks[0], marks[1])]
    assert sorted(got) == list(range(10, 20))
    everything = [json.loads(r.value)["i"] for r in read(c, plan(c, topic))]
    assert sorted(everything) == list(range(30))  # to the high watermark, not Tansu's end_offsets
    later = datetime.now(envelope.TZ)
    assert plan(c, topic, start=later) == {}  # not "from offset 0", as Tansu answers
    tail = [json.loads(r.value)["i"] for r in read(c, plan(c, topic, start=marks[1]), marks[1])]
    assert sorted(tail) == list(range(20, 30))
    c.close()
    lines: list[str] = []
    junk = run(config, out=tmp_path / "junk", show_progress=False, echo=lines.append)  # none of them a message
    assert (junk["read"], junk["replayed"], junk["errors"]) == (30, 0, 30)
    assert "not replayable (30): unsupported envelope schema" in "\n".join(lines)
    rt.journal.close()


def test_dead_letters_are_refed_once_after_the_connector_is_fixed(tmp_path, bootstrap):
    cfg = write_config(tmp_path, bootstrap)
    channels = yaml.safe_load((cfg / "channels.yaml").read_text(encoding="utf-8"))
    channels["channels"]["hotline"]["encodings"] = ["utf-8-sig"]  # the broken connector: no GB18030
    (cfg / "channels.yaml").write_text(yaml.safe_dump(channels, allow_unicode=True), encoding="utf-8")
    broken = load(cfg)
    rt = Runtime(broken).connect()
    from wenzheng.ingest.hotline import HotlineConnector

    drop = tmp_path / "drop"
    drop.mkdir(exist_ok=True)
    call = {"call_id": "C-2026-0301-0007", "started_at": "2026-03-01T09:12:00+08:00", "caller_number": "13907971234",
            "turns": [{"speaker": "市民", "text": "章贡区红旗大道的路灯坏了三天了"}]}
    (drop / "c7.json").write_bytes(json.dumps(call, ensure_ascii=False).encode("gb18030"))
    (drop / "c8.json").write_text(json.dumps({**call, "call_id": "C8"}, ensure_ascii=False), encoding="utf-8")
    old = time.time() - 60
    for f in drop.iterdir():
        os.utime(f, (old, old))
    hotline = HotlineConnector(rt, Publisher(rt.settings, make_producer(rt.settings), rt.journal, "ingest"))
    assert hotline.poll() == 1
    dead = read_values(bootstrap, rt.topics.deadletter)
    assert len(dead) == 1 and "wrong encoding" in dead[0]["reason"]

    with pytest.raises(ReplayError, match="live topic"):
        run(broken, topic=rt.topics.routed, republish_to=rt.topics.intake, out=tmp_path / "x", show_progress=False)
    lines: list[str] = []
    still = run(broken, topic=rt.topics.deadletter, republish_to=rt.topics.intake, out=tmp_path / "r0",
                show_progress=False, echo=lines.append)
    assert "republished" not in still and "wrong encoding" in "\n".join(lines)

    channels["channels"]["hotline"].pop("encodings")  # the fix
    (cfg / "channels.yaml").write_text(yaml.safe_dump(channels, allow_unicode=True), encoding="utf-8")
    fixed = load(cfg)
    first = run(fixed, topic=rt.topics.deadletter, republish_to=rt.topics.intake, out=tmp_path / "r1", show_progress=False)
    again = run(fixed, topic=rt.topics.deadletter, republish_to=rt.topics.intake, out=tmp_path / "r2", show_progress=False)
    assert (first["republished"], again.get("republished", 0), again["already_there"]) == (1, 0, 1)
    intake = {v["id"]: v for v in read_values(bootstrap, rt.topics.intake)}
    assert set(intake) == {expected_id("hotline", "C8"), expected_id("hotline", "C-2026-0301-0007")}
    assert intake[expected_id("hotline", "C-2026-0301-0007")]["text"] == "章贡区红旗大道的路灯坏了三天了"
    rt.journal.close()
