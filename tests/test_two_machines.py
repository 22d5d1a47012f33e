"""A stage on two "machines" (own processes, own state directories) against one broker and
one shared delivery journal in PostgreSQL: one dies mid-batch, the other takes its partitions
and republishes nothing that was already out."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml
from kafka import KafkaProducer

from tests.conftest import make_envelope, write_config
from tests.kafka_util import Watcher
from wenzheng.config import load
from wenzheng.core import envelope
from wenzheng.core.runtime import Runtime

pytestmark = pytest.mark.slow
N = 8000  # enough output for 4 kills of machine A while it publishes
ROUNDS = 4
TEXTS = ["南康区唐江镇自来水停了两天", "章贡区红旗大道路灯不亮", "于都县贡江镇小区门口占道经营", "瑞金市象湖镇餐馆油烟直排"]


def second_machine(cfg, tmp_path):
    """The same city, Kafka topics and shared journal; its own state directory."""
    other = tmp_path / "machine-b"
    shutil.copytree(cfg, other)
    runtime = yaml.safe_load((other / "runtime.yaml").read_text(encoding="utf-8"))
    runtime["state"]["dir"] = str(tmp_path / "state-b")
    (other / "runtime.yaml").write_text(yaml.safe_dump(runtime, allow_unicode=True), encoding="utf-8")
    return other


def worker(cfg, log_path):
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "wenzheng.app", "worker", "classify", "--config", str(cfg),
                                 "--port", "0"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)


def test_a_stage_on_two_machines_doubles_nothing_when_one_dies(tmp_path, bootstrap, pg_schema, tiny_model):
    url, schema = pg_schema
    state = {"dir": str(tmp_path / "state-a"), "url": f"{url}?options=-csearch_path%3D{schema}"}
    cfg = write_config(tmp_path, bootstrap, state=state, classifier={"model_dir": str(tiny_model)})
    rt = Runtime(load(cfg)).connect()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    ids = []
    for i in range(N):
        env = make_envelope(channel="hotline", account="12345", source_id=f"TM-{i:05d}",
                            text=TEXTS[i % len(TEXTS)], posted_at=envelope.now())
        ids.append(env["id"])
        producer.send(rt.topics.intake, key=env["id"].encode(), value=envelope.encode(env))
    producer.flush()
    producer.close()
    out = Watcher(bootstrap, [rt.topics.classified])
    b = worker(second_machine(cfg, tmp_path), tmp_path / "b.log")
    try:
        for _ in range(ROUNDS):  # machine A dies while output is arriving: most likely in its own publish
            a = worker(cfg, tmp_path / "a.log")
            _kill_while_publishing(a, out, timeout=60)
        while len({r.key for r in out.poll()}) < N and b.poll() is None:
            time.sleep(0.2)
        time.sleep(8)  # a redelivered batch would be republished by now
        seen = Counter(r.key.decode() for r in out.poll())  # the watcher keeps every record it read
    finally:
        if b.poll() is None:
            b.send_signal(signal.SIGTERM)
            b.wait(30)
        out.close()
        rt.journal.close()
    assert set(seen) == set(ids), f"{N - len(set(seen) & set(ids))} lost"
    doubled = {k: n for k, n in seen.items() if n > 1}
    assert not doubled, f"{len(doubled)} doubled, e.g. {list(doubled.items())[:3]}"


def _kill_while_publishing(a: subprocess.Popen, out: Watcher, timeout: float) -> None:
    """SIGKILL ``a`` the moment new output appears after it started (between its send and its
    commit, if the batch was its own); give it a few seconds to start and join the group first."""
    time.sleep(4)
    before, deadline = len(out.poll()), time.monotonic() + timeout
    while time.monotonic() < deadline and len(out.poll()) == before:
        time.sleep(0.005)
    os.kill(a.pid, signal.SIGKILL)
    a.wait()
