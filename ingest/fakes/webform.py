"""A fake web-form backend (a city CMS's submissions export) for tests and demos.

A real ``ThreadingHTTPServer`` on 127.0.0.1 (a free port) serving the API that
:mod:`wenzheng.ingest.webform` documents::

    GET /submissions?updated_after=<ts>&after_id=<id>&limit=<n>   (Authorization: Bearer <token>)
    → {"items": [...], "has_more": bool}

Items after ``(updated_after, after_id)`` in ``(updated_at, id)`` order; ids are
integers, times ``YYYY-MM-DD HH:MM:SS`` in local time, as CMSs export them.
``limit`` outside 1..1000 or an unreadable cursor: 400. A wrong or missing
token: 401.

:meth:`FakeWebForm.add` generates realistic Chinese submissions (赣州's
counties and streets, names, mobile numbers, some ID numbers and photos),
``per_second`` of them sharing each ``updated_at`` second — the case the cursor's
id exists for. :meth:`edit` changes one (a later ``updated_at``), :meth:`add_raw`
inserts anything (malformed items). :meth:`fail` queues answers for the next
requests: an HTTP status (401, 429, 500…) or ``"slow:<seconds>"``.
Every request is recorded (:attr:`requests`, :meth:`count`), and so is every
item served (:attr:`served`), so a test can tell a repeat from a skip.

A context manager; it also stops by itself after ``lifetime`` seconds.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from . import FaultQueue, LocalServer

FMT = "%Y-%m-%d %H:%M:%S"

PLACES = ["章贡区红旗大道", "南康区唐江镇幸福路", "赣县区梅林镇", "信丰县嘉定镇", "于都县贡江镇长征大道",
          "瑞金市象湖镇", "宁都县梅江镇", "兴国县潋江镇", "龙南市龙南镇", "上犹县东山镇", "崇义县横水镇",
          "会昌县文武坝镇", "寻乌县长宁镇", "石城县琴江镇", "安远县欣山镇", "定南县历市镇", "全南县城厢镇",
          "大余县南安镇"]
SURNAMES = "刘王李张陈黄钟曾谢赖邱廖温肖罗"
GIVEN = ["建华", "芳", "志强", "秀英", "海波", "丽萍", "国平", "晓东", "桂兰", "文斌", "小燕", "德明"]
TOPICS = [
    ("城市管理", "路灯不亮", "{p}{n}号附近的路灯已经坏了半个多月，晚上出行很不方便，希望尽快维修。"),
    ("生态环境", "夜间施工噪音扰民", "{p}附近工地每天晚上十一点以后还在施工，噪音很大，严重影响休息。"),
    ("住房城乡建设", "小区物业不作为", "{p}{n}号小区物业长期不清理垃圾，电梯也经常故障，请相关部门督促整改。"),
    ("劳动和社会保障", "工地拖欠工资", "我在{p}的工地干了三个月，老板一直拖欠工资共计{m}元，讨要多次无果。"),
    ("交通运输", "道路坑洼", "{p}路段路面坑洼严重，下雨天积水，电动车经过很危险。"),
    ("教育文化体育", "入学咨询", "请问孩子户口在{p}，今年秋季小学一年级入学需要准备哪些材料？"),
    ("水电气暖讯", "频繁停水", "{p}{n}号这一周已经停水三次，没有任何通知，请供水公司给个说法。"),
    ("市场监管与商贸旅游", "预付卡退费难", "{p}一家健身房突然关门，办的{m}元会员卡无法退费。"),
    ("卫生健康", "医保报销", "在{p}的卫生院看病，医保报销比例和县医院不一样，想咨询具体政策。"),
    ("农业农村", "农业补贴未发放", "{p}村今年的耕地地力保护补贴到现在还没有发放，请帮忙查询。"),
    ("民政与社会救助", "低保申请", "家里老人身体不好，住在{p}，想咨询低保怎么申请。"),
    ("公安政法", "电信诈骗求助", "我在{p}接到冒充客服的电话被骗了{m}元，已经报警，想了解后续处理。"),
]


def _id_card(rng: random.Random) -> str:
    body = f"3607{rng.randint(2, 35):02d}{rng.randint(1960, 2004)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


class FakeWebForm(FaultQueue, LocalServer):
    """Faults (:meth:`fail`): an HTTP status (401, 429, 500…) or "slow:<seconds>"."""

    name = "fake-webform"

    def __init__(self, token: str = "webform-test-token", *, seed: int = 7, lifetime: float = 120.0,
                 start: str = "2026-11-22 09:00:00"):
        self.token, self.lifetime = token, lifetime
        self.rng = random.Random(seed)
        self.clock = datetime.strptime(start, FMT)
        self.items: dict[int, dict] = {}
        self.next_id = 10001
        self.requests: list[dict] = []  # each: {"at", "status", "query"}
        self.served: list = []  # ids of every item served, in order
        self._faults: deque = deque()
        self._lock = threading.Lock()

    # --- data ------------------------------------------------------------------------

    def submission(self, sid: int, at: str) -> dict:
        rng = self.rng
        category, title, template = rng.choice(TOPICS)
        place = rng.choice(PLACES)
        name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        phone = rng.choice(["139", "135", "188", "177", "150"]) + f"{rng.randint(0, 99999999):08d}"
        item = {"id": sid, "title": title,
                "content": template.format(p=place, n=rng.randint(1, 99), m=rng.randint(2, 60) * 500),
                "name": name, "phone": phone, "address": place + f"{rng.randint(1, 200)}号",
                "category": category, "created_at": at, "updated_at": at, "attachments": []}
        if rng.random() < 0.3:
            item["id_card"] = _id_card(rng)
        if rng.random() < 0.25:
            item["attachments"] = [f"https://wz.ganzhou.gov.cn/upload/2026/11/{sid}_{k}.jpg"
                                   for k in range(rng.randint(1, 3))]
        return item

    def add(self, n: int, per_second: int = 1, at: str | None = None) -> list[int]:
        """``n`` new submissions, ``per_second`` of them in each second (from ``at`` or the fake's clock)."""
        ids = []
        with self._lock:
            if at is not None:
                self.clock = datetime.strptime(at, FMT)
            for k in range(n):
                if k and k % per_second == 0:
                    self.clock += timedelta(seconds=1)
                sid, self.next_id = self.next_id, self.next_id + 1
                self.items[sid] = self.submission(sid, self.clock.strftime(FMT))
                ids.append(sid)
            self.clock += timedelta(seconds=1)
        return ids

    def edit(self, sid: int, **changes) -> None:
        """A citizen (or moderator) changes a submission: a later ``updated_at``, same id."""
        with self._lock:
            self.items[sid].update(changes, updated_at=self.clock.strftime(FMT))
            self.clock += timedelta(seconds=1)

    def add_raw(self, item: dict) -> object:
        """Anything, e.g. a malformed item, stored as given; ``id`` and ``updated_at`` are filled in
        only when absent (pass ``"id": None`` for an item without one)."""
        with self._lock:
            item = dict(item)
            if "id" not in item:
                item["id"], self.next_id = self.next_id, self.next_id + 1
            item.setdefault("updated_at", self.clock.strftime(FMT))
            key = item["id"] if isinstance(item["id"], int) and item["id"] not in self.items else -len(self.items) - 1
            self.items[key] = item
            self.clock += timedelta(seconds=1)
            return item["id"]

    def count(self, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if status is None or r["status"] == status)

    # --- the API ---------------------------------------------------------------------

    @staticmethod
    def _key(item: dict) -> tuple:
        try:
            t = datetime.strptime(str(item.get("updated_at")).replace("T", " ")[:19], FMT)
        except ValueError:
            t = datetime.min
        i = item.get("id")
        return t, i if isinstance(i, int) else -1

    def _answer(self, path: str, query: str, auth: str | None) -> tuple[int, dict | None, float]:
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        delay = 0.0
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            if isinstance(fault, str) and fault.startswith("slow:"):
                delay, fault = float(fault[5:]), None
            if fault is not None:
                status, doc = int(fault), {"error": "injected fault"}
            elif path != "/submissions":
                status, doc = 404, {"error": "not found"}
            elif auth != f"Bearer {self.token}":
                status, doc = 401, {"error": "invalid token"}
            else:
                status, doc = self._page(q)
            self.requests.append({"at": time.monotonic(), "status": status, "query": q})
        return status, doc, delay

    @staticmethod
    def cursor(q: dict) -> tuple[int, tuple[datetime, int] | None] | tuple[int, dict]:
        """``(limit, after)`` of a page request, or ``(400, error)`` as the backend answers a bad one."""
        try:
            limit = int(q.get("limit", 100))
            after = (datetime.strptime(q["updated_after"], FMT), int(q.get("after_id") or 0)) \
                if "updated_after" in q else None
        except (ValueError, KeyError):
            return 400, {"error": "bad cursor or limit"}
        if not 1 <= limit <= 1000:
            return 400, {"error": "limit must be 1..1000"}
        return limit, after

    def _page(self, q: dict) -> tuple[int, dict]:
        limit, after = self.cursor(q)
        if isinstance(after, dict):
            return limit, after
        rows = sorted(self.items.values(), key=self._key)
        if after is not None:
            rows = [r for r in rows if self._key(r) > after]
        page = rows[:limit]
        self.served.extend(r.get("id") for r in page)
        return 200, {"items": [dict(r) for r in page], "has_more": len(rows) > limit}

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeWebForm:
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 — http.server's naming
                parts = urlsplit(self.path)
                status, doc, delay = fake._answer(parts.path, parts.query, self.headers.get("Authorization"))
                if delay:
                    time.sleep(delay)
                out = json.dumps(doc, ensure_ascii=False).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:  # the client gave up (a timeout test)
                    pass

            def log_message(self, fmt, *args):
                pass

        return self._serve(H)
