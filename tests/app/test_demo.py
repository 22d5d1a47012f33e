"""The demo starts from a clean drop folder: a new embedded broker would publish an earlier run's calls again."""

from __future__ import annotations

import threading

from tests.conftest import write_config
from wenzheng.app.demo import Feeder
from wenzheng.config import load


def test_the_feeder_clears_an_earlier_demos_calls_and_nothing_else(tmp_path):
    settings = load(write_config(tmp_path, None)).settings
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "DEMO-20261201-00001.json").write_text("{}", encoding="utf-8")
    (drop / "GZ12345-real-call.json").write_text("{}", encoding="utf-8")
    stop = threading.Event()
    stop.set()  # clear, then stop before sending anything
    Feeder(settings, ingest_port=1).run(stop, rate=1)
    assert sorted(p.name for p in drop.iterdir()) == ["GZ12345-real-call.json"]
