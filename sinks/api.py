"""Offices act on cases, citizens look them up: `wenzheng case …` and the ledger worker's HTTP API.

HTTP (served by `wenzheng worker ledger`, port http.port + 3):

* ``GET /cases/<tracking no>`` — a citizen's lookup: status, office, deadlines, history
  (masked text only, no actor names).
* ``POST /cases/<tracking no>/claim|reply|close|reopen`` with a JSON body
  (``office_id``, ``actor``, ``text`` for a reply, ``satisfaction`` 1–5 on close,
  ``reason`` on reopen). Serve it on an internal network only: it has no
  authentication of its own.
"""

from __future__ import annotations

import json
from datetime import datetime

from wenzheng.config import load as load_config
from wenzheng.core.command import Command, UsageError, parse_time
from wenzheng.core.service import JSON, Body, Param, Reply, Request, Route

from .cases import CaseError, Ledger

ACTIONS = ("claim", "reply", "close", "reopen")


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


def act(ledger: Ledger, tracking_no: str, action: str, body: dict, at: datetime | None = None) -> dict:
    office, actor = body.get("office_id"), body.get("actor") or ""
    if action in ("claim", "reply") and not office:
        raise CaseError(f"{action} needs office_id")
    if action == "claim":
        return ledger.claim(tracking_no, office, actor, at=at)
    if action == "reply":
        return ledger.reply(tracking_no, office, body.get("text") or "", actor, at=at)
    if action == "close":
        sat = body.get("satisfaction")
        return ledger.close(tracking_no, int(sat) if sat not in (None, "") else None, actor, at=at)
    if action == "reopen":
        return ledger.reopen(tracking_no, body.get("reason") or "", actor, at=at)
    raise CaseError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")


def public(case: dict) -> dict:
    keep = ("tracking_no", "status", "office_name", "category", "type", "received_at",
            "first_response_due", "answer_due", "claimed_at", "replied_at", "closed_at", "satisfaction")
    return {**{k: case[k] for k in keep},
            "history": [{"at": e["at"], "event": e["event"], **({"reply": e["note"]} if e["event"] == "replied" else {})}
                        for e in case["events"]]}


_ERROR = Body("why", schema={"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}})
_PUBLIC = {"type": "object", "required": ["tracking_no", "status", "history"], "properties": {
    "tracking_no": {"type": "string"}, "status": {"type": "string"},
    "satisfaction": {"type": "integer", "nullable": True},
    "history": {"type": "array", "items": {"type": "object", "required": ["at", "event"]}}}}
_ACTION = {"type": "object", "properties": {
    "office_id": {"type": "string", "description": "the acting office (claim, reply)"},
    "actor": {"type": "string"}, "text": {"type": "string", "description": "the reply"},
    "satisfaction": {"type": "integer", "minimum": 1, "maximum": 5, "description": "on close"},
    "reason": {"type": "string", "description": "on reopen"}}}


def routes(ledger: Ledger) -> list[Route]:
    def reply(status: int, doc) -> Reply:
        return status, JSON, _json(doc).encode()

    def get(req: Request) -> Reply:
        try:
            return reply(200, public(ledger.get(req.params["tracking_no"])))
        except CaseError as exc:
            return reply(404, {"error": str(exc)})

    def post(req: Request) -> Reply:
        tracking, action = req.params["tracking_no"], req.params["action"]
        if action not in ACTIONS:
            return reply(404, {"error": f"unknown action {action!r} (one of {', '.join(ACTIONS)})"})
        try:
            body = json.loads(req.body or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            return reply(400, {"error": f"body is not a JSON object: {exc}"})
        if wrong := [k for k in ("office_id", "actor", "text", "reason") if not isinstance(body.get(k) or "", str)]:
            return reply(400, {"error": f"{', '.join(wrong)}: not a string"})
        try:
            return reply(200, act(ledger, tracking, action, body))
        except CaseError as exc:
            return reply(404 if str(exc).startswith("no case") else 409, {"error": str(exc)})
        except (TypeError, ValueError) as exc:
            return reply(400, {"error": str(exc)})

    return [Route("/cases/{tracking_no}", get, summary="a case, public fields (a citizen's lookup)", public=True,
                  responses={200: Body("the case", schema=_PUBLIC), 404: _ERROR}),
            Route("/cases/{tracking_no}/{action}", post, ("POST",), "an office claims, replies, closes or reopens",
                  params=(Param("action", "path", schema={"type": "string", "enum": list(ACTIONS)}),),
                  body=Body("the action's fields", schema=_ACTION),
                  responses={200: Body("the case after it", schema={"type": "object"}),
                             **dict.fromkeys((400, 404, 409), _ERROR)})]


class CaseCommand(Command):
    name, help = "case", "offices act on a case (claim, reply, close, reopen) or show it"

    def configure(self, p):
        p.add_argument("action", choices=[*ACTIONS, "show"])
        p.add_argument("tracking_no")
        p.add_argument("--office", help="the acting office's id (claim, reply)")
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
                           {"office_id": args.office, "actor": args.actor, "text": args.text,
                            "satisfaction": args.satisfaction, "reason": args.reason},
                           at=args.at.replace(tzinfo=args.at.tzinfo or ledger.tz) if args.at else None)
        except CaseError as exc:
            raise UsageError(str(exc)) from None
        finally:
            ledger.dispose()
        print(_json(case))
        return 0
