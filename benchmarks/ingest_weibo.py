"""One ingest worker keeping 500 Weibo and 200 WeChat accounts polled every 60 s, against
the fake m.weibo.cn and api.weixin.qq.com.

    python -m benchmarks.ingest_weibo [--accounts 500] [--wechat-accounts 200] [--poll-seconds 60] [--cycles 2]

The embedded broker runs as its own process; the fakes and the worker (an in-process
:class:`IngestWorker`, its APScheduler and 16 poll threads) run in this one. Each
Weibo account starts with a backlog (mentions, comments on its posts, some long, some
its own) and gets ``--growth`` new mentions a minute; each WeChat account (its own
appid and secret: its own access token) has 20 customer-service chat records of the
last hour, half the citizen's, and gets ``--growth`` more a minute. Figures, printed as
JSON, per channel:

* ``cycles``: per poll cycle (every account polled once), the wall time from the
  first poll's start to the last one's end — it includes the scheduler's
  deliberate spread of first polls over 10 s and its ±10 % jitter — with the
  messages published and the p50/p95/max time of one account's poll.
* ``messages_per_second``: published over the whole run, and within cycle 1 (the backlog).
* ``worker_cpu_percent``: this process's CPU time (user+sys) less the fake's
  request threads' CPU, over the run's wall time (100 % = one core); ``rss_mb`` at
  the end and its peak (the fake's data is in it too, a few MB).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import city_config
from wenzheng.app.broker import EmbeddedBroker
from wenzheng.config import load
from wenzheng.core.runtime import Runtime
from wenzheng.ingest.fakes.wechat import FakeWeChat
from wenzheng.ingest.fakes.weibo import FakeWeibo


def _config(root: Path, bootstrap: str, api_base: str, uids: list[str], poll_seconds: float, cookie,
            wechat_base: str, apps: dict[str, str]) -> Path:
    accounts = {f"gz{i:03d}": {"uid": uid, "cookie": cookie(uid)} for i, uid in enumerate(uids)}
    channels = {"hotline": {"enabled": False, "drop_dir": str(root / "drop")},
                "weibo": {"enabled": True, "api_base": api_base, "poll_seconds": poll_seconds,
                          "max_pages": 5, "accounts": accounts},
                "wechat": {"enabled": bool(apps), "api_base": wechat_base, "poll_seconds": poll_seconds,
                           "accounts": {f"wx{i:03d}": {"appid": appid, "secret": secret, "token": "t",
                                                       "poll": True}
                                        for i, (appid, secret) in enumerate(apps.items())}}}
    return city_config(root, bootstrap, channels)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 3) if s else 0.0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _chatter(fake: FakeWeChat, apps: list[str], growth: float, stop: threading.Event) -> None:
    """``growth`` new records per account a minute, until stopped."""
    n = 0
    while not stop.wait(60 / max(growth, 0.01) / max(len(apps), 1)):
        appid = apps[n % len(apps)]
        fake.add_record(f"o{n % 97:04d}", f"你好，南康区唐江镇幸福路{n}号门口的路灯坏了", int(time.time()), appid=appid)
        n += 1


def _cycles(polls: dict, cycles: int) -> list[dict]:
    per_cycle = []
    for k in range(cycles):
        runs = [p[k] for p in polls.values() if len(p) > k]
        if not runs:
            break
        span = max(e for _, e, _ in runs) - min(s for s, _, _ in runs)
        per_cycle.append({"cycle": k + 1, "accounts_polled": len(runs), "seconds": round(span, 2),
                          "published": sum(n for _, _, n in runs),
                          "poll_p50_s": _pct([e - s for s, e, _ in runs], 0.5),
                          "poll_p95_s": _pct([e - s for s, e, _ in runs], 0.95),
                          "poll_max_s": _pct([e - s for s, e, _ in runs], 1.0)})
    return per_cycle


def _seed_records(wx: FakeWeChat, apps: dict[str, str]) -> None:
    """Customer-service records for every WeChat account: citizens' messages and agents' replies."""
    now = int(time.time())
    for j, appid in enumerate(apps):
        for k in range(20):
            wx.add_record(f"o{j:03d}{k % 3}", f"市民{k}：章贡区红旗大道第{k}个井盖不见了，很危险" if k % 2 == 0
                          else "您好，已转交相关部门处理", now - 3600 + k * 150, opercode=2003 if k % 2 == 0 else 2002,
                          appid=appid)


def _time_polls(worker, polls: dict[str, list[tuple[float, float, int]]], lock: threading.Lock) -> None:
    """Wrap every connector's run_once to record (start, end, published)."""
    for c in worker.connectors:
        def timed(c=c, inner=c.run_once):
            t0 = time.monotonic()
            n = inner()
            with lock:
                polls.setdefault(c.name, []).append((t0, time.monotonic(), n))
            return n
        c.run_once = timed


