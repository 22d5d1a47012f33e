"""Kill the ingest worker at random moments while the fakes serve a thousand
messages and throw errors: every upstream message ends up in Kafka exactly once.

Four channels at once — Weibo and web-form polls with injected anti-crawling and
server errors, WeChat pushes (retried by the sender as WeChat does), and 12345
transcript files — against one `wenzheng worker ingest` process that is
SIGKILLed three times and restarted.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter

import pytest
import yaml

from tests.conftest import expected_id, write_config
from tests.kafka_util import Watcher
from wenzheng.app.demo import to_call
from wenzheng.config import load
from wenzheng.core.runtime import Runtime
from wenzheng.ingest.fakes.webform import FakeWebForm
from wenzheng.ingest.fakes.wechat import PushClient, text_xml
from wenzheng.ingest.fakes.weibo import FakeWeibo

pytestmark = pytest.mark.slow

APPID, TOKEN, AES = "wxchaos000000001", "chaostoken", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def test_random_kills_lose_and_double_nothing(tmp_path, bootstrap, workers):
    with FakeWeibo(mentions=20, mention_comments=5, posts=2, comments_per_post=6, lifetime=300) as weibo, \
            FakeWebForm(lifetime=300) as webform:
        run = ChaosRun(tmp_path, bootstrap, weibo, webform)
        try:
            run.start(workers)
            counts = run.collect()
        finally:
            run.close()
    missing = run.expected - set(counts)
    doubled = {k: n for k, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    assert not doubled, f"{len(doubled)} doubled, e.g. {list(doubled.items())[:5]}"
    assert set(counts) == run.expected


class ChaosRun:
    """Four channels misbehaving while the ingest worker is SIGKILLed three times."""

    def __init__(self, tmp_path, bootstrap, weibo: FakeWeibo, webform: FakeWebForm):
        self.rng = random.Random(2026)
        self.weibo, self.webform = weibo, webform
        self.uids = [str(3_000_000_000 + i) for i in range(8)]
        webform.add(300, per_second=7)
        config = load(self._config(tmp_path, bootstrap))
        self.rt = Runtime(config).connect()
        self.intake = Watcher(bootstrap, [self.rt.topics.intake])
        self.port = config.settings.http.port
        self.drop = tmp_path / "drop"
        self.drop.mkdir(exist_ok=True)
        self.calls = [dict(to_call({"text": f"第{i}个电话：南康区唐江镇停水两天了"}, i), call_id=f"CH-{i:04d}")
                      for i in range(120)]
        self.pushes = list(range(1, 151))
        self.expected = ({expected_id("weibo", i) for u in self.uids for i, e in _citizens(weibo, u)}
                         | {expected_id("webform", sid) for sid in webform.items}
                         | {expected_id("hotline", c["call_id"]) for c in self.calls}
                         | {expected_id("wechat", f"{APPID}:{m}") for m in self.pushes})
        self.stop, self.calm = threading.Event(), threading.Event()

    def _config(self, tmp_path, bootstrap):
        cfg = write_config(tmp_path, bootstrap)
        doc = yaml.safe_load((cfg / "channels.yaml").read_text(encoding="utf-8"))
        doc["channels"].update(
            weibo={"enabled": True, "api_base": self.weibo.url, "poll_seconds": 1, "max_pages": 2,
                   "accounts": {f"wb{i}": {"uid": u, "cookie": self.weibo.cookie(u)} for i, u in enumerate(self.uids)}},
            webform={"enabled": True, "base_url": self.webform.url, "token": self.webform.token, "poll_seconds": 1,
                     "page_size": 20, "open311": False},
            wechat={"enabled": True, "accounts": {"gz": {"appid": APPID, "token": TOKEN, "encoding_aes_key": AES}}},
        )
        (cfg / "channels.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        return cfg

    def chaos(self) -> None:
        """Upstream errors while the worker polls; one pending at a time and the web form (one
        poller, backing off) less often: faults queued faster than the connector asks again
        would fail every request forever, which tests the back-off, not delivery."""
        while not self.calm.wait(self.rng.uniform(0.3, 1.0)):
            if not self.weibo.faults_pending:
                self.weibo.fail(self.rng.choice([403, 418, "ok0", "html"]))
            if not self.webform.faults_pending and self.rng.random() < 0.25:
                self.webform.fail(self.rng.choice([500, 429]))

    def push_all(self) -> None:
        """WeChat retries a push that got no answer; we keep retrying until answered."""
        client = PushClient(f"http://127.0.0.1:{self.port}/wechat/gz", TOKEN, APPID, AES)
        for m in self.pushes:
            while not self.stop.is_set():
                try:
                    if client.push(text_xml(f"第{m}条：章贡区路灯不亮", msg_id=m), encrypt=True)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            time.sleep(0.02)

    def drop_files(self) -> None:
        for c in self.calls:
            (self.drop / f"{c['call_id']}.json").write_text(json.dumps(c, ensure_ascii=False), encoding="utf-8")
            time.sleep(0.03)

    def start(self, workers) -> None:
        workers.start("ingest", "--port", str(self.port))
        for f in (self.chaos, self.push_all, self.drop_files):
            threading.Thread(target=f, daemon=True).start()
        for _ in range(3):  # kill at random moments, restart at once
            time.sleep(self.rng.uniform(2.0, 5.0))
            os.kill(workers.procs["ingest"].pid, signal.SIGKILL)
            workers.procs["ingest"].wait()
            workers.start("ingest", "--port", str(self.port))
        # Upstream calms down a few seconds after the last restart: a fault rate that outpaces
        # the polls (a loaded machine polls slower) would test the back-off, not delivery, and
        # a back-off grown to minutes would outlast the deadline.
        time.sleep(3)
        self.calm.set()

    def collect(self) -> Counter[str]:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not self.expected <= {r.key.decode() for r in self.intake.poll()}:
            time.sleep(0.5)
        self.stop.set()
        time.sleep(3)  # anything doubled would have arrived by now
        return Counter(r.key.decode() for r in self.intake.poll())

    def close(self) -> None:
        self.stop.set()
        self.calm.set()
        self.intake.close()
        self.rt.journal.close()


def _citizens(fake: FakeWeibo, uid: str):
    fake.account(uid)  # generated on first use
    return [(i, e) for i, e in fake.expected.items() if e["uid"] == uid and not e["own"]
            and e["kind"] in ("mention", "comment")]
