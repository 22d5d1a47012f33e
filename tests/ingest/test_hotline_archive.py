"""Published transcripts leave the drop folder for a dated archive, against the real broker:
a restart neither reads an archived file again nor loses one that was published but not yet
moved, the checkpoint holds only what is in flight, and old archive days are deleted."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.kafka_util import read_values
from wenzheng.core.delivery import Publisher
from wenzheng.core.kafka import producer as make_producer
from wenzheng.ingest.hotline import HotlineConnector


class Killed(BaseException):
    """The worker dies where this is raised (run_once catches Exceptions, not this)."""


@pytest.fixture
def connect(runtime):
    """Connectors on the same state directory: each call is the worker started again."""
    made = []

    def make() -> HotlineConnector:
        c = HotlineConnector(runtime, Publisher(runtime.settings, make_producer(runtime.settings), runtime.journal,
                                                "ingest.hotline"))
        made.append(c)
        return c

    yield make
    for c in made:
        c.publisher.close()


def drop(folder, *call_ids: str, bad: bool = False) -> None:
    """Transcripts written a minute ago (settled)."""
    past = time.time() - 60
    for cid in call_ids:
        doc = {"call_id": cid, "turns": [{"speaker": "citizen", "text": f"{cid}：南康区唐江镇停水两天了"}]}
        path = folder / f"{cid}.json"
        path.write_text("{" if bad else json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        os.utime(path, (past, past))


def today(c: HotlineConnector, days_ago: int = 0) -> str:
    return (datetime.now(ZoneInfo(c.runtime.settings.city.timezone)).date() - timedelta(days=days_ago)).isoformat()


def intake(c: HotlineConnector) -> Counter[str]:
    """The intake records by the call's id (``source_id``: intake records carry it; ids are keyed)."""
    return Counter(v["source_id"] for v in read_values(c.runtime.settings.kafka.bootstrap_servers[0],
                                                       c.runtime.topics.intake))


def test_published_files_are_archived_and_unreadable_ones_quarantined(connect):
    c = connect()
    drop(c.dir, *(f"A{i:03d}" for i in range(250)))
    drop(c.dir, "broken", bad=True)
    assert c.run_once() == 250
    assert sorted(p.name for p in c.dir.iterdir()) == ["archive", "quarantine"]
    assert len(list((c.dir / "archive" / today(c)).iterdir())) == 250
    assert {p.name for p in (c.dir / "quarantine").iterdir()} == {"broken.json", "broken.json.reason.txt"}
    assert c.checkpoint.state == {"files": {}} and c.checkpoint.path.stat().st_size < 100
    saved = c.checkpoint.path.stat().st_mtime_ns
    assert c.run_once() == 0 and c.checkpoint.path.stat().st_mtime_ns == saved  # idle: not rewritten
    assert set(intake(c)) == {f"A{i:03d}" for i in range(250)}


def test_a_restart_neither_rereads_archived_files_nor_loses_unarchived_ones(connect):
    first = connect()
    drop(first.dir, "R1", "R2", "R3")

    def die(*_):
        raise Killed  # after Kafka acknowledged the page, before any file moved

    first._acked = die
    with pytest.raises(Killed):
        first.poll()
    assert {p.name for p in first.dir.iterdir()} == {"R1.json", "R2.json", "R3.json"}

    again = connect()  # the worker restarted: the files are read again, recognised by the journal, archived
    again.run_once()
    assert again.publisher.skipped == 3
    assert sorted(p.name for p in (again.dir / "archive" / today(again)).iterdir()) == ["R1.json", "R2.json",
                                                                                         "R3.json"]
    drop(again.dir, "R4")
    assert connect().run_once() == 1  # only the new file: archived ones are never listed
    assert intake(again) == Counter({"R1": 1, "R2": 1, "R3": 1, "R4": 1})