def run(accounts: int = 500, poll_seconds: float = 60, cycles: int = 2, growth: float = 1.0,
        wechat_accounts: int = 200) -> dict:
    import wenzheng.ingest.worker as worker_mod

    uids = [str(3_000_000_000 + i) for i in range(accounts)]
    polls: dict[str, list[tuple[float, float, int]]] = {}
    lock = threading.Lock()
    apps = {f"wx{9_000_000_000 + i:x}": f"secret{i}" for i in range(wechat_accounts)}
    stop_chatter = threading.Event()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker, \
            FakeWeibo(growth_per_minute=growth, lifetime=0) as fake, \
            FakeWeChat("wx-unused", "-", apps=apps, lifetime=3600) as wx:
        for uid in uids:
            fake.account(uid)  # generated before the clock starts
        _seed_records(wx, apps)
        cfg = _config(Path(tmp), broker.bootstrap, fake.url, uids, poll_seconds, fake.cookie, wx.url, apps)
        runtime = Runtime(load(cfg)).connect()
        worker = worker_mod.IngestWorker(runtime)
        _time_polls(worker, polls, lock)
        ru0, cpu_fake0, t0 = resource.getrusage(resource.RUSAGE_SELF), fake.cpu_seconds + wx.cpu_seconds, time.monotonic()
        thread = threading.Thread(target=worker.run, name="ingest-worker", daemon=True)
        thread.start()
        threading.Thread(target=_chatter, args=(wx, list(apps), growth, stop_chatter), daemon=True).start()
        deadline = t0 + 15 + cycles * poll_seconds * 1.2
        while time.monotonic() < deadline:
            with lock:
                done = len(polls) == accounts + wechat_accounts and all(len(p) >= cycles for p in polls.values())
            if done:
                break
            time.sleep(0.5)
        wall = time.monotonic() - t0
        ru1, cpu_fake = resource.getrusage(resource.RUSAGE_SELF), fake.cpu_seconds + wx.cpu_seconds - cpu_fake0
        stop_chatter.set()
        worker.stop()
        thread.join(60)
        requests = fake.count() + len(wx.requests)
        runtime.journal.close()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    per_cycle = _cycles({k: v for k, v in polls.items() if not k.startswith("wechat.")}, cycles)
    wechat_cycles = _cycles({k: v for k, v in polls.items() if k.startswith("wechat.")}, cycles)
    total = sum(n for p in polls.values() for _, _, n in p)
    return {
        "accounts": accounts, "wechat_accounts": wechat_accounts, "poll_seconds": poll_seconds,
        "cycles": per_cycle, "wechat_cycles": wechat_cycles,
        "published_total": total, "messages_per_second": round(total / wall, 1),
        "backlog_messages_per_second": round(per_cycle[0]["published"] / per_cycle[0]["seconds"], 1)
        if per_cycle and per_cycle[0]["seconds"] else None,
        "wall_s": round(wall, 1), "upstream_requests": requests,
        "worker_cpu_percent": round(100 * max(0.0, cpu - cpu_fake) / wall, 1),
        "fake_cpu_percent": round(100 * cpu_fake / wall, 1),
        "rss_mb": _rss_mb(), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.ingest_weibo")
    p.add_argument("--accounts", type=int, default=500)
    p.add_argument("--poll-seconds", type=float, default=60)
    p.add_argument("--cycles", type=int, default=2)
    p.add_argument("--wechat-accounts", type=int, default=200)
    p.add_argument("--growth", type=float, default=1.0, help="new mentions (chat records) per account per minute")
    args = p.parse_args(argv)
    result = run(args.accounts, args.poll_seconds, args.cycles, args.growth, args.wechat_accounts)
    json.dump({"ingest_weibo": result}, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
