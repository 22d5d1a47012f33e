"""The city's web form (网上留言/网络问政 form on the government site), polled from its backend.

**The API a city's backend implements** (a typical government CMS export; one
read-only endpoint, JSON, UTF-8)::

    GET {base_url}/submissions?updated_after=<ts>&after_id=<id>&limit=<n>
    Authorization: Bearer <channels.webform.token>

    200 {"items": [{"id": 10234,                        # primary key (integer or string)
                    "title": "唐江镇路灯不亮",
                    "content": "我家门口的路灯坏了半个月…",  # the citizen's words (required)
                    "name": "刘建华", "phone": "13907971234",
                    "id_card": "360702199001011234",    # optional
                    "address": "南康区唐江镇幸福路12号",
                    "category": "城市管理",              # optional: what the citizen picked
                    "created_at": "2026-11-22 09:15:03", # when submitted (local time, or ISO with offset)
                    "updated_at": "2026-11-22 09:15:03", # last change (edits, moderation)
                    "attachments": ["https://…/a.jpg" or {"url": "…", "name": "…"}]}],
         "has_more": true}

The backend returns the items whose ``(updated_at, id)`` comes strictly after
``(updated_after, after_id)``, ordered by ``(updated_at, id)``, at most ``limit``.
Without ``updated_after`` it starts from the beginning. 401/403: bad token;
429/5xx: try later. ``updated_after`` is echoed back exactly as the backend wrote
``updated_at``, so the connector never converts the backend's time format.

**Cursor** (``checkpoint.state = {"updated_at": <ts>, "id": <id>}``, format 1): the key of
the last item read. Many submissions share one ``updated_at`` second (a form
that is busy, a moderator approving a batch); the id breaks the tie, so a page
boundary inside one second neither skips nor repeats an item — a timestamp
alone would skip (``>``) or repeat (``>=``) the rest of that second. The backend
must stamp ``updated_at`` no earlier than the row becomes visible (at commit):
a row committed late with an older stamp falls behind the cursor and is missed.

**Edits.** An edited submission comes back with a later ``updated_at``. It is
*not* a new message: the envelope id is ``webform:<id>`` and a submission is
published once; later versions are skipped (a local index of published ids,
``webform.sqlite3``, kept beyond the delivery journal's retention) and the
cursor moves past them. Clerks see the first version, as for every channel.

**Delivery order** (base.py's, page by page): :meth:`fetch` yields one page of
envelopes, malformed items as dead letters while the rest flow (one item, any
exception: the template's rule); the base
publishes it (returns once Kafka acknowledged) → the page's ``acked`` records the
ids as published → only then the cursor moves. A crash in between fetches the page
again; the journal and the index drop what was already delivered. At most
``MAX_PAGES`` pages per poll; the rest wait for the next one.

HTTP 429, 5xx, timeouts and unreadable answers raise
:class:`~wenzheng.core.errors.TransientError`; 401/403 raise :class:`WebFormAuthError`.
Either way :meth:`Connector.run_once` backs off (exponential, with jitter) and
the cursor stays where Kafka left it.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from wenzheng.core import envelope
from wenzheng.core.delivery import Out
from wenzheng.core.errors import BadMessage, TransientError, WenzhengError
from wenzheng.core.privacy import pseudonym
from wenzheng.core.storage import LocalDB, shared

from .base import EXCERPT_CHARS, Connector, Envelope, Page, Pages, State, fingerprint, read_json

log = logging.getLogger(__name__)

PII_FIELDS = ("name", "phone", "id_card")
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".heic")


class WebFormError(WenzhengError):
    """The backend answered in a way waiting will not fix (bad request, broken contract)."""


class WebFormAuthError(WebFormError):
    """401/403: channels.webform.token is wrong or expired."""


def parse_time(value) -> datetime:
    """``2026-11-22 09:15:03`` (local, Asia/Shanghai), ``2026/11/22 09:15:03`` or ISO 8601 with offset."""
    if not isinstance(value, str) or not value.strip():
        raise BadMessage(f"bad time {str(value)[:40]!r}")
    try:
        dt = datetime.fromisoformat(value.strip().replace("/", "-"))
        return (dt if dt.tzinfo else dt.replace(tzinfo=envelope.TZ)).astimezone(envelope.TZ)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00+14:00 is before year 1 in Beijing
        raise BadMessage(f"bad time {value[:40]!r}") from None


def _source_id(item: Any) -> str:
    """A submission's id: a string or an integer, as the backend keys it ("" if it has none)."""
    value = item.get("id") if isinstance(item, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return str(value).strip()


def _cursor_key(item: Any) -> tuple[str, str | int] | None:
    """The item's (updated_at, id) as the backend wrote them, or None if either is unreadable."""
    if not _source_id(item):
        return None
    try:
        parse_time(item.get("updated_at"))
    except BadMessage:
        return None
    return item["updated_at"], item["id"]


def _text(item: dict, field: str) -> str:
    value = item.get(field)
    if value is None:
        return ""
    if not isinstance(value, str | int | float):
        raise BadMessage(f"{field} is not text")
    return str(value).strip()


def _attachments(value) -> list[dict]:
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise BadMessage("attachments is not a list")
    out = []
    for a in value:
        url, name = (a, "") if isinstance(a, str) else ((a.get("url"), a.get("name") or "") if isinstance(a, dict) else (None, ""))
        if not isinstance(url, str) or not url.strip():
            raise BadMessage("an attachment has no url")
        kind = "image" if url.lower().split("?")[0].endswith(IMAGE_EXT) else "file"
        out.append({"kind": kind, "url": url.strip(), **({"name": name} if name else {})})
    return out


class _Published:
    """Ids of submissions already published (edits of them are skipped), per connector."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS published (connector TEXT, source_id TEXT, updated_at TEXT, "
              "ms INTEGER, PRIMARY KEY (connector, source_id))")

    def __init__(self, path: Path) -> None:
        self.db = LocalDB(path, self.SCHEMA)

    def known(self, connector: str, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        rows = self.db.query(f"SELECT source_id FROM published WHERE connector=? AND source_id IN ({marks})",
                             [connector, *ids])
        return {r[0] for r in rows}

    def add(self, connector: str, items: list[tuple[str, str]]) -> None:
        now = int(time.time() * 1000)
        with self.db.transaction() as tx:
            tx.executemany("INSERT INTO published VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                           [(connector, sid, upd, now) for sid, upd in items])


def _published_for(state_dir: Path) -> _Published:
    return shared(_Published, state_dir / "webform.sqlite3")


class WebFormConnector(Connector):
    channel = "webform"
    MAX_PAGES = 50
    """Pages per poll at most (page_size each); the rest wait for the next poll."""
    TIMEOUT = 10.0

    def __init__(self, runtime, publisher, name: str = "webform"):
        super().__init__(runtime, publisher, name)
        self.cfg = runtime.settings.channels.webform
        self.base_url = self.cfg.base_url.rstrip("/")
        self.poll_seconds = self.cfg.poll_seconds
        self.page_size = self.cfg.page_size
        self.timeout = self.TIMEOUT

    @classmethod
    def from_config(cls, runtime, make_publisher):
        """The poller (registered to run only when ``base_url`` is set; Open311 is a channel of its own)."""
        return [cls(runtime, make_publisher("webform"), "webform")]

    # --- poll ------------------------------------------------------------------------

    def fetch(self, cursor: State) -> Pages:
        """Page through what changed since the cursor; each page's ids are recorded as
        published once Kafka has them, before the cursor moves past them."""
        if not self.base_url:
            return
        index = _published_for(self.runtime.state_dir)
        for _ in range(self.MAX_PAGES):
            items, has_more = self._fetch(cursor.get("updated_at"), cursor.get("id"))
            page, key, ids = self._read(items, index)
            if key is not None:
                cursor = page.state = {"updated_at": key[0], "id": key[1]}
            page.acked = partial(index.add, self.name, ids)
            yield page
            if not has_more or not items:
                break
            if key is None:  # nothing on a full page says where it ends: asking again would loop
                raise WebFormError("a page without one readable (updated_at, id): the backend breaks the contract")

    def _read(self, items: list, index: _Published) -> tuple[Page, tuple | None, list[tuple[str, str]]]:
        """One page's envelopes and dead letters, its last readable cursor key, and the
        (id, updated_at) of the submissions it publishes."""
        page, cursor, published = Page(fetched=len(items)), None, []
        known = index.known(self.name, [sid for sid in map(_source_id, items) if sid])
        seen = set(known)
        for item in items:
            if (key := _cursor_key(item)) is not None:
                cursor = key  # the backend's order: the last one read is the newest
                if _source_id(item) in seen:
                    continue  # an edit of a published submission, or a repeat within the page
            env = self.read_item(page, partial(self.to_envelope, item), partial(self._dead_item, item))
            if env is not None:
                seen.add(env["source_id"])
                published.append((env["source_id"], item["updated_at"]))
        if skipped := len(items) - len(page.envelopes) - len(page.dead):
            log.info("edits of published submissions skipped", extra={"connector": self.name, "skipped": skipped})
        return page, cursor, published

    def to_envelope(self, item: Any) -> Envelope:
        """An intake envelope from one submission (raises BadMessage)."""
        if not isinstance(item, dict):
            raise BadMessage("item is not a JSON object")
        if not _source_id(item):
            raise BadMessage("item has no id")
        parse_time(item.get("updated_at"))
        content = item.get("content")
        if not isinstance(content, str) or not content.strip():
            raise BadMessage("submission has no content")
        name, phone, id_card = (_text(item, f) or None for f in PII_FIELDS)
        address = _text(item, "address")
        raw = {k: v for k, v in item.items() if k not in PII_FIELDS}  # PII lives in ``pii`` only
        return self.envelope(
            channel="webform", account=self.name, source_id=_source_id(item),
            title=_text(item, "title"), text=content.strip(),
            posted_at=parse_time(item.get("created_at")),
            author=pseudonym(self.key, "webform", phone or name),
            attachments=_attachments(item.get("attachments")),
            location={"text": address, "lat": None, "lon": None} if address else None,
            pii={"name": name, "phone": phone, "id_card": id_card},
            raw=raw,
        )

    def _dead_item(self, item: Any, reason: str) -> Out:
        ref = _source_id(item) or "sha-" + fingerprint(item)
        content = item.get("content") if isinstance(item, dict) else None
        excerpt = content[:EXCERPT_CHARS] if isinstance(content, str) else json.dumps(item, ensure_ascii=False)
        source = {"connector": self.name, "id": ref}
        if isinstance(item, dict) and isinstance(item.get("updated_at"), str):
            source["updated_at"] = item["updated_at"]
        return self.dead(reason, envelope.message_id("webform", ref, self.key), source, excerpt[:EXCERPT_CHARS])

    # --- HTTP ------------------------------------------------------------------------

    def _fetch(self, updated_after: str | None, after_id) -> tuple[list, bool]:
        q = {"limit": self.page_size}
        if updated_after is not None:
            q |= {"updated_after": updated_after, "after_id": after_id}
        url = f"{self.base_url}/submissions?{urlencode(q)}"
        headers = {"Accept": "application/json"}
        if self.cfg.token is not None:
            headers["Authorization"] = f"Bearer {self.cfg.token.get_secret_value()}"
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (401, 403):
                raise WebFormAuthError(f"web form /submissions: HTTP {exc.code} (check channels.webform.token)") from None
            if exc.code == 429 or exc.code >= 500:
                raise TransientError(f"web form /submissions: HTTP {exc.code}") from None
            raise WebFormError(f"web form /submissions: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
            raise TransientError(f"web form /submissions: {getattr(exc, 'reason', exc)}") from None
        return self.answer(raw)

    def answer(self, raw: bytes) -> tuple[list, bool]:
        """The items of an answer's body and whether more follow, or TransientError."""
        try:
            doc = read_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, BadMessage):
            raise TransientError("web form /submissions: not JSON (a proxy's error page?)") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
            raise TransientError("web form /submissions: no items list")
        has_more = doc.get("has_more")
        return doc["items"], bool(has_more) if has_more is not None else len(doc["items"]) >= self.page_size
