"""Personal data of every kind, through every channel, and then nowhere but ``wz.intake``.

One message carrying one positive of each kind of ``tests/core/pii_cases.py`` (mobile,
landline, 18- and 15-digit ID, bank card, a number in Chinese numerals, e-mail, plate,
door number, a name without a cue word) goes in through each channel a test can drive:
a hotline file whose name and ``call_id`` are the caller's number, a signed and
encrypted WeChat push, a web-form submission and a Weibo mention served by their fakes,
an Open311 POST. Real workers (ingest, classify, route, ledger) take them to the ledger.
Then every place wenzheng writes is read — every topic but ``wz.intake`` (keys, values,
headers), every table of every SQLite database and every file under the state directory
(the ledger, the delivery journal, the spool, the indexes, the checkpoints), and the
workers' logs — and each seeded value is looked for, as written and with its separators
removed. None may be found.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port
from tests.core.pii_cases import POSITIVES
from tests.kafka_util import Watcher, read_prefix
from wenzheng.config import load
from wenzheng.core.runtime import Runtime
from wenzheng.ingest.fakes.webform import FakeWebForm
from wenzheng.ingest.fakes.wechat import PushClient, text_xml
from wenzheng.ingest.fakes.weibo import FakeWeibo

pytestmark = pytest.mark.slow

PICK = {"mobile": 0, "landline": 0, "id18": 1, "id15": 0, "card": 0, "spoken": 0, "email": 0, "plate": 1,
        "address": 0, "name": 4}
"""Which positive of each kind is seeded (name 4: 我邻居赵志刚…, no cue word before it)."""
SEEDS = {kind: POSITIVES[kind][i] for kind, i in PICK.items()}
TEXT = "。".join(text for text, _, _ in SEEDS.values()) + "。"
PHONE, NAME = SEEDS["mobile"][1], SEEDS["name"][1]
SEPARATORS = re.compile("[ \\-—–，,、·]")
APPID, TOKEN, AES_KEY = "wx5eed0000000000aa", "sweep-token", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
FORM_TOKEN, UID = "sweep-form-token", "3000000001"
CHANNELS = ("hotline", "wechat", "webform", "open311", "weibo")


def needles() -> dict[str, set[str]]:
    """Each kind's seeded values, as written and without separators (a spoken number also in digits)."""
    found = {kind: {secret} for kind, (_, secret, _) in SEEDS.items()}
    found["spoken"].add(SEEDS["spoken"][1].translate(str.maketrans("零〇一二三四五六七八九幺两", "0012345678912")))
    return {kind: values | {SEPARATORS.sub("", v) for v in values} for kind, values in found.items()}


def count(text: str, values: set[str]) -> int:
    """Occurrences of any of ``values`` in ``text``, or in ``text`` with its separators removed."""
    bare = SEPARATORS.sub("", text)
    return sum(max(text.count(v), bare.count(v)) for v in values)


