"""A channel and a sink from a test module, through the registry and a real `wenzheng up`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import expected_id, write_config
from wenzheng.app.cli import main
from wenzheng.config import ConfigError, load


def toy_config(tmp_path: Path, count: int = 5) -> Path:
    cfg = write_config(tmp_path, None)
    runtime = yaml.safe_load((cfg / "runtime.yaml").read_text(encoding="utf-8"))
    (cfg / "runtime.yaml").write_text(yaml.safe_dump({**runtime, "plugins": ["tests.plugins.toy"]}), encoding="utf-8")
    channels = yaml.safe_load((cfg / "channels.yaml").read_text(encoding="utf-8"))
    channels["channels"]["toy"] = {"enabled": True, "count": count}
    (cfg / "channels.yaml").write_text(yaml.safe_dump(channels, allow_unicode=True), encoding="utf-8")
    return cfg


def test_a_plugin_channel_section_is_validated_by_its_own_model(tmp_path):
    cfg = toy_config(tmp_path)
    assert load(cfg).settings.channels.toy.count == 5
    text = (cfg / "channels.yaml").read_text(encoding="utf-8").replace("count: 5", "count: many")
    (cfg / "channels.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"channels\.yaml: channels: .*toy\.count"):
        load(cfg)


def test_an_unregistered_channel_section_is_refused_by_name(tmp_path):
    cfg = write_config(tmp_path, None)
    (cfg / "channels.yaml").write_text("channels:\n  telegram: {enabled: true}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown channel 'telegram'"):
        load(cfg)


def test_topology_lists_the_plugins_channel_and_sink(tmp_path, capsys):
    assert main(["topology", "--json", "--config", str(toy_config(tmp_path))]) == 0
    topo = json.loads(capsys.readouterr().out)
    assert {"name": "toy", "mode": "poll", "enabled": True} .items() <= next(
        c for c in topo["channels"] if c["name"] == "toy").items()
    sink = next(s for s in topo["stages"] if s["name"] == "toysink")
    assert sink["kind"] == "sink" and sink["inputs"][0].endswith("routed")
    assert [s["name"] for s in topo["stages"]][:4] == ["ingest", "classify", "route", "ledger"]


@pytest.mark.slow
def test_up_runs_a_plugin_channel_and_sink_end_to_end(tmp_path):
    cfg = toy_config(tmp_path, count=6)
    out = tmp_path / "state" / "toysink.jsonl"
    up = subprocess.Popen([sys.executable, "-m", "wenzheng.app", "up", "--port", "0", "--duration", "150",
                           "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(_lines(out)) < 6:
            time.sleep(1)
    finally:
        up.send_signal(signal.SIGINT)
        printed, _ = up.communicate(timeout=60)
    rows = _lines(out)
    assert sorted(r["id"] for r in rows) == sorted(expected_id("toy", f"T{i:04d}") for i in range(6)), printed[-3000:]
    assert "toysink" in printed  # up started the plugin's stage as a worker of its own


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
