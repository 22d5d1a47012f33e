"""Run the benchmarks and print their figures as JSON.

    ./dev bench                 # all
    ./dev bench pipeline --messages 3000
    ./dev bench first-case
"""

from __future__ import annotations

import argparse
import json
import sys

from . import pipeline


def main() -> int:
    p = argparse.ArgumentParser(prog="benchmarks")
    p.add_argument("which", nargs="?", default="all", choices=["all", "pipeline", "first-case"])
    p.add_argument("--messages", type=int, default=3000)
    args = p.parse_args()
    results = {}
    if args.which in ("all", "first-case"):
        results["first_case"] = pipeline.first_case()
    if args.which in ("all", "pipeline"):
        results["pipeline"] = pipeline.throughput(args.messages)
    json.dump(results, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


raise SystemExit(main())
