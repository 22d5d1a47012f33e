"""Open311 GeoReport v2 intake: city apps and partner systems POST service requests.

Served on the ingest worker when ``channels.webform.open311`` is on (and the
``webform`` channel is enabled — the worker registers both under that section):

- ``POST /open311/requests.json`` — form-encoded or JSON: ``service_code``
  (one of the twelve category codes), ``description``, a location (``lat`` and
  ``long``, or ``address_string``, or ``address_id``), optional ``email``,
  ``first_name``, ``last_name``, ``phone``, ``media_url``, ``device_id``,
  ``account_id``, ``attribute[…]``; ``api_key`` (form, JSON or query) when
  ``channels.webform.open311_api_keys`` is non-empty. Answers 201
  ``[{"service_request_id", "service_notice", "account_id"}]``.
- ``GET /open311/requests/<id>.json`` — ``[{…}]``, the request's public fields;
  404 for ids this machine never took.
- ``GET /open311/requests.json`` — the spec's list: ``service_request_id``
  (comma-separated; it overrides the other filters), ``service_code``,
  ``status`` (``open``, ``closed``; both comma-separated), ``start_date`` and
  ``end_date`` (W3C date-times, at most 90 days apart; by default the last 90
  days), newest first, at most 1,000, public fields only. JSON only.
- ``GET /open311/services.json`` — the twelve categories as services.

**Public fields.** Anyone may read a request — GeoReport has no read
authentication, and citizens look their requests up from the id they were given —
so a read shows what an office would put on a public map and no more:
``service_request_id``, ``status`` and ``status_notes``, ``service_code`` and
``service_name``, ``description`` and ``address`` masked as every later topic
masks them (core/privacy: phone numbers, names, house numbers…),
``requested_datetime``/``updated_datetime``, and ``lat``/``long`` rounded to three
decimals (about 100 m: the street, not the door). Never the email, phone, names
or device id, which only ``wz.intake`` carries; ``address_id`` (a house in the
city's address register) and ``media_url`` (a photo nobody can mask) are null.
The spec's other keys are there, null, so clients find the document they expect.

Errors are GeoReport error arrays ``[{"code": 400, "description": "…"}]``: 400
for what is missing or wrong — including JSON nested deeper than Python's
recursion limit, a number of more than 20 digits, NaN, and a field of the wrong
type — (nothing is kept: the client is told and can fix it, so nothing is
dead-lettered), 403 for a missing or unknown ``api_key``, 413 for a body over
256 KiB, 422 for a reused ``Idempotency-Key`` with another body. Every route is
public, so the HTTP service rate-limits each client address
(``http.rate_limit_per_minute``, bursts of ``http.rate_limit_burst``; 429 with
Retry-After beyond) before a handler runs: of a burst of 1,000 posts from one
address, about 30 are taken and the rest refused.

**Delivery order** of one POST — the guarantee lives in this order:

1. Check the api_key, parse and validate (GeoReport errors, nothing kept).
2. The envelope, source id the ``service_request_id`` (keyed into its id); email, phone and
   names go to ``pii`` only (``raw`` holds the non-personal fields).
3. :meth:`Connector.spool` it (fsync'd SQLite; returns at once).
4. Record it in the local index (``open311.sqlite3``: id, status, the public
   fields — no personal data), which GET answers from.
5. Answer 201. The drainer publishes the spool to ``wz.intake`` after Kafka's
   acknowledgement (base.py's order), so a broker that is down delays, never loses.

**Idempotency** — by the ``Idempotency-Key`` header, not by content. A client
that retries (a timeout, a flaky mobile network) sends the same key; the
request id is then derived from (client, key), so the retry gets the same
``service_request_id`` and is collapsed by the spool's and the journal's
de-duplication by message id — even when the first attempt died between
spooling and answering. The same key with a different body is refused (422).
The client is the api_key when keys are configured, else the client's address (as
the service sees it: behind a reverse proxy, list the proxy in ``http.trusted_proxies``,
or every client is the proxy and shares one scope and one rate limit):
another client sending the same key makes a request of its own, and learns
nothing of the first (neither its id nor that the key was used). Without api
keys, a retry from another address (a phone that changed networks) becomes a
second request — a repeated report, not a lost one — and clients behind one
address share a scope, so they should use random keys (UUIDs).
Content matching (same description, phone and address within a minute) is not
done: a citizen reporting the same broken lamp again is a signal for the
office, not a duplicate, and a key states the client's intent exactly.

The index is local to the machine: with several ingest hosts behind a load
balancer, route ``/open311/`` to one host (or make it sticky) so GET finds
what POST took.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from wenzheng.config import CATEGORIES
from wenzheng.core import envelope
from wenzheng.core.privacy import pseudonym
from wenzheng.core.service import Body, Param, Reply, Request, Route
from wenzheng.core.storage import LocalDB, shared

from .base import Connector

log = logging.getLogger(__name__)

JSON = "application/json; charset=utf-8"
MAX_BODY = 256 * 1024
MAX_FIELDS = 200
"""Fields of a form or query string at most."""
MAX_DIGITS = 20
"""Digits of a JSON integer at most: longer is no field of GeoReport's, and Python refuses over 4,300."""
MAX_ATTRIBUTES, MAX_VALUES = 50, 50
LIST_DAYS, LIST_MAX = 90, 1000
"""The list's default and longest period (GeoReport's), and its most results (an answer under a megabyte)."""
DECIMALS = 3
"""lat/long as GET shows them: 0.001° is about 100 m."""
STATUSES = ("open", "closed")
NOTICE = "您的诉求已收到，我们将尽快转交相关部门办理。"

