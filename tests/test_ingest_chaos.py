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

from tests.conftest import write_config
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
    rng = random.Random(2026)
    with FakeWeibo(mentions=20, mention_comments=5, posts=2, comments_per_post=6, lifetime=300) as weibo, \
            FakeWebForm(lifetime=300) as webform:
        uids = [str(3_000_000_000 + i) for i in range(8)]
        webform.add(300, per_second=7)
        cfg = write_config(tmp_path, bootstrap)
        doc = yaml.safe_load((cfg / "channels.yaml").read_text(encoding="utf-8"))
        doc["channels"].update(
            weibo={"enabled": True, "api_base": weibo.url, "poll_seconds": 1, "max_pages": 2,
                   "accounts": {f"wb{i}": {"uid": u, "cookie": weibo.cookie(u)} for i, u in enumerate(uids)}},
            webform={"enabled": True, "base_url": webform.url, "token": webform.token, "poll_seconds": 1,
                     "page_size": 20, "open311": False},
            wechat={"enabled": True, "accounts": {"gz": {"appid": APPID, "token": TOKEN, "encoding_aes_key": AES}}},
        )
        (cfg / "channels.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        config = load(cfg)
        rt = Runtime(config).connect()
        intake = Watcher(bootstrap, [rt.topics.intake])
        port = config.settings.http.port
        drop = tmp_path / "drop"
        drop.mkdir(exist_ok=True)

        expected = {f"weibo:{i}" for u in uids for i, e in _citizens(weibo, u)}
        expected |= {f"webform:{sid}" for sid in webform.items}
        calls = [dict(to_call({"text": f"第{i}个电话：南康区唐江镇停水两天了"}, i), call_id=f"CH-{i:04d}") for i in range(120)]
        expected |= {f"hotline:{c['call_id']}" for c in calls}
        pushes = list(range(1, 151))
        expected |= {f"wechat:{APPID}:{m}" for m in pushes}

        stop, calm = threading.Event(), threading.Event()

        def chaos():  # upstream errors while the worker polls; one pending at a time and the web
            # form (one poller, backing off) less often: faults queued faster than the connector
            # asks again would fail every request forever, which tests the back-off, not delivery
            while not calm.wait(rng.uniform(0.3, 1.0)):
                if not weibo.faults_pending:
                    weibo.fail(rng.choice([403, 418, "ok0", "html"]))
                if not webform.faults_pending and rng.random() < 0.25:
                    webform.fail(rng.choice([500, 429]))

        def push_all():  # WeChat retries a push that got no answer; we keep retrying until answered
            client = PushClient(f"http://127.0.0.1:{port}/wechat/gz", TOKEN, APPID, AES)
            for m in pushes:
                while not stop.is_set():
                    try:
                        if client.push(text_xml(f"第{m}条：章贡区路灯不亮", msg_id=m), encrypt=True)[0] == 200:
                            break
                    except OSError:
                        pass
                    time.sleep(0.2)
                time.sleep(0.02)

        def drop_files():
            for c in calls:
                (drop / f"{c['call_id']}.json").write_text(json.dumps(c, ensure_ascii=False), encoding="utf-8")
                time.sleep(0.03)

        workers.start("ingest", "--port", str(port))
        threads = [threading.Thread(target=f, daemon=True) for f in (chaos, push_all, drop_files)]
        for t in threads:
            t.start()
        for _ in range(3):  # kill at random moments, restart at once
            time.sleep(rng.uniform(2.0, 5.0))
            os.kill(workers.procs["ingest"].pid, signal.SIGKILL)
            workers.procs["ingest"].wait()
            workers.start("ingest", "--port", str(port))
        # Upstream calms down a few seconds after the last restart: a fault rate that outpaces
        # the polls (a loaded machine polls slower) would test the back-off, not delivery, and
        # a back-off grown to minutes would outlast the deadline.
        time.sleep(3)
        calm.set()

        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not expected <= {r.key.decode() for r in intake.poll()}:
            time.sleep(0.5)
        stop.set()
        calm.set()
        time.sleep(3)  # anything doubled would have arrived by now
        counts = Counter(r.key.decode() for r in intake.poll())
        intake.close()
        rt.journal.close()

    missing = expected - set(counts)
    doubled = {k: n for k, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    assert not doubled, f"{len(doubled)} doubled, e.g. {list(doubled.items())[:5]}"
    assert set(counts) == expected


def _citizens(fake: FakeWeibo, uid: str):
    fake.account(uid)  # generated on first use
    return [(i, e) for i, e in fake.expected.items() if e["uid"] == uid and not e["own"]
            and e["kind"] in ("mention", "comment")]