def test_a_file_that_could_not_be_moved_stays_in_the_checkpoint_and_is_archived_later(connect):
    c = connect()
    drop(c.dir, "M1", "M2")

    def refuse(day: int, name: str) -> str:
        raise PermissionError(13, "Permission denied")  # the archive folder is not writable

    c._free_name = refuse
    assert c.run_once() == 2
    assert set(c.checkpoint.state["files"]) == {"M1.json", "M2.json"}
    saved = c.checkpoint.path.stat().st_mtime_ns
    assert c.run_once() == 0 and c.checkpoint.path.stat().st_mtime_ns == saved  # not read again while it waits
    again = connect()  # the folder writable again (a restart, here)
    assert again.run_once() == 0 and again.publisher.skipped == 0  # archived, not read
    assert sorted(p.name for p in (c.dir / "archive" / today(c)).iterdir()) == ["M1.json", "M2.json"]
    assert json.loads(c.checkpoint.path.read_text())["state"] == {"files": {}}
    assert intake(c) == Counter({"M1": 1, "M2": 1})


def test_a_format_1_checkpoint_migrates_and_its_files_are_archived_unread(connect, runtime):
    folder = Path(runtime.settings.channels.hotline.drop_dir)
    folder.mkdir(parents=True, exist_ok=True)
    drop(folder, "OLD1", "OLD2", "NEW1")
    files = {n: {"size": (folder / n).stat().st_size, "mtime_ns": (folder / n).stat().st_mtime_ns,
                 "id": f"hotline:{n[:-5]}"} for n in ("OLD1.json", "OLD2.json")}
    files["GONE.json"] = {"size": 1, "mtime_ns": 1, "id": "hotline:GONE"}
    path = runtime.state_dir / "checkpoints" / "hotline.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "state": {"files": files}}), encoding="utf-8")
    c = connect()
    assert json.loads(path.read_text())["version"] == 2
    assert c.run_once() == 1  # NEW1 only: OLD1 and OLD2 were published under format 1
    assert sorted(p.name for p in (c.dir / "archive" / today(c)).iterdir()) == ["NEW1.json", "OLD1.json",
                                                                                 "OLD2.json"]
    assert c.checkpoint.state == {"files": {}}
    assert intake(c) == Counter({"NEW1": 1})


def test_old_archive_days_are_deleted_and_zero_days_keeps_nothing(connect):
    c = connect()
    for day in (today(c, 31), today(c, 30), today(c, 29), "2001-01-01", "notes"):
        (c.dir / "archive" / day).mkdir(parents=True)
        (c.dir / "archive" / day / "x.json").write_text("{}", encoding="utf-8")
    assert c.run_once() == 0
    assert sorted(p.name for p in (c.dir / "archive").iterdir()) == sorted([today(c, 30), today(c, 29), "notes"])

    gone = connect()
    gone.cfg = gone.cfg.model_copy(update={"archive_days": 0})
    drop(gone.dir, "Z1")
    assert gone.run_once() == 1
    assert not (gone.dir / "Z1.json").exists() and not (gone.dir / "archive" / today(gone)).exists()
    assert sorted(p.name for p in (gone.dir / "archive").iterdir()) == ["notes"]  # earlier days: past 0 days


def test_a_link_planted_as_the_archive_folder_is_moved_aside(connect, tmp_path):
    c = connect()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "2001-01-01").mkdir(parents=True)
    (elsewhere / "2001-01-01" / "keep.txt").write_text("mine", encoding="utf-8")
    os.symlink(elsewhere, c.dir / "archive")
    drop(c.dir, "L1")
    assert c.run_once() == 1
    assert (elsewhere / "2001-01-01" / "keep.txt").exists()  # the sweep followed no link
    assert sorted(p.name for p in elsewhere.iterdir()) == ["2001-01-01"]  # nothing moved through it
    assert (c.dir / "archive").is_dir() and not (c.dir / "archive").is_symlink()
    assert (c.dir / "archive" / today(c) / "L1.json").exists()