PII_FIELDS = ("email", "first_name", "last_name", "phone")


class Invalid(Exception):
    def __init__(self, code: int, description: str):
        self.code, self.description = code, description
        super().__init__(description)


def keyed_id(scope: str, idempotency_key: str) -> str:
    """The service_request_id of a request sent with an Idempotency-Key: the same for every retry."""
    return hashlib.sha256(f"{scope}\n{idempotency_key}".encode()).hexdigest()[:16]


def _error(code: int, description: str) -> tuple[int, str, bytes]:
    return code, JSON, json.dumps([{"code": code, "description": description}], ensure_ascii=False).encode()


def _ok(status: int, doc) -> tuple[int, str, bytes]:
    return status, JSON, json.dumps(doc, ensure_ascii=False).encode()


class _Index:
    """What this machine's Open311 connector took: GET answers from it, idempotent retries check it."""

    COLUMNS = ("connector", "srid", "msg_id", "body_hash", "service_code", "description", "address", "lat", "lon",
               "media_url", "requested", "status", "status_notes")

    def __init__(self, path: Path) -> None:
        self.db = LocalDB(path, f"CREATE TABLE IF NOT EXISTS requests ({', '.join(self.COLUMNS)}, "
                                "PRIMARY KEY (connector, srid));"
                                "CREATE INDEX IF NOT EXISTS requests_by_time ON requests (connector, requested);")

    def get(self, connector: str, srid: str) -> dict | None:
        rows = self.find(connector, ids=[srid])
        return rows[0] if rows else None

    def find(self, connector: str, *, ids: Sequence[str] = (), codes: Sequence[str] = (),
             statuses: Sequence[str] = (), start: str = "", end: str = "") -> list[dict]:
        """Rows by id, or by period (ISO times, inclusive), service code and status; newest first."""
        where, args = ["connector=?"], [connector]
        filters = [("srid", ids)] if ids else [("service_code", codes), ("status", statuses)]
        if not ids:
            where.append("requested >= ? AND requested <= ?")
            args += [start, end]
        for column, values in filters:
            if values:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                args += values
        rows = self.db.query(f"SELECT {', '.join(self.COLUMNS)} FROM requests WHERE {' AND '.join(where)} "
                             "ORDER BY requested DESC, rowid DESC LIMIT ?", [*args, LIST_MAX])
        return [dict(zip(self.COLUMNS, row, strict=True)) for row in rows]

    def add(self, row: dict) -> None:
        with self.db.transaction() as tx:
            tx.execute(f"INSERT INTO requests VALUES ({', '.join('?' * len(self.COLUMNS))}) ON CONFLICT DO NOTHING",
                       [row[c] for c in self.COLUMNS])


def _index_for(state_dir: Path) -> _Index:
    return shared(_Index, state_dir / "open311.sqlite3")


def _fields(text: str) -> dict[str, list[str]]:
    """A query string or form body, every value of each field."""
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise Invalid(400, f"more than {MAX_FIELDS} fields") from None


