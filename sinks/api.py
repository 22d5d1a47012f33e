"""Offices act on cases, citizens look them up: `wenzheng case …` and the ledger worker's HTTP API.

HTTP (served by `wenzheng worker ledger`, port http.port + 3, beside the console):

* ``GET /cases/<tracking no>?code=<check code>`` — a citizen's lookup, as the console's
  ``/track`` page does it: status, handling office, deadlines, the public history and the
  reply (masked); never notes, people or other messages. An unknown number and a wrong
  code get the same 404, and an address gets ``console.track_per_minute`` lookups a
  minute (:class:`TrackGuard`, shared with /track), so numbers cannot be enumerated.
* ``POST /cases/<tracking no>/claim|reply|close|reopen`` with ``Authorization: Bearer
  <token>`` (``wenzheng office token ID``) and a JSON body (``actor``, ``text`` for a
  reply, ``satisfaction`` 1–5 on close, ``reason`` on reopen). The token's office is the
  acting office: 401 without a live token, 403 on another office's case (the answer
  names no office), and the answer is the case's number and new status only.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from urllib.parse import parse_qs

from wenzheng.config import load as load_config
from wenzheng.core.command import Command, UsageError, parse_time
from wenzheng.core.privacy import mask_text
from wenzheng.core.service import JSON, TEXT, Body, Buckets, Param, Reply, Request, Route

from .accounts import Accounts
from .cases import Actor, CaseError, Ledger, NotYours
from .console.labels import PUBLIC_EVENT

ACTIONS = ("claim", "reply", "close", "reopen")


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


def act(ledger: Ledger, tracking_no: str, action: str, body: dict, by: Actor | str, office: str | None,
        at: datetime | None = None) -> dict:
    """One office action; ``office`` is the acting office (None: unchecked, for the CLI's close and reopen)."""
    if action in ("claim", "reply"):
        if not office:
            raise CaseError(f"{action} needs the acting office")
        return (ledger.claim(tracking_no, office, by, at=at) if action == "claim"
                else ledger.reply(tracking_no, office, body.get("text") or "", by, at=at))
    if action == "close":
        sat = body.get("satisfaction")
        return ledger.close(tracking_no, int(sat) if sat not in (None, "") else None, by, at=at, office_id=office)
    if action == "reopen":
        return ledger.reopen(tracking_no, body.get("reason") or "", by, at=at, office_id=office)
    raise CaseError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")


def public(case: dict) -> dict:
    """What a citizen may see of a case: no text, notes, people or addresses; the reply masked."""
    keep = ("tracking_no", "status", "office_name", "category", "type", "received_at",
            "first_response_due", "answer_due", "claimed_at", "replied_at", "closed_at", "satisfaction")
    history = [{"at": e["at"], "event": e["event"],
                **({"reply": mask_text(e["note"] or "")} if e["event"] == "replied" else {})}
               for e in case["events"] if e["event"] in PUBLIC_EVENT]
    return {**{k: case[k] for k in keep}, "history": history}


class TrackGuard:
    """The citizens' lookups (``/track`` and ``GET /cases/<no>``) share one per-address limit,
    stricter than the service's for public routes; safe across handler threads."""

    def __init__(self, per_minute: float, burst: int):
        self._buckets, self._lock = Buckets(per_minute, burst), threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> TrackGuard:
        return cls(settings.console.track_per_minute, settings.console.track_burst)

    def wait(self, client: str) -> float:
        """0 when the client may look up now; else the seconds until it may."""
        with self._lock:
            return self._buckets.take(client)


_ERROR = Body("why", schema={"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}})
_PUBLIC = {"type": "object", "required": ["tracking_no", "status", "history"], "properties": {
    "tracking_no": {"type": "string"}, "status": {"type": "string"},
    "satisfaction": {"type": "integer", "nullable": True},
    "history": {"type": "array", "items": {"type": "object", "required": ["at", "event"]}}}}
_ACTION = {"type": "object", "properties": {
    "actor": {"type": "string", "description": "who acts (a clerk's name), recorded with the token's office"},
    "text": {"type": "string", "description": "the reply"},
    "satisfaction": {"type": "integer", "minimum": 1, "maximum": 5, "description": "on close"},
    "reason": {"type": "string", "description": "on reopen"}}}
_DONE = {"type": "object", "required": ["tracking_no", "status"], "properties": {
    "tracking_no": {"type": "string"}, "status": {"type": "string"}}}
NOT_FOUND = "no such case, or not that check code"


def _reply(status: int, doc) -> Reply:
    return status, JSON, _json(doc).encode()


def _body(req: Request) -> dict:
    body = json.loads(req.body or b"{}")
    if not isinstance(body, dict):
        raise ValueError("not an object")
    if wrong := [k for k in ("actor", "text", "reason") if not isinstance(body.get(k) or "", str)]:
        raise ValueError(f"{', '.join(wrong)}: not a string")
    return body


def routes(ledger: Ledger, accounts: Accounts, guard: TrackGuard) -> list[Route]:
    def get(req: Request) -> Reply:
        if guard.wait(req.client):
            return 429, TEXT, b"too many requests"  # as the service's own limit answers
        code = (parse_qs(req.query).get("code") or [""])[0]
        case = ledger.track(req.params["tracking_no"], code)
        return _reply(200, public(case)) if case else _reply(404, {"error": NOT_FOUND})

    def post(req: Request) -> Reply:
        tracking, action = req.params["tracking_no"], req.params["action"]
        auth = req.headers.get("authorization") or ""
        office = accounts.token_office(auth[7:].strip()) if auth[:7].lower() == "bearer " else None
        if office is None:
            return _reply(401, {"error": "a live office token is needed: Authorization: Bearer <token>"})
        if action not in ACTIONS:
            return _reply(404, {"error": f"unknown action {action!r} (one of {', '.join(ACTIONS)})"})
        try:
            body = _body(req)
            by = Actor(body.get("actor") or office[1], f"token:{office[0]}", req.client)
            case = act(ledger, tracking, action, body, by, office[0])
        except NotYours as exc:
            return _reply(403, {"error": str(exc)})
        except CaseError as exc:
            return _reply(404 if str(exc).startswith("no case") else 409, {"error": str(exc)})
        except (TypeError, ValueError) as exc:
            return _reply(400, {"error": f"bad request: {exc}"})
        return _reply(200, {"tracking_no": case["tracking_no"], "status": case["status"]})

    return [Route("/cases/{tracking_no}", get, summary="a citizen's lookup: the public fields, with the check code",
                  public=True, params=(Param("code", "query", "the case's check code", required=True),),
                  responses={200: Body("the case", schema=_PUBLIC), 404: _ERROR}),
            Route("/cases/{tracking_no}/{action}", post, ("POST",), "an office claims, replies, closes or reopens",
                  params=(Param("action", "path", schema={"type": "string", "enum": list(ACTIONS)}),
                          Param("Authorization", "header", "Bearer <the office's token>", required=True)),
                  body=Body("the action's fields", schema=_ACTION),
                  responses={200: Body("the case's number and status after it", schema=_DONE),
                             **dict.fromkeys((400, 401, 403, 404, 409), _ERROR)})]


class CaseCommand(Command):
    name, help = "case", "offices act on a case (claim, reply, close, reopen) or show it (with its check code)"

    def configure(self, p):
        p.add_argument("action", choices=[*ACTIONS, "show"])
        p.add_argument("tracking_no")
        p.add_argument("--office", help="the acting office's id (claim, reply; close and reopen check it if given)")
        p.add_argument("--actor", default="", help="who acts (a clerk's name or id)")
        p.add_argument("--text", default="", help="the reply")
        p.add_argument("--satisfaction", type=int, help="close: the citizen's rating, 1-5")
        p.add_argument("--reason", default="", help="reopen: why")
        p.add_argument("--at", type=parse_time,
                       help="when it was done, if not now (an action taken on paper, entered later)")

    def execute(self, args) -> int:
        config = load_config(args.config)
        ledger = Ledger.from_settings(config.settings)
        try:
            if args.action == "show":
                case = ledger.get(args.tracking_no)
            else:
                case = act(ledger, args.tracking_no, args.action,
                           {"text": args.text, "satisfaction": args.satisfaction, "reason": args.reason},
                           args.actor, args.office,
                           at=args.at.replace(tzinfo=args.at.tzinfo or ledger.tz) if args.at else None)
        except CaseError as exc:
            raise UsageError(str(exc)) from None
        finally:
            ledger.dispose()
        print(_json(case))
        return 0
