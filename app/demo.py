"""Sample traffic for `wenzheng up --demo`: the packaged corpus, each message sent
through the channel it was written for — 12345 call transcripts dropped as files,
WeChat pushes signed and encrypted to our own callback, and (where their fakes are
present) Weibo mentions and web-form submissions served by fake upstreams on
127.0.0.1 that the connectors poll."""

from __future__ import annotations

import json
import logging
import random
import re
import secrets
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path

import yaml

from wenzheng.core.envelope import iso

log = logging.getLogger(__name__)

_TURN = re.compile(r"(坐席|话务员|客服|接线员|市民|来电人)\s*[:：]")
DEMO_TOKEN = "wenzhengdemo"
DEMO_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as WeChat issues them
DEMO_APPID = "wxdemo00000000000"


def to_call(row: dict, i: int) -> dict:
    """A transcript with speaker turns (split where the corpus text marks them)."""
    text = row["text"]
    parts = _TURN.split(text)
    turns = []
    if len(parts) > 1:
        for who, words in zip(parts[1::2], parts[2::2], strict=False):
            if words.strip():
                turns.append({"speaker": "agent" if who in ("坐席", "话务员", "客服", "接线员") else "citizen",
                              "text": words.strip()})
    if not any(t["speaker"] == "citizen" for t in turns):
        turns = [{"speaker": "agent", "text": "您好，12345政务服务便民热线，请讲。"},
                 {"speaker": "citizen", "text": text}]
    return {
        "call_id": f"DEMO-{i:05d}",
        "started_at": iso(datetime.now()),
        "caller_number": f"139{7970000 + i * 7919 % 10000:08d}"[:11],
        "title": row.get("title") or "",
        "turns": turns,
    }


def samples() -> list[dict]:
    from wenzheng.classify.model import corpus_files, read_labelled

    rows = read_labelled(corpus_files())
    random.Random(7).shuffle(rows)
    return rows


def demo_config(config_dir: Path, out: Path) -> Path:
    """The user's configuration with a demo WeChat account (safe mode) enabled and a random
    pseudonym key of this run's own, so ``up --demo`` needs nothing set: the demo's broker,
    and so its state, are new each run (the key file is the owner's only)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(config_dir, out)
    _update(out / "channels.yaml", "channels", wechat={"enabled": True, "accounts": {"demo": {
        "appid": DEMO_APPID, "token": DEMO_TOKEN, "encoding_aes_key": DEMO_AES_KEY, "name": "问政赣州（演示）"}}})
    _update(out / "runtime.yaml", "privacy", pseudonym_key=secrets.token_hex(32)).chmod(0o600)
    return out


def _update(path: Path, section: str, **values: object) -> Path:
    """Set ``values`` in ``section`` of one YAML file of the copied configuration."""
    doc = (yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None) or {}
    doc[section] = {**(doc.get(section) or {}), **values}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class Feeder:
    """Sends one corpus message after another through its channel, at ``rate`` per second."""

    def __init__(self, settings, ingest_port: int):
        self.drop = Path(settings.channels.hotline.drop_dir).expanduser()
        self.wechat_url = f"http://127.0.0.1:{ingest_port}/wechat/demo"
        self.sent: dict[str, int] = {}

    def run(self, stop: threading.Event, rate: float) -> None:
        from wenzheng.ingest.fakes.wechat import PushClient, text_xml

        self.drop.mkdir(parents=True, exist_ok=True)
        for old in self.drop.glob("DEMO-*.json"):  # an earlier demo's calls: a new broker would take them again
            old.unlink(missing_ok=True)
        push = PushClient(self.wechat_url, DEMO_TOKEN, DEMO_APPID, DEMO_AES_KEY)
        run = time.strftime("%Y%m%d%H%M%S")
        for i, row in enumerate(samples()):
            if stop.is_set():
                return
            channel = "wechat" if row.get("channel") in ("wechat", "weibo") else "hotline"
            try:
                if channel == "wechat":
                    status, _ = push.push(text_xml(row["text"], msg_id=int(run) * 100000 + i,
                                                   from_user=f"oDEMO{i % 97:04d}"), encrypt=True)
                    if status != 200:
                        raise OSError(f"callback answered {status}")
                else:
                    call = dict(to_call(row, i), call_id=f"DEMO-{run}-{i:05d}")
                    tmp = self.drop / f".{call['call_id']}.json.tmp"
                    tmp.write_text(json.dumps(call, ensure_ascii=False), encoding="utf-8")
                    tmp.replace(self.drop / f"{call['call_id']}.json")  # appears complete, never half-written
                self.sent[channel] = self.sent.get(channel, 0) + 1
            except OSError as exc:  # the ingest worker is (re)starting: WeChat would retry too
                log.info("demo %s message not delivered yet: %s", channel, exc)
            stop.wait(1 / rate)


DEMO_ACCOUNTS = (("dispatcher", "dispatcher", None), ("clerk", "clerk", "360702-cgj"),
                 ("supervisor", "supervisor", None))
"""The demo's console accounts: the 问政办's dispatcher, a clerk of 章贡区城市管理局 (the office
most demo messages reach), a supervisor. Made by ``up --demo`` only."""


def demo_accounts(config, state: Path, console_url: str) -> list[str]:
    """Create (or reset) the demo accounts with new random passwords; the lines to print once.
    They are kept in ``<state>/demo-accounts.txt`` (owner-only) too, since the live summary
    redraws the screen over them."""
    from wenzheng.sinks.accounts import Accounts, new_password
    from wenzheng.sinks.cases import Ledger

    ledger = Ledger.from_settings(config.settings)
    accounts = Accounts.from_settings(ledger.engine, config.settings)
    lines = [f"console {console_url}  (citizens: {console_url.replace('/console/', '/track')})",
             "demo accounts — this run only, never for real use:"]
    try:
        for name, role, office in DEMO_ACCOUNTS:
            if office and office not in config.offices.offices:
                continue
            password = new_password()
            if any(a["name"] == name for a in accounts.list()):
                accounts.reset(name, password)
            else:
                accounts.add(name, role, password, office)
            where = f" ({config.offices.offices[office].name})" if office else ""
            lines.append(f"  {name:11s} {password}  {role}{where}")
    finally:
        ledger.dispose()
    path = state / "demo-accounts.txt"
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [*lines, f"  (also in {path})"]
