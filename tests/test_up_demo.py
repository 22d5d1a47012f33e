"""The README's run command: `wenzheng up --demo` shows cases in office queues within 60 s."""

import re
import subprocess
import sys

import pytest

from tests.conftest import write_config

pytestmark = pytest.mark.slow


def test_up_demo_routes_cases_within_a_minute_and_stops_cleanly(tmp_path, tiny_model):
    # no bootstrap servers: up starts its own embedded broker; the session's model spares the
    # baseline's training (measured apart: `./dev bench first-case` starts from nothing)
    cfg = write_config(tmp_path, None, classifier={"model_dir": str(tiny_model)})
    out = subprocess.run([sys.executable, "-m", "wenzheng.app", "up", "--demo", "--duration", "40", "--rate", "4",
                          "--config", str(cfg)], capture_output=True, text=True, timeout=150, encoding="utf-8")
    assert out.returncode == 0, out.stderr[-2000:]
    first = [float(x) for x in re.findall(r"first routed case after ([0-9.]+)s", out.stdout)]
    assert first and first[-1] < 60
    routed, triage = map(int, re.findall(r"routed to offices\s+(\d+)\s+triage\s+(\d+)", out.stdout)[-1])
    assert routed > 0 and routed + triage >= 20
    channels = dict(re.findall(r"(\w+) (\d+)", re.findall(r"by channel: (.*)", out.stdout)[-1]))
    assert int(channels.get("hotline", 0)) > 0 and int(channels.get("wechat", 0)) > 0
    assert re.search(r"\d+\s+\S+(局|委员会|办公室|中心)\s+\(\S+\.office\.", out.stdout)  # offices by name
    assert re.search(r"latest cases.*\n\s+GZ\d{8}-\d{6}\s", out.stdout)  # a tracking number to try `case show` on
    logs = tmp_path / "state" / "logs"
    for stage in ("ingest", "classify", "route"):
        assert "stopped" in (logs / f"{stage}.log").read_text(encoding="utf-8")  # SIGTERM, not killed
