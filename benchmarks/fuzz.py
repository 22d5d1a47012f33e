"""Fuzzing the connectors' parsers: whatever upstream sends never escapes a connector.

Each parser is a row of :data:`TARGETS` — a name, a hypothesis strategy of what upstream
may send (plausible fields mixed with arbitrary JSON, display forms, lone surrogates,
integers of 5,000 digits, nesting 100,000 deep, raw bytes), and a function that feeds one
case through the connector's own path (a file in the drop folder read by ``fetch``; an
HTTP answer's body read by ``answer`` and ``fetch``; a signed WeChat push or an Open311
post through the push channel's HTTP handler) and says what became of it. What every
function holds the connector to: each item becomes an envelope or a dead letter, both
writable as a Kafka record (UTF-8 JSON under the producer's limit); an answer that is not
even a list of items may be an upstream error (:class:`TransientError`, the web form's
broken-contract error), which backs off the poll; a push is answered 2xx or 4xx (a 4xx
counts as an upstream error: the client is told), never 5xx; anything else that escapes
is a bug, counted here as *uncaught*.

    .venv/bin/python -m benchmarks fuzz                  # 10,000 cases per parser
    .venv/bin/python -m benchmarks fuzz --fuzz-cases 500

The tests run the same table with ~100 examples each (tests/ingest/test_fuzz.py). A new
parser is a new row: a strategy, a function ``(harness, case) -> Counter`` and, if it needs
a connector, a property of :class:`Harness` that makes one offline.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from wechatpy.crypto import WeChatCrypto

from wenzheng.config import DEFAULT_DIR, load
from wenzheng.config.schema import WeChatAccount, WeiboAccount, WeiboChannel
from wenzheng.core import envelope
from wenzheng.core.errors import TransientError
from wenzheng.core.runtime import Runtime
from wenzheng.core.service import Request
from wenzheng.ingest.base import MAX_VALUE_BYTES, Page
from wenzheng.ingest.fakes.wechat import text_xml
from wenzheng.ingest.hotline import HotlineConnector
from wenzheng.ingest.open311 import Open311Connector
from wenzheng.ingest.webform import WebFormConnector, WebFormError
from wenzheng.ingest.wechat import WeChatConnector, sign
from wenzheng.ingest.weibo import WeiboConnector

# --- JSON as text, so it can hold what Python's json would not write -------------------


_SURROGATE = re.compile("[\ud800-\udfff]")


def _dumps(value: Any) -> str:
    """JSON text, UTF-8-encodable: a lone surrogate is written as its ``\\u`` escape."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", json.dumps(value, ensure_ascii=False))


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(fields: dict[str, str]) -> str:
    return "{" + ",".join(f"{_dumps(k)}:{v}" for k, v in fields.items()) + "}"


_ODD = ["null", "true", "false", "0", "-1", "1e999", "-1e999", "NaN", "Infinity", "9" * 5000, "1" * 25,
        '"\\ud800"', '"路\\udfff灯"', '""', '" "']
LEAF = st.one_of(st.sampled_from(_ODD), st.integers(-(2**70), 2**70).map(str), st.floats().map(_dumps),
                 st.text(max_size=40).map(_dumps))
ANY = st.recursive(LEAF, lambda kids: st.lists(kids, max_size=4).map(_array)
                   | st.dictionaries(st.text(max_size=8), kids, max_size=4).map(_object), max_leaves=12)
DEEP = st.integers(1, 120_000).map(lambda n: "[" * n + "]" * n) | st.integers(1, 3000).map(lambda n: '{"a":' * n)


