"""A scripted month (October 2026: the National Day holiday 10-01..10-07, make-up working
days Sunday 09-20 and Saturday 10-10) through the real router and the ledger worker.

The same traffic goes through a ledger on SQLite and one on this machine's PostgreSQL;
each ledger worker is SIGKILLed mid-run and restarted. Both end with the same cases —
every message linked once, repeated reports merged, deadlines as computed by hand —
and the month's report adds up.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import TEST_KEY, expected_id, free_port, make_envelope, write_config
from wenzheng.config import load
from wenzheng.core import envelope
from wenzheng.core.envelope import iso
from wenzheng.core.kafka import producer as make_producer
from wenzheng.core.runtime import Runtime
from wenzheng.route.router import Router
from wenzheng.sinks.cases import Ledger
from wenzheng.sinks.period_report import build, period

pytestmark = pytest.mark.slow
SH = ZoneInfo("Asia/Shanghai")
PROBLEMS = [("urban_management", "路灯不亮"), ("environment", "工地夜间施工噪音扰民"),
            ("public_utilities", "停水两天了"), ("labour_social_security", "拖欠工资三个月"),
            ("transport", "公交站台损坏"), ("market_commerce", "超市卖过期食品")]
TYPES = ["complaint", "consultation", "help", "suggestion"]
COUNTIES = ["360702", "360703", "360704", "360721"]

# (received, type) → answer due, counted by hand from the 2026 schedule (see route/workcal.py)
ANCHORS = {
    ("2026-09-30T17:00", "complaint"): ("2026-10-08T09:00", "2026-10-13T17:30"),
    ("2026-10-03T09:00", "consultation"): ("2026-10-03T17:00", "2026-10-08T17:30"),
    ("2026-10-09T16:50", "consultation"): ("2026-10-10T08:50", "2026-10-10T17:30"),  # make-up Saturday
    ("2026-10-10T11:30", "help"): ("2026-10-10T15:00", "2026-10-16T17:30"),
}


def traffic(config) -> list[dict]:
    """~200 routed messages over October, with the anchors and 10 repeated reports."""
    router = Router(config, Runtime(config).offices)
    msgs = []
    t = datetime(2026, 9, 30, 8, 0, tzinfo=SH)
    i = 0
    while t < datetime(2026, 10, 31, tzinfo=SH):
        cat, problem = PROBLEMS[i % len(PROBLEMS)]
        msgs.append((f"wechat:m{i:04d}", t, cat, TYPES[i % len(TYPES)], COUNTIES[i % len(COUNTIES)],
                     f"幸福路{i}号{problem}", "wechat"))
        if i % 20 == 7:  # the same problem again the next day, through the hotline
            msgs.append((f"hotline:r{i:04d}", t + timedelta(days=1), cat, "complaint", COUNTIES[i % len(COUNTIES)],
                         f"你好，我反映一下幸福路{i}号那边{problem}，一直没人管", "hotline"))
        i += 1
        t += timedelta(hours=3, minutes=37)
    for k, ((at, mtype), _) in enumerate(ANCHORS.items()):
        msgs.append((f"webform:a{k}", datetime.fromisoformat(at).replace(tzinfo=SH), "urban_management", mtype,
                     "360703", f"解放路{900 + k}号井盖丢失", "webform"))
    out = []
    for msg_id, at, cat, mtype, county, text, channel in msgs:
        env = envelope.masked(make_envelope(channel=channel, account="gz", source_id=msg_id.split(":", 1)[1],
                                            text=text, posted_at=at), key=TEST_KEY.encode())  # as classify
        env["received_at"] = iso(at)
        env["classification"] = {"category": cat, "category_confidence": 0.9, "type": mtype,
                                 "jurisdiction": county, "model_version": "scripted"}
        env["routing"] = {**router.route(env), "routed_at": iso(at + timedelta(seconds=2))}
        out.append(env)
    return out


def run_ledger(tmp_path, bootstrap, workers, name: str, ledger_cfg: dict, msgs: list[dict]) -> list[dict]:
    cfg = write_config(tmp_path / name, bootstrap, ledger=ledger_cfg)
    config = load(cfg)
    rt = Runtime(config).connect()
    prod = make_producer(rt.settings)
    for m in msgs:
        prod.send(rt.topics.routed, key=m["id"].encode(), value=json.dumps(m, ensure_ascii=False).encode())
    prod.flush()
    prod.close()
    workers.config_dir = cfg
    ledger = Ledger.from_settings(config.settings)
    try:
        workers.start("ledger")
        deadline = time.monotonic() + 60
        while ledger.counts()["messages"] < len(msgs) // 3:
            assert time.monotonic() < deadline, "the ledger worker wrote too little"
            time.sleep(0.05)
        os.kill(workers.procs["ledger"].pid, signal.SIGKILL)  # mid-run
        workers.procs["ledger"].wait()
        port = free_port()
        workers.start("ledger", "--port", str(port))
        deadline = time.monotonic() + 90
        while ledger.counts()["messages"] < len(msgs):
            assert time.monotonic() < deadline, f"{ledger.counts()} of {len(msgs)} messages"
            time.sleep(0.2)
        time.sleep(2)  # nothing more may arrive
        start, end = datetime(2026, 9, 1, tzinfo=SH), datetime(2026, 12, 1, tzinfo=SH)
        cases = list(ledger.cases(start, end))
        assert ledger.counts() == {"cases": len(cases), "messages": len(msgs)}
        # the worker serves the citizens' lookup (with the case's check code)
        url = f"http://127.0.0.1:{port}/cases/{cases[0]['tracking_no']}?code={ledger.get(cases[0]['tracking_no'])['check_code']}"
        assert json.loads(_get(url, within=60))["tracking_no"] == cases[0]["tracking_no"]
        return cases
    finally:
        workers.stop_all()
        ledger.dispose()
        rt.journal.close()


def test_a_scripted_month_in_sqlite_and_postgresql(tmp_path, bootstrap, workers, pg_schema):
    config = load(write_config(tmp_path / "plan", bootstrap))
    msgs = traffic(config)
    url, schema = pg_schema
    lite = run_ledger(tmp_path, bootstrap, workers, "sqlite", {}, msgs)
    pg = run_ledger(tmp_path, bootstrap, workers, "pg", {"url": f"{url}?options=-csearch_path%3D{schema}"}, msgs)

    def key(c):
        return (c["office_id"], tuple(sorted(c["message_ids"])), c["received_at"], c["answer_due"],
                c["first_response_due"])

    assert sorted(map(key, lite)) == sorted(map(key, pg))
    repeats = [m for m in msgs if m["channel"] == "hotline"]  # only the repeats come by the hotline
    assert len(lite) == len(msgs) - len(repeats)  # every repeat merged, nothing else
    merged = {mid for c in lite for mid in c["message_ids"] if c["duplicates"]}
    assert {m["id"] for m in repeats} <= merged
    assert len({c["tracking_no"] for c in pg}) == len(pg)

    by_msg = {c["message_ids"][0]: c for c in lite}
    for k, ((at, _), (first, answer)) in enumerate(ANCHORS.items()):
        c = by_msg[expected_id("webform", f"a{k}")]
        assert (c["first_response_due"], c["answer_due"]) == (
            datetime.fromisoformat(first).replace(tzinfo=SH), datetime.fromisoformat(answer).replace(tzinfo=SH)), at

    start, end = period("2026-10", None, None, SH)
    rep = build(lite, start, end, datetime(2026, 11, 22, tzinfo=SH))
    october = [c for c in lite if start <= c["received_at"] < end]
    assert rep.total.received == len(october) == sum(r.received for r in rep.offices.values())
    assert rep.total.overdue == len(october)  # nobody answered: every October case is past its deadline


def _get(url: str, within: float) -> bytes:
    """The answer once the restarted worker serves (it may have caught up before it listens)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return urllib.request.urlopen(url, timeout=10).read()
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
