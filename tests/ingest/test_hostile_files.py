"""The drop folder as an attacker fills it, against the real broker: every poison kind that
used to block the folder, a symlink to a secret outside it, a FIFO, a 3 MB transcript, and
good files behind them. One poll publishes every good file, dead-letters every bad one with
a masked reason, follows no link, and never backs the connector off."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.conftest import expected_id
from tests.kafka_util import read_values
from wenzheng.core.delivery import Publisher
from wenzheng.core.kafka import producer as make_producer
from wenzheng.ingest.base import MAX_VALUE_BYTES
from wenzheng.ingest.hotline import HotlineConnector

PHONE = "13907971234"  # in every poison file: no dead letter may quote it unmasked
SECRET = "WZ_FAKE_SECRET=hunter2-7f3a9c"


def call(call_id: str, **fields) -> bytes:
    doc = {"call_id": call_id, "started_at": "2026-11-22 09:15:03", "caller_number": PHONE,
           "turns": [{"speaker": "agent", "text": "您好，12345"}, {"speaker": "citizen", "text": "南康区唐江镇路灯不亮"}]}
    return json.dumps(doc | fields, ensure_ascii=False).encode()


POISON = {
    "deep.json": b'{"call_id": "deep", "turns": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "speaker.json": call("speaker", turns=[{"speaker": 7, "text": f"我的电话{PHONE}"}]),
    "bigint.json": call("bigint").replace(b'"2026-11-22 09:15:03"', b"9" * 5000),
    "field.csv": ("call_id,speaker,text\nF1,citizen," + f"电话{PHONE}" + "长" * 140_000 + "\n").encode(),
    "surrogate.json": call("surrogate").replace("路灯".encode(), b"\\ud800"),
    "turn.json": call("turn", turns=[{"speaker": "citizen", "text": {"nested": PHONE}}]),
    "notobject.json": b"[1, 2, 3]",
    "deepraw.json": call("deepraw").replace(b'"turns"', b'"extra": ' + b"[" * 300 + b"]" * 300 + b', "turns"'),
}


@pytest.fixture
def hotline(runtime):
    c = HotlineConnector(runtime, Publisher(runtime.settings, make_producer(runtime.settings), runtime.journal,
                                            "ingest.hotline"))
    yield c
    c.publisher.close()


def drop(folder, name: str, data: bytes) -> None:
    (folder / name).write_bytes(data)


def settle(folder, seconds: float) -> None:
    """Age every file in the folder, as if written ``seconds`` ago."""
    past = time.time() - seconds
    for p in folder.iterdir():
        if p.is_file() and not p.is_symlink():
            os.utime(p, (past, past))


def plant(folder, outside) -> None:
    (outside / "secret.txt").write_text(SECRET + "\n", encoding="utf-8")
    os.symlink(outside / "secret.txt", folder / "secret.json")
    os.symlink("/proc/self/environ", folder / "environ.json")
    os.mkfifo(folder / "pipe.json")
    os.mkdir(folder / "folder.json")
    for name, data in POISON.items():
        drop(folder, name, data)
    drop(folder, b"bad\xffname.json".decode("utf-8", "surrogateescape"), call("badname"))


def test_poison_never_blocks_the_folder_and_no_link_is_followed(hotline, bootstrap, tmp_path):
    folder, outside = hotline.dir, tmp_path / "outside"
    outside.mkdir()
    plant(folder, outside)
    big = "市民反映：" + "章贡区红旗大道夜间施工噪音扰民，" * 70_000  # ~3 MB of UTF-8
    drop(folder, "big.json", call("big", turns=[{"speaker": "citizen", "text": big}]))
    drop(folder, "odd.json", call("odd", duration=int("9" * 19)).replace(b'"duration": 9', b'"duration": ' + b"9" * 5000))
    good = {f"good{i:02d}.json": f"C{i:02d}" for i in range(40)} | {f"good{i:02d}.csv": f"V{i:02d}" for i in range(10)}
    for name, cid in good.items():
        drop(folder, name, call(cid) if name.endswith(".json") else
             f"call_id,speaker,text\n{cid},agent,请讲\n{cid},citizen,路灯坏了\n".encode("gb18030"))
    settle(folder, 5)

    started = time.monotonic()
    published = hotline.run_once()
    assert time.monotonic() - started < 20
    assert hotline._backoff == 0.0 and hotline._resume_at == 0.0  # nothing backed the connector off
    assert published == len(good) + 2  # the good ones, the 3 MB one (cut) and the odd one

    intake = {v["id"]: v for v in read_values(bootstrap, hotline.runtime.topics.intake)}
    assert set(intake) == {expected_id("hotline", cid) for cid in [*good.values(), "big", "odd"]}
    text = intake[expected_id("hotline", "big")]["text"]
    assert text.startswith("市民反映：") and text.endswith(f"…[截断：原文 {len(big)} 字]")
    assert len(text) == hotline.max_text_chars and intake[expected_id("hotline", "big")]["raw"] == {"file": "big.json",
                                                                                     "_omitted": ["call"]}
    assert len(json.dumps(intake[expected_id("hotline", "big")], ensure_ascii=False).encode()) < MAX_VALUE_BYTES

    dead = {v["source"]["file"]: v for v in read_values(bootstrap, hotline.runtime.topics.deadletter)}
    bad_name = "bad\\udcffname.json"
    assert set(dead) == {*POISON, "secret.json", "environ.json", "pipe.json", "folder.json", bad_name}
    reasons = {name: d["reason"] for name, d in dead.items()}
    assert "nested too deep" in reasons["deep.json"] and "unknown speaker" in reasons["speaker.json"]
    assert "bad started_at" in reasons["bigint.json"] and "field larger than field limit" in reasons["field.csv"]
    assert "surrogates not allowed" in reasons["surrogate.json"] and "Recursion limit" in reasons["deepraw.json"]
    assert reasons["secret.json"] == "a symbolic link, not a regular file: never opened"
    assert reasons["pipe.json"] == "a FIFO, not a regular file: never opened"
    assert dead["secret.json"]["source"] == {"file": "secret.json", "moved_to": "quarantine/secret.json",
                                             "kind": "symbolic link"}  # no "quarantine": a re-feed reads nothing
    assert dead["secret.json"]["excerpt"] == "" and dead["environ.json"]["excerpt"] == ""
    assert dead["deep.json"]["source"]["quarantine"] == "quarantine/deep.json"
    assert PHONE not in json.dumps(list(dead.values()), ensure_ascii=False)

    topics = hotline.runtime.journal.db.query("SELECT DISTINCT topic FROM delivery WHERE stage='ingest.hotline'")
    assert {t for (t,) in topics} == {hotline.runtime.topics.intake, hotline.runtime.topics.deadletter}
    everything = json.dumps([intake, dead], ensure_ascii=False)  # all it wrote, anywhere
    assert "hunter2" not in everything and "PATH=" not in everything

    quarantine = folder / "quarantine"
    assert os.path.islink(quarantine / "secret.json") and (outside / "secret.txt").read_text() == SECRET + "\n"
    assert (quarantine / "pipe.json").is_fifo() and (quarantine / "folder.json").is_dir()
    assert (quarantine / "deep.json.reason.txt").read_text(encoding="utf-8").startswith("bad JSON: nested too deep")
    assert {p.name for p in folder.iterdir()} == {"quarantine", "archive"}  # published: archived
    assert {p.name for day in (folder / "archive").iterdir() for p in day.iterdir()} == {"big.json", "odd.json",
                                                                                         *good}

    assert hotline.run_once() == 0 and len(read_values(bootstrap, hotline.runtime.topics.deadletter)) == len(dead)


def test_a_link_planted_as_the_quarantine_folder_is_moved_aside(hotline, bootstrap, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, hotline.dir / "quarantine")
    (hotline.dir / "quarantine.json").write_bytes(b"not json")  # hidden under no name the link covers
    os.symlink(tmp_path / "nowhere", hotline.dir / "x.json.reason.txt")
    drop(hotline.dir, "x.json", b"{")
    settle(hotline.dir, 5)
    assert hotline.run_once() == 0 and hotline._backoff == 0.0
    assert list(elsewhere.iterdir()) == []  # nothing went through the link
    assert (hotline.dir / "quarantine").is_dir() and not (hotline.dir / "quarantine").is_symlink()
    assert {p.name for p in (hotline.dir / "quarantine").iterdir()} == {"x.json", "x.json.reason.txt",
                                                                        "quarantine.json", "quarantine.json.reason.txt"}
    assert [p for p in hotline.dir.iterdir() if p.name.startswith(".quarantine-not-a-folder-")]
    assert not (tmp_path / "nowhere").exists()


def test_a_file_swapped_for_a_link_after_the_scan_is_not_read(hotline, tmp_path):
    drop(hotline.dir, "late.json", call("late"))
    settle(hotline.dir, 5)
    (entry,) = hotline.ready_files({})
    (tmp_path / "secret.txt").write_text(SECRET, encoding="utf-8")
    os.replace(hotline.dir / "late.json", tmp_path / "moved.json")
    os.symlink(tmp_path / "secret.txt", hotline.dir / "late.json")
    folder = os.open(hotline.dir, os.O_RDONLY)
    try:
        page, quarantined = hotline._read(folder, [entry], {})
    finally:
        os.close(folder)
    assert page.envelopes == [] and quarantined == [("late.json", "a symbolic link, not a regular file: never opened")]
    assert SECRET not in json.dumps([o.value for o in page.dead], ensure_ascii=False)
    assert page.dead[0].value["source"]["kind"] == "symbolic link"
