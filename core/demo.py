"""Sample traffic for `wenzheng up --demo`: corpus messages as 12345 call transcripts."""

from __future__ import annotations

import re
from datetime import datetime

from .envelope import iso

_TURN = re.compile(r"(坐席|话务员|客服|接线员|市民|来电人)\s*[:：]")


def to_call(row: dict, i: int) -> dict:
    """A transcript with speaker turns (split where the corpus text marks them)."""
    text = row["text"]
    parts = _TURN.split(text)
    turns = []
    if len(parts) > 1:
        for who, words in zip(parts[1::2], parts[2::2], strict=False):
            if words.strip():
                turns.append({"speaker": "agent" if who in ("坐席", "话务员", "客服", "接线员") else "citizen",
                              "text": words.strip()})
    if not any(t["speaker"] == "citizen" for t in turns):
        turns = [{"speaker": "agent", "text": "您好，12345政务服务便民热线，请讲。"},
                 {"speaker": "citizen", "text": text}]
    return {
        "call_id": f"DEMO-{i:05d}",
        "started_at": iso(datetime.now()),
        "caller_number": f"139{7970000 + i * 7919 % 10000:08d}"[:11],
        "title": row.get("title") or "",
        "turns": turns,
    }
