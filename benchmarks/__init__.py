"""Benchmarks: `./dev bench` (or `python -m benchmarks`). Figures, not pass/fail."""

import shutil
from pathlib import Path

import yaml

from wenzheng.app.broker import free_port
from wenzheng.config import DEFAULT_DIR

PRIVACY = {"pseudonym_key": "benchmark-key-not-a-secret"}
"""The ``privacy`` section of every benchmark's configuration: workers refuse to start without a key."""


def city_config(root: Path, bootstrap: str, channels: dict) -> Path:
    """The packaged city under ``root/config``, on ``bootstrap``, with its own state directory,
    a free HTTP port, the benchmarks' pseudonym key and ``channels`` as channels.yaml."""
    cfg = root / "config"
    cfg.mkdir(parents=True)
    for f in DEFAULT_DIR.glob("*.yaml"):
        shutil.copy(f, cfg / f.name)
    runtime = {"kafka": {"bootstrap_servers": [bootstrap]}, "http": {"port": free_port()},
               "state": {"dir": str(root / "state")}, "privacy": PRIVACY}
    (cfg / "runtime.yaml").write_text(yaml.safe_dump(runtime), encoding="utf-8")
    (cfg / "channels.yaml").write_text(yaml.safe_dump({"channels": channels}, allow_unicode=True), encoding="utf-8")
    return cfg
