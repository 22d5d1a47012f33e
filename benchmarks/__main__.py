"""Run the benchmarks and print their figures as JSON.

    ./dev bench                 # all
    ./dev bench pipeline --messages 3000
    ./dev bench first-case
    ./dev bench weibo (500 Weibo + 200 WeChat accounts polled) | wechat-push | classify
    ./dev bench replay --replay-messages 1000000
    ./dev bench train --train-messages 100000
    ./dev bench places          # village- and township-only messages → county
    ./dev bench features        # feature variants on long messages, the learning curve, the textbook baseline
    ./dev bench privacy         # masking: recall per kind, false positives, messages/s (python -m benchmarks.privacy --baseline F)
    ./dev bench console         # the workbench over 10,000 open cases: queue pages p50/p95, assignment → office queue
    ./dev bench fuzz --fuzz-cases 10000   # hostile upstream input through each connector's parser: 0 uncaught
    ./dev bench hotline-idle    # the idle ingest worker's CPU and checkpoint after 20,000 published calls
    ./dev bench chaos --messages 100000 --kills 100   # two machines, random SIGKILLs, a broker restart
                                # (by name only, not in "all": it needs PostgreSQL and ~20 minutes)
"""

from __future__ import annotations

import argparse
import json
import sys

from . import (
    chaos,
    classify,
    console,
    features,
    fuzz,
    hotline_idle,
    ingest_wechat,
    ingest_weibo,
    pipeline,
    places,
    privacy,
    replay,
    train,
)


def main() -> int:
    p = argparse.ArgumentParser(prog="benchmarks")
    p.add_argument("which", nargs="?", default="all", choices=["all", "pipeline", "first-case", "classify", "weibo", "wechat-push", "replay", "train", "places", "features", "privacy", "fuzz", "console", "hotline-idle", "chaos"])
    p.add_argument("--messages", type=int, default=None,
                   help="pipeline: transcript files dropped (3000); chaos: messages sent (100,000)")
    p.add_argument("--kills", type=int, default=100, help="chaos: workers SIGKILLed at random moments")
    p.add_argument("--classify-messages", type=int, default=20000, help="classify: envelopes on the topic")
    p.add_argument("--train-messages", type=int, default=100_000, help="train: labelled history size")
    p.add_argument("--replay-messages", type=int, default=1_000_000, help="replay: routed decisions replayed")
    p.add_argument("--fuzz-cases", type=int, default=10_000, help="fuzz: generated cases per parser")
    args = p.parse_args()
    results = {}
    if args.which in ("all", "first-case"):
        results["first_case"] = pipeline.first_case()
    if args.which in ("all", "pipeline"):
        results["pipeline"] = pipeline.throughput(args.messages or 3000)
    if args.which in ("all", "weibo"):
        results["poll_500_weibo_200_wechat_accounts"] = ingest_weibo.run()
    if args.which in ("all", "wechat-push"):
        results["wechat_push"] = ingest_wechat.run()
    if args.which in ("all", "classify"):
        results["classify"] = classify.run(args.classify_messages)
    if args.which in ("all", "replay"):
        results["replay"] = replay.run(args.replay_messages, args.classify_messages)
    if args.which in ("all", "train"):
        results["train"] = train.run(args.train_messages)
    if args.which in ("all", "places"):
        results["places"] = places.run()
    if args.which in ("all", "features"):
        results["features"] = features.run()
    if args.which in ("all", "privacy"):
        results["privacy"] = privacy.run()
    if args.which in ("all", "fuzz"):
        results["fuzz"] = fuzz.run(args.fuzz_cases)
    if args.which in ("all", "console"):
        results["console"] = console.run()
    if args.which in ("all", "hotline-idle"):
        results["hotline_idle"] = hotline_idle.run()
    if args.which == "chaos":
        results["chaos"] = chaos.run(args.messages or 100_000, args.kills)
    json.dump(results, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


if __name__ == "__main__":  # importing the module (a syntax check, a test) runs nothing
    raise SystemExit(main())
