"""The message envelope, version 1: what every topic carries.

One citizen message, whatever channel it came through::

    {
      "schema": "wenzheng.envelope/1",
      "id": "hotline:GZ12345-20261122-000123",   # channel + the source's own id;
                                                 # the Kafka key and the idempotency key
      "channel": "hotline",                      # a channel of the registry: hotline | wechat | weibo | webform | open311 | …
      "account": "12345",                        # which account/line/form received it
      "source_id": "GZ12345-20261122-000123",
      "posted_at": "2026-11-22T09:15:03+08:00",  # when the citizen sent it (Asia/Shanghai)
      "received_at": "2026-11-22T09:15:04+08:00",# when wenzheng took it in
      "author": "p-3f1c…",                       # keyed pseudonym, never the handle itself
      "title": "…", "text": "…",
      "attachments": [{"kind": "image", "url": "…"}],
      "location": {"text": "南康区唐江镇…", "lat": null, "lon": null},
      "raw_ref": {"topic": "wz.intake", "partition": 0, "offset": 42},
      "pii": {…}                                 # only on wz.intake: names, numbers
    }

On ``wz.intake`` the text is as the citizen wrote it and ``pii`` holds the
source's personal fields. Every later topic carries ``masked(envelope)``: the
text masked, ``pii`` dropped and ``raw_ref`` pointing back at the intake record.
Classified messages add ``classification``; routed ones add ``routing``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from .errors import BadMessage
from .privacy import address_keys, mask_text
from .registry import REGISTRY

SCHEMA = "wenzheng.envelope/1"
TZ = ZoneInfo("Asia/Shanghai")
REQUIRED = ("id", "channel", "source_id", "posted_at", "received_at", "text")


def now() -> datetime:
    return datetime.now(TZ)


def iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=TZ)
    return dt.astimezone(TZ).isoformat(timespec="seconds")


def message_id(channel: str, source_id: str) -> str:
    return f"{channel}:{source_id}"


def make(
    *,
    channel: str,
    account: str,
    source_id: str,
    text: str,
    posted_at: datetime | str,
    title: str = "",
    author: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    location: dict[str, Any] | None = None,
    pii: dict[str, Any] | None = None,
    context: str = "",
    raw: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new intake envelope (unmasked: for ``wz.intake`` only)."""
    if channel not in REGISTRY.channel_names():
        raise BadMessage(f"unknown channel {channel!r}")
    if not str(source_id).strip():
        raise BadMessage("message has no source id")
    if not (text or "").strip():
        raise BadMessage("message has no text")
    env = {
        "schema": SCHEMA,
        "id": message_id(channel, str(source_id)),
        "channel": channel,
        "account": account,
        "source_id": str(source_id),
        "posted_at": iso(posted_at) if isinstance(posted_at, datetime) else posted_at,
        "received_at": iso(now()),
        "author": author,
        "title": title or "",
        "text": text,
        "context": context,
        "attachments": attachments or [],
        "location": location,
        "raw_ref": None,
        "pii": pii or {},
    }
    if raw is not None:
        env["raw"] = raw
    return env


def masked(env: dict[str, Any], raw_ref: dict[str, Any] | None = None, key: bytes | None = None) -> dict[str, Any]:
    """The envelope as it may travel past the intake topic. With the pseudonym ``key`` it
    carries ``address_keys``: keyed fingerprints of the home addresses masking hid, so the
    ledger can still tell two households' reports apart (privacy.address_keys)."""
    names = [v for k, v in (env.get("pii") or {}).items() if k.endswith("name") and isinstance(v, str)]
    out = {k: v for k, v in env.items() if k not in ("pii", "raw")}
    if key is not None:
        out["address_keys"] = address_keys(f"{env.get('title') or ''} {env.get('text') or ''}", key)
    for field in ("title", "text", "context"):
        out[field] = mask_text(out.get(field) or "", names)
    if out.get("location") and out["location"].get("text"):
        out["location"] = {**out["location"], "text": mask_text(out["location"]["text"], names)}
    if raw_ref is not None:
        out["raw_ref"] = raw_ref
    out["masked"] = True
    return out


def validate(env: Any) -> dict[str, Any]:
    """Check an envelope read from a topic; raise BadMessage saying what is wrong."""
    if not isinstance(env, dict):
        raise BadMessage("envelope is not a JSON object")
    if env.get("schema") != SCHEMA:
        raise BadMessage(f"unsupported envelope schema {env.get('schema')!r}")
    missing = [f for f in REQUIRED if not env.get(f)]
    if missing:
        raise BadMessage(f"envelope lacks {', '.join(missing)}")
    if env["channel"] not in REGISTRY.channel_names():
        raise BadMessage(f"unknown channel {env['channel']!r}")
    return env


def encode(value: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (never ``\\u`` escapes). orjson: every stage encodes and decodes
    each message, and the standard library's json costs ~5% of the classify stage."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def decode(data: bytes | None) -> Any:
    if data is None:
        raise BadMessage("empty record")
    try:
        return orjson.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadMessage(f"record is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"record is not JSON: {exc}") from None
