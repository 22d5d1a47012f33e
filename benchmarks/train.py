"""``wenzheng train`` on 100,000 labelled messages: wall time and peak memory.

The history is made from the packaged corpus: each record is a corpus message of
one category with a clause of another message of the same category appended and
its numbers changed, so the vocabulary is the corpus's but no two texts repeat (its
held-out scores say nothing of quality: near copies of the corpus are on both sides).
Timed end to end as a user runs it (read JSONL, normalise, jieba, TF-IDF, fit and
calibrate the three heads, evaluate on the held-out fifth, save).
"""

from __future__ import annotations

import json
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from wenzheng.classify.model import corpus_files, read_labelled


def history(n: int, path: Path) -> None:
    rows = read_labelled(corpus_files())
    by_cat = defaultdict(list)
    for r in rows:
        by_cat[r["category"]].append(r)
    rnd = random.Random(11)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            r = rows[i % len(rows)]
            other = rnd.choice(by_cat[r["category"]])["text"]
            clause = rnd.choice([c for c in re.split(r"[。！？!?，,]", other) if c] or [other])
            text = re.sub(r"\d", lambda _: str(rnd.randrange(10)), r["text"]) + "，" + clause
            f.write(json.dumps({**r, "id": f"h{i:06d}", "text": text}, ensure_ascii=False) + "\n")


def run(n: int = 100_000) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "history.jsonl"
        history(n, data)
        t0 = time.perf_counter()
        proc = subprocess.run([str(Path(sys.executable).parent / "wenzheng"), "train", "--data", str(data),
                               "--out", str(Path(tmp) / "model")], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        meta = json.loads((Path(tmp) / "model" / "meta.json").read_text(encoding="utf-8"))
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"messages": n, "train_wall_s": round(wall, 1), "peak_rss_mb": round(peak_mb),
            "progress_lines": proc.stderr.count("\n"), "features": meta.get("features")}


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000), indent=2))
