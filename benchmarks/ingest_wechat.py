"""The WeChat push endpoint: throughput, and latency to the answer and to Kafka.

    python -m benchmarks.ingest_wechat [--messages 5000] [--senders 8 32]

An ingest worker runs as its own process (``wenzheng worker ingest``) on the embedded
broker, with one safe-mode account; this process plays WeChat's servers: ``--senders``
threads push signed, AES-encrypted text messages to the real callback URL, each
waiting for the answer before the next push (as WeChat does per connection). A
consumer without a group follows ``wz.intake``. Figures, per sender count:

* ``pushes_per_s`` — answered pushes per second;
* ``answer_ms`` — push sent → HTTP answer (the worker answers once the message is
  fsync'd to its spool, never waiting for Kafka): p50 / p95 / p99 / max;
* ``to_kafka_ms`` — push sent → the record seen on ``wz.intake`` by the consumer
  (an upper bound of the time to Kafka's acknowledgement): p50 / p95 / p99 / max;
* ``exactly_once`` — every pushed MsgId is on the topic once.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from kafka import KafkaConsumer, TopicPartition

from benchmarks import PRIVACY
from wenzheng.app.broker import EmbeddedBroker, free_port
from wenzheng.config import DEFAULT_DIR, load
from wenzheng.core import envelope
from wenzheng.core.runtime import Runtime
from wenzheng.ingest.fakes.wechat import PushClient, text_xml

APPID, TOKEN, AES = "wxbench000000001", "benchtoken", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def _config(root: Path, bootstrap: str, port: int) -> Path:
    import shutil

    cfg = root / "config"
    cfg.mkdir(parents=True)
    for f in DEFAULT_DIR.glob("*.yaml"):
        shutil.copy(f, cfg / f.name)
    runtime = {"kafka": {"bootstrap_servers": [bootstrap], "topic_prefix": f"b{port}."},
               "http": {"port": port}, "state": {"dir": str(root / "state")}, "privacy": PRIVACY}
    (cfg / "runtime.yaml").write_text(yaml.safe_dump(runtime), encoding="utf-8")
    channels = {"channels": {"hotline": {"enabled": False, "drop_dir": str(root / "drop")},
                             "webform": {"enabled": False},
                             "wechat": {"enabled": True, "accounts": {"gz": {"appid": APPID, "token": TOKEN,
                                                                             "encoding_aes_key": AES}}}}}
    (cfg / "channels.yaml").write_text(yaml.safe_dump(channels, allow_unicode=True), encoding="utf-8")
    return cfg


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1) if s else 0.0


def _summary(values: list[float]) -> dict:
    return {"p50": _pct(values, 0.5), "p95": _pct(values, 0.95), "p99": _pct(values, 0.99), "max": _pct(values, 1.0)}


def _round(consumer, url: str, ids: list[int], senders: int) -> dict:
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}
    seen: dict[str, list[float]] = {}
    stop = threading.Event()

    def follow():
        while not stop.is_set():
            for recs in consumer.poll(timeout_ms=50).values():
                now = time.monotonic()
                for r in recs:
                    seen.setdefault(r.key.decode(), []).append(now)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    clients = threading.local()

    def push(m: int):
        c = getattr(clients, "c", None) or PushClient(url, TOKEN, APPID, AES)
        clients.c = c
        sent[m] = time.monotonic()
        status, _ = c.push(text_xml(f"第{m}条：章贡区红旗大道路灯不亮，已经一个星期了", msg_id=m), encrypt=True)
        answered[m] = time.monotonic()
        if status != 200:
            raise RuntimeError(f"push {m}: HTTP {status}")

    t0 = time.monotonic()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(push, ids))
    wall = time.monotonic() - t0
    key = PRIVACY["pseudonym_key"].encode()
    keys = {envelope.message_id("wechat", f"{APPID}:{m}", key): m for m in ids}
    wait_until = time.monotonic() + 120
    while time.monotonic() < wait_until and not all(k in seen for k in keys):
        time.sleep(0.1)
    stop.set()
    reader.join()
    return {
        "pushes": len(ids),
        "pushes_per_s": round(len(ids) / wall, 1),
        "answer_ms": _summary([(answered[m] - sent[m]) * 1000 for m in ids]),
        "to_kafka_ms": _summary([(seen[k][0] - sent[m]) * 1000 for k, m in keys.items() if k in seen]),
        "all_to_kafka_s": round(max((seen[k][0] for k in keys if k in seen), default=t0) - t0, 2),
        "exactly_once": all(len(seen.get(k, [])) == 1 for k in keys),
        "missing": sum(1 for k in keys if k not in seen),
    }


def run(messages: int = 5000, senders: tuple[int, ...] = (8, 32)) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        port = free_port()
        cfg = _config(Path(tmp), broker.bootstrap, port)
        rt = Runtime(load(cfg)).connect()
        worker = subprocess.Popen([sys.executable, "-m", "wenzheng.app", "worker", "ingest", "--config", str(cfg)],
                                  stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "ingest.log", "wb"))  # noqa: SIM115
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                                 fetch_max_wait_ms=10)
        try:
            url = f"http://127.0.0.1:{port}/wechat/gz"
            client = PushClient(url, TOKEN, APPID, AES)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if client.verify()[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the ingest worker did not come up")
                time.sleep(0.2)
            parts = consumer.partitions_for_topic(rt.topics.intake) or set()
            consumer.assign([TopicPartition(rt.topics.intake, p) for p in parts])
            consumer.seek_to_beginning()
            next_id = 1
            for n in senders:
                ids = list(range(next_id, next_id + messages))
                next_id += messages
                results[f"senders_{n}"] = _round(consumer, url, ids, n)
        finally:
            consumer.close()
            worker.terminate()
            worker.wait(30)
            rt.journal.close()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.ingest_wechat")
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--senders", type=int, nargs="+", default=[8, 32])
    args = p.parse_args(argv)
    json.dump({"wechat_push": run(args.messages, tuple(args.senders))}, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
