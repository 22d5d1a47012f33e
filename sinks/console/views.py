"""The staff pages: the dispatcher's triage queue, an office's workbench, one case and what
can be done to it."""

from __future__ import annotations

from datetime import date, datetime, time

from kafka.errors import KafkaError
from starlette.responses import Response

from wenzheng.core.errors import TransientError

from ..cases import DONE, CaseError, NotYours
from ..dispatch import assignment_records, flush
from ..supervise import grade
from . import labels
from .web import actor, back, error, page, pager, refusal, render


def _place(classification: dict) -> str | None:
    source = classification.get("jurisdiction_source") or ""
    return source.split(":", 1)[1] if source.startswith("place:") else None


def colour(console, case: dict, now: datetime) -> tuple[str | None, list[dict]]:
    """The case's worst 督办 grade now, and every unmet milestone's grade."""
    grades = grade(case, now, console.settings)
    worst = next((g for g in ("red", "orange", "yellow") if any(x["grade"] == g for x in grades)), None)
    return worst, grades


@page("dispatcher")
def triage(console, request, account, form) -> Response:
    now = console.now()
    pages = pager(request, console.ledger.count_open(triage=True))
    queue = [{**c, "place": _place(c["classification"]), "left": labels.left(c["first_response_due"], now),
              "overdue": bool(c["first_response_due"] and c["first_response_due"] < now)}
             for c in console.ledger.open_cases(triage=True, limit=pages["size"], offset=pages["offset"])]
    extensions = console.ledger.open_cases(extension=True)
    return render(request, "triage.html", queue=queue, pager=pages, extensions=extensions, now=now)


@page("clerk")
def office(console, request, account, form) -> Response:
    office_id = account.office_id or request.query_params.get("office", "")
    if office_id not in console.offices.offices:
        return error(request, 404, "请选择一个承办单位：/console/office?office=单位代码")
    now, cases = console.now(), []
    pages = pager(request, console.ledger.count_open(office_id=office_id))
    for c in console.ledger.open_cases(office_id=office_id, by_deadline=True, limit=pages["size"],
                                       offset=pages["offset"]):
        worst, grades = colour(console, c, now)
        cases.append({**c, "colour": worst, "left": labels.left(c["answer_due"], now),
                      "lead": c["office_id"] == office_id, "why": _why(worst, grades)})
    return render(request, "office.html", cases=cases, pager=pages, office_id=office_id, now=now,
                  sv=console.settings.supervision)


def _why(worst: str | None, grades: list[dict]) -> str:
    """The milestones a case's colour is for (签收、答复): a red case may still be within its answer deadline."""
    return "、".join(labels.MILESTONE[g["milestone"]] for g in grades if g["grade"] == worst)


@page("dispatcher", "clerk", "supervisor")
def case(console, request, account, form) -> Response:
    no = request.path_params["tracking_no"]
    try:
        c = console.ledger.get(no)
    except CaseError:
        return error(request, 404, "没有这个案件。")
    if account.role == "clerk" and account.office_id not in {c["office_id"], *c["co_offices"]}:
        raise NotYours(no)
    now = console.now()
    done = c["status"] in DONE
    worst, grades = colour(console, c, now) if not done else (None, [])
    returned = [e["note"] for e in c["events"] if e["event"] == "returned"]
    return render(request, "case.html", case=c, colour=worst, grades=grades, now=now,
                  place=_place(c["classification"]),
                  left=_met(c["claimed_at"], "已签收", done) or labels.left(c["first_response_due"], now),
                  answer_left=_met(c["replied_at"], "已答复", done) or labels.left(c["answer_due"], now),
                  options=_options(console, c["jurisdiction"]), invalid_reasons=labels.INVALID_REASONS,
                  returned=returned[-1] if returned and c["triage"] else None)


def _met(at: datetime | None, word: str, done: bool) -> str | None:
    """A deadline already met (or no longer running) says so instead of counting down to it."""
    if at is not None:
        return f"{word} {labels.when(at)}"
    return "不再计时" if done else None


def _options(console, jurisdiction: str | None = None) -> dict:
    """The dispatcher's choices: categories, types, places and offices by place — the case's own
    county first, then the city's departments, so the likely offices are at the top of the lists."""
    by_place: dict[str, list] = {}
    first = [jurisdiction, console.settings.city.code]
    for o in sorted(console.offices.offices.values(),
                    key=lambda o: first.index(o.jurisdiction) if o.jurisdiction in first else len(first)):
        if o.kind != "triage":
            by_place.setdefault(console.places.get(o.jurisdiction, o.jurisdiction), []).append(o)
    return {"categories": console.categories, "types": labels.TYPE, "places": console.places,
            "offices": by_place}


