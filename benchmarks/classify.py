"""The classify stage against raw jieba, on the same corpus, in one run.

* ``jieba_msgs_per_s``: ``jieba.lcut`` over the messages' text, one process, dictionary
  already loaded — the floor of the cost of classifying.
* ``stage_msgs_per_s``: N intake envelopes already on the topic; one classify worker
  process reads them from Kafka, classifies and publishes to wz.classified (journal and
  acks included). Timed by the output records' own timestamps, from the first batch out
  to the last, so start-up and group joining are not counted.
* the same with two worker processes sharing the consumer group (scaling);
* messages per CPU-second of the worker processes (the "per core" figure: the broker
  and this benchmark's own consumer share the machine's two cores with the workers);
* the worker's resident memory after the run and its start-up time (spawn to /healthz).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import jieba
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from benchmarks import PRIVACY
from wenzheng.app.broker import EmbeddedBroker, free_port
from wenzheng.classify.model import Classifier, corpus_files, is_test, read_labelled
from wenzheng.config import DEFAULT_DIR, load
from wenzheng.core import envelope
from wenzheng.core.runtime import Runtime


def _messages(n: int) -> list[dict]:
    rows = read_labelled(corpus_files())
    random.Random(5).shuffle(rows)
    return [rows[i % len(rows)] for i in range(n)]


def raw_jieba(texts: list[str]) -> float:
    jieba.lcut("预热词典")  # load the dictionary outside the clock
    t0 = time.perf_counter()
    for t in texts:
        jieba.lcut(t)
    return len(texts) / (time.perf_counter() - t0)


def _config(root: Path, bootstrap: str, prefix: str) -> Path:
    cfg = root / f"config-{prefix}"
    cfg.mkdir(parents=True)
    for f in DEFAULT_DIR.glob("*.yaml"):
        shutil.copy(f, cfg / f.name)
    runtime = {"kafka": {"bootstrap_servers": [bootstrap], "topic_prefix": prefix, "partitions": 2},
               "http": {"port": free_port()}, "state": {"dir": str(root / "state")}, "privacy": PRIVACY}
    (cfg / "runtime.yaml").write_text(yaml.safe_dump(runtime), encoding="utf-8")
    return cfg


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def stage(bootstrap: str, root: Path, model_dir: Path, rows: list[dict], workers: int) -> dict:
    prefix = f"b{workers}{int(time.time())}."
    cfg = _config(root, bootstrap, prefix)
    rt = Runtime(load(cfg)).connect()
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    for i, r in enumerate(rows):
        env = envelope.make(channel="wechat", account="bench", source_id=f"b{i}", text=r["text"],
                            title=r.get("title") or "", posted_at=envelope.now(), pii={"nickname": "网友"},
                            id_key=PRIVACY["pseudonym_key"].encode())
        p.send(rt.topics.intake, key=env["id"].encode(), value=envelope.encode(env))
    p.flush()
    p.close()
    procs, startup = [], []
    for _ in range(workers):
        port = free_port()
        t0 = time.time()
        log = open(root / f"classify-{prefix}{port}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "wenzheng.app", "worker", "classify", "--config", str(cfg),
                                 "--port", str(port), "--model", str(model_dir)], stdout=log, stderr=log)
        log.close()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        startup.append(time.time() - t0)
        procs.append(proc)
    cpu0 = sum(_cpu_s(pr.pid) for pr in procs)
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    tps = [TopicPartition(rt.topics.classified, q) for q in c.partitions_for_topic(rt.topics.classified)]
    c.assign(tps)
    c.seek_to_beginning()
    stamps: list[int] = []
    deadline = time.time() + 900
    while len(stamps) < len(rows) and time.time() < deadline:
        for recs in c.poll(timeout_ms=500, max_records=20000).values():
            stamps.extend(r.timestamp for r in recs)
    rss = [_rss_mb(pr.pid) for pr in procs]
    cpu = sum(_cpu_s(pr.pid) for pr in procs) - cpu0
    c.close()
    for pr in procs:
        pr.terminate()
    for pr in procs:
        pr.wait(30)
    rt.journal.close()
    stamps.sort()
    first_batch = sum(1 for s in stamps if s == stamps[0])
    span = (stamps[-1] - stamps[0]) / 1000
    return {"workers": workers, "messages": len(stamps),
            "msgs_per_s": round((len(stamps) - first_batch) / span, 1) if span else None,
            "msgs_per_cpu_s": round(len(stamps) / cpu, 1) if cpu else None,
            "worker_rss_mb": rss, "startup_s": [round(s, 2) for s in startup]}


def run(n: int = 20000) -> dict:
    rows = _messages(n)
    texts = [f"{r.get('title') or ''} {r['text']}" for r in rows]
    settings = load().settings
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        root = Path(tmp)
        model = Classifier.train([r for r in read_labelled(corpus_files()) if not is_test(r)], settings)
        model_dir = model.save(root / "model")
        jieba_rate = raw_jieba(texts)
        t0 = time.perf_counter()
        for i in range(0, len(rows), 500):
            model.predict(rows[i : i + 500])
        predict_rate = len(rows) / (time.perf_counter() - t0)
        one = stage(broker.bootstrap, root, model_dir, rows, 1)
        two = stage(broker.bootstrap, root, model_dir, rows, 2)
    chars = sum(len(t) for t in texts) / len(texts)
    return {
        "messages": n, "mean_chars": round(chars, 1),
        "jieba_msgs_per_s": round(jieba_rate, 1),
        "predict_msgs_per_s": round(predict_rate, 1),
        "stage_1_worker": one, "stage_2_workers": two,
        "stage_to_jieba_ratio": round(one["msgs_per_s"] / jieba_rate, 3) if one["msgs_per_s"] else None,
        "stage_per_cpu_s_to_jieba_ratio": round(one["msgs_per_cpu_s"] / jieba_rate, 3),
        "scaling_2_over_1": round(two["msgs_per_s"] / one["msgs_per_s"], 2) if one["msgs_per_s"] else None,
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20000), indent=2))
