"""A fake m.weibo.cn for tests and benchmarks: a real ``ThreadingHTTPServer`` on 127.0.0.1.

It answers the JSON endpoints the Weibo connector polls, in m.weibo.cn's shapes
(``{"ok": 1, "data": {...}}``; ``id``/``mid`` as strings, ``created_at`` like
``Sat Nov 22 09:15:03 +0800 2026``, ``text`` as HTML):

- ``GET /api/container/getIndex?containerid=230413<uid>_-_WEIBO_SECOND_PROFILE_WEIBO&page=N``
  (weibo-api's URL for a user's posts) → ``data.cards[].mblog`` and
  ``data.cardlistInfo`` (``total``, ``page`` of the next page or null). Anonymous.
- ``GET /message/mentionsAt?max_id=`` (posts that @mention the logged-in account)
  and ``GET /message/mentionsCmt?max_id=`` (comments that @mention it; each with
  its ``status``) → ``data.data``, ``data.max_id`` (0: no more), ``data.total_number``.
- ``GET /comments/hotflow?id=&mid=&max_id=&max_id_type=0`` → the same, comments
  on one post, each with its replies (``comments``: a list or false).
- ``GET /statuses/extend?id=`` → ``data.longTextContent``.

Lists are newest first; ``max_id`` is the cursor of the next (older) page. The
message endpoints need the account's cookie (:meth:`FakeWeibo.cookie`); without
one they answer ``{"ok": -100, "url": <login page>}``, as m.weibo.cn does.

Each account's data is generated on first use from ``seed`` and its uid:
``mentions`` posts and ``mention_comments`` comments mentioning it, ``posts``
own posts with ``comments_per_post`` comments; every ``long_every``-th post is
long text (truncated in lists, ``isLongText``), every ``html_every``-th item
carries links, topics, ``<br />`` and emoji images, every ``own_every``-th
comment (and every reply) is by the account itself. :attr:`FakeWeibo.expected`
holds each item's plain text and whether it is the account's own, for asserting.

Faults on demand: :meth:`FakeWeibo.fail` queues single answers (403, 418, "ok0",
"login", "html", "slow:<seconds>") for the next requests; :meth:`FakeWeibo.block`
answers one fault to everything until :meth:`FakeWeibo.unblock`. Items arrive
with :meth:`add_mention`, :meth:`add_comment`, :meth:`add_raw` (anything, for
malformed input) or by themselves at ``growth_per_minute`` per account. Every
request is recorded (:meth:`count`), and the CPU the server's threads spend is
summed in ``cpu_seconds`` (so a benchmark can subtract it from its own).

A context manager; it also stops by itself after ``lifetime`` seconds.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from html import escape
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from . import FaultQueue, LocalServer

CST = timezone(timedelta(hours=8))
EPOCH = datetime(2026, 11, 20, 8, 0, 0, tzinfo=CST)
FIRST_ID = 5_100_000_000_000_000
# Ids are unique across every fake of a process (tests share topics) and grow with time, as Weibo's do.
_IDS = itertools.count(FIRST_ID, 7)
_USERS = itertools.count(6_000_000_001)
INDEX_PATH, MENTIONS_PATH, MENTIONS_CMT_PATH = "/api/container/getIndex", "/message/mentionsAt", "/message/mentionsCmt"
HOTFLOW_PATH, EXTEND_PATH = "/comments/hotflow", "/statuses/extend"
LOGIN_URL = "https://passport.weibo.cn/signin/welcome?entry=mweibo&r=https%3A%2F%2Fm.weibo.cn%2F"
HTML_PAGE = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>微博</title></head>"
             "<body><p>访问频次过高，请稍后再试</p></body></html>")

COMPLAINTS = [
    "章贡区红旗大道夜间施工噪音太大，凌晨两点还在打桩，孩子根本睡不着",
    "南康区唐江镇的垃圾站三天没人清运了，臭味熏天",
    "赣县区梅林大街的路灯坏了一个多月，晚上走路很危险",
    "于都县某小区物业乱收停车费，业主多次反映无人处理",
    "瑞金市公交3路车经常不按时发车，等了四十分钟",
    "信丰县一家餐馆后厨卫生很差，吃完拉肚子",
    "宁都县农村公路坑坑洼洼，下雨天根本过不了车",
    "会昌县的低保申请材料交了两个月还没有回音",
    "龙南市工地拖欠农民工工资，快过年了还不发",
    "大余县自来水有一股怪味，烧开后还有白色沉淀",
    "兴国县学校门口早晚高峰乱停车，堵得水泄不通",
    "石城县医院挂号排队太久，建议增加自助挂号机",
]
FOLLOW_UPS = ["希望有关部门尽快处理", "已经打过12345了", "请帮忙转交", "谢谢！", "麻烦看一下"]
EMOJI = [("[怒]", "d_nu"), ("[泪]", "d_lei"), ("[doge]", "d_doge"), ("[赞]", "d_zan")]
OFFICIAL_POSTS = ["【通知】本周六起中心城区部分路段施工，请绕行", "【提醒】冬季用电高峰，请注意用电安全",
                  "【回应】关于网友反映的垃圾清运问题，已督促整改", "【征集】2027年民生实事项目意见征集"]


def fmt_time(dt: datetime) -> str:
    return dt.astimezone(CST).strftime("%a %b %d %H:%M:%S +0800 %Y")  # C locale: Sat Nov 22 …


def _emoji(alt: str, code: str) -> str:
    return (f'<span class="url-icon"><img alt="{alt}" src="https://h5.sinaimg.cn/m/emoticon/icon/default/'
            f'{code}-1d3.png" style="width:1em; height:1em;" /></span>')


class _Account:
    def __init__(self, uid: str):
        self.uid = uid
        self.screen_name = f"问政{uid[-4:]}"
        self.posts: list[tuple[int, dict]] = []  # (sort id, item), any order; served newest first
        self.mentions: list[tuple[int, dict]] = []
        self.mention_cmts: list[tuple[int, dict]] = []
        self.comments: dict[str, list[tuple[int, dict]]] = {}  # post mid → its comments
        self.grown_at = time.monotonic()


class FakeWeibo(FaultQueue, LocalServer):
    """Faults (:meth:`fail`): 403, 418 (HTTP), "ok0", "login", "html", "slow:<s>"."""

    name = "fake-weibo"

    def __init__(self, *, mentions: int = 12, mention_comments: int = 3, posts: int = 3,
                 comments_per_post: int = 8, page_size: int = 10, long_every: int = 4, html_every: int = 3,
                 own_every: int = 5, pics_every: int = 4, seed: int = 7, growth_per_minute: float = 0.0,
                 lifetime: float = 120.0):
        self.n_mentions, self.n_mention_cmts, self.n_posts = mentions, mention_comments, posts
        self.n_comments, self.page_size = comments_per_post, page_size
        self.long_every, self.html_every, self.own_every, self.pics_every = long_every, html_every, own_every, pics_every
        self.seed, self.growth_per_minute, self.lifetime = seed, growth_per_minute, lifetime
        self.bare_lists = False  # mentions answered as {"ok": 1, "data": [...]}
        self.accounts: dict[str, _Account] = {}
        self.expected: dict[str, dict] = {}  # item id → {"text", "own", "uid", "kind"}
        self.long_text: dict[str, str] = {}  # mid → full HTML
        self.requests: list[tuple[float, str, dict]] = []  # (monotonic time, path, query)
        self.cpu_seconds = 0.0
        self._faults: deque = deque()
        self._blocked: int | str | None = None
        self._ids, self._users = _IDS, _USERS
        self._lock = threading.RLock()

    # --- set-up and inspection --------------------------------------------------------

    @staticmethod
    def cookie(uid: str) -> str:
        """The session cookie that logs ``uid`` in (put it in the account's config)."""
        return f"SUB=_fake_{uid}; SUBP=0033WrSXqPxfM725Ws9jqgMF55529P9D9W"

    def account(self, uid: str) -> _Account:
        """The account's data, generated on first use."""
        uid = str(uid)
        with self._lock:
            if uid not in self.accounts:
                self.accounts[uid] = self._generate(uid)
            return self.accounts[uid]

    def add_mention(self, uid: str, text: str, *, own: bool = False, long: bool = False, pics: int = 0) -> dict:
        with self._lock:
            return self._mention(self.account(uid), text, own=own, long=long, pics=pics)

    def add_comment(self, uid: str, mid: str, text: str, *, own: bool = False) -> dict:
        """A new comment on one of the account's posts (its comments_count goes up)."""
        with self._lock:
            acct = self.account(uid)
            post = next(p for _, p in acct.posts if p["mid"] == mid)
            return self._comment(acct, post, text, own=own)

    def add_raw(self, uid: str, item, where: str = "mentions") -> None:
        """Anything (a malformed item) into ``mentions``, ``mention_cmts`` or a post's comments (a mid)."""
        with self._lock:
            acct = self.account(uid)
            entry = (next(self._ids), item)
            if where in ("mentions", "mention_cmts"):
                getattr(acct, where).append(entry)
            else:
                acct.comments[where].append(entry)

    def block(self, fault: int | str) -> None:
        """Every request answers ``fault`` until :meth:`unblock` (anti-crawling that lasts)."""
        with self._lock:
            self._blocked = fault

    def unblock(self) -> None:
        with self._lock:
            self._blocked = None
            self._faults.clear()

    def count(self, path: str | None = None, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for t, p, _ in self.requests if (path is None or p == path) and t >= since)

    def posts_of(self, uid: str) -> list[dict]:
        with self._lock:
            return [p for _, p in sorted(self.account(uid).posts, key=lambda e: -e[0])]

    # --- data ---------------------------------------------------------------------------

    def _user(self, acct: _Account, own: bool) -> dict:
        if own:
            return {"id": int(acct.uid), "screen_name": acct.screen_name, "verified": True, "verified_type": 1}
        n = next(self._users)
        return {"id": n, "screen_name": f"赣南网友{n % 100000:05d}", "verified": False, "verified_type": -1,
                "profile_image_url": f"https://tvax1.sinaimg.cn/crop.0.0.180.180.50/{n:x}.jpg"}

    def _html(self, acct: _Account, plain: str, i: int) -> tuple[str, str]:
        """(HTML, the plain text a reader sees) for item number ``i``."""
        if self.html_every and i % self.html_every == 0:
            alt, code = EMOJI[i % len(EMOJI)]
            topic = "#赣州问政#"
            html = (f'<a href="/n/{acct.screen_name}">@{acct.screen_name}</a> {plain}{_emoji(alt, code)}<br />'
                    f'<a href="https://m.weibo.cn/search?containerid=231522type%3D1%26q%3D%23%E8%B5%A3%23">'
                    f'<span class="surl-text">{topic}</span></a> 详情 '
                    f'<a data-url="http://t.cn/A6x{i:04d}" href="https://weibo.cn/sinaurl?u=x"><span class="url-icon">'
                    f'<img style="width: 1rem;height: 1rem" src="https://h5.sinaimg.cn/upload/2015/09/25/3/'
                    f'timeline_card_small_web_default.png"></span><span class="surl-text">网页链接</span></a> &amp; 谢谢')
            return html, f"@{acct.screen_name} {plain}{alt}\n{topic} 详情 网页链接 & 谢谢"
        return f"@{acct.screen_name} {plain}", f"@{acct.screen_name} {plain}"

    def _status(self, acct: _Account, html: str, plain: str, *, own: bool, long: bool, pics: int, kind: str) -> dict:
        sid = next(self._ids)
        mid = str(sid)
        created = EPOCH + timedelta(seconds=(sid - FIRST_ID) // 7)
        text = html
        if long:
            body = "；".join([plain] + FOLLOW_UPS) * 3  # > 140 characters
            full_html = html + "<br />" + body
            plain = plain + "\n" + body
            self.long_text[mid] = full_html
            short = escape(plain[:100], quote=False).replace("\n", "<br />")  # lists show the start, as plain text
            text = short + f'...<a href="/status/{mid}">全文</a>'
        pic_list = [{"pid": f"{sid:x}p{k}", "url": f"https://wx1.sinaimg.cn/orj360/{sid:x}p{k}.jpg", "size": "orj360",
                     "large": {"size": "large", "url": f"https://wx1.sinaimg.cn/large/{sid:x}p{k}.jpg"}}
                    for k in range(pics)]
        status = {"created_at": fmt_time(created), "id": mid, "mid": mid, "bid": f"P{sid % 10**9:x}",
                  "text": text, "textLength": len(plain.encode("gbk", "replace")), "source": "iPhone客户端",
                  "isLongText": long, "pic_num": pics, "user": self._user(acct, own),
                  "reposts_count": 0, "comments_count": 0, "attitudes_count": 0}
        if pic_list:
            status["pics"] = pic_list
        self.expected[mid] = {"text": plain, "own": own, "uid": acct.uid, "kind": kind}
        return status

    def _mention(self, acct: _Account, plain: str, *, own=False, long=False, pics=0, i=1) -> dict:
        html, shown = self._html(acct, plain, i)
        status = self._status(acct, html, shown, own=own, long=long, pics=pics, kind="mention")
        acct.mentions.append((int(status["id"]), status))
        return status

    def _comment(self, acct: _Account, post: dict, plain: str, *, own=False, i=1, replies: int = 0,
                 on_other: bool = False) -> dict:
        html, shown = self._html(acct, plain, i) if not own else (plain, plain)
        cid = next(self._ids)
        created = EPOCH + timedelta(seconds=(cid - FIRST_ID) // 7)
        comment = {"created_at": fmt_time(created), "id": cid, "mid": str(cid), "rootid": str(cid),
                   "floor_number": len(acct.comments.get(post["mid"], [])) + 1, "text": html,
                   "user": self._user(acct, own), "like_count": 0, "source": "来自江西", "comments": False,
                   "total_number": 0, "max_id": 0}
        self.expected[str(cid)] = {"text": shown, "own": own, "uid": acct.uid, "kind": "comment"}
        subs = []
        for _ in range(replies):  # the account answers under the comment: its own words, never published
            rid = next(self._ids)
            subs.append({"created_at": fmt_time(EPOCH + timedelta(seconds=(rid - FIRST_ID) // 7)), "id": rid,
                         "mid": str(rid), "rootid": str(cid), "text": "您好，您反映的问题已转交相关部门办理。",
                         "user": self._user(acct, True), "like_count": 0})
            self.expected[str(rid)] = {"text": subs[-1]["text"], "own": True, "uid": acct.uid, "kind": "reply"}
        if subs:
            comment["comments"], comment["total_number"] = subs, len(subs)
        if on_other:
            comment["status"] = post
            acct.mention_cmts.append((cid, comment))
        else:
            acct.comments.setdefault(post["mid"], []).append((cid, comment))
            post["comments_count"] += 1 + len(subs)
        return comment

    def _generate(self, uid: str) -> _Account:
        acct = _Account(uid)
        rng = random.Random(self.seed * 1_000_003 + int(uid))
        for p in range(self.n_posts):
            long = bool(self.long_every) and p % self.long_every == self.long_every - 1
            post = self._status(acct, OFFICIAL_POSTS[p % len(OFFICIAL_POSTS)], OFFICIAL_POSTS[p % len(OFFICIAL_POSTS)],
                                own=True, long=long, pics=1, kind="post")
            acct.posts.append((int(post["id"]), post))
            acct.comments[post["mid"]] = []
        order = [("m", i) for i in range(self.n_mentions)] + [("c", i) for i in range(self.n_comments * self.n_posts)]
        order += [("x", i) for i in range(self.n_mention_cmts)]
        rng.shuffle(order)  # interleaved in time, as they would arrive
        for kind, i in order:
            plain = f"{rng.choice(COMPLAINTS)}，{rng.choice(FOLLOW_UPS)}"
            if kind == "m":
                long = bool(self.long_every) and i % self.long_every == 1
                pics = 1 + i % 2 if self.pics_every and i % self.pics_every == 0 else 0
                self._mention(acct, plain, long=long, pics=pics, i=i + 1)
            elif kind == "c":
                post = acct.posts[i % len(acct.posts)][1]
                own = bool(self.own_every) and i % self.own_every == self.own_every - 1
                self._comment(acct, post, "感谢关注，已转交相关部门。" if own else plain, own=own, i=i + 1,
                              replies=1 if not own and i % 3 == 0 else 0)
            else:
                other = self._status(acct, "今天的赣州好冷", "今天的赣州好冷", own=False, long=False, pics=0, kind="other")
                self._comment(acct, other, plain, i=i + 1, on_other=True)
        return acct

    def _grow(self, acct: _Account) -> None:
        if not self.growth_per_minute:
            return
        now = time.monotonic()
        due = int((now - acct.grown_at) * self.growth_per_minute / 60)
        if due:
            acct.grown_at += due * 60 / self.growth_per_minute
            rng = random.Random(next(self._ids))
            for k in range(due):
                self._mention(acct, f"{rng.choice(COMPLAINTS)}，{rng.choice(FOLLOW_UPS)}", i=k + 1)

    # --- the API ------------------------------------------------------------------------

    def _page(self, entries: Sequence[tuple[int, object]], max_id: int) -> dict:
        ordered = sorted(entries, key=lambda e: -e[0])
        if max_id:
            ordered = [e for e in ordered if e[0] < max_id]
        page = ordered[: self.page_size]
        more = len(ordered) > len(page)
        return {"data": [item for _, item in page], "total_number": len(entries),
                "max_id": page[-1][0] if page and more else 0}

    def _logged_in(self, cookie: str) -> _Account | None:
        for part in (cookie or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == "SUB" and v.startswith("_fake_"):
                return self.account(v[len("_fake_"):])
        return None

    def _answer(self, path: str, q: dict, cookie: str) -> tuple[int, object]:
        """(HTTP status, a JSON document or an HTML string)."""
        if path in (MENTIONS_PATH, MENTIONS_CMT_PATH):
            acct = self._logged_in(cookie)
            if acct is None:
                return 200, {"ok": -100, "url": LOGIN_URL}
            self._grow(acct)
            entries = acct.mentions if path == MENTIONS_PATH else acct.mention_cmts
            page = self._page(entries, int(q.get("max_id") or 0))
            if self.bare_lists:  # the older message API: the list itself, one page
                return 200, {"ok": 1, "data": page["data"]}
            return 200, {"ok": 1, "data": page}
        if path == HOTFLOW_PATH:
            mid = q.get("mid") or q.get("id") or ""
            acct = next((a for a in self.accounts.values() if mid in a.comments), None)
            if acct is None:
                return 200, {"ok": 0, "msg": "该微博不存在"}
            data = self._page(acct.comments[mid], int(q.get("max_id") or 0))
            return 200, {"ok": 1, "data": {**data, "max_id_type": 0}}
        if path == EXTEND_PATH:
            mid = q.get("id") or ""
            if mid not in self.long_text:
                return 200, {"ok": 0, "msg": "内容不存在"}
            return 200, {"ok": 1, "data": {"ok": 1, "longTextContent": self.long_text[mid], "reposts_count": 0,
                                           "comments_count": 0, "attitudes_count": 0}}
        if path == INDEX_PATH:
            cid = q.get("containerid") or ""
            if not (cid.startswith("230413") and cid.endswith("_-_WEIBO_SECOND_PROFILE_WEIBO")):
                return 200, {"ok": 0, "msg": "这里还没有内容"}
            acct = self.account(cid[6: -len("_-_WEIBO_SECOND_PROFILE_WEIBO")])
            page_no = max(1, int(q.get("page") or 1))
            ordered = [p for _, p in sorted(acct.posts, key=lambda e: -e[0])]
            chunk = ordered[(page_no - 1) * 10: page_no * 10]
            cards = [{"card_type": 9, "itemid": f"{cid}_-_{p['mid']}", "scheme": f"https://m.weibo.cn/status/{p['bid']}",
                      "mblog": p} for p in chunk]
            return 200, {"ok": 1, "data": {"cardlistInfo": {"containerid": cid, "v_p": 42, "show_style": 1,
                                                            "total": len(ordered),
                                                            "page": page_no + 1 if len(ordered) > page_no * 10 else None},
                                           "cards": cards, "scheme": ""}}
        return 404, HTML_PAGE

    def _fault(self) -> int | str | None:
        if self._blocked is not None:
            return self._blocked
        return self._faults.popleft() if self._faults else None

    def handle(self, path: str, query: str, cookie: str) -> tuple[int, str, bytes]:
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        with self._lock:
            self.requests.append((time.monotonic(), path, q))
            fault = self._fault()
        if isinstance(fault, str) and fault.startswith("slow:"):
            time.sleep(float(fault[5:]))
            fault = None
        if fault in (403, 418, 429, 500, 502):
            return int(fault), "text/html; charset=utf-8", HTML_PAGE.encode()
        if fault == "html":
            return 200, "text/html; charset=utf-8", HTML_PAGE.encode()
        if fault == "ok0":
            doc: object = {"ok": 0, "msg": "请求过于频繁，歇歇吧"}
        elif fault == "login":
            doc = {"ok": -100, "url": LOGIN_URL}
        else:
            with self._lock:
                status, doc = self._answer(path, q, cookie)
            if isinstance(doc, str):
                return status, "text/html; charset=utf-8", doc.encode()
        return 200, "application/json; charset=utf-8", json.dumps(doc, ensure_ascii=False).encode()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeWeibo:
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                t0 = time.thread_time()
                parts = urlsplit(self.path)
                status, ctype, out = fake.handle(parts.path, parts.query, self.headers.get("Cookie") or "")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                fake.cpu_seconds += time.thread_time() - t0  # approximate (no lock): for benchmarks

            def log_message(self, fmt, *args):
                pass

        return self._serve(H)
