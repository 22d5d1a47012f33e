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
    ./dev bench fuzz --fuzz-cases 10000   # hostile upstream input through each connector's parser: 0 uncaught
"""

from __future__ import annotations

import argparse
import json
import sys

from . import (
    classify,
    features,
    fuzz,
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
    p.add_argument("which", nargs="?", default="all", choices=["all", "pipeline", "first-case", "classify", "weibo", "wechat-push", "replay", "train", "places", "features", "privacy", "fuzz"])
    p.add_argument("--messages", type=int, default=3000, help="pipeline: transcript files dropped")
    p.add_argument("--classify-messages", type=int, default=20000, help="classify: envelopes on the topic")
    p.add_argument("--train-messages", type=int, default=100_000, help="train: labelled history size")
    p.add_argument("--replay-messages", type=int, default=1_000_000, help="replay: routed decisions replayed")
    p.add_argument("--fuzz-cases", type=int, default=10_000, help="fuzz: generated cases per parser")
    args = p.parse_args()
    results = {}
    if args.which in ("all", "first-case"):
        results["first_case"] = pipeline.first_case()
    if args.which in ("all", "pipeline"):
        results["pipeline"] = pipeline.throughput(args.messages)
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
    json.dump(results, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


raise SystemExit(main())