def mostly(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``strategy`` seven times in eight; anything at all the eighth (hypothesis picks a branch
    of ``one_of`` uniformly, so a branch repeated is a branch weighted)."""
    return st.one_of(*[strategy] * 7, ANY)


def field(*plausible: Any) -> st.SearchStrategy[str]:
    """A field as upstream writes it (the first of ``plausible`` is the usual one), or anything at all."""
    return mostly(st.one_of(st.just(plausible[0]), st.sampled_from(plausible)).map(_dumps))


def obj(required: dict[str, st.SearchStrategy[str]] | None = None, **optional: st.SearchStrategy[str]
        ) -> st.SearchStrategy[str]:
    """A JSON object with the ``required`` fields and any of the ``optional`` ones."""
    return st.fixed_dictionaries(required or {}, optional=optional).map(_object)


def array(item: st.SearchStrategy[str], min_size: int = 0, max_size: int = 4) -> st.SearchStrategy[str]:
    return mostly(st.lists(item, min_size=min_size, max_size=max_size).map(_array))


LONG = "长" * 140_000  # over csv's field limit; cut in a message
HUGE = "长" * 400_000  # over the record limit unless cut
BROKEN = "路灯\ud800坏了"  # a lone surrogate, as a JSON \\u escape
TIMES = ("2026-11-22 09:15:03", "2026/11/22 09:15", "2026-11-22T09:15:03+08:00", "0001-01-01T00:00:00+14:00",
         "9999-12-31T23:59:59-14:00", "昨天", "")
TEXTS = ("南康区唐江镇路灯不亮", "电话13907971234，停水三天", "", " ", LONG, HUGE, BROKEN)

# --- the hotline: one file in the drop folder ---------------------------------------------

_TURN = obj({"speaker": field("citizen", "agent", "坐席", "市民", "来电人", "robot", ""), "text": field(*TEXTS)})
_CALL = obj({"call_id": field("GZ12345-1", "C1", "", " "), "turns": array(_TURN, min_size=1)}, started_at=field(*TIMES),
            caller_number=field("13907971234"), caller_name=field("刘先生"), location=field("南康区唐江镇"),
            title=field("停水"), text=field(*TEXTS))
_HEADERS = ["call_id,started_at,caller_number,caller_name,speaker,text", "call_id,speaker,text", "call_id,text", ""]


def _csv(header_and_rows: tuple[str, list[list[str]]]) -> str:
    header, rows = header_and_rows
    out = io.StringIO()
    out.write(header + "\n")
    csv.writer(out).writerows(rows)
    return out.getvalue()


_CSV = st.one_of(st.tuples(st.sampled_from(_HEADERS), st.lists(st.lists(st.text(max_size=20) | st.sampled_from(TEXTS),
                                                                       max_size=7), max_size=4)).map(_csv),
                 st.text(alphabet=',"\n\r\x00 市民agentcall_id,speaker,text', max_size=300))
_ENCODINGS = st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "gb18030", "utf-16"])


def _encoded(text_and_encoding: tuple[str, str]) -> bytes:
    text, encoding = text_and_encoding
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf-8") else "replace")


HOTLINE = st.one_of(
    *[st.tuples(st.just("call.json"), st.tuples(_CALL, _ENCODINGS).map(_encoded))] * 4,
    st.tuples(st.just("call.json"), st.tuples(st.one_of(ANY, DEEP), _ENCODINGS).map(_encoded)),
    st.tuples(st.just("call.csv"), st.tuples(_CSV, _ENCODINGS).map(_encoded)),
    st.tuples(st.sampled_from(["call.json", "call.csv"]), st.binary(max_size=2000)),
)

# --- Weibo: one answer of m.weibo.cn, served to every endpoint ------------------------------

_IDS = field(5100000000000001, "5100000000000001", 0, -1, "abc", "1e5", True)
_HTML = field("南康区停水", '<a href="/n/x">@赣州发布</a> 路灯<br />不亮', '<span class="url-icon"><img alt="[怒]"></span>',
              "<", "&amp;", "电话13907971234", "", LONG, HUGE, BROKEN)
_CREATED = field("Sat Nov 22 09:15:03 +0800 2026", "刚刚", "5分钟前", "99999999999999小时前", "昨天 09:15", "12-30",
                 "2025-02-29", "Sat Nov 99 09:15:03 +9999 2026", "Sat Nov 22 09:15:03 +0800 99999999999999999999")
_USER = obj(id=field(6000000001, "6000000001", 1001, "1001", 0, ""), screen_name=field("赣南网友"))
_PIC = obj(url=field("https://wx1.sinaimg.cn/a.jpg", ""), large=obj(url=field("https://wx1.sinaimg.cn/large/a.jpg")))
_CORE = {"id": _IDS, "text": _HTML, "created_at": _CREATED, "user": _USER}
_ITEM = obj(_CORE, mid=_IDS, isLongText=field(False, True), pics=array(_PIC), pic=_PIC,
            retweeted_status=obj(text=_HTML), status=obj(text=_HTML), comments=array(obj(_CORE)))
_POST = obj({"mid": _IDS, "comments_count": field(3, 0, "100万+", "1.2万", "999+", "1千", "", "万", "9" * 30, 1.5)},
            id=_IDS, text=_HTML)
_DATA = obj({"data": array(_ITEM), "max_id": field(0, 5100000000000001, "x"), "cards": array(obj({"mblog": _POST}))},
            max_id_type=field(0, 1), total_number=ANY, longTextContent=_HTML)
WEIBO = st.one_of(*[obj({"ok": st.one_of(*[st.just("1")] * 5, field(1, 0, -100, "1")), "data": st.one_of(_DATA, _DATA, array(_ITEM))},
                        msg=field("访问频次过高")).map(str.encode)] * 6, DEEP.map(str.encode), st.binary(max_size=500))

# --- the web form: one answer of the backend --------------------------------------------------

_SUBMISSION = obj({"id": field(10234, "10234", "", 2**70, True, 1.5), "content": field(*TEXTS),
                   "created_at": field(*TIMES), "updated_at": field(*TIMES)},
                  title=field("路灯不亮"), name=field("刘建华"), phone=field("13907971234"),
                  id_card=field("360702199001011234"), address=field("南康区唐江镇幸福路12号"), category=field("城市管理"),
                  attachments=array(field("https://x.gov.cn/a.jpg", "") | obj(url=field("https://x.gov.cn/b.pdf"))))
WEBFORM = st.one_of(*[obj({"items": array(_SUBMISSION, max_size=6)}, has_more=field(False, True)).map(str.encode)] * 6,
                    DEEP.map(str.encode), st.binary(max_size=500))

# --- WeChat: one pushed XML document, signed (and in safe mode encrypted) as WeChat does -----

_TAGS = ("ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "PicUrl", "MediaId", "Format",
         "Recognition", "Location_X", "Location_Y", "Scale", "Label", "Title", "Description", "Url", "Event",
         "EventKey", "Encrypt", "a")
_KINDS = ("text", "image", "voice", "video", "shortvideo", "location", "link", "event", "TEXT", "", "file")
_XML_ODD = ("13907971234", "9" * 5000, "-1", "1e999", "nan", "inf", "1763774103", " ", "]]>", "<", "&amp;", "&#0;",
            "&a;", "\ud800", "oDF3iY9ffA-hqb2vVvbr7qxf6A0Q")
_XML_VALUE = st.sampled_from(_KINDS + _XML_ODD + TEXTS) | st.text(max_size=30)


def _element(tag: str, value: str, form: str) -> str:
    safe = value.replace("&", "&amp;").replace("<", "&lt;")
    return {"escaped": f"<{tag}>{safe}</{tag}>", "cdata": f"<{tag}><![CDATA[{value}]]></{tag}>",
            "raw": f"<{tag}>{value}</{tag}>", "nested": f"<{tag}><{tag}>{safe}</{tag}></{tag}>",
            "empty": f"<{tag}/>"}[form]


_ELEMENT = st.builds(_element, st.sampled_from(_TAGS), _XML_VALUE,
                     st.sampled_from(["escaped", "escaped", "cdata", "cdata", "raw", "nested", "empty"]))
_PROLOGUES = ("", "", '<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.0" encoding="gbk"?>',
              '<?xml version="1.0" encoding="nope"?>', "<!DOCTYPE xml>", '<!DOCTYPE xml [<!ENTITY a "13907971234">]>',
              '<!DOCTYPE xml SYSTEM "file:///etc/passwd">')


def _document(parts: tuple[str, str, list[str], str, str]) -> bytes:
    prologue, root, elements, tail, encoding = parts
    text = f"{prologue}<{root}>{''.join(elements)}</{root}>{tail}"
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")


def _push(parts: tuple[int, str, str, list[str]]) -> bytes:
    """A real push with its type, its text and some elements changed: deep enough to reach the envelope."""
    msg_id, kind, content, extra = parts
    xml = text_xml(content, msg_id).replace("<MsgType><![CDATA[text]]>", f"<MsgType><![CDATA[{kind}]]>")
    return xml.replace("</xml>", "".join(extra) + "</xml>").encode("utf-8", "surrogatepass")


_PUSH = st.tuples(st.integers(1, 2**70), st.sampled_from(_KINDS), _XML_VALUE, st.lists(_ELEMENT, max_size=3)).map(_push)
WECHAT = st.one_of(
    _PUSH, _PUSH,
    st.tuples(st.sampled_from(_PROLOGUES), st.sampled_from(["xml", "xml", "xml", "XML", "root"]),
              st.lists(_ELEMENT, max_size=12), st.sampled_from(["", "", "<xml/>", "trailing", "<!-- c -->"]),
              st.sampled_from(["utf-8", "utf-8", "utf-16", "gb18030"])).map(_document),
    st.integers(1, 100_000).map(lambda n: b"<xml>" + b"<a>" * n + b"</a>" * n + b"</xml>"),
    st.binary(max_size=600),
)

# --- Open311: one POST (content type, body, query string, Idempotency-Key) ------------------

_REQUEST = obj({"service_code": field("urban_management", "environment", "potholes", ""),
                "description": field(*TEXTS)},
               lat=field(25.8311, "25.8311", 95, "北纬25度"), long=field(114.9336, "114.9336", -181),
               address_string=field("章贡区红旗大道88号", ""), address_id=field("GZ-000123"),
               email=field("liu.jianhua@example.com", "not-an-address"), phone=field("13907971234"),
               first_name=field("建华"), last_name=field("刘"), device_id=field("d-1"), api_key=field("k"),
               media_url=field("https://wz.ganzhou.gov.cn/a.jpg", "file:///etc/passwd"),
               attribute=mostly(obj(size=field("big", ["a", "b"]))), **{"attribute[size]": field("big")})
_FORM = st.dictionaries(st.sampled_from(["service_code", "description", "lat", "long", "address_string", "email",
                                         "attribute[size]", "api_key"]) | st.text(max_size=10),
                        st.sampled_from(["environment", "路灯", "25.8", "9" * 5000, "nan", ""]) | st.text(max_size=40),
                        max_size=10).map(lambda d: urlencode({"service_code": "environment", "description": "噪音",
                                                              "address_string": "于都县", **d}).encode())
_QUERY = st.sampled_from(["", "", "api_key=x", "status=open,closed", "start_date=2026-01-01T00:00:00Z",
                          "service_request_id=" + ",".join(["a"] * 1001)]) | st.text(max_size=30)
_KEY = st.sampled_from(["", "", "retry-1", "x" * 300]) | st.text(max_size=20)
OPEN311 = st.one_of(
    *[st.tuples(st.sampled_from(["application/json", "application/json; charset=utf-8"]),
                st.one_of(_REQUEST, _REQUEST, ANY, DEEP).map(str.encode), _QUERY, _KEY)] * 2,
    st.tuples(st.sampled_from(["application/x-www-form-urlencoded", ""]), _FORM, _QUERY, _KEY),
    st.tuples(st.sampled_from(["application/json", "", "multipart/form-data", "text/xml"]), st.binary(max_size=300),
              _QUERY, _KEY),
)

# --- the connectors, offline ---------------------------------------------------------------


class _OfflineWeibo(WeiboConnector):
    """Every endpoint answers :attr:`body` (the case), as m.weibo.cn would have."""

    body = b""

    def _get(self, path_query: str, what: str) -> dict:
        return self.answer("application/json", self.body, what)


class _OfflineWebForm(WebFormConnector):
    body = b""
    MAX_PAGES = 2

    def _fetch(self, updated_after: str | None, after_id: Any) -> tuple[list, bool]:
        return self.answer(self.body)


class _Sink:
    """A publisher for the push channels' drainers that takes everything: nothing reaches Kafka."""

    refused = 0

    def publish(self, outs: list, timeout: float = 30.0) -> list:
        return list(outs)

    def close(self, producer: bool = True) -> None:
        pass


PUSH_TOKEN, PUSH_APPID = "fuzz-token", "wxf0f0f0f0f0f0f0f0"
PUSH_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


class Harness:
    """The connectors of one configuration in ``root``, with no broker: they read, nobody publishes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        cfg = root / "config"
        cfg.mkdir(parents=True, exist_ok=True)
        for f in DEFAULT_DIR.glob("*.yaml"):
            shutil.copy(f, cfg / f.name)
        runtime = {"state": {"dir": str(root / "state")}, "privacy": {"pseudonym_key": "fuzz-key"}}
        (cfg / "runtime.yaml").write_text(yaml.safe_dump(runtime), encoding="utf-8")
        channels = {"hotline": {"enabled": True, "drop_dir": str(root / "drop"), "settle_seconds": 0.1},
                    "webform": {"enabled": True, "base_url": "http://127.0.0.1:9", "token": "t"}}
        (cfg / "channels.yaml").write_text(yaml.safe_dump({"channels": channels}), encoding="utf-8")
        self.runtime = Runtime(load(cfg))
        self.runtime.cluster_id = "fuzz"  # its state directory, without asking a broker for its id

    @cached_property
    def hotline(self) -> HotlineConnector:
        return HotlineConnector(self.runtime, None)  # type: ignore[arg-type]  # reads only

    @cached_property
    def weibo(self) -> _OfflineWeibo:
        channel = WeiboChannel(enabled=True, api_base="http://127.0.0.1:9", max_pages=2)
        return _OfflineWeibo(self.runtime, None, "weibo.fuzz", "fuzz", WeiboAccount(uid="1001"), channel)

    @cached_property
    def webform(self) -> _OfflineWebForm:
        return _OfflineWebForm(self.runtime, None, "webform")

    @cached_property
    def wechat(self) -> list[WeChatConnector]:
        """A plain-mode and a safe-mode account; their spools drain into a sink."""
        return [WeChatConnector(self.runtime, _Sink(), f"wechat.fuzz{n}", f"fuzz{n}",
                                WeChatAccount(appid=PUSH_APPID, token=PUSH_TOKEN, encoding_aes_key=key),
                                "http://127.0.0.1:9", 0.0)
                for n, key in (("plain", None), ("aes", PUSH_AES_KEY))]

    @cached_property
    def open311(self) -> Open311Connector:
        return Open311Connector(self.runtime, _Sink(), "open311")


def writable(pages: Iterable[Page], got: Counter | None = None) -> Counter:
    """``got`` counting the envelopes and dead letters of ``pages``; raises unless each is a
    record Kafka takes."""
    got = Counter() if got is None else got
    for page in pages:
        for value in [*page.envelopes, *(o.value for o in page.dead)]:
            size = len(envelope.encode(value))
            if size > MAX_VALUE_BYTES:
                raise AssertionError(f"a record of {size} bytes, over {MAX_VALUE_BYTES}")
        got["envelopes"] += len(page.envelopes)
        got["dead letters"] += len(page.dead)
    return got


def hotline(h: Harness, case: tuple[str, bytes]) -> Counter:
    """One file dropped and settled, read by a scan: exactly one envelope or dead letter."""
    name, data = case
    path = h.hotline.dir / name
    path.write_bytes(data)
    os.utime(path, (time.time() - 10, time.time() - 10))
    try:
        got = writable(h.hotline.fetch({}))
    finally:
        path.unlink()
    if got["envelopes"] + got["dead letters"] != 1:
        raise AssertionError(f"one file made {dict(got)}")
    return got


def weibo(h: Harness, body: bytes) -> Counter:
    c, got = h.weibo, Counter()
    c.body, c.gate.until, c.gate.strikes = body, 0.0, 0
    try:
        writable(c.fetch({}), got)
    except TransientError:  # not JSON, not ok, no data list, no cards: upstream's answer, not an item
        got["upstream errors"] += 1
    return got


def webform(h: Harness, body: bytes) -> Counter:
    c, got = h.webform, Counter()
    c.body = body
    try:
        writable(c.fetch({}), got)
    except (TransientError, WebFormError):  # not JSON, no items list; a full page without a cursor
        got["upstream errors"] += 1
    return got


def _answered(got: Counter, status: int, dead_letter: bool = False) -> Counter:
    """A push channel's answer counted: taken (2xx) as an envelope, a WeChat 400 as its dead
    letter, another 4xx as the client told ("upstream error"); a 5xx is a bug."""
    if not 200 <= status < 500:
        raise AssertionError(f"answered {status}")
    if status < 300:
        got["envelopes"] += 1
    elif dead_letter and status == 400:
        got["dead letters"] += 1
    else:
        got["upstream errors"] += 1
    return got


def _signed(body: bytes, crypto: WeChatCrypto | None) -> tuple[str, bytes]:
    """The query WeChat would send with ``body`` (fresh timestamp and nonce), and the body (encrypted in safe mode)."""
    ts, nonce = str(int(time.time())), uuid.uuid4().hex[:12]
    query = {"signature": sign(PUSH_TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce}
    if crypto is not None:
        encrypted = crypto.encrypt_message(body.decode("utf-8", "replace"), nonce, ts)
        ciphertext = encrypted.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
        query |= {"encrypt_type": "aes", "msg_signature": sign(PUSH_TOKEN, ts, nonce, ciphertext)}
        body = f"<xml><ToUserName>gh_fuzz</ToUserName><Encrypt>{ciphertext}</Encrypt></xml>".encode()
    return urlencode(query), body


def wechat(h: Harness, body: bytes) -> Counter:
    """One push, signed, to the plain account as it is and to the safe-mode one encrypted (the
    parser then reads it after decryption): each answered 2xx or 4xx."""
    got: Counter = Counter()
    for conn in h.wechat:
        query, sent = _signed(body, conn.crypto)
        req = Request("POST", "/wechat/fuzz", query, {"Content-Type": "text/xml"}, sent, "203.0.113.7",
                      {"account": conn.account_id})
        _answered(got, conn.handle(req)[0], dead_letter=True)
    return got


def open311(h: Harness, case: tuple[str, bytes, str, str]) -> Counter:
    """One POST of a service request, then the list asked with the case's query as filters."""
    ctype, body, query, key = case
    headers = {"Content-Type": ctype, **({"Idempotency-Key": key} if key else {})}
    got = _answered(Counter(), h.open311.handle_post(Request("POST", "/open311/requests.json", query, headers, body,
                                                             "203.0.113.8"))[0])
    listed = h.open311.handle_list(Request("GET", "/open311/requests.json", query, {}, b"", "203.0.113.8"))[0]
    if listed not in (200, 400):
        raise AssertionError(f"the list answered {listed}")
    return got


class Target(NamedTuple):
    name: str
    strategy: st.SearchStrategy[Any]
    run: Callable[[Harness, Any], Counter]


TARGETS = [
    Target("hotline", HOTLINE, hotline),
    Target("weibo", WEIBO, weibo),
    Target("webform", WEBFORM, webform),
    Target("wechat-push", WECHAT, wechat),
    Target("open311", OPEN311, open311),
]


def fuzz(target: Target, h: Harness, cases: int) -> dict[str, Any]:
    """``cases`` generated cases through one target: what they became, and what escaped."""
    got: Counter = Counter()
    failures: list[str] = []

    @settings(max_examples=cases, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(target.strategy)
    def one(case: Any) -> None:
        got["cases"] += 1
        try:
            got.update(target.run(h, case))
        except Exception as exc:  # noqa: BLE001 — counting what escapes is the point
            got["uncaught"] += 1
            if len(failures) < 5:
                failures.append("".join(traceback.format_exception_only(exc)).strip()[:300])

    started = time.perf_counter()
    one()
    return {"cases": got["cases"], "uncaught": got["uncaught"], "envelopes": got["envelopes"],
            "dead_letters": got["dead letters"], "upstream_errors": got["upstream errors"],
            "seconds": round(time.perf_counter() - started, 1), "failures": failures}


def run(cases: int = 10_000) -> dict[str, Any]:
    logging.getLogger("wenzheng").setLevel(logging.ERROR)  # a dead letter is logged; 30,000 of them are noise
    with tempfile.TemporaryDirectory(prefix="wz-fuzz-") as tmp:
        h = Harness(Path(tmp))
        return {t.name: fuzz(t, h, cases) for t in TARGETS}
