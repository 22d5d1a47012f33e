"""The embedded broker dies under a running `wenzheng up`: up starts it again, the workers
notice it lost everything, say so on /healthz, recreate the topics and carry on — no human."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import write_config
from wenzheng.app.demo import to_call
from wenzheng.config import load
from wenzheng.sinks.cases import Ledger

pytestmark = pytest.mark.slow


class Up:
    """`wenzheng up` in a subprocess, its output read as it comes."""

    def __init__(self, cfg):
        self.proc = subprocess.Popen([sys.executable, "-m", "wenzheng.app", "up", "--port", "0", "--config", str(cfg)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8")
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in:\n{''.join(self.lines)[-3000:]}")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)
        self.reader.join(10)
        self.proc.stdout.close()
        return "".join(self.lines)


def status(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return json.loads(r.read())["status"]
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())["status"]
    except OSError:
        return "down"


def wait_cases(ledger: Ledger, n: int, timeout: float) -> float:
    """Until ``n`` messages are in the ledger (the same problem twice is one case, two messages)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if ledger.counts()["messages"] >= n:
            return time.monotonic() - started
        time.sleep(0.3)
    raise AssertionError(f"{ledger.counts()['messages']} messages after {timeout}s, wanted {n}")


def drop_call(drop, i: int) -> None:
    call = dict(to_call({"text": f"第{i}次来电：南康区蓉江街道的路灯坏了一个月了"}, i), call_id=f"RS-{i:04d}")
    (drop / f".{call['call_id']}.tmp").write_text(json.dumps(call, ensure_ascii=False), encoding="utf-8")
    (drop / f".{call['call_id']}.tmp").rename(drop / f"{call['call_id']}.json")


def test_messages_flow_again_within_30s_after_the_broker_restarts(tmp_path, tiny_model):
    cfg = write_config(tmp_path, None, classifier={"model_dir": str(tiny_model)})
    ledger = Ledger.from_settings(load(cfg).settings)
    drop = tmp_path / "drop"
    drop.mkdir()
    up = Up(cfg)
    try:
        broker = up.wait_for(r"embedded broker on 127\.0\.0\.1:(\d+)").group(1)
        up.wait_for(r"ledger\s+http://")
        ports = {m: int(p) for m, p in re.findall(r"(\w+)\s+http://127\.0\.0\.1:(\d+)/healthz", "".join(up.lines))}
        drop_call(drop, 1)
        wait_cases(ledger, 1, 90)
        pid = subprocess.run(["pgrep", "-f", f"listener-url tcp://127.0.0.1:{broker}"], capture_output=True,
                             text=True).stdout.split()
        assert pid, "the embedded broker's process"
        subprocess.run(["kill", "-9", *pid], check=True)
        seen = {kind: set() for kind in ports}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all("degraded" in s for s in seen.values()):
            for kind, port in ports.items():
                seen[kind].add(status(port))
            time.sleep(0.3)
        drop_call(drop, 2)
        took = wait_cases(ledger, 2, 30)
    finally:
        out = up.stop()
        ledger.dispose()
    assert "starting it again" in out
    assert all("degraded" in s for s in seen.values()), seen  # every worker said so while it recovered
    assert took < 30