def configure(cfg: Path, tmp_path: Path, form: FakeWebForm, weibo: FakeWeibo) -> None:
    """Every channel on: the hotline folder, a safe-mode WeChat account, the web form (and Open311), Weibo."""
    doc = yaml.safe_load((cfg / "channels.yaml").read_text(encoding="utf-8"))
    doc["channels"] |= {
        "wechat": {"enabled": True, "accounts": {"gz": {"appid": APPID, "token": TOKEN, "encoding_aes_key": AES_KEY}}},
        "webform": {"enabled": True, "base_url": form.url, "token": FORM_TOKEN, "poll_seconds": 0.5},
        "weibo": {"enabled": True, "api_base": weibo.url, "poll_seconds": 0.5,
                  "accounts": {"gz": {"uid": UID, "cookie": weibo.cookie(UID)}}},
    }
    (cfg / "channels.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def drive(port: int, drop: Path, form: FakeWebForm, weibo: FakeWeibo) -> None:
    """The seeded message through each channel."""
    call = {"call_id": PHONE, "caller_number": PHONE, "caller_name": NAME, "started_at": "2026-11-22 09:15:03",
            "turns": [{"speaker": "agent", "text": "您好，12345热线，请讲。"}, {"speaker": "citizen", "text": TEXT}]}
    drop.mkdir(parents=True, exist_ok=True)
    (drop / f".{PHONE}.tmp").write_text(json.dumps(call, ensure_ascii=False), encoding="utf-8")
    (drop / f".{PHONE}.tmp").replace(drop / f"{PHONE}.json")
    push = PushClient(f"http://127.0.0.1:{port}/wechat/gz", TOKEN, APPID, AES_KEY)
    assert push.push(text_xml(TEXT, msg_id=6221731580000099001, from_user="oSWEEP0000openid"), encrypt=True)[0] == 200
    form.add_raw({"title": "反映", "content": TEXT, "name": NAME, "phone": PHONE, "id_card": SEEDS["id18"][1],
                  "address": SEEDS["address"][0], "created_at": "2026-11-22 09:15:03"})
    weibo.add_mention(UID, TEXT)
    body = json.dumps({"service_code": "urban_management", "description": TEXT, "address_string": SEEDS["address"][0],
                       "phone": PHONE, "email": "zhangsan@163.com", "first_name": NAME[1:], "last_name": NAME[0]})
    req = urllib.request.Request(f"http://127.0.0.1:{port}/open311/requests.json", data=body.encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as answer:
        assert answer.status == 201


def wait_for(what: str, predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def ingest_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
            return True
    except OSError:
        return False


def places(bootstrap: str, runtime: Runtime, tmp_path: Path) -> dict[str, str]:
    """Everything wenzheng wrote, by where: every topic but the intake topic, every table and
    every file under the state directory, the workers' logs."""
    found: dict[str, str] = {}
    for topic, records in read_prefix(bootstrap, runtime.topics.prefix).items():
        if topic != runtime.topics.intake:
            found[f"topic {topic}"] = "\n".join(
                f"{r.key!r} {r.value.decode('utf-8', 'replace')} {r.headers!r}" for r in records)
    state = tmp_path / "state"
    for path in sorted(p for p in state.rglob("*") if p.is_file()):
        where = path.relative_to(state)
        found[f"file {where}"] = path.read_bytes().decode("utf-8", "ignore")
        if path.suffix == ".sqlite3":
            found |= {f"table {where}:{t}": rows for t, rows in tables(path).items()}
    found |= {f"log {p.name}": p.read_text(encoding="utf-8", errors="replace") for p in tmp_path.glob("*.log")}
    return found


def tables(path: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: "\n".join(map(repr, db.execute(f'SELECT * FROM "{n}"'))) for n in names}


def test_no_seeded_personal_data_leaves_the_intake_topic(tmp_path, bootstrap, config_dir, workers, tiny_model):
    with FakeWebForm(FORM_TOKEN, lifetime=600) as form, FakeWeibo(mentions=0, mention_comments=0, posts=1,
                                                                 comments_per_post=0, lifetime=600) as weibo:
        configure(config_dir, tmp_path, form, weibo)
        runtime = Runtime(load(config_dir)).connect()
        routed = Watcher(bootstrap, [runtime.topics.routed])
        port = free_port()
        workers.start("ingest", "--port", str(port))
        for kind in ("classify", "route", "ledger"):
            workers.start(kind, *(["--model", str(tiny_model)] if kind == "classify" else []))
        wait_for("the ingest worker", lambda: ingest_ready(port))
        drive(port, tmp_path / "drop", form, weibo)
        wait_for("every channel's message routed", lambda: {r.key.split(b":")[0].decode()
                                                          for r in routed.poll()} >= set(CHANNELS))
        ledger = tmp_path / "state" / "ledger.sqlite3"
        wait_for("the ledger", lambda: ledger.exists() and len(tables(ledger).get("case_messages", "").splitlines())
                 >= len(CHANNELS))
        routed.close()
        workers.stop_all()
    where = places(bootstrap, runtime, tmp_path)
    runtime.journal.close()
    leaks = {kind: Counter({w: n for w, text in where.items() if (n := count(text, values))})
             for kind, values in needles().items()}
    print("unmasked occurrences per kind:", json.dumps({k: sum(c.values()) for k, c in leaks.items()}))
    assert not any(leaks.values()), {k: dict(c) for k, c in leaks.items() if c}