def _json_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise Invalid(400, f"a number of more than {MAX_DIGITS} digits")
    return int(digits)


def _json_constant(name: str) -> float:
    raise Invalid(400, f"{name} is not a number")


def _json(text: str) -> dict:
    """The JSON body's object; Invalid (never a crash) for what no GeoReport client sends."""
    try:
        doc = json.loads(text or "{}", parse_int=_json_int, parse_constant=_json_constant)
    except RecursionError:
        raise Invalid(400, "JSON nested too deep") from None
    except json.JSONDecodeError as exc:
        raise Invalid(400, f"body is not JSON: {exc.msg}") from None
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]
    if not isinstance(doc, dict):
        raise Invalid(400, "JSON body is not an object")
    return doc


def _params(req: Request) -> dict:
    """The request's fields: query string, then the form or JSON body (the body wins)."""
    if len(req.body) > MAX_BODY:
        raise Invalid(413, "request body larger than 256 KiB")
    params: dict[str, Any] = {k: v[-1] for k, v in _fields(req.query).items()}
    ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(400, "body is not UTF-8") from None
    if ctype == "application/json":
        params.update(_json(text))
    elif ctype in ("application/x-www-form-urlencoded", ""):
        params.update({k: v[-1] for k, v in _fields(text).items()})
    else:
        raise Invalid(400, f"unsupported Content-Type {ctype[:60]!r}: use application/x-www-form-urlencoded or JSON")
    return params


def _rounded(degrees: float | None) -> float | None:
    return None if degrees is None else round(degrees, DECIMALS)


def _utf8(text: str) -> bool:
    """False for a lone surrogate (JSON's ``"\\ud800"``): no record, file or hash can hold it."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _str(params: dict, field: str, limit: int = 500) -> str:
    value = params.get(field)
    if value is None:
        return ""
    if not _scalar(value):
        raise Invalid(400, f"{field} must be a string")
    value = str(value).strip()
    if not _utf8(value):
        raise Invalid(400, f"{field} is not UTF-8 text (a lone surrogate)")
    if len(value) > limit:
        raise Invalid(400, f"{field} longer than {limit} characters")
    return value


def _coord(params: dict, field: str, bound: float) -> float | None:
    value = params.get(field)
    if value in (None, ""):
        return None
    try:
        f = float(value) if _scalar(value) else float("nan")
    except ValueError:
        raise Invalid(400, f"{field} is not a number") from None
    if f != f:
        raise Invalid(400, f"{field} is not a number")
    if not -bound <= f <= bound:
        raise Invalid(400, f"{field} out of range")
    return f


def _attributes(p: dict) -> dict[str, str | list[str]]:
    """``attribute[code]`` fields and a JSON ``attribute`` object: each a string or a list of them."""
    found = {k[len("attribute["):-1]: v for k, v in p.items() if k.startswith("attribute[") and k.endswith("]")}
    if p.get("attribute") is not None:
        if not isinstance(p["attribute"], dict):
            raise Invalid(400, "attribute must be an object")
        found |= p["attribute"]
    if len(found) > MAX_ATTRIBUTES:
        raise Invalid(400, f"more than {MAX_ATTRIBUTES} attributes")
    out: dict[str, str | list[str]] = {}
    for code, value in found.items():
        if len(code) > 64 or not _utf8(code):
            raise Invalid(400, "attribute code longer than 64 characters, or not UTF-8 text")
        name, many = f"attribute[{code}]", isinstance(value, list)
        if many and len(value) > MAX_VALUES:
            raise Invalid(400, f"{name}: more than {MAX_VALUES} values")
        out[code] = [_str({name: v}, name) for v in value] if many else _str({name: value}, name)
    return out


def _values(q: dict[str, list[str]], name: str) -> list[str]:
    """A list filter's values: comma-separated, the parameter given once or more."""
    return [v.strip() for given in q.get(name, []) for v in given.split(",") if v.strip()]


def _when(q: dict[str, list[str]], name: str) -> datetime | None:
    given = (q.get(name) or [""])[-1].strip()
    if not given:
        return None
    try:
        when = datetime.fromisoformat(given)
        return when if when.tzinfo else when.replace(tzinfo=envelope.TZ)
    except ValueError:
        raise Invalid(400, f"{name} is not a W3C date-time (e.g. 2026-11-01T00:00:00+08:00)") from None


