"""What an ingest worker costs once the 12345 drop folder has taken 20,000 calls.

    python -m benchmarks hotline-idle [--files 20000] [--idle-seconds 60]

A real ``wenzheng worker ingest`` process (the hotline channel alone, polled every
2 s as configured by default) on the embedded broker. Its CPU is read from
``/proc/<pid>/stat`` over ``--idle-seconds`` twice: idle with an empty folder
(the worker's own floor: scheduler, broker checks, Kafka client), then idle after
``--files`` transcripts were dropped, published and archived. Figures, printed as JSON:

* ``idle_cpu_percent_empty`` / ``idle_cpu_percent_after``: 100 % is one core.
  Before published files left the folder, the second was 17 %.
* ``checkpoint_bytes`` and whether the idle minute rewrote it (it was 1.9 MB,
  rewritten and fsync'd at every poll).
* ``files_left_in_drop_folder`` / ``files_archived``.
* ``journal_rows``: the delivery journal's rows after publishing, after the hourly
  prune with the configured retention (14 days: nothing is that old yet), and after
  a prune with retention 0 — what is left once the ids are past retention, i.e. the
  journal holds at most the last ``dedup_retention_days`` of ids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from benchmarks import city_config
from wenzheng.app.broker import EmbeddedBroker
from wenzheng.app.demo import to_call
from wenzheng.classify.model import corpus_files, read_labelled
from wenzheng.config import load
from wenzheng.core.runtime import Runtime

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def idle_cpu_percent(pid: int, seconds: float) -> float:
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return round(100 * (cpu_seconds(pid) - before) / (time.monotonic() - t0), 2)


def _config(root: Path, bootstrap: str) -> Path:
    return city_config(root, bootstrap, {"hotline": {"drop_dir": str(root / "drop"), "settle_seconds": 0.2},
                                         "webform": {"enabled": False}})


def _drop(folder: Path, n: int) -> None:
    rows = read_labelled(corpus_files())
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        call = dict(to_call(rows[i % len(rows)], i), call_id=f"IDLE-{i:06d}")
        tmp = folder / f".{call['call_id']}.tmp"
        tmp.write_text(json.dumps(call, ensure_ascii=False), encoding="utf-8")
        tmp.rename(folder / f"{call['call_id']}.json")


class Count:
    """Records in a topic, followed from its start without a group (the embedded broker's
    ``end_offsets`` undercount: tests/kafka_util.py)."""

    def __init__(self, rt: Runtime, topic: str) -> None:
        self.c = KafkaConsumer(bootstrap_servers=rt.bootstrap, group_id=None, enable_auto_commit=False,
                               auto_offset_reset="earliest")
        self.c.assign([TopicPartition(topic, p) for p in self.c.partitions_for_topic(topic) or []])
        self.c.seek_to_beginning()
        self.n = 0

    def __call__(self) -> int:
        while batch := self.c.poll(timeout_ms=500, max_records=10_000):
            self.n += sum(len(records) for records in batch.values())
        return self.n

    def close(self) -> None:
        self.c.close()


def _wait(what: str, done, timeout: float) -> float:
    t0 = time.monotonic()
    while not done():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what} not done after {timeout:.0f}s")
        time.sleep(1)
    return time.monotonic() - t0


def _journal_rows(rt: Runtime) -> dict:
    def count() -> int:
        return int(rt.journal.db.query("SELECT COUNT(*) FROM delivery")[0][0])

    published, retention = count(), rt.settings.state.dedup_retention_days
    rt.prune()  # what the worker's hourly job does
    hourly = count()
    state = rt.settings.state.model_copy(update={"dedup_retention_days": 0})
    rt.settings = rt.settings.model_copy(update={"state": state})
    rt.prune()
    return {"after_publishing": published, "after_hourly_prune": hourly, "after_prune_past_retention": count(),
            "retention_days": retention}


def _measure(rt: Runtime, pid: int, drop: Path, files: int, idle_seconds: float) -> dict:
    time.sleep(5)  # started, first polls done
    empty = idle_cpu_percent(pid, idle_seconds)
    t0 = time.monotonic()
    _drop(drop, files)
    written = time.monotonic() - t0
    intake, dead = Count(rt, rt.topics.intake), Count(rt, rt.topics.deadletter)
    _wait("publishing", lambda: intake() >= files, 600)
    published = time.monotonic() - t0
    _wait("archiving", lambda: not any(p.suffix == ".json" for p in drop.iterdir()), 120)
    checkpoint = rt.state_dir / "checkpoints" / "hotline.json"
    time.sleep(5)
    stamp = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
    after = idle_cpu_percent(pid, idle_seconds)
    archived = sum(1 for day in (drop / "archive").iterdir() for _ in day.iterdir())
    figures = {
        "files": files, "seconds_writing": round(written, 1), "seconds_to_publish": round(published, 1),
        "idle_seconds": idle_seconds, "idle_cpu_percent_empty": empty, "idle_cpu_percent_after": after,
        "checkpoint_bytes": checkpoint.stat().st_size if checkpoint.exists() else 0,
        "checkpoint_rewritten_while_idle": checkpoint.exists() and checkpoint.stat().st_mtime_ns != stamp,
        "files_left_in_drop_folder": sum(1 for p in drop.iterdir() if p.is_file()), "files_archived": archived,
        "published": intake(), "dead_letters": dead(), "worker_rss_mb": rss_mb(pid),
        "journal_rows": _journal_rows(rt), "cores": os.cpu_count(),
    }
    intake.close()
    dead.close()
    return figures


def run(files: int = 20_000, idle_seconds: float = 60.0) -> dict:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        root = Path(tmp)
        cfg = _config(root, broker.bootstrap)
        rt = Runtime(load(cfg)).connect()
        with open(root / "ingest.log", "ab") as log:
            worker = subprocess.Popen([sys.executable, "-m", "wenzheng.app", "worker", "ingest", "--config", str(cfg),
                                       "--port", "0"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            return _measure(rt, worker.pid, root / "drop", files, idle_seconds)
        finally:
            worker.terminate()
            worker.wait(30)
            rt.journal.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="benchmarks.hotline_idle")
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--idle-seconds", type=float, default=60.0)
    args = p.parse_args(argv)
    json.dump({"hotline_idle": run(args.files, args.idle_seconds)}, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