@page("dispatcher", "clerk")
def act(console, request, account, form) -> Response:
    no, action = request.path_params["tracking_no"], request.path_params["action"]
    entry = ACTIONS.get(action)
    if entry is None:
        return error(request, 404, "没有这个操作。")
    role, handler, done = entry
    if not account.can(role) or (role == "clerk" and not account.office_id):
        return error(request, 403, "您的账号无权执行此操作。")
    url = f"/console/cases/{no}"
    try:
        message = handler(console, no, form, actor(request, account), account.office_id)
    except CaseError as exc:
        if isinstance(exc, NotYours):
            raise
        return back(request, url, refusal(exc))
    return back(request, _after(role, action, url), message if isinstance(message, str) else done)


def _after(role: str, action: str, url: str) -> str:
    """Where a form leads: the dispatcher back to the queue it works through; a clerk who gave a
    case back to its queue (the case is no longer the office's: its page would be a 403); else the case."""
    if role == "dispatcher":
        return "/console/triage"
    return "/console/office" if action == "return" else url


def _text(form, name: str, what: str) -> str:
    value = str(form.get(name, "")).strip()
    if not value:
        raise CaseError(f"请填写{what}")
    return value


def _assign(console, no: str, form, by, office_id) -> str | None:
    decision: dict = {k: str(form.get(k, "")) for k in ("category", "type", "jurisdiction", "office_id")}
    lead = console.offices.offices.get(decision["office_id"])
    if (decision["category"] not in console.categories or decision["type"] not in labels.TYPE
            or decision["jurisdiction"] not in console.places or lead is None or lead.kind == "triage"):
        raise CaseError("请选择类别、类型、属地和主办单位")
    co = [o for o in dict.fromkeys(form.getlist("co_offices")) if o and o != lead.id]
    if any(o not in console.offices.offices for o in co):
        raise CaseError("协办单位不存在")
    decision.update(office_name=lead.name, co_offices=co)
    env = console.ledger.envelope(no)
    console.ledger.assign(no, decision, by, lambda case, at, n: assignment_records(
        console.topics, case, env, decision, by, at, n))
    return _flush(console, f"{no} 已分派至{lead.name}")


def _flush(console, done: str) -> str:
    """Publish what the action owes to Kafka now; if Kafka is away, the ledger worker does it later."""
    if console.publisher is None:
        return done
    try:
        flush(console.ledger, console.publisher)
    except (TransientError, KafkaError, OSError):
        return f"{done}（消息队列暂不可用，系统将自动补发）"
    return done


def _extend(console, no: str, form, by, office_id) -> None:
    try:
        day = date.fromisoformat(str(form.get("until", "")))
    except ValueError:
        raise CaseError("请填写新的答复期限（日期）") from None
    closing = console.settings.time_limits.office_hours[-1].end
    until = datetime.combine(day, time.fromisoformat(closing), console.tz)
    console.ledger.request_extension(no, office_id, until, _text(form, "reason", "延期理由"), by)


def _invalid(console, no: str, form, by, office_id) -> None:
    note = str(form.get("note", "")).strip()
    reason = labels.INVALID_REASONS.get(str(form.get("reason")), "无效件")
    console.ledger.mark_invalid(no, f"{reason}：{note}" if note else reason, by)


def _close(console, no: str, form, by, office_id) -> None:
    sat = str(form.get("satisfaction", ""))
    console.ledger.close(no, int(sat) if sat.isdigit() else None, by, office_id=office_id)


def _return(console, no: str, form, by, office_id) -> None:
    triage = console.triage_office
    console.ledger.return_to_triage(no, office_id, (triage.id, triage.name), _text(form, "reason", "退回理由"), by)


ACTIONS = {
    "assign": ("dispatcher", _assign, "已分派"),
    "invalid": ("dispatcher", _invalid, "已标记为无效件"),
    "repeat": ("dispatcher", lambda c, no, f, by, o: c.ledger.mark_repeat(no, _text(f, "of", "原案件编号").upper(), by),
               "已并入原案件"),
    "approve": ("dispatcher", lambda c, no, f, by, o: c.ledger.decide_extension(no, True, by), "已同意延期"),
    "refuse": ("dispatcher", lambda c, no, f, by, o: c.ledger.decide_extension(no, False, by), "已驳回延期申请"),
    "claim": ("clerk", lambda c, no, f, by, o: c.ledger.claim(no, o, by), "已签收"),
    "reply": ("clerk", lambda c, no, f, by, o: c.ledger.reply(no, o, _text(f, "text", "答复内容"), by), "已答复"),
    "close": ("clerk", _close, "已办结"),
    "return": ("clerk", _return, "已退回问政办重新分派"),
    "extend": ("clerk", _extend, "延期申请已提交，等待问政办审批"),
}
"""action → (the role that may take it, handler(console, no, form, actor, office), the message when it
returns none of its own)."""
