"""A fake WeChat: the API server the poll talks to, and the push client WeChat is to our callback.

:class:`FakeWeChat` is a real ``ThreadingHTTPServer`` on 127.0.0.1 (a free port)
answering like api.weixin.qq.com, errcodes included:

- ``GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`` →
  ``{"access_token", "expires_in"}``; 40002 bad grant_type, 40013 unknown appid,
  40125 wrong secret.
- ``POST /customservice/msgrecord/getmsglist?access_token=`` with
  ``{"starttime", "endtime", "msgid", "number"}`` → ``{"recordlist", "number",
  "msgid"}``: records with ``starttime <= time <= endtime`` and msgid ≥ the given
  one, in msgid order, at most ``number``; ``msgid`` answered is the last
  record's (so the next page, asked from it, repeats that record — the real
  API does not document which way it counts). 41001 no token, 40001 unknown
  token, 42001 expired token, 65416 bad parameters (number outside 1..10000,
  end before start), 65417 a period longer than 24 hours.

Faults on demand: :meth:`FakeWeChat.fail` queues errcodes (45009, -1…) or HTTP
statuses (500…) for the next requests to a path; ``token_ttl`` / ``token_uses``
expire tokens by time or by use (then they answer 42001). Every request is
recorded in ``requests``.

:class:`PushClient` signs (and in safe mode encrypts, with wechatpy's
WeChatCrypto) push requests with the XML of WeChat's published samples and
POSTs them to a callback URL.

Both are context managers; the server also stops by itself after ``lifetime``
seconds, so a test that dies never leaves it running.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from xml.etree import ElementTree

from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from . import LocalServer

TOKEN_PATH = "/cgi-bin/token"
MSGLIST_PATH = "/customservice/msgrecord/getmsglist"


def _err(code: int, msg: str) -> dict:
    return {"errcode": code, "errmsg": f"{msg} rid: {uuid.uuid4().hex[:8]}-fake"}


class FakeWeChat(LocalServer):
    name = "fake-wechat"

    def __init__(self, appid: str, secret: str, *, token_ttl: int = 7200, token_uses: int | None = None,
                 lifetime: float = 120.0, apps: dict[str, str] | None = None):
        self.appid, self.secret = appid, secret
        self.apps = dict(apps or {})  # more official accounts behind the same API host: appid → secret
        self.cpu_seconds = 0.0  # spent by the server's request threads (benchmarks subtract it)
        self.token_ttl, self.token_uses, self.lifetime = token_ttl, token_uses, lifetime
        self.records: list[dict] = []  # each with its msgid
        self.requests: list[tuple[float, str]] = []  # (monotonic time, path)
        self.tokens: dict[str, dict] = {}  # token → {"until": epoch, "uses": n}
        self._faults: dict[str, deque] = defaultdict(deque)
        self._msgids = itertools.count(20165267)
        self._lock = threading.Lock()

    # --- set-up ----------------------------------------------------------------------

    def add_record(self, openid: str, text: str, when: int, opercode: int = 2003, worker: str = "kf2001@wzgz",
                   appid: str | None = None) -> int:
        """A chat record of account ``appid`` (default: the first); 2003 (客服接收消息) is the
        citizen's, 2002 (客服发送信息) the agent's."""
        with self._lock:
            msgid = next(self._msgids)
            self.records.append({"msgid": msgid, "openid": openid, "opercode": opercode, "text": text,
                                 "time": when, "worker": worker, "appid": appid or self.appid})
            return msgid

    def fail(self, path: str, *faults: int | str) -> None:
        """The next requests to ``path`` answer these: an errcode (45009, -1, 40001…) or "http:500"."""
        with self._lock:
            self._faults[path].extend(faults)

    def count(self, path: str, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for t, p in self.requests if p == path and t >= since)

    # --- the API ---------------------------------------------------------------------

    def _token(self, q: dict) -> tuple[int, dict]:
        if q.get("grant_type") != "client_credential":
            return 200, _err(40002, "invalid grant_type")
        secrets = {**self.apps, self.appid: self.secret}
        if q.get("appid") not in secrets:
            return 200, _err(40013, "invalid appid")
        if q.get("secret") != secrets[q["appid"]]:
            return 200, _err(40125, "invalid appsecret")
        token = uuid.uuid4().hex + uuid.uuid4().hex
        self.tokens[token] = {"until": time.time() + self.token_ttl, "uses": 0, "appid": q["appid"]}
        return 200, {"access_token": token, "expires_in": self.token_ttl}

    def _msglist(self, q: dict, body: bytes) -> tuple[int, dict]:
        token = q.get("access_token")
        if not token:
            return 200, _err(41001, "access_token missing")
        t = self.tokens.get(token)
        if t is None:
            return 200, _err(40001, "invalid credential, access_token is invalid or not latest")
        t["uses"] += 1
        if time.time() >= t["until"] or (self.token_uses is not None and t["uses"] > self.token_uses):
            return 200, _err(42001, "access_token expired")
        try:
            req = json.loads(body)
            start, end, msgid, number = (int(req[k]) for k in ("starttime", "endtime", "msgid", "number"))
        except (ValueError, KeyError, TypeError):
            return 200, _err(65416, "invalid parameter")
        if not 1 <= number <= 10000 or end < start or msgid < 1:
            return 200, _err(65416, "invalid parameter")
        if end - start > 86400:
            return 200, _err(65417, "query time range exceeds limit")
        page = sorted((r for r in self.records if r["appid"] == t["appid"] and start <= r["time"] <= end
                       and r["msgid"] >= msgid), key=lambda r: r["msgid"])[:number]
        return 200, {"recordlist": [{k: v for k, v in r.items() if k not in ("msgid", "appid")} for r in page],
                     "number": len(page), "msgid": page[-1]["msgid"] if page else msgid}

    def _answer(self, method: str, path: str, query: str, body: bytes) -> tuple[int, dict | None]:
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        with self._lock:
            self.requests.append((time.monotonic(), path))
            if self._faults[path]:
                fault = self._faults[path].popleft()
                if isinstance(fault, str) and fault.startswith("http:"):
                    return int(fault[5:]), None
                return 200, _err(int(fault), {45009: "reach max api daily quota limit", -1: "system error"}.get(
                    int(fault), "injected fault"))
            if path == TOKEN_PATH and method == "GET":
                return self._token(q)
            if path == MSGLIST_PATH and method == "POST":
                return self._msglist(q, body)
        return 404, None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeWeChat:
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _do(self):
                t0 = time.thread_time()
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, doc = fake._answer(self.command, parts.path, parts.query, body)
                out = json.dumps(doc, ensure_ascii=False).encode() if doc is not None else b"error"
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8" if doc is not None else "text/plain")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                fake.cpu_seconds += time.thread_time() - t0  # approximate (no lock): for benchmarks

            do_GET = do_POST = _do

            def log_message(self, fmt, *args):
                pass

        return self._serve(H)


# --- the push side: what WeChat sends to our callback --------------------------------


def _cdata(value: str) -> str:
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def push_xml(msg_type: str, *, to_user: str = "gh_wzgz0000001", from_user: str = "oDF3iY9ffA-hqb2vVvbr7qxf6A0Q",
             create_time: int | None = None, msg_id: int | None = None, **fields) -> str:
    """A push as WeChat's samples write it: CDATA strings, bare numbers, MsgId last."""
    numeric = {"CreateTime", "MsgId", "Location_X", "Location_Y", "Scale", "Latitude", "Longitude", "Precision"}
    items = [("ToUserName", to_user), ("FromUserName", from_user),
             ("CreateTime", create_time or int(time.time())), ("MsgType", msg_type), *fields.items()]
    if msg_id is not None:
        items.append(("MsgId", msg_id))
    lines = [f"<{k}>{v if k in numeric else _cdata(v)}</{k}>" for k, v in items]
    return "<xml>\n  " + "\n  ".join(lines) + "\n</xml>"


