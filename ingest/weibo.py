"""Weibo (微博) accounts: what citizens @mention the platform account with, and their
comments on its posts, polled from m.weibo.cn's JSON endpoints.

One connector per account under ``channels.weibo.accounts`` (name ``weibo.<id>``),
polled every ``poll_seconds``. Each poll reads these *streams*, newest first:

- ``mentions``      ``/message/mentionsAt?max_id=``   posts that @mention the account
- ``mentions_cmt``  ``/message/mentionsCmt?max_id=``  comments (anywhere) that @mention it
- ``comments:<mid>`` ``/comments/hotflow?id=&mid=&max_id=&max_id_type=`` comments on one of
  the account's own posts — the posts on the first page of its timeline
  (weibo-api's ``getIndex?containerid=230413<uid>_-_WEIBO_SECOND_PROFILE_WEIBO``),
  fetched only when a post's ``comments_count`` moved since its stream last caught up, or
  when the count is a display form that hides a move (``100万+``, ``1.2万``, ``999+``;
  :func:`parse_count`): such a post's first page is asked for at every poll.

Answers look like ``{"ok": 1, "data": {"data": [...], "max_id": <next page>, "total_number": n}}``;
``max_id`` 0 means no older page. A bare ``{"ok": 1, "data": [...]}`` (as some message
endpoints answer) is read as one page with no older one: the since-id cursor still
keeps a message from being published twice. The message endpoints need the account's login
cookie (``cookie`` in its config).

**Cursor** (``checkpoint.state["streams"][<stream>]``, one per account and per post;
``checkpoint.state["posts"]``: each watched post's comment count when its stream
last caught up; format 1):
``since`` is the newest item id already published. A run reads pages from the
newest down until it meets an id ≤ ``since`` (caught up) or the oldest page; then
``since`` becomes the newest id the run saw (``top``). A run that hits ``max_pages``
first stores ``top`` and ``resume`` (the next page's ``max_id``) and goes on from
there at the next poll; items that arrive meanwhile are newer than ``top`` and
are read by the run after. Weibo ids (mids, comment ids) grow with time.

**Delivery order** (base.py's, page by page): :meth:`fetch` yields a page (with the
long text of its long posts, ``/statuses/extend?id=``) as envelopes, dead letters
for malformed items (one item, any exception: the template's rule, so an item no
code here foresaw is dead-lettered, never the poll failed), the account's own posts
and replies skipped; the base
publishes it (returns once Kafka acknowledged), and only then moves the stream's
cursor and saves the checkpoint.
A crash in between re-reads the page; the publisher's journal drops the ids it
already delivered.

**Anti-crawling.** m.weibo.cn answers scrapers with HTTP 403/418, ``{"ok": 0}``,
``{"ok": -100}`` (log in) or an HTML page instead of JSON. Each is a
:class:`~wenzheng.core.errors.TransientError`: the poll stops where it is (what was
published stays published) and ``run_once`` backs off exponentially with jitter.
418/429 and HTML pages are about the host, not one account, so they also close a
per-host gate that every account on that ``api_base`` respects: while it is
closed their polls are skipped (2 s, 4 s, … up to 10 minutes), so 500 accounts do
not each probe a throttled host.

weibo-api 0.0.4 is used for its URL shapes only (``weibo_api.config.urls``): its
client hard-codes ``https://m.weibo.cn/``, sends requests without a timeout or a
cookie, does not check ``ok`` or the HTTP status, and knows no mentions or
comments endpoints, so the requests are made here against the configured
``api_base``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Generator
from datetime import datetime, timedelta, timezone
from functools import partial
from html.parser import HTMLParser
from urllib.parse import urlencode

from weibo_api.config.urls import STATUS_DETAIL_URL, WEIBO_API_ROOT, WEIBO_LIST_URL

from wenzheng.core import envelope
from wenzheng.core.delivery import Out
from wenzheng.core.errors import BadMessage, TransientError
from wenzheng.core.privacy import pseudonym

from .base import EXCERPT_CHARS, Connector, Envelope, Page, Pages, State, fingerprint, read_json

log = logging.getLogger(__name__)

MENTIONS = "/message/mentionsAt"
MENTIONS_CMT = "/message/mentionsCmt"
HOTFLOW = "/comments/hotflow"
USER_AGENT = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")


class Throttled(TransientError):
    """m.weibo.cn refused to answer (anti-crawling): wait and ask again."""


class LoginRequired(TransientError):
    """``{"ok": -100}``: the account's cookie is missing or expired. Retried with
    back-off (up to 15 minutes), but it ends only when someone renews the cookie."""


# --- text and time ---------------------------------------------------------------------


class _Text(HTMLParser):
    """Weibo's HTML as a reader sees it: link text kept, ``<br>`` a newline, emoji
    images (``<span class="url-icon"><img alt="[怒]">``) their alt text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "br":
            self.out.append("\n")
        elif tag == "img" and (alt := dict(attrs).get("alt")):
            self.out.append(alt)

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.out.append(data)