def _filters(query: str) -> dict:
    """The list's filters as :meth:`_Index.find` takes them (GeoReport's defaults and bounds)."""
    q = _fields(query)
    if ids := _values(q, "service_request_id"):
        if len(ids) > LIST_MAX:
            raise Invalid(400, f"more than {LIST_MAX} service_request_id")
        return {"ids": ids}
    statuses = _values(q, "status")
    if unknown := set(statuses) - set(STATUSES):
        raise Invalid(400, f"status {sorted(unknown)[0][:40]!r}: open or closed")
    start, end, span = _when(q, "start_date"), _when(q, "end_date"), timedelta(days=LIST_DAYS)
    try:
        end = end or (start + span if start else envelope.now())
        start = start or end - span
        if start > end or end - start > span:
            raise Invalid(400, f"start_date to end_date: at most {LIST_DAYS} days, start first")
        period = envelope.iso(start), envelope.iso(end)
    except OverflowError:
        raise Invalid(400, "start_date or end_date out of range") from None
    return {"codes": _values(q, "service_code"), "statuses": statuses, "start": period[0], "end": period[1]}


def _array(item: dict) -> dict:
    return {"type": "array", "items": {"type": "object", **item}}


def _props(kind: str, *names: str, nullable: bool = False) -> dict:
    return {n: {"type": kind, **({"nullable": True} if nullable else {})} for n in names}


#: GeoReport's statuses here, and the shapes of its documents, for the OpenAPI document
ERROR_CODES = {400: "missing or wrong fields; nothing kept", 403: "api_key missing or unknown",
               404: "no such request", 413: "body over 256 KiB",
               422: "Idempotency-Key already used for another request"}
_ERRORS = _array({"required": ["code", "description"], "properties": {
    "code": {"type": "integer"}, "description": {"type": "string"}}})
_SUBMITTED = {"required": ["service_request_id"], "properties": {
    **_props("string", "service_request_id", "service_notice"), **_props("string", "account_id", nullable=True)}}
_STATUS = {"required": ["service_request_id", "status"], "properties": {
    **_props("string", "service_request_id", "status", "status_notes", "service_name", "service_code",
             "description", "service_notice", "requested_datetime", "updated_datetime", "address"),
    **_props("string", "agency_responsible", "expected_datetime", "address_id", "zipcode", "media_url",
             nullable=True),
    **_props("number", "lat", "long", nullable=True)}}
_SERVICE = {"required": ["service_code", "service_name"], "properties": {
    **_props("string", "service_code", "service_name", "description", "type", "keywords", "group"),
    "metadata": {"type": "boolean"}}}
_REQUEST_FIELDS = {"type": "object", "required": ["service_code", "description"], "properties": {
    "service_code": {"type": "string", "enum": list(CATEGORIES)},
    **_props("string", "description", "address_string", "address_id", "email", "first_name", "last_name", "phone",
             "media_url", "device_id", "account_id", "api_key"),
    "lat": {"type": "number", "minimum": -90, "maximum": 90},
    "long": {"type": "number", "minimum": -180, "maximum": 180}}}
_LIST_FILTERS = (
    Param("service_request_id", description="comma-separated ids; overrides the other filters"),
    Param("service_code", description="comma-separated service codes"),
    Param("start_date", description="W3C date-time; default: end_date less 90 days",
          schema={"type": "string", "format": "date-time"}),
    Param("end_date", description="W3C date-time, at most 90 days after start_date; default: now",
          schema={"type": "string", "format": "date-time"}),
    Param("status", description="open, closed or both, comma-separated"),
    Param("jurisdiction_id", description="accepted and ignored: one city per worker"))


