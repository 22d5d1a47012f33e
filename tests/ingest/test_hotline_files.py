"""Parsing transcript files (no broker needed)."""

import json

import pytest

from wenzheng.core.errors import BadMessage
from wenzheng.ingest.hotline import parse_call, read_text

ENC = ["utf-8-sig", "gb18030"]


def test_json_with_turns_and_gb18030_csv():
    call = {"call_id": "C1", "turns": [{"speaker": "坐席", "text": "请讲"}, {"speaker": "市民", "text": "停水了"}]}
    assert parse_call("a.json", read_text(json.dumps(call, ensure_ascii=False).encode("utf-8"), ENC))["turns"][1]["text"] == "停水了"
    csv_text = "call_id,started_at,caller_number,speaker,text\nC2,2026-11-22 09:00:00,13907971234,agent,您好\nC2,,,citizen,南康区唐江镇路灯不亮\n"
    call = parse_call("b.csv", read_text(csv_text.encode("gb18030"), ENC))
    assert call["call_id"] == "C2" and call["turns"][1]["text"] == "南康区唐江镇路灯不亮"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.json", b"", "empty file"),
        ("bad.json", b'{"call_id": "x", "text": ', "bad JSON"),
        ("utf16.json", '{"call_id": "x"}'.encode("utf-16"), "wrong encoding"),
        ("noid.json", b'{"text": "hello"}', "no call_id"),
        ("cols.csv", b"a,b\n1,2\n", "lacks columns"),
    ],
)
def test_malformed_files_say_why(name, data, reason):
    with pytest.raises(BadMessage, match=reason):
        parse_call(name, read_text(data, ENC))