_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u3000]+")


def strip_html(html: str) -> str:
    p = _Text()
    p.feed(html or "")
    p.close()
    lines = [_SPACES.sub(" ", line).strip() for line in "".join(p.out).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _context(item: object, limit: int) -> str:
    """The plain text of the post a message answers or reposts; nothing if it has none."""
    text = item.get("text") if isinstance(item, dict) else None
    return strip_html(text)[:limit] if isinstance(text, str) else ""


def _pic_url(pic: object) -> str | None:
    """A picture's large URL, else its URL: m.weibo.cn's ``{"url", "large": {"url"}}``."""
    if not isinstance(pic, dict):
        return None
    large = pic.get("large")
    url = (large.get("url") if isinstance(large, dict) else None) or pic.get("url")
    return url if isinstance(url, str) and url else None


_COUNT = re.compile(r"(\d{1,12}(?:\.\d{1,6})?)\s*(千|万|亿|[kKwW])?\s*(\+?)")
_COUNT_UNIT = {None: 1, "千": 1_000, "k": 1_000, "K": 1_000, "万": 10_000, "w": 10_000, "W": 10_000,
               "亿": 100_000_000}


def parse_count(value: object) -> tuple[int | None, bool]:
    """A count as m.weibo.cn writes it, and whether it is exact: ``17``, ``"17"`` and
    ``"1,234"`` are; the display forms ``"999+"``, ``"1千"``, ``"1.2万"``, ``"100万+"`` are
    rounded (a new comment may not change them). ``(None, False)``: missing or unreadable."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, True
    if isinstance(value, float) and math.isfinite(value):
        return int(value), value.is_integer()
    m = _COUNT.fullmatch(value.strip().replace(",", "")) if isinstance(value, str) else None
    if m is None:
        return None, False
    unit = _COUNT_UNIT[m[2]]
    return int(float(m[1]) * unit), unit == 1 and not m[3] and "." not in m[1]


_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_AGO = re.compile(r"(\d+)\s*(秒|分钟|小时)前")
_AGO_UNIT = {"秒": 1, "分钟": 60, "小时": 3600}
_DAY = re.compile(r"(今天|昨天|前天)\s*(\d{1,2}):(\d{2})")
_DATE = re.compile(r"(?:(\d{4})-)?(\d{1,2})-(\d{1,2})(?:\s+(\d{1,2}):(\d{2}))?")


def parse_created(value, now: datetime | None = None) -> datetime:
    """When a post or comment was made, as m.weibo.cn writes it.

    The APIs answer ``Sat Nov 22 09:15:03 +0800 2026`` (parsed by hand: strptime's
    month names follow the process locale); some pages and older answers use the
    mobile site's display forms instead — ``刚刚``, ``5分钟前``, ``2小时前``,
    ``昨天 09:15``, ``11-22``, ``2025-11-22`` — which are read relative to ``now``
    in Beijing time (to the minute or the day they give)."""
    text = str(value).strip()
    try:
        _, mon, day, hms, off, year = text.split()
        hour, minute, second = (int(x) for x in hms.split(":"))
        sign = -1 if off[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[3:5])))
        return datetime(int(year), _MONTHS[mon], int(day), hour, minute, second, tzinfo=tz)
    except (ValueError, KeyError, IndexError, OverflowError):
        pass
    now = (now or envelope.now()).astimezone(envelope.TZ).replace(microsecond=0)
    try:
        if text == "刚刚":
            return now
        if m := _AGO.fullmatch(text):
            return now - timedelta(seconds=int(m[1]) * _AGO_UNIT[m[2]])
        if m := _DAY.fullmatch(text):
            back = ("今天", "昨天", "前天").index(m[1])
            return (now - timedelta(days=back)).replace(hour=int(m[2]), minute=int(m[3]), second=0)
        if m := _DATE.fullmatch(text):
            hour, minute = int(m[4] or 0), int(m[5] or 0)
            when = now.replace(year=int(m[1] or now.year), month=int(m[2]), day=int(m[3]), hour=hour,
                               minute=minute, second=0)
            if not m[1] and when > now + timedelta(days=1):  # "12-30" read on 1 January: last year
                when = when.replace(year=when.year - 1)
            return when
    except (ValueError, OverflowError):  # 99999999999小时前 is beyond timedelta
        pass
    raise BadMessage(f"bad created_at {text[:40]!r}")


def _item_id(item) -> int | None:
    try:
        return int(item.get("mid") or item["id"]) if isinstance(item, dict) else None
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: an id of Infinity
        return None


# --- a throttled host ------------------------------------------------------------------


class _HostGate:
    """Shared by every account on one api_base: after a host-wide refusal nobody asks
    until the gate opens (2 s, 4 s, … up to 10 minutes, with jitter)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.until = 0.0
        self.strikes = 0

    def closed(self) -> bool:
        return time.monotonic() < self.until

    def check(self) -> None:
        wait = self.until - time.monotonic()
        if wait > 0:
            raise Throttled(f"host throttled us; not asking for another {wait:.0f}s")

    def strike(self) -> None:
        with self.lock:
            self.strikes += 1
            self.until = time.monotonic() + min(600.0, 2.0 ** self.strikes) * random.uniform(0.5, 1.0)

    def ok(self) -> None:
        if self.strikes:
            with self.lock:
                self.strikes = 0


GATES: dict[str, _HostGate] = {}
_gates_lock = threading.Lock()


def gate_for(api_base: str) -> _HostGate:
    with _gates_lock:
        return GATES.setdefault(api_base, _HostGate())


# --- the connector ---------------------------------------------------------------------


class WeiboConnector(Connector):
    channel = "weibo"

    TIMEOUT = 10.0
    CONTEXT_CHARS = 500
    """Text of the post a comment answers, kept as the comment's context."""

    def __init__(self, runtime, publisher, name: str, account_id: str, account, channel_cfg):
        super().__init__(runtime, publisher, name)
        self.account_id, self.account = account_id, account
        self.uid = str(account.uid)
        self.api_base = channel_cfg.api_base.rstrip("/")
        self.poll_seconds = channel_cfg.poll_seconds
        self.max_pages = max(1, channel_cfg.max_pages)
        self.timeout = self.TIMEOUT
        self.gate = gate_for(self.api_base)

    @classmethod
    def from_config(cls, runtime, make_publisher):
        ch = runtime.settings.channels.weibo
        return [cls(runtime, make_publisher(f"weibo.{aid}"), f"weibo.{aid}", aid, acct, ch)
                for aid, acct in ch.accounts.items()]

    # --- fetch ---------------------------------------------------------------------------

    def fetch(self, cursor: State) -> Pages:
        """The mentions, the comments that mention the account, then the comments on its
        posts whose count moved; posts that left the timeline's first page are forgotten."""
        if self.gate.closed():
            return  # the host throttles us: skip this poll (not a failure of this account's)
        state = {"streams": cursor.get("streams", {}), "posts": cursor.get("posts", {})}
        yield from self._stream(state, "mentions", MENTIONS, {}, "status")
        yield from self._stream(state, "mentions_cmt", MENTIONS_CMT, {}, "comment")
        watched, streams = state["posts"], state["streams"]
        posts = self._own_posts()
        for post in posts:
            mid = str(post.get("mid") or post.get("id"))
            (count, exact), key = parse_count(post.get("comments_count")), f"comments:{mid}"
            if exact and count == watched.get(mid, 0) and not streams.get(key, {}).get("resume"):
                continue  # no new comments since its stream last caught up
            if (yield from self._stream(state, key, HOTFLOW, {"id": mid, "mid": mid}, "comment", post)):
                watched[mid] = count
                yield Page(state=state)
        current = {str(p.get("mid") or p.get("id")) for p in posts}
        for m in [m for m in watched if m not in current]:
            del watched[m]
        for k in [k for k in streams if k.startswith("comments:") and k[9:] not in current]:
            del streams[k]
        yield Page(state=state)

    def _stream(self, state: State, key: str, path: str, params: dict, kind: str,
                post: dict | None = None) -> Generator[Page, None, bool]:
        """Pages of one stream from its cursor (``state["streams"][key]``), at most
        ``max_pages``, newest first; return whether it caught up."""
        streams = state["streams"]
        cur = streams.get(key) or {"since": 0}
        since, top, max_id = int(cur.get("since") or 0), cur.get("top"), cur.get("resume") or 0
        max_id_type = cur.get("resume_type", 0)
        for _ in range(self.max_pages):
            query = {**params, "max_id": max_id}
            if path == HOTFLOW:
                query["max_id_type"] = max_id_type
            data = self._get(f"{path}?{urlencode(query)}", path)
            items = data.get("data")
            if not isinstance(items, list):
                raise Throttled(f"{path}: answer without a data list")
            fresh, caught_up = [], False
            for item in items:
                iid = _item_id(item)
                if iid is not None and iid <= since:
                    caught_up = True  # newest first: this and what follows were published before
                    continue
                fresh.append(item)
                if iid is not None:
                    top = max(int(top or 0), iid)
            nxt = data.get("max_id") or 0
            if caught_up or not nxt or not items:
                streams[key] = {"since": max(since, int(top or 0))}
            else:
                streams[key] = {"since": since, "top": top, "resume": nxt, "resume_type": data.get("max_id_type", 0)}
            yield self._convert(fresh, kind, post, Page(state=state, fetched=len(items)))
            if "resume" not in streams[key]:
                return True
            max_id, max_id_type = nxt, streams[key]["resume_type"]
        return False

    def _own_posts(self) -> list[dict]:
        url = WEIBO_LIST_URL.format(id=self.uid, page_num=1).replace(WEIBO_API_ROOT, "/")
        data = self._get(url, "getIndex")
        cards = data.get("cards")
        if not isinstance(cards, list):
            raise Throttled("getIndex: answer without cards")
        return [c["mblog"] for c in cards if isinstance(c, dict) and isinstance(c.get("mblog"), dict)]

    # --- items -----------------------------------------------------------------------------

    def _convert(self, items: list, kind: str, post: dict | None, page: Page) -> Page:
        """``page`` with the envelopes of ``items`` (and of the replies under comments), each
        unreadable one a dead letter."""
        for item in items:
            todo = [item]
            if kind == "comment" and isinstance(item, dict) and isinstance(item.get("comments"), list):
                todo += item["comments"]  # replies shown under the comment (楼中楼)
            for one in todo:
                self.read_item(page, partial(self._envelope, one, kind, post), partial(self._dead_item, one, kind))
        return page

    def _envelope(self, item: object, kind: str, post: dict | None) -> Envelope | None:
        if not isinstance(item, dict):
            raise BadMessage(f"item is not an object: {type(item).__name__}")
        if self._own(item):
            return None  # the platform's own answer
        return self._status_env(item) if kind == "status" else self._comment_env(item, post)

    def _own(self, item: dict) -> bool:
        user = item.get("user")
        return isinstance(user, dict) and str(user.get("id")) == self.uid

    def _author(self, item: dict) -> tuple[str | None, dict]:
        user = item.get("user")
        if not isinstance(user, dict) or not user.get("id"):
            raise BadMessage("item has no user id")
        uid = str(user["id"])
        return pseudonym(self.key, "weibo", uid), {"screen_name": user.get("screen_name"), "uid": uid}

    def _status_env(self, status: dict) -> dict:
        mid = str(status.get("mid") or status.get("id") or "")
        if not mid:
            raise BadMessage("status has no id or mid")
        html = status.get("text")
        if not isinstance(html, str):
            raise BadMessage("status has no text")
        if status.get("isLongText"):
            html = self._long_text(mid, html)
        author, pii = self._author(status)
        pics = status.get("pics")
        urls = [u for u in map(_pic_url, pics if isinstance(pics, list) else []) if u]
        return self.envelope(
            channel="weibo", account=self.account_id, source_id=mid, text=strip_html(html),
            posted_at=parse_created(status.get("created_at")), author=author, pii=pii,
            context=_context(status.get("retweeted_status"), self.CONTEXT_CHARS),
            attachments=[{"kind": "image", "url": u} for u in urls], raw=status,
        )

    def _comment_env(self, comment: dict, post: dict | None) -> dict:
        cid = str(comment.get("id") or "")
        if not cid:
            raise BadMessage("comment has no id")
        html = comment.get("text")
        if not isinstance(html, str):
            raise BadMessage("comment has no text")
        author, pii = self._author(comment)
        on = post if post is not None else comment.get("status")
        url = _pic_url(comment.get("pic"))
        text = strip_html(html) or ("[图片]" if url else "")
        return self.envelope(
            channel="weibo", account=self.account_id, source_id=cid, text=text,
            posted_at=parse_created(comment.get("created_at")), author=author, pii=pii,
            context=_context(on, self.CONTEXT_CHARS),
            attachments=[{"kind": "image", "url": url}] if url else [], raw=comment,
        )

    def _dead_item(self, item, kind: str, reason: str) -> Out:
        iid = _item_id(item)
        ref = str(iid) if iid is not None else "bad:" + fingerprint(item)
        text = item.get("text") if isinstance(item, dict) else None
        excerpt = strip_html(text[:EXCERPT_CHARS]) if isinstance(text, str) else json.dumps(item, ensure_ascii=False)
        return self.dead(reason, f"weibo:{ref}", {"account": self.account_id, "kind": kind}, excerpt[:EXCERPT_CHARS])

    def _long_text(self, mid: str, fallback: str) -> str:
        """The full text of a long post (lists carry its first ~140 characters and 全文)."""
        url = STATUS_DETAIL_URL.format(id=mid).replace(WEIBO_API_ROOT, "/")
        data = self._get(url, "/statuses/extend")
        full = data.get("longTextContent")
        if isinstance(full, str) and full.strip():
            return full
        log.warning("long text missing, keeping the list's excerpt", extra={"connector": self.name, "id": mid})
        return re.sub(r"<a [^>]*>全文</a>\s*$", "", fallback)

    # --- HTTP ------------------------------------------------------------------------------

    def _get(self, path_query: str, what: str) -> dict:
        """GET a JSON endpoint; return its ``data`` or raise TransientError (never a crash)."""
        self.gate.check()
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json, text/plain, */*",
                   "Referer": f"{self.api_base}/", "X-Requested-With": "XMLHttpRequest", "MWeibo-Pwa": "1"}
        if self.account.cookie:
            headers["Cookie"] = self.account.cookie.get_secret_value()
        req = urllib.request.Request(self.api_base + path_query, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                ctype, raw = resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (418, 429):
                self.gate.strike()
            raise Throttled(f"Weibo {what}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
            raise TransientError(f"Weibo {what}: {getattr(exc, 'reason', exc)}") from None
        return self.answer(ctype, raw, what)

    def answer(self, ctype: str, raw: bytes, what: str) -> dict:
        """The ``data`` of an answer's body, or TransientError: what :meth:`_get` makes of it."""
        try:
            doc = read_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, BadMessage):
            doc = None
        if not isinstance(doc, dict):
            self.gate.strike()  # an HTML page: the visitor check or a login redirect
            raise Throttled(f"Weibo {what}: {ctype or 'no content type'} instead of JSON")
        ok = doc.get("ok")
        if ok == -100:
            raise LoginRequired(f"Weibo {what}: login required (ok -100): renew the cookie of account "
                                f"{self.account_id}")
        data = doc.get("data")
        if ok == 1 and isinstance(data, list):  # some message endpoints answer the bare list: one page
            data = {"data": data, "max_id": 0}
        if ok != 1 or not isinstance(data, dict):
            raise Throttled(f"Weibo {what}: ok {ok} {doc.get('msg') or ''}".rstrip())
        self.gate.ok()
        return data
