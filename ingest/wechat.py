"""WeChat official accounts (微信公众号): pushed messages, and a poll that reconciles.

One connector per account under ``channels.wechat.accounts``; account ``gz``
serves ``GET|POST /wechat/gz`` on the ingest worker (the URL configured in the
account's developer settings, 服务器配置).

**Push** (the main path). Delivery order of one callback — the guarantee lives
in this order:

1. Authenticate: the query ``signature`` =
   sha1(sorted(token, timestamp, nonce)); a ``timestamp`` within
   ``channels.wechat.max_age_seconds`` of now, either way; a (timestamp, nonce)
   pair this account has not taken inside that window. Then the account's mode,
   which its configuration fixes and the request never chooses: an account with
   ``encoding_aes_key`` (safe mode) takes only a body whose ``<Encrypt>`` carries a
   valid ``msg_signature`` (which covers the ciphertext), whatever ``encrypt_type``
   says or omits; a plain account refuses ``encrypt_type=aes``. Anything else gets
   403 and nothing is kept. (In plain mode the signature does not cover the body,
   so a captured query could carry another body: configure ``encoding_aes_key`` —
   safe mode — for any account reachable from the internet.)
2. Decrypt (safe mode, wechatpy's WeChatCrypto) and parse the XML with defusedxml
   (:func:`parse_xml`: no DTD, no entities, no duplicated elements, no nesting
   outside events, WeChat's required fields present).
3. Events (subscribe, unsubscribe, CLICK, VIEW, SCAN, LOCATION reports…) are
   acknowledged and *not* published: they carry no citizen's words, and a
   follower count is not a case.
4. A message becomes an intake envelope, source id ``<appid>:<MsgId>`` (keyed into its id);
   what cannot be read becomes a dead letter (the body is quarantined under the
   state directory; the dead letter carries the masked reason and a reference,
   no excerpt: the XML names the citizen's openid).
5. :meth:`Connector.spool` it: fsync'd to local SQLite, ``INSERT OR IGNORE``
   by id — WeChat's retries of the same MsgId (it waits 5 s and retries up to
   three times) collapse here, and after publication in the delivery journal.
6. Reply at once (``success``, or a short passive receipt, encrypted in safe
   mode). WeChat never waits for Kafka.
7. The drainer thread — or, while Kafka is down, the scheduled ``run_once`` with
   back-off — publishes the spool and deletes what Kafka acknowledged. A record
   near the size limit is fitted (base.py, **Size**) and drained like any other,
   so it never holds back the pushes behind it.

**Replays.** Each account remembers the (timestamp, nonce) pairs it took for as
long as their timestamp is inside the window (at most :attr:`WeChatConnector.NONCES`
per account, the oldest forgotten first), in the worker's memory. A pair is taken
once the request is authenticated (in safe mode, its msg_signature too), before the
XML is parsed, so a replay is refused even when the first request's XML was not
readable; a forgery cannot use up WeChat's pair; it is given back only when the handler
failed on our side (a 500), so WeChat's retry of that push can still land. With
several ingest workers behind a load balancer each remembers only what it took:
a replay that reaches another worker inside the window passes this check. In
safe mode that replay is the same ciphertext, so the same MsgId, and the spool's
and the delivery journal's de-duplication by message id make it nothing; in plain
mode the body is not signed, so a replay there can carry a message of the
attacker's (any openid, a fresh MsgId) within the window — one more reason for
safe mode. WeChat's documentation does not say whether its own retries reuse the
timestamp and nonce; if one does, it is refused here only after the first attempt
was spooled, so nothing is lost.

**Unreadable pushes** (malformed XML, a duplicated or nested element, a missing
required field, a ciphertext our key cannot open — after a valid signature) are
answered 400 and dead-lettered through the same spool, so the dead letter is as
durable as a message and the handler never answers 500. Why 400 and not
``success``: WeChat's documentation describes retries of a push left unanswered
for 5 s, and a retry of a 400 would carry the same body, so the same dead-letter id
(the body's digest) and nothing more; the 400 shows in the account's callback
error statistics and the citizen sees WeChat's "该公众号暂时无法提供服务" — both
true, since the message reached no office — where ``success`` would hide a broken
integration (a wrong ``encoding_aes_key``, a changed format) from the only people
who can fix it. The dead letter is what an operator audits.

**Poll** (``poll: true`` and a ``secret``): customer-service chat records
(``customservice/msgrecord/getmsglist``) in windows of at most 24 hours, paged
by ``msgid``. Records carry no MsgId, so their source ids are
``<appid>:rec:<time>:<hash(openid, time, text)>``: re-polling a window
de-duplicates against earlier polls, and a record is skipped when a push with
the same (openid, time, text) was already taken on this machine — pushes that
reached another machine are not known here, so an account polled for backfill
should push to one ingest host (or accept rare doubles on reconciliation).
Per the API's documentation, opercode 2003 (客服接收消息) is the citizen's
message and 2002 (客服发送信息) the agent's reply; only 2003 is published.

Access tokens: ``/cgi-bin/token`` invalidates the previous token of the appid
after a grace period, so on an account whose token other systems also fetch,
give wenzheng its own token service (or ``stable_token``) before enabling poll.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as DefusedET
from defusedxml import DefusedXmlException
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import TextReply

from wenzheng.core import envelope
from wenzheng.core.errors import BadMessage, TransientError, WenzhengError
from wenzheng.core.privacy import pseudonym
from wenzheng.core.service import Body, Param, Reply, Request, Route
from wenzheng.core.storage import LocalDB, shared

from .base import Connector, Page, Pages, State

log = logging.getLogger(__name__)

XML = "application/xml; charset=utf-8"
PLAIN = "text/plain; charset=utf-8"
FORBIDDEN = (403, PLAIN, b"forbidden")
SUCCESS = (200, PLAIN, b"success")
UNREADABLE = (400, PLAIN, b"unreadable push: dead-lettered")
REQUIRED = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
"""Fields of every push; a message adds MsgId, an event Event."""
MAX_FIELDS = 100
"""Top-level elements a push may have (WeChat's have under twenty)."""
#: A push as the OpenAPI document shows it (WeChat's XML, <xml> at the root)
PUSH_SCHEMA = {"type": "object", "xml": {"name": "xml"}, "properties": {
    **{k: {"type": "string"} for k in ("ToUserName", "FromUserName", "MsgType", "Content", "Event", "Encrypt")},
    "CreateTime": {"type": "integer"}, "MsgId": {"type": "integer"}}}

#: errcodes worth waiting for: -1 system busy, 45009 daily / 45011 minute quota reached
TRANSIENT_CODES = {-1, 45009, 45011}
#: errcodes that mean "this access token is no good": fetch a new one and retry once
TOKEN_CODES = {40001, 40014, 42001}
#: Text of media messages, which carry none (the envelope needs text; a clerk sees the attachment)
PLACEHOLDER = {"image": "[图片]", "voice": "[语音]", "video": "[视频]", "shortvideo": "[视频]"}


class WeChatAPIError(WenzhengError):
    """An errcode that waiting will not fix (bad secret, API not enabled): logged, backed off."""


def parse_xml(data: bytes | str) -> dict[str, str | None]:
    """A pushed ``<xml>`` as {tag: stripped text or None} (what envelopes keep as ``raw``).

    WeChat writes one flat level of fields: a tag given twice, or a message field with
    elements inside, is refused (BadMessage) rather than guessed at — which copy is the
    citizen's? Only events nest (a scan's ScanCodeInfo, a photo menu's SendPicsInfo):
    their nested elements are left out, since events are never published. defusedxml
    refuses DTDs and entities (billion laughs, external files); nothing recurses, so no
    depth of nesting can exhaust the stack."""
    try:
        root = DefusedET.fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:  # a str declaring an encoding, an unknown one
        raise BadMessage(str(exc)) from None
    if root.tag != "xml":
        raise BadMessage(f"root element <{str(root.tag)[:40]}>, not <xml>")
    if len(root) > MAX_FIELDS:
        raise BadMessage(f"{len(root)} elements in <xml>, more than {MAX_FIELDS}")
    fields: dict[str, str | None] = {}
    nested: list[str] = []
    for child in root:
        tag = str(child.tag)
        if tag in fields or tag in nested:
            raise BadMessage(f"duplicated element <{tag[:40]}>")
        if len(child):
            nested.append(tag)
        else:
            fields[tag] = (child.text or "").strip() or None
    if nested and (fields.get("MsgType") or "").lower() != "event":
        raise BadMessage(f"nested element <{nested[0][:40]}> in a message")
    return fields


def required_fields(msg: dict[str, str | None]) -> None:
    """Raise BadMessage unless ``msg`` has what every push of its kind carries."""
    event = (msg.get("MsgType") or "").lower() == "event"
    missing = [f for f in (*REQUIRED, "Event" if event else "MsgId") if not msg.get(f)]
    if missing:
        raise BadMessage(f"push lacks {', '.join(missing)}")


def sign(*parts: str) -> str:
    """WeChat's signature: sha1 of the parts sorted and joined."""
    return hashlib.sha1(b"".join(sorted(p.encode() for p in parts))).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


class _Nonces:
    """The (timestamp, nonce) pairs one account took, each until its timestamp leaves the
    window; at most ``size`` (the oldest taken is forgotten first). Handlers run on
    several threads, hence the lock."""

    def __init__(self, window: float, size: int):
        self.window, self.size = window, size
        self._taken: OrderedDict[tuple[int, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, timestamp: int, nonce: str) -> bool:
        """False when the pair was taken already (a replay)."""
        now = time.time()
        with self._lock:
            while self._taken and (next(iter(self._taken.values())) < now or len(self._taken) >= self.size):
                self._taken.popitem(last=False)
            if (timestamp, nonce) in self._taken:
                return False
            self._taken[(timestamp, nonce)] = timestamp + self.window
            return True

    def give_back(self, timestamp: int, nonce: str) -> None:
        with self._lock:
            self._taken.pop((timestamp, nonce), None)


def _record_key(openid: str, when: int, text: str) -> str:
    return hashlib.sha1(f"{openid}\n{when}\n{text.strip()}".encode()).hexdigest()[:16]


class _Seen:
    """Pushed texts by (openid, time, text), so reconciliation skips what a push already took."""

    SCHEMA = "CREATE TABLE IF NOT EXISTS seen (account TEXT, key TEXT, ms INTEGER, PRIMARY KEY (account, key))"

    def __init__(self, path: Path) -> None:
        self.db = LocalDB(path, self.SCHEMA)

    def add(self, account: str, key: str) -> None:
        with self.db.transaction() as tx:
            tx.execute("INSERT INTO seen VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [account, key, int(time.time() * 1000)])

    def has(self, account: str, key: str) -> bool:
        return bool(self.db.query("SELECT 1 FROM seen WHERE account=? AND key=?", [account, key]))

    def prune(self, days: float) -> None:
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM seen WHERE ms < ?", [int((time.time() - days * 86400) * 1000)])


def _seen_for(state_dir: Path) -> _Seen:
    return shared(_Seen, state_dir / "wechat-seen.sqlite3")


class _Accounts(dict[str, "WeChatConnector"]):
    """One worker's accounts by id: a single ``/wechat/{account}`` route serves them all."""

    def handle(self, req: Request) -> Reply:
        connector = self.get(req.params.get("account", ""))
        return connector.handle(req) if connector else (404, PLAIN, b"no such account")


class WeChatConnector(Connector):
    channel = "wechat"
    accounts: _Accounts | None = None
    """Shared by the accounts from_config made together (else this one alone)."""

    RECEIPT = "您的留言已收到，我们将尽快转交相关部门办理。"
    """Passive reply to a citizen's message; empty: reply ``success`` (nothing shown)."""
    PAGE = 10000  # getmsglist's maximum ``number``
    WINDOW = 86400  # getmsglist's longest query period
    BACKFILL = 86400  # how far back the first poll of an account looks
    SETTLE = 60  # records newer than this may still be on their way: the next poll takes them
    TOKEN_MARGIN = 300  # renew the access token this long before WeChat says it expires
    TIMEOUT = 10
    NONCES = 100_000
    """(timestamp, nonce) pairs remembered per account: over 300 pushes a second for the default window."""

    def __init__(self, runtime, publisher, name: str, account_id: str, account, api_base: str, poll_seconds: float):
        super().__init__(runtime, publisher, name)
        self.account_id, self.account = account_id, account
        self.appid = account.appid
        self.token = account.token.get_secret_value()
        aes = account.encoding_aes_key.get_secret_value() if account.encoding_aes_key else ""
        self.crypto = WeChatCrypto(self.token, aes, self.appid) if aes else None
        self.api_base = api_base.rstrip("/")
        self.poll_seconds = poll_seconds
        self._access_token: str | None = None
        self._token_until = 0.0
        self.max_age = runtime.settings.channels.wechat.max_age_seconds
        self.nonces = _Nonces(self.max_age, self.NONCES)

    @classmethod
    def from_config(cls, runtime, make_publisher):
        ch = runtime.settings.channels.wechat
        made = [cls(runtime, make_publisher(f"wechat.{aid}"), f"wechat.{aid}", aid, acct, ch.api_base,
                    ch.poll_seconds if acct.poll else 0.0)
                for aid, acct in ch.accounts.items()]
        accounts = _Accounts({c.account_id: c for c in made})
        for c in made:
            c.accounts = accounts
        return made

    def routes(self) -> list[Route]:
        """Every account declares the same two routes; the service serves them once."""
        if self.accounts is None:
            self.accounts = _Accounts({self.account_id: self})
        signed = (Param("signature", required=True), Param("timestamp", required=True), Param("nonce", required=True))
        refused = {403: Body("unsigned, forged, stale or replayed, or not in the account's mode", ("text/plain",)),
                   404: Body("no such account", ("text/plain",))}
        return [
            Route("/wechat/{account}", self.accounts.handle, summary="WeChat's URL check (接入验证): echoes echostr",
                  params=(*signed, Param("echostr", required=True)),
                  responses={200: Body("echostr", ("text/plain",)), 400: Body("echostr missing", ("text/plain",)),
                             **refused}),
            Route("/wechat/{account}", self.accounts.handle, ("POST",), summary="a pushed message or event",
                  params=(*signed, Param("encrypt_type", schema={"enum": ["raw", "aes"]}), Param("msg_signature")),
                  body=Body("the message, XML (in safe mode: <Encrypt> holds it)", ("text/xml", "application/xml"),
                            PUSH_SCHEMA),
                  responses={200: Body("success, or a passive reply (encrypted in safe mode)",
                                       ("text/plain", "application/xml")),
                             400: Body("signed but unreadable: dead-lettered", ("text/plain",)), **refused}),
        ]

    # --- push ------------------------------------------------------------------------

    def handle(self, req: Request) -> Reply:
        """One callback from WeChat (steps 1–6 of the order above)."""
        q = {k: v[-1] for k, v in parse_qs(req.query, keep_blank_values=True).items()}
        why = self.refusal(q)
        if why is None and req.method == "GET":  # URL verification (接入验证): echo echostr
            return (200, PLAIN, q["echostr"].encode()) if "echostr" in q else (400, PLAIN, b"echostr missing")
        ciphertext = ""
        if why is None and self.crypto is not None:
            ciphertext = self._ciphertext(req.body, q)
            why = None if ciphertext else "not encrypted and signed with msg_signature, as a safe-mode account's"
        elif why is None and q.get("encrypt_type", "raw") != "raw":
            why = "encrypted, to an account without encoding_aes_key"
        if why is None and not self.nonces.take(int(q["timestamp"]), q["nonce"]):
            why = "replayed (timestamp and nonce taken already)"
        if why is not None:
            log.warning("refused a callback: %s", why, extra={"connector": self.name, "client": req.client})
            return FORBIDDEN
        try:
            return self._take(req.body, ciphertext, q)
        except BaseException:  # our failure, not the push's: WeChat's retry may use the pair again
            self.nonces.give_back(int(q["timestamp"]), q["nonce"])
            raise

    def refusal(self, q: dict[str, str]) -> str | None:
        """Why the query is not WeChat's own, fresh one (None: it is)."""
        ts, nonce = q.get("timestamp", ""), q.get("nonce", "")
        if not _same(sign(self.token, ts, nonce), q.get("signature", "")):
            return "unsigned or forged"
        if not (ts.isascii() and ts.isdigit() and len(ts) <= 12) or not nonce:
            return "no usable timestamp or nonce"
        if abs(time.time() - int(ts)) > self.max_age:
            return f"timestamp off by {int(time.time()) - int(ts)} s, beyond max_age_seconds"
        return None

    def _ciphertext(self, body: bytes, q: dict[str, str]) -> str:
        """Safe mode: the body's ``<Encrypt>`` when ``msg_signature`` covers it, else ""."""
        try:
            encrypted = parse_xml(body).get("Encrypt") or ""
        except BadMessage:
            return ""
        signature = sign(self.token, q["timestamp"], q["nonce"], encrypted)
        return encrypted if encrypted and _same(signature, q.get("msg_signature", "")) else ""

    def _decrypt(self, ciphertext: str, q: dict[str, str]) -> bytes:
        """The XML a signed ciphertext holds (BadMessage when our key cannot open it)."""
        assert self.crypto is not None
        try:
            return str(self.crypto.decrypt_message({"Encrypt": ciphertext}, q["msg_signature"], q["timestamp"],
                                                   q["nonce"])).encode()
        except Exception as exc:  # signed, but not for our key (or not base64 at all)
            raise BadMessage(f"cannot decrypt ({type(exc).__name__}): check encoding_aes_key") from None

    def _take(self, body: bytes, ciphertext: str, q: dict[str, str]) -> Reply:
        """Steps 2–6 for an authenticated push (``ciphertext``: its ``<Encrypt>``, in safe mode)."""
        try:
            body = self._decrypt(ciphertext, q) if ciphertext else body  # unopened: the signed body is kept
            msg = parse_xml(body)
            required_fields(msg)
        except BadMessage as exc:
            return self._dead_push(f"unreadable push: {exc.reason}", hashlib.sha256(body).hexdigest()[:16], body)
        kind = str(msg["MsgType"]).lower()
        if kind == "event":
            log.debug("event acknowledged", extra={"connector": self.name, "event": msg.get("Event")})
            return SUCCESS
        try:
            env = self.to_envelope(msg)
        except BadMessage as exc:
            return self._dead_push(f"unreadable push: {exc.reason}", str(msg["MsgId"]), body)
        self.spool([env])
        if self.account.poll and kind == "text":
            key = _record_key(str(msg["FromUserName"]), int(msg["CreateTime"] or ""), env["text"])
            _seen_for(self.runtime.state_dir).add(self.account_id, key)
        return self._reply(msg, q["nonce"])

    def to_envelope(self, m: dict) -> dict:
        """An intake envelope from one decrypted push (raises BadMessage)."""
        msg_id, openid, kind = m.get("MsgId"), m.get("FromUserName"), str(m.get("MsgType") or "").lower()
        if not msg_id or not openid:
            raise BadMessage("message lacks MsgId or FromUserName")
        try:
            posted = datetime.fromtimestamp(int(m.get("CreateTime") or ""), envelope.TZ)
        except (TypeError, ValueError, OverflowError, OSError):  # OverflowError/OSError: out of time_t's range
            raise BadMessage(f"bad CreateTime {m.get('CreateTime')!r}") from None
        text, attachments, location = "", [], None
        if kind == "text":
            text = m.get("Content") or ""
            if not text:
                raise BadMessage("text message without Content")
        elif kind == "image":
            text = PLACEHOLDER[kind]
            attachments = [{"kind": "image", "url": m.get("PicUrl"), "media_id": m.get("MediaId")}]
        elif kind == "voice":  # Recognition is there when the account enabled 语音识别
            text = (m.get("Recognition") or "").strip() or PLACEHOLDER[kind]
            attachments = [{"kind": "voice", "media_id": m.get("MediaId"), "format": m.get("Format")}]
        elif kind in ("video", "shortvideo"):
            text = PLACEHOLDER[kind]
            attachments = [{"kind": "video", "media_id": m.get("MediaId"), "thumb_media_id": m.get("ThumbMediaId")}]
        elif kind == "location":
            try:
                lat, lon = float(m["Location_X"]), float(m["Location_Y"])
            except (KeyError, TypeError, ValueError):
                raise BadMessage("location without Location_X/Location_Y") from None
            if not (abs(lat) <= 90 and abs(lon) <= 180):  # also refuses nan
                raise BadMessage("location outside the globe")
            label = (m.get("Label") or "").strip()
            location = {"text": label, "lat": lat, "lon": lon, "scale": m.get("Scale")}
            text = f"[位置] {label}" if label else f"[位置] {lat},{lon}"
        elif kind == "link":
            text = "\n".join(dict.fromkeys(s for s in (m.get("Title"), m.get("Description")) if s)) or "[链接]"
            attachments = [{"kind": "link", "url": m.get("Url")}]
        else:
            raise BadMessage(f"unsupported MsgType {kind!r}")
        return self.envelope(
            channel="wechat", account=self.account_id, source_id=f"{self.appid}:{msg_id}", text=text,
            posted_at=posted, author=pseudonym(self.key, "wechat", openid), attachments=attachments,
            location=location, pii={"openid": openid}, raw=m,
        )

    def _reply(self, m: dict, nonce: str) -> Reply:
        if not self.RECEIPT:
            return SUCCESS
        reply = TextReply(source=m.get("ToUserName"), target=m.get("FromUserName"), content=self.RECEIPT,
                          time=int(time.time())).render()
        if self.crypto is not None:
            reply = self.crypto.encrypt_message(reply, nonce)
        return 200, XML, reply.encode()

    def _dead_push(self, reason: str, ref: str, body: bytes) -> Reply:
        """Quarantine a signed but unreadable body, spool its dead letter (no excerpt: the XML
        names the citizen), answer 400."""
        qdir = self.runtime.state_dir / "quarantine" / self.name
        qdir.mkdir(parents=True, exist_ok=True)
        qfile = qdir / f"{hashlib.sha256(body).hexdigest()[:16]}.xml"
        qfile.write_bytes(body)
        out = self.dead(reason, f"wechat:{self.appid}:{ref}",
                        {"account": self.account_id, "bytes": len(body),
                         "quarantine": str(qfile.relative_to(self.runtime.state_dir))})
        self.spool([], [out])  # as durable as a message; wakes the drainer
        return UNREADABLE

    # --- poll ------------------------------------------------------------------------

    def fetch(self, cursor: State) -> Pages:
        """Reconcile: customer-service records window by window, page by page.

        The checkpoint (format 1: ``{"start", "msgid"}``) holds the window start and
        the msgid cursor inside it; the base moves it only after Kafka acknowledged
        the page."""
        if not (self.account.poll and self.account.secret):
            return
        horizon = int(time.time()) - self.SETTLE
        start = int(cursor.get("start") or horizon - self.BACKFILL)
        msgid = int(cursor.get("msgid") or 1) if cursor.get("start") else 1
        while start < horizon:
            end = min(start + self.WINDOW, horizon)
            yield from self._window(start, end, msgid)
            start, msgid = end, 1
        _seen_for(self.runtime.state_dir).prune(self.runtime.settings.state.dedup_retention_days)

    def _window(self, start: int, end: int, msgid: int) -> Pages:
        """The pages of one window; the last one's state is the next window's start."""
        while True:
            doc = self._api("/customservice/msgrecord/getmsglist",
                            {"starttime": start, "endtime": end, "msgid": msgid, "number": self.PAGE})
            records = doc.get("recordlist") or []
            envs, dead = self._from_records(records)
            if len(records) < self.PAGE:
                # Windows overlap by one second (inclusive bounds); the ids absorb the overlap.
                yield Page(envs, dead, state={"start": end, "msgid": 1}, fetched=len(records))
                return
            # The next page starts at the returned msgid. Whether the API counts it inclusively is
            # not documented: a repeated record has the same id and is dropped by the journal.
            msgid = max(int(doc.get("msgid") or 0), msgid + 1)
            yield Page(envs, dead, state={"start": start, "msgid": msgid}, fetched=len(records))

    def _from_records(self, records: list) -> tuple[list[dict], list]:
        envs, dead, seen = [], [], _seen_for(self.runtime.state_dir)
        for r in records:
            if not isinstance(r, dict) or r.get("opercode") != 2003:
                continue  # 2002: the agent's words
            openid, when, text = r.get("openid"), r.get("time"), str(r.get("text") or "")
            if not openid or not isinstance(when, int) or not text.strip():
                ref = hashlib.sha256(json.dumps(r, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
                dead.append(self.dead("chat record lacks openid, time or text", f"wechat:{self.appid}:rec:{ref}",
                                      {"account": self.account_id, "api": "getmsglist"}, text))
                continue
            key = _record_key(openid, when, text)
            if seen.has(self.account_id, key):
                continue  # a push already took it
            envs.append(self.envelope(
                channel="wechat", account=self.account_id, source_id=f"{self.appid}:rec:{when}:{key}",
                text=text, posted_at=datetime.fromtimestamp(when, envelope.TZ),
                author=pseudonym(self.key, "wechat", openid), pii={"openid": openid},
                context=f"客服 {r.get('worker') or ''}".strip(), raw=r,
            ))
        return envs, dead

    def _api(self, path: str, body: dict, retried: bool = False) -> dict:
        url = f"{self.api_base}{path}?{urlencode({'access_token': self._token()})}"
        doc = self._http(url, path, body)
        if doc.get("errcode") in TOKEN_CODES and not retried:
            log.info("access token refused (errcode %s), renewing", doc["errcode"], extra={"connector": self.name})
            self._access_token = None
            return self._api(path, body, retried=True)
        self._check(doc, path)
        return doc

    def _token(self) -> str:
        """The cached access token, fetched again shortly before WeChat's expires_in."""
        if self._access_token and time.monotonic() < self._token_until:
            return self._access_token
        query = urlencode({"grant_type": "client_credential", "appid": self.appid,
                           "secret": self.account.secret.get_secret_value()})
        doc = self._http(f"{self.api_base}/cgi-bin/token?{query}", "/cgi-bin/token")
        self._check(doc, "/cgi-bin/token")
        ttl = int(doc.get("expires_in") or 7200)
        self._access_token = doc["access_token"]
        self._token_until = time.monotonic() + max(0, ttl - min(self.TOKEN_MARGIN, ttl // 2))
        return self._access_token

    def _check(self, doc: dict, what: str) -> None:
        code = doc.get("errcode") or 0
        if code == 0:
            return
        msg = f"WeChat {what}: errcode {code} {doc.get('errmsg', '')}".strip()
        raise (TransientError if code in TRANSIENT_CODES else WeChatAPIError)(msg)

    def _http(self, url: str, what: str, body: dict | None = None) -> dict:
        """GET (or POST JSON) and decode; errors name the path only, never the token or secret."""
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=self.TIMEOUT) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            kind = TransientError if exc.code >= 500 or exc.code == 429 else WeChatAPIError
            raise kind(f"WeChat {what}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransientError(f"WeChat {what}: {getattr(exc, 'reason', exc)}") from None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise TransientError(f"WeChat {what}: not JSON") from None
        if not isinstance(doc, dict):
            raise TransientError(f"WeChat {what}: not a JSON object")
        return doc