class Open311Connector(Connector):
    """Push only: never polled, but ``run_once`` still drains its spool while Kafka was down."""

    channel = "open311"
    poll_seconds = 0.0

    def __init__(self, runtime, publisher, name: str = "open311"):
        super().__init__(runtime, publisher, name)
        cfg = runtime.settings.channels.webform
        self.api_keys = [k.get_secret_value() for k in cfg.open311_api_keys]
        self._post_lock = threading.Lock()  # lookup → spool → index, for one Idempotency-Key at a time

    @classmethod
    def from_config(cls, runtime, make_publisher):
        return [cls(runtime, make_publisher("open311"), "open311")] if runtime.settings.channels.webform.open311 else []

    def routes(self) -> list[Route]:
        """Public: city apps post straight from phones, citizens look their requests up."""
        errors = {code: Body(why, schema=_ERRORS) for code, why in ERROR_CODES.items()}
        requests = Body("public fields (no personal data)", schema=_array(_STATUS))
        return [
            Route("/open311/requests.json", self.handle_post, ("POST",), "submit a service request", public=True,
                  params=(Param("api_key", description="when open311_api_keys are configured (or in the body)"),
                          Param("Idempotency-Key", "header", "the same for every retry of one request")),
                  body=Body("GeoReport v2 fields", ("application/x-www-form-urlencoded", "application/json"),
                            _REQUEST_FIELDS),
                  responses={201: Body("taken", schema=_array(_SUBMITTED)), **errors}),
            Route("/open311/requests.json", self.handle_list, summary="service requests (public fields), filtered",
                  public=True, params=_LIST_FILTERS, responses={200: requests, 400: errors[400]}),
            Route("/open311/requests/{id}.json", self.handle_get, summary="one service request (public fields)",
                  public=True, responses={200: requests, 404: errors[404]}),
            Route("/open311/services.json", self.handle_services, summary="the service list (the twelve categories)",
                  public=True, responses={200: Body("the services", schema=_array(_SERVICE))}),
        ]

    # --- POST ------------------------------------------------------------------------

    def handle_post(self, req: Request) -> Reply:
        """One GeoReport v2 service request (steps 1–5 of the order above)."""
        try:
            params = _params(req)
            scope, client = self._client(params, req)
            fields = self._validate(params)
            idem = (req.headers.get("Idempotency-Key") or "").strip()
            if len(idem) > 255:
                raise Invalid(400, "Idempotency-Key longer than 255 characters")
        except Invalid as exc:
            return _error(exc.code, exc.description)
        body_hash = hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        index = _index_for(self.runtime.state_dir)
        with self._post_lock:
            srid = keyed_id(scope, idem) if idem else secrets.token_hex(8)
            if idem and (known := index.get(self.name, srid)) is not None:
                if known["body_hash"] != body_hash:
                    return _error(422, "Idempotency-Key already used for a different request")
                return _ok(201, [{"service_request_id": srid, "service_notice": NOTICE, "account_id": None}])
            env = self.to_envelope(srid, fields, client)
            self.spool([env])  # durable before we answer; INSERT OR IGNORE by id collapses retries
            index.add(self._row(srid, env, fields["service_code"], body_hash))
        log.info("open311 request spooled", extra={"connector": self.name, "id": env["id"]})
        return _ok(201, [{"service_request_id": srid, "service_notice": NOTICE, "account_id": None}])

    def _client(self, params: dict, req: Request) -> tuple[str, str | None]:
        """(the scope of the client's Idempotency-Keys, the client as the envelope names it): the
        api_key's digest when keys are configured, else the client's address (not put on the envelope)."""
        if not self.api_keys:
            return f"addr:{req.client}", None
        given = _str(params, "api_key", 256)
        if not given:
            raise Invalid(403, "api_key required")
        for k in self.api_keys:
            if hmac.compare_digest(given.encode(), k.encode()):
                digest = hashlib.sha256(k.encode()).hexdigest()[:12]
                return digest, digest
        raise Invalid(403, "api_key invalid")

    def _row(self, srid: str, env: dict, service_code: str, body_hash: str) -> dict:
        """The index row: what GET shows (masked, rounded) and what a retry is checked against."""
        masked, where = envelope.masked(env), env["location"] or {}
        return {"connector": self.name, "srid": srid, "msg_id": env["id"], "body_hash": body_hash,
                "service_code": service_code, "description": masked["text"],
                "address": (masked["location"] or {}).get("text") or "", "lat": _rounded(where.get("lat")),
                "lon": _rounded(where.get("lon")), "media_url": "", "requested": env["posted_at"],
                "status": "open", "status_notes": "received"}

    def _validate(self, p: dict) -> dict:
        code = _str(p, "service_code", 64)
        if not code:
            raise Invalid(400, "service_code required")
        if code not in CATEGORIES:
            raise Invalid(400, f"service_code {code!r} not found: see /open311/services.json")
        description = _str(p, "description", 4000)
        if not description:
            raise Invalid(400, "description required")
        lat, lon = _coord(p, "lat", 90), _coord(p, "long", 180)
        if (lat is None) != (lon is None):
            raise Invalid(400, "lat and long must be given together")
        address, address_id = _str(p, "address_string"), _str(p, "address_id", 64)
        if lat is None and not address and not address_id:
            raise Invalid(400, "location required: lat and long, address_string or address_id")
        email = _str(p, "email", 254)
        if email and ("@" not in email or " " in email):
            raise Invalid(400, "email is not an address")
        media_url = _str(p, "media_url", 2000)
        if media_url and not media_url.startswith(("http://", "https://")):
            raise Invalid(400, "media_url must be an http(s) URL")
        return {"service_code": code, "description": description, "lat": lat, "long": lon,
                "address_string": address, "address_id": address_id, "email": email,
                "first_name": _str(p, "first_name", 64), "last_name": _str(p, "last_name", 64),
                "phone": _str(p, "phone", 32), "media_url": media_url,
                "device_id": _str(p, "device_id", 128), "account_id": _str(p, "account_id", 128),
                "jurisdiction_id": _str(p, "jurisdiction_id", 64), "attribute": _attributes(p)}

    def to_envelope(self, srid: str, f: dict, client: str | None) -> dict:
        # Chinese order: 姓 (last_name) then 名 (first_name), no space.
        full = f"{f['last_name']}{f['first_name']}" if f["last_name"] or f["first_name"] else None
        location = None
        if f["address_string"] or f["lat"] is not None:
            location = {"text": f["address_string"], "lat": f["lat"], "lon": f["long"]}
        return self.envelope(
            channel="open311", account=self.name, source_id=srid, text=f["description"],
            posted_at=envelope.now(),
            author=pseudonym(self.key, "open311", f["phone"] or f["email"] or f["device_id"] or None),
            attachments=[{"kind": "image", "url": f["media_url"]}] if f["media_url"] else [],
            location=location,
            pii={"name": full, "first_name": f["first_name"] or None, "last_name": f["last_name"] or None,
                 "email": f["email"] or None, "phone": f["phone"] or None},
            raw={**{k: v for k, v in f.items() if k not in PII_FIELDS}, "client": client or None},
        )

    # --- GET -------------------------------------------------------------------------

    def handle_get(self, req: Request) -> Reply:
        """``/open311/requests/{id}.json``: the request's public fields, from the local index."""
        srid = req.params["id"]
        row = _index_for(self.runtime.state_dir).get(self.name, srid)
        if row is None:
            return _error(404, f"service_request_id {srid[:64]!r} not found")
        return _ok(200, [self._public(row)])

    def handle_list(self, req: Request) -> Reply:
        """``/open311/requests.json``: public fields of the requests the filters select."""
        try:
            filters = _filters(req.query)
        except Invalid as exc:
            return _error(exc.code, exc.description)
        return _ok(200, [self._public(row) for row in _index_for(self.runtime.state_dir).find(self.name, **filters)])

    def _public(self, row: dict) -> dict:
        """What anyone may read of a request (the module docstring says why these)."""
        return {
            "service_request_id": row["srid"], "status": row["status"], "status_notes": row["status_notes"],
            "service_name": self._service_name(row["service_code"]), "service_code": row["service_code"],
            "description": row["description"], "agency_responsible": None, "service_notice": NOTICE,
            "requested_datetime": row["requested"], "updated_datetime": row["requested"],
            "expected_datetime": None, "address": row["address"], "address_id": None, "zipcode": None,
            "lat": _rounded(row["lat"]), "long": _rounded(row["lon"]), "media_url": None,
        }

    def handle_services(self, req: Request) -> Reply:
        """The configuration's twelve categories (categories.yaml) as GeoReport services."""
        return _ok(200, [{"service_code": c.code, "service_name": c.name,
                          "description": f"{c.name}：{c.scope}" if c.scope else c.name, "metadata": False,
                          "type": "realtime", "keywords": c.scope.replace("、", ","), "group": c.name}
                         for c in self.runtime.settings.categories])

    def _service_name(self, code: str) -> str:
        return next((c.name for c in self.runtime.settings.categories if c.code == code), code)
