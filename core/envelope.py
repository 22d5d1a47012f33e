"""The message envelope, version 1: what every topic carries.

One citizen message, whatever channel it came through::

    {
      "schema": "wenzheng.envelope/1",
      "id": "hotline:5f0c2a9e41b7d3c86a12",      # channel + keyed hash of the source's id (below);
                                                 # the Kafka key and the idempotency key
      "channel": "hotline",                      # a channel of the registry: hotline | wechat | weibo | webform | open311 | …
      "account": "12345",                        # which account/line/form received it
      "source_id": "GZ12345-20261122-000123",    # the source's own id: on wz.intake only
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
text masked, ``pii`` and ``source_id`` dropped and ``raw_ref`` pointing back at the
intake record. Classified messages add ``classification``; routed ones add ``routing``.

**Ids** (:func:`message_id`): ``<channel>:<20 hex digits>``, the digits an HMAC-SHA256 of
the channel and the source's id under the pseudonym key (``privacy.pseudonym_key``). The
source's id is not ours to trust: a call centre names a transcript after the caller's
number, a form backend may number by phone; and the id is everywhere — the Kafka key of
every topic, the delivery journal, the spool, the ledger, dead letters, logs. Keyed, it
says nothing to whoever lacks the key, is the same for every re-read of one item (so
de-duplication by id holds), and keeps the channel in front (the live summary counts by
it). 80 bits: among 10^9 messages two share an id with probability ~4·10^-7. Dead letters'
ids are made the same way (:func:`opaque_id`).

**The upgrade to keyed ids.** Items already checkpointed (published before) are not
read again, so nothing is doubled; an item that is read again after the upgrade (a
hotline file changed in place, a web-form window re-polled, a WeChat retry across the
restart) gets its new id once, and the delivery journal, which knew it by its old id,
lets it through: at most one extra message per such item. Records written before the
upgrade keep their old ids (and masked ones their ``source_id``) until they leave the
topics by retention.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from .errors import BadMessage
from .privacy import address_keys, mask_text
from .registry import REGISTRY

SCHEMA = "wenzheng.envelope/1"
TZ = ZoneInfo("Asia/Shanghai")
REQUIRED = ("id", "channel", "posted_at", "received_at", "text")
ID_HEX = 20
"""Hex digits of an id's keyed hash (80 bits; the module docstring says why)."""
_OPAQUE = re.compile(rf"[a-z][a-z0-9_.-]{{0,63}}:[0-9a-f]{{{ID_HEX}}}")


def now() -> datetime:
    return datetime.now(TZ)


def iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=TZ)
    return dt.astimezone(TZ).isoformat(timespec="seconds")


def message_id(channel: str, source_id: str, key: bytes) -> str:
    """``<channel>:<keyed hash of channel and source id>``: an id that carries no caller data."""
    if not key:
        raise ValueError("message ids need privacy.pseudonym_key")
    data = f"id\n{channel}:{source_id}".encode("utf-8", "surrogatepass")  # "id": never equal to a pseudonym
    return f"{channel}:{hmac.new(key, data, hashlib.sha256).hexdigest()[:ID_HEX]}"


def opaque_id(ref: str, key: bytes) -> str:
    """``ref`` as an id that carries no caller data, for a dead letter: a message id stays as
    it is; any other reference (``file:<name>:…``, an upstream item's id, a Kafka key written
    before ids were keyed) becomes ``message_id`` of it, under its channel when it starts with
    one (``webform:17`` → ``webform:<hash>``, the id the item would have had), else ``ref:``."""
    if _OPAQUE.fullmatch(ref):
        return ref
    channel, sep, rest = ref.partition(":")
    if sep and channel in REGISTRY.channel_names():
        return message_id(channel, rest, key)
    return message_id("ref", ref, key)


def make(
    *,
    channel: str,
    account: str,
    source_id: str,
    text: str,
    posted_at: datetime | str,
    id_key: bytes,
    title: str = "",
    author: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    location: dict[str, Any] | None = None,
    pii: dict[str, Any] | None = None,
    context: str = "",
    raw: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new intake envelope (unmasked: for ``wz.intake`` only); ``id_key`` is the pseudonym
    key its id is hashed with (connectors call ``Connector.envelope``, which passes it)."""
    if channel not in REGISTRY.channel_names():
        raise BadMessage(f"unknown channel {channel!r}")
    if not str(source_id).strip():
        raise BadMessage("message has no source id")
    if not (text or "").strip():
        raise BadMessage("message has no text")
    env = {
        "schema": SCHEMA,
        "id": message_id(channel, str(source_id), id_key),
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
    """The envelope as it may travel past the intake topic: without ``pii``, ``raw`` and the
    source's own id (the ``id`` is its keyed form), the text masked. With the pseudonym ``key`` it
    carries ``address_keys``: keyed fingerprints of the home addresses masking hid, so the
    ledger can still tell two households' reports apart (privacy.address_keys)."""
    names = [v for k, v in (env.get("pii") or {}).items() if k.endswith("name") and isinstance(v, str)]
    out = {k: v for k, v in env.items() if k not in ("pii", "raw", "source_id")}
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
    missing = [f for f in REQUIRED if not env.get(f)] + ([] if env.get("masked") or env.get("source_id")
                                                         else ["source_id"])  # on intake: the source's id
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