def text_xml(content: str, msg_id: int, **kw) -> str:
    return push_xml("text", Content=content, msg_id=msg_id, **kw)


def image_xml(pic_url: str, media_id: str, msg_id: int, **kw) -> str:
    return push_xml("image", PicUrl=pic_url, MediaId=media_id, msg_id=msg_id, **kw)


def voice_xml(media_id: str, recognition: str, msg_id: int, fmt: str = "amr", **kw) -> str:
    return push_xml("voice", MediaId=media_id, Format=fmt, Recognition=recognition, msg_id=msg_id, **kw)


def location_xml(x: float, y: float, label: str, msg_id: int, scale: int = 15, **kw) -> str:
    return push_xml("location", Location_X=x, Location_Y=y, Scale=scale, Label=label, msg_id=msg_id, **kw)


def event_xml(event: str, event_key: str | None = None, **kw) -> str:
    fields: dict[str, Any] = {"Event": event} | ({"EventKey": event_key} if event_key is not None else {})
    return push_xml("event", **fields, **kw)


class PushClient:
    """Signs and sends pushes to one account's callback URL, as WeChat's servers do."""

    def __init__(self, callback_url: str, token: str, appid: str, encoding_aes_key: str | None = None):
        self.url, self.token, self.appid = callback_url, token, appid
        self.crypto = WeChatCrypto(token, encoding_aes_key, appid) if encoding_aes_key else None

    def _sign(self, *parts: str) -> str:
        signer = WeChatSigner()
        signer.add_data(self.token, *parts)
        return signer.signature

    def _request(self, method: str, query: dict, body: bytes | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(f"{self.url}?{urlencode(query)}", data=body, method=method,
                                     headers={"Content-Type": "text/xml"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()

    def verify(self, echostr: str = "7180543927143513460", *, forge: bool = False) -> tuple[int, bytes]:
        """URL verification (接入验证): GET with signature, timestamp, nonce, echostr."""
        ts, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
        sig = "0" * 40 if forge else self._sign(ts, nonce)
        return self._request("GET", {"signature": sig, "timestamp": ts, "nonce": nonce, "echostr": echostr})

    def push(self, xml: str | bytes, *, encrypt: bool = False, forge: bool | str = False, unsigned: bool = False,
             openid: str = "oDF3iY9ffA-hqb2vVvbr7qxf6A0Q", timestamp: int | None = None,
             nonce: str | None = None) -> tuple[int, bytes]:
        """POST one push; ``encrypt``: safe mode (the body is <ToUserName/><Encrypt/>, plus msg_signature).

        ``forge=True`` spoils every signature, ``forge="msg"`` only msg_signature (safe mode);
        ``timestamp`` and ``nonce`` (default: now, and a fresh one) are signed as given."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or uuid.uuid4().hex[:10]
        query = {"signature": self._sign(ts, nonce), "timestamp": ts, "nonce": nonce, "openid": openid}
        body = xml.encode() if isinstance(xml, str) else xml
        if encrypt:
            assert self.crypto is not None, "safe mode needs encoding_aes_key"
            envelope = _fields(self.crypto.encrypt_message(xml, nonce, ts))
            body = (f"<xml>\n  <ToUserName>{_cdata('gh_wzgz0000001')}</ToUserName>\n"
                    f"  <Encrypt>{_cdata(envelope['Encrypt'])}</Encrypt>\n</xml>").encode()
            query |= {"encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]}
        if forge is True:
            query["signature"] = "0" * 40
        if forge and encrypt:
            query["msg_signature"] = "0" * 40
        if unsigned:
            query = {"openid": openid}
        return self._request("POST", query, body)

    def decrypt_reply(self, body: bytes) -> dict:
        """A safe-mode passive reply, decrypted and parsed (checks its msg_signature too)."""
        assert self.crypto is not None, "safe mode needs encoding_aes_key"
        outer = _fields(body.decode())
        inner = self.crypto.decrypt_message(outer, outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"])
        return _fields(inner)


def _fields(xml: str | bytes) -> dict[str, str]:
    """A flat WeChat ``<xml>`` document as {tag: text} (our own trusted XML: ElementTree will do)."""
    return {child.tag: child.text or "" for child in ElementTree.fromstring(xml)}
