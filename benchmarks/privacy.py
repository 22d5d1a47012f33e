"""Masking (``core.privacy``): what it catches, what it wrongly touches, how fast.

* ``recall``: for each kind of ``tests/core/pii_cases.py`` (its positives and its known
  misses), how many cases come out with the personal value gone (and the road or estate
  an office needs still there), and how many stay ``unmasked``;
* ``false_positives``: how many of the negative sentences (prices, dates, tracking
  numbers, 8路, 318国道, place names, surnames inside words …) masking changes, in all
  and per kind (each kind alone, ``privacy.mask_only``);
* ``msgs_per_s``: masking throughput over 2,000 messages of about 240 characters made from
  the classify corpus, a quarter with one of the positives inserted; ``plain_msgs_per_s``
  the same messages without a digit or a surname character (the common case the gates
  are for); ``first_call_s``: the first message with a name candidate (jieba loads);
* with ``--baseline FILE`` (another version of core/privacy.py, e.g.
  ``git show HEAD~1:core/privacy.py > /tmp/p.py``) the same figures for it, for a
  before/after.

The city's gazetteer is protected first, as the classify stage does.

    python -m benchmarks.privacy [--messages 2000] [--baseline /tmp/p.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from types import ModuleType

from tests.core.pii_cases import KNOWN_MISSES, NEGATIVES, PLACES, POSITIVES
from wenzheng.classify.model import corpus_files, read_labelled
from wenzheng.classify.places import PlaceResolver
from wenzheng.config import load
from wenzheng.core import privacy


def _module(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("privacy_baseline", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def recall(mod: ModuleType) -> dict[str, dict[str, float]]:
    out = {}
    for kind in POSITIVES:
        cases = POSITIVES[kind] + KNOWN_MISSES.get(kind, [])
        masked = 0
        for text, secret, kept in cases:
            result = mod.mask_text(text)
            masked += secret not in result and kept in result
        out[kind] = {"masked": masked, "of": len(cases), "unmasked": len(cases) - masked,
                     "recall": round(masked / len(cases), 3)}
    return out


def false_positives(mod: ModuleType) -> dict[str, object]:
    changed = [n for n in NEGATIVES if mod.mask_text(n) != n]
    out: dict[str, object] = {"changed": len(changed), "of": len(NEGATIVES), "rate": round(len(changed) / len(NEGATIVES), 3),
                              "examples": changed[:5]}
    if hasattr(mod, "mask_only"):
        out["per_kind"] = {k: round(sum(mod.mask_only(n, k) != n for n in NEGATIVES) / len(NEGATIVES), 3) for k in mod.KINDS}
    return out


def messages(n: int, seed: int = 5) -> list[str]:
    """~240 characters each from the classify corpus; one in four with a positive case inserted."""
    rows = [r["text"] for r in read_labelled(corpus_files())]
    pii = [c[0] for cases in POSITIVES.values() for c in cases]
    rnd = random.Random(seed)
    out = []
    while len(out) < n:
        text = ""
        while len(text) < 240:
            text += rnd.choice(rows)
        text = text[:240]
        if rnd.random() < 0.25:
            k = rnd.randrange(len(text))
            text = f"{text[:k]}，{rnd.choice(pii)}，{text[k:]}"
        out.append(text)
    return out


def throughput(mod: ModuleType, texts: list[str]) -> float:
    """Messages per second, the best of three passes (each with the name caches emptied)."""
    best = float("inf")
    for _ in range(3):
        for cache in ("_tag", "_name_in"):
            if hasattr(mod, cache):
                getattr(mod, cache).cache_clear()
        t0 = time.perf_counter()
        for t in texts:
            mod.mask_text(t)
        best = min(best, time.perf_counter() - t0)
    return round(len(texts) / best)


def figures(mod: ModuleType, texts: list[str], plain: list[str]) -> dict[str, object]:
    t0 = time.perf_counter()
    mod.mask_text("市民刘建华反映路灯坏了")
    first = time.perf_counter() - t0
    return {"recall": recall(mod), "false_positives": false_positives(mod), "first_call_s": round(first, 3),
            "msgs_per_s": throughput(mod, texts), "plain_msgs_per_s": throughput(mod, plain)}


def run(n: int = 2000, baseline: str | None = None) -> dict[str, object]:
    places = set(PlaceResolver(load().settings).names) | set(PLACES)
    texts = messages(n)
    common = set("0123456789０１２３４５６７８９") | set(privacy._SURNAMES) | {c[0] for c in privacy._COMPOUND_SURNAMES}
    plain = ["".join(c for c in t if c not in common) for t in texts]
    mods = {"after": privacy} | ({"before": _module(baseline)} if baseline else {})
    out: dict[str, object] = {"messages": n, "avg_chars": round(sum(map(len, texts)) / n)}
    for label, mod in mods.items():
        mod.protect(places)
        out[label] = figures(mod, texts, plain)
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="benchmarks.privacy")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--baseline", help="another core/privacy.py to measure beside this one")
    args = p.parse_args()
    json.dump(run(args.messages, args.baseline), sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
