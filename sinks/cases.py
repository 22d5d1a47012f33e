"""The case ledger: every routed message becomes (or joins) a case with a tracking number.

One code path for SQLite (the default: ``<state dir>/ledger.sqlite3``) and PostgreSQL
(production: ``ledger.url = postgresql://…``), through SQLAlchemy Core.

Tables:

* ``cases`` — one per problem: the tracking number a citizen reads out on the phone
  (``<city.case_prefix><YYYYMMDD>-<6-digit daily sequence>``, e.g. GZ20261122-000123,
  by the day of receipt in the city's time zone), the lead and co-handling offices,
  category, type, jurisdiction, channel, deadlines, status and its times, satisfaction,
  the masked text (for repeat matching), the rule, model version and config hash
  that routed it, the routed (masked) message that opened it (``envelope``: what a
  dispatcher's assignment forwards, with the model's classification), and the
  citizen's ``check_code`` (below).
* ``case_messages`` — every message id, linked to its case (``message_id`` is the
  primary key: recording a message twice is a no-op, so the ledger stage is idempotent).
* ``case_events`` — the status history: received, routed, merged, claimed, replied,
  closed, reopened, and the workbench's assigned, returned (退回), invalid, duplicate,
  extension (申请延期) and its decision; with time, office, actor, note, and the console
  account and client address that did it.
* ``case_extensions`` — an office's requests for a later answer deadline, and the
  dispatcher's decision.
* ``case_outbox`` — records a workbench action must publish (a dispatcher's assignment:
  the office queues and the correction on ``wz.labels``), written in the action's
  transaction and sent afterwards through the delivery journal, so an action is never
  committed without its records, nor its records sent twice.
* ``case_seq`` — the last sequence number per day. A new case takes the next one with
  ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` inside the transaction that inserts the
  case: PostgreSQL's row lock and SQLite's single writer make two ledger workers take
  different numbers, and a rolled-back case gives its number back.

Recording a message is one transaction: look the id up (done → the same case);
look for an open or recently closed case of the same jurisdiction whose text is a
near-duplicate (:mod:`wenzheng.sinks.repeats`) → link the message to it with a
``merged`` event; else a new case with its ``received`` and ``routed`` events.

The check code: six random digits drawn when a case is created, stored on it, never
derived from the tracking number. Staff see it on the case (console, ``wenzheng case
show``) and give it to the citizen with the tracking number — read out at the end of
the call, or in the acknowledgement the channel sends; with both a citizen looks the
case up on ``/track``. Offices act only on their own cases: :class:`NotYours`, whose
message names no office.

Times are stored in UTC and returned in the city's time zone.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from wenzheng.core import storage
from wenzheng.core.errors import BadMessage, TransientError, WenzhengError

from .repeats import ADDRESS_KEY, Deduper, normalise

log = logging.getLogger(__name__)
UTC = ZoneInfo("UTC")
STATUSES = ("received", "routed", "claimed", "replied", "closed", "reopened", "returned", "invalid", "duplicate")
DISCARDED = ("invalid", "duplicate")
"""Cases the dispatcher set aside: spam and the like, and repeats joined to their case."""
DONE = ("closed", *DISCARDED)
"""Statuses of a case nobody has to act on any more."""
OPEN = tuple(s for s in STATUSES if s not in DONE)
VERBS = {"claimed": "claim", "replied": "reply to", "closed": "close", "reopened": "reopen", "assigned": "assign",
         "returned": "return", "invalid": "mark invalid", "duplicate": "mark as a repeat", "extension": "extend"}

meta = sa.MetaData()
cases_t = sa.Table(
    "cases", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tracking_no", sa.String(40), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("office_id", sa.String(80), nullable=False),
    sa.Column("office_name", sa.Text),
    sa.Column("co_offices", sa.Text, nullable=False, default="[]"),
    sa.Column("triage", sa.Boolean, nullable=False, default=False),
    sa.Column("category", sa.String(40)),
    sa.Column("type", sa.String(20)),
    sa.Column("jurisdiction", sa.String(20)),
    sa.Column("channel", sa.String(20)),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("first_response_due", sa.DateTime),
    sa.Column("answer_due", sa.DateTime),
    sa.Column("claimed_at", sa.DateTime),
    sa.Column("replied_at", sa.DateTime),
    sa.Column("closed_at", sa.DateTime),
    sa.Column("satisfaction", sa.Integer),
    sa.Column("title", sa.Text),
    sa.Column("text", sa.Text),
    sa.Column("norm", sa.Text),
    sa.Column("rule", sa.Text),
    sa.Column("model_version", sa.Text),
    sa.Column("config_hash", sa.Text),
    sa.Column("check_code", sa.String(12)),
    sa.Column("envelope", sa.Text),
    sa.Index("cases_place_time", "jurisdiction", "received_at"),
    sa.Index("cases_received", "received_at"),
    sa.Index("cases_status", "status", "triage", "received_at"),  # the open ones among years of closed ones
    sa.Index("cases_office", "office_id", "status"),
)
messages_t = sa.Table(
    "case_messages", meta,
    sa.Column("message_id", sa.String(200), primary_key=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
    sa.Column("channel", sa.String(20)),
    sa.Column("received_at", sa.DateTime),
    sa.Column("score", sa.Float),
)
events_t = sa.Table(
    "case_events", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("office_id", sa.String(80)),
    sa.Column("actor", sa.Text),
    sa.Column("note", sa.Text),
    sa.Column("account", sa.String(80)),
    sa.Column("client", sa.String(64)),
)
extensions_t = sa.Table(
    "case_extensions", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False, index=True),
    sa.Column("office_id", sa.String(80), nullable=False),
    sa.Column("requested_at", sa.DateTime, nullable=False),
    sa.Column("requested_by", sa.String(80)),
    sa.Column("until", sa.DateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("state", sa.String(10), nullable=False, default="pending"),
    sa.Column("decided_at", sa.DateTime),
    sa.Column("decided_by", sa.String(80)),
)
outbox_t = sa.Table(
    "case_outbox", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id"), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("records", sa.Text, nullable=False),
    sa.Column("sent_at", sa.DateTime, index=True),
    sa.Column("leased_until", sa.DateTime),
)
ROW_COLUMNS = tuple(c for c in cases_t.c if c.name not in ("title", "text", "norm", "envelope"))
"""What :meth:`Ledger._row` reads."""
seq_t = sa.Table(
    "case_seq", meta,
    sa.Column("day", sa.String(8), primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
)


def _case_norm(title: str | None, text: str | None, address_keys: Iterable[str] = ()) -> str:
    """What a case is matched on for repeats: one helper, so renormalising stored cases
    gives exactly what recording them did. The fingerprints of the addresses masking hid
    (envelope.masked) follow the text as ``§key`` tokens (sinks.repeats.Parsed)."""
    norm = normalise(f"{title or ''} {text or ''}".strip())
    keys = " ".join(f"§{k}" for k in sorted(set(address_keys)))
    return f"{norm} {keys}" if keys else norm


def new_check_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


class CaseError(WenzhengError):
    """An office action the case's state does not allow (unknown case, wrong office, order)."""


class NotYours(CaseError):
    """The case is not the acting office's: said without naming any office (403)."""

    def __init__(self, tracking_no: str):
        super().__init__(f"{tracking_no} is not a case of your office")


class Actor(NamedTuple):
    """Who does an action: the name recorded as ``actor``, the console account, the client address."""

    name: str = ""
    account: str | None = None
    client: str | None = None


CLI = Actor()


class Ledger:
    def __init__(self, url: str, *, prefix: str = "WZ", timezone: str = "Asia/Shanghai",
                 window_days: float = 7, deduper: Deduper | None = None, schema: str | None = None):
        self.url, self.prefix, self.tz = url, prefix, ZoneInfo(timezone)
        self.window = timedelta(days=window_days)
        self.deduper = deduper or Deduper()
        kw: dict = {"future": True}
        if schema and not url.startswith("sqlite"):
            kw["connect_args"] = {"options": f"-csearch_path={schema}"}
        self.engine = sa.create_engine(url, **kw)
        if self.sqlite:  # the same durability as the rest of the local state (core.storage)
            sa.event.listen(self.engine, "connect", lambda dbapi, _: storage.prepare(dbapi, "foreign_keys=ON"))
            sa.event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql(storage.BEGIN))
        try:
            storage.create_tables(self.engine, meta, then=self._upgrade)
        except OperationalError as exc:
            raise TransientError(f"case ledger unreachable: {str(exc.orig).strip().splitlines()[0]}") from None

    def _upgrade(self, db: sa.Connection) -> None:
        """Add the columns a ledger made by an older version lacks (create_all makes only
        missing tables), and give its cases their check codes."""
        inspector = sa.inspect(db)
        for table in (cases_t, events_t):
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for col in table.columns:
                if col.name not in have:
                    db.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {col.name} "
                                       f"{col.type.compile(self.engine.dialect)}")
        for (case_id,) in db.execute(sa.select(cases_t.c.id).where(cases_t.c.check_code.is_(None))).all():
            db.execute(cases_t.update().where(cases_t.c.id == case_id).values(check_code=new_check_code()))
        for index in cases_t.indexes:  # create_all makes a missing table's indexes, not a new index
            index.create(db, checkfirst=True)

    @property
    def sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @classmethod
    def from_settings(cls, settings) -> Ledger:
        """The configured ledger; by default ``<state.dir>/ledger.sqlite3`` — beside, not inside,
        the per-cluster state: cases outlive an embedded broker (re-read messages find their case)."""
        ls = settings.ledger
        if ls.url:
            url = ls.url
        else:
            state = Path(settings.state.dir).expanduser()
            state.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{state / 'ledger.sqlite3'}"
        return cls(url, prefix=settings.city.case_prefix, timezone=settings.city.timezone,
                   window_days=ls.duplicate_window_days, deduper=Deduper(threshold=ls.duplicate_threshold))

    def dispose(self) -> None:
        self.engine.dispose()

    def renormalise_open(self) -> int:
        """Make the matching text of open cases this version's ``normalise`` of their title and
        text (after an upgrade that changed it, old cases would match worse until closed);
        return how many changed. The ledger worker calls it at start."""
        with self.engine.begin() as db:
            rows = db.execute(sa.select(cases_t.c.id, cases_t.c.title, cases_t.c.text, cases_t.c.norm)
                              .where(cases_t.c.closed_at.is_(None))).all()
            changed = [(r.id, n) for r in rows
                       if (n := _case_norm(r.title, r.text, ADDRESS_KEY.findall(r.norm or ""))) != r.norm]
            for case_id, norm in changed:
                db.execute(cases_t.update().where(cases_t.c.id == case_id).values(norm=norm))
        return len(changed)

    # --- time --------------------------------------------------------------------------

    def _db(self, t: datetime | None) -> datetime | None:
        if t is None:
            return None
        if t.tzinfo is None:
            raise ValueError("naive datetime")
        return t.astimezone(UTC).replace(tzinfo=None)

    def _local(self, t: datetime | None) -> datetime | None:
        if t is None:
            return None
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        return t.astimezone(self.tz)

    def _now(self, at: datetime | None) -> datetime:
        return at or datetime.now(self.tz)

    # --- recording routed messages -----------------------------------------------------

    def record(self, routed: dict) -> dict:
        """The case of a routed message — created, merged into a repeat, or found (idempotent)."""
        try:
            msg_id, r, c = routed["id"], routed["routing"], routed["classification"]
            received = datetime.fromisoformat(routed["received_at"])
            routed_at = datetime.fromisoformat(r.get("routed_at") or routed["received_at"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadMessage(f"not a routed message: {exc!r}") from None
        for attempt in range(3):
            try:
                with self.engine.begin() as db:
                    return self._record(db, msg_id, routed, r, c, received, routed_at)
            except IntegrityError:  # another worker recorded the same id meanwhile
                if attempt == 2:
                    raise
            except OperationalError as exc:  # the database is down or locked: retry, never dead-letter
                raise TransientError(f"case ledger: {str(exc.orig).strip().splitlines()[0]}") from None
        raise AssertionError("unreachable")

    def record_many(self, batch: list[dict]) -> list[dict]:
        """``record`` for a batch in one transaction: one commit (one fsync) per batch, not per
        message, is what lets the ledger keep up with the classify stage. If another worker
        recorded one of the ids meanwhile, the batch goes again one message at a time."""
        try:
            parsed = [(m["id"], m, m["routing"], m["classification"], datetime.fromisoformat(m["received_at"]),
                       datetime.fromisoformat(m["routing"].get("routed_at") or m["received_at"])) for m in batch]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadMessage(f"not a routed message: {exc!r}") from None
        try:
            with self.engine.begin() as db:
                return [self._record(db, *p) for p in parsed]
        except IntegrityError:
            return [self.record(m) for m in batch]
        except OperationalError as exc:
            raise TransientError(f"case ledger: {str(exc.orig).strip().splitlines()[0]}") from None

    def _record(self, db, msg_id, routed, r, c, received, routed_at) -> dict:
        row = db.execute(sa.select(cases_t.c.tracking_no).join(messages_t, messages_t.c.case_id == cases_t.c.id)
                         .where(messages_t.c.message_id == msg_id)).first()
        if row:
            return {"tracking_no": row.tracking_no, "created": False, "merged": False, "duplicate": True}
        norm = _case_norm(routed.get("title"), routed.get("text"), routed.get("address_keys") or ())
        jurisdiction = c.get("jurisdiction")
        if jurisdiction and jurisdiction != "unknown" and norm:
            since = self._db(received - self.window)
            rows = db.execute(
                sa.select(cases_t.c.id, cases_t.c.tracking_no, cases_t.c.norm, cases_t.c.received_at,
                          cases_t.c.status)
                .where(cases_t.c.jurisdiction == jurisdiction, cases_t.c.received_at >= since,
                       cases_t.c.received_at <= self._db(received + self.window),
                       sa.or_(cases_t.c.closed_at.is_(None), cases_t.c.closed_at >= since))
            ).all()
            hit = self.deduper.match(norm, ((row.id, row.norm) for row in rows), normalised=True)
            if hit:
                case_id, score = hit
                case = next(row for row in rows if row.id == case_id)
                if self._db(received) < case.received_at:
                    # Messages reach the ledger in no fixed order (channels are different keys and
                    # partitions): the citizen's clock runs from the earliest report of the problem,
                    # and while no office has acted, that report's routing is the case's own.
                    values = self._clock(received, r)
                    if case.status == "routed":
                        values.update(self._routing(routed, r, c, norm))
                    db.execute(cases_t.update().where(cases_t.c.id == case_id).values(**values))
                tracking = case.tracking_no
                db.execute(messages_t.insert().values(message_id=msg_id, case_id=case_id, channel=routed.get("channel"),
                                                      received_at=self._db(received), score=score))
                db.execute(events_t.insert().values(case_id=case_id, at=self._db(routed_at), event="merged",
                                                    office_id=r.get("office_id"), actor="wenzheng",
                                                    note=json.dumps({"message_id": msg_id, "channel": routed.get("channel"),
                                                                     "score": round(score, 3)}, ensure_ascii=False)))
                return {"tracking_no": tracking, "created": False, "merged": True, "duplicate": False}
        day = received.astimezone(self.tz).strftime("%Y%m%d")
        seq = self._next_seq(db, day)
        tracking = f"{self.prefix}{day}-{seq:06d}"
        case_id = db.execute(cases_t.insert().values(
            tracking_no=tracking, status="routed", jurisdiction=jurisdiction, check_code=new_check_code(),
            **self._clock(received, r), **self._routing(routed, r, c, norm),
        ).returning(cases_t.c.id)).scalar_one()
        db.execute(messages_t.insert().values(message_id=msg_id, case_id=case_id, channel=routed.get("channel"),
                                              received_at=self._db(received)))
        db.execute(events_t.insert(), [
            {"case_id": case_id, "at": self._db(received), "event": "received", "office_id": None,
             "actor": routed.get("channel"), "note": msg_id},
            {"case_id": case_id, "at": self._db(routed_at), "event": "routed", "office_id": r["office_id"],
             "actor": "wenzheng", "note": r.get("rule")},
        ])
        return {"tracking_no": tracking, "created": True, "merged": False, "duplicate": False}

    def _clock(self, received: datetime, r: dict) -> dict:
        """The columns a case takes from its earliest report: when, and the deadlines from then."""
        dl = r.get("deadlines") or {}
        return {"received_at": self._db(received), "first_response_due": self._db(_dt(dl.get("first_response_due"))),
                "answer_due": self._db(_dt(dl.get("answer_due")))}

    @staticmethod
    def _routing(routed: dict, r: dict, c: dict, norm: str) -> dict:
        """The columns a case takes from the message that opened it."""
        return dict(office_id=r["office_id"], office_name=r.get("office_name"),
                    co_offices=json.dumps(r.get("co_offices") or []), triage=bool(r.get("triage")),
                    category=c.get("category"), type=c.get("type"), channel=routed.get("channel"),
                    title=routed.get("title"), text=routed.get("text"), norm=norm,
                    rule=r.get("rule"), model_version=r.get("model_version"), config_hash=r.get("config_hash"),
                    envelope=json.dumps(routed, ensure_ascii=False))

    def _next_seq(self, db, day: str) -> int:
        from sqlalchemy.dialects import postgresql, sqlite

        insert: Any = sqlite.insert if self.sqlite else postgresql.insert
        stmt = insert(seq_t).values(day=day, last=1)
        stmt = stmt.on_conflict_do_update(index_elements=[seq_t.c.day], set_={"last": seq_t.c.last + 1})
        return db.execute(stmt.returning(seq_t.c.last)).scalar_one()

    # --- office actions ----------------------------------------------------------------

    def _case(self, db, tracking_no: str):
        row = db.execute(sa.select(cases_t).where(cases_t.c.tracking_no == tracking_no)).first()
        if row is None:
            raise CaseError(f"no case {tracking_no}")
        return row

    def _act(self, tracking_no: str, step: _Step, by: Actor | str, at: datetime | None) -> dict:
        at = self._now(at)
        by = by if isinstance(by, Actor) else Actor(by)
        with self.engine.begin() as db:
            case = self._case(db, tracking_no)
            if step.office_id is not None and step.office_id not in (
                    {case.office_id} if step.lead_only else offices_of(case)):
                raise NotYours(tracking_no)
            verb = VERBS.get(step.event, "decide on")
            if case.status not in step.allowed:
                raise CaseError(f"{tracking_no} is {case.status}: cannot {verb} it (only when {' or '.join(step.allowed)})")
            if step.triage is not None and bool(case.triage) != step.triage:
                raise CaseError(f"{tracking_no} is {'' if case.triage else 'not '}in triage: cannot {verb} it")
            values = {k: (self._db(at) if v is _AT else v) for k, v in step.changes.items()}
            if not step.keep_status:
                values.setdefault("status", step.event)
            if values:
                db.execute(cases_t.update().where(cases_t.c.id == case.id).values(**values))
            db.execute(events_t.insert().values(case_id=case.id, at=self._db(at), event=step.event,
                                                office_id=step.office_id, actor=by.name, note=step.note,
                                                account=by.account, client=by.client))
            if step.then is not None:
                step.then(db, case, at)
        return self.get(tracking_no)

    def claim(self, tracking_no: str, office_id: str, actor: Actor | str = "", at: datetime | None = None) -> dict:
        return self._act(tracking_no, _Step("claimed", ("routed", "reopened"), office_id,
                                            changes={"claimed_at": _AT}), actor, at)

    def reply(self, tracking_no: str, office_id: str, text: str, actor: Actor | str = "",
              at: datetime | None = None) -> dict:
        if not text.strip():
            raise CaseError("a reply needs its text")
        return self._act(tracking_no, _Step("replied", ("claimed",), office_id, note=text,
                                            changes={"replied_at": _AT}), actor, at)

    def close(self, tracking_no: str, satisfaction: int | None = None, actor: Actor | str = "",
              note: str | None = None, at: datetime | None = None, office_id: str | None = None) -> dict:
        if satisfaction is not None and not 1 <= satisfaction <= 5:
            raise CaseError("satisfaction is 1 (very dissatisfied) to 5 (very satisfied)")
        return self._act(tracking_no, _Step("closed", ("replied",), office_id, note=note,
                                            changes={"closed_at": _AT, "satisfaction": satisfaction}), actor, at)

    def reopen(self, tracking_no: str, reason: str, actor: Actor | str = "", at: datetime | None = None,
               office_id: str | None = None) -> dict:
        if not reason.strip():
            raise CaseError("reopening needs a reason")
        return self._act(tracking_no, _Step("reopened", ("replied", "closed"), office_id, note=reason,
                                            changes={"replied_at": None, "closed_at": None, "claimed_at": None}),
                         actor, at)

    # --- the workbench: triage, 退回, 延期 -------------------------------------------------

    def assign(self, tracking_no: str, decision: dict, by: Actor, outbox: Outbox, at: datetime | None = None) -> dict:
        """A dispatcher places a triage case: ``decision`` holds office_id, office_name,
        co_offices, category, type and jurisdiction. ``outbox(case, at, n)`` gives the
        records to publish for the n-th assignment of the case (see ``case_outbox``)."""
        def then(db, case, at):
            n = db.execute(sa.select(sa.func.count()).select_from(events_t).where(
                events_t.c.case_id == case.id, events_t.c.event == "assigned")).scalar_one()
            self._queue(db, case.id, at, outbox(case, at, n))

        labels = {k: decision[k] for k in ("category", "type", "jurisdiction")}
        changes = {**labels, "status": "routed", "triage": False, "office_id": decision["office_id"],
                   "office_name": decision["office_name"], "co_offices": json.dumps(decision.get("co_offices") or []),
                   "claimed_at": None}
        note = json.dumps({**labels, "office_id": decision["office_id"], "co_offices": decision.get("co_offices") or []},
                          ensure_ascii=False)
        return self._act(tracking_no, _Step("assigned", OPEN, triage=True, note=note, changes=changes, then=then),
                         by, at)

    def return_to_triage(self, tracking_no: str, office_id: str, triage_office: tuple[str, str], reason: str,
                         by: Actor, at: datetime | None = None) -> dict:
        """退回: the lead office gives back a case that is not its own; ``triage_office`` is (id, name)."""
        if not reason.strip():
            raise CaseError("退回 needs a reason")
        changes = {"office_id": triage_office[0], "office_name": triage_office[1], "co_offices": "[]",
                   "triage": True, "claimed_at": None}
        return self._act(tracking_no, _Step("returned", ("routed", "claimed", "reopened"), office_id, triage=False,
                                            note=reason, changes=changes, lead_only=True), by, at)

    def mark_invalid(self, tracking_no: str, reason: str, by: Actor, at: datetime | None = None) -> dict:
        """Spam, a test call, nothing to act on: done without an office."""
        return self._act(tracking_no, _Step("invalid", OPEN, triage=True, note=reason or "invalid",
                                            changes={"closed_at": _AT}), by, at)

    def mark_repeat(self, tracking_no: str, of: str, by: Actor, at: datetime | None = None) -> dict:
        """A repeat of case ``of`` the matcher missed: its messages join that case."""
        if of == tracking_no:
            raise CaseError("a case cannot repeat itself")

        def then(db, case, at):
            target = self._case(db, of)
            db.execute(messages_t.update().where(messages_t.c.case_id == case.id).values(case_id=target.id))
            db.execute(events_t.insert().values(case_id=target.id, at=self._db(at), event="merged", actor=by.name,
                                                account=by.account, client=by.client,
                                                note=json.dumps({"case": tracking_no}, ensure_ascii=False)))

        return self._act(tracking_no, _Step("duplicate", OPEN, triage=True, note=of, changes={"closed_at": _AT},
                                            then=then), by, at)

    def request_extension(self, tracking_no: str, office_id: str, until: datetime, reason: str, by: Actor,
                          at: datetime | None = None) -> dict:
        """申请延期: the lead office asks for a later answer deadline; the dispatcher decides."""
        if not reason.strip():
            raise CaseError("an extension needs a reason")

        def then(db, case, at):
            if case.answer_due is not None and self._db(until) <= case.answer_due:
                raise CaseError("the new deadline must be later than the current one")
            if self._pending_extension(db, case.id) is not None:
                raise CaseError(f"{tracking_no} has an extension request waiting already")
            db.execute(extensions_t.insert().values(case_id=case.id, office_id=office_id, requested_at=self._db(at),
                                                    requested_by=by.account, until=self._db(until), reason=reason))

        note = json.dumps({"until": until.isoformat(), "reason": reason}, ensure_ascii=False)
        return self._act(tracking_no, _Step("extension", ("routed", "claimed", "reopened"), office_id, note=note,
                                            keep_status=True, lead_only=True, then=then), by, at)

    def decide_extension(self, tracking_no: str, approve: bool, by: Actor, at: datetime | None = None) -> dict:
        """The dispatcher approves (the answer deadline moves) or refuses an office's request."""
        def then(db, case, at):
            ext = self._pending_extension(db, case.id)
            if ext is None:
                raise CaseError(f"{tracking_no} has no extension request waiting")
            db.execute(extensions_t.update().where(extensions_t.c.id == ext.id).values(
                state="approved" if approve else "refused", decided_at=self._db(at), decided_by=by.account))
            if approve:
                db.execute(cases_t.update().where(cases_t.c.id == case.id).values(answer_due=ext.until))

        return self._act(tracking_no, _Step("ext_approved" if approve else "ext_refused", OPEN, keep_status=True,
                                            then=then), by, at)

    @staticmethod
    def _pending_extension(db, case_id: int):
        return db.execute(sa.select(extensions_t).where(extensions_t.c.case_id == case_id,
                                                        extensions_t.c.state == "pending")).first()

    def _queue(self, db, case_id: int, at: datetime, records: list[dict]) -> None:
        if records:
            db.execute(outbox_t.insert().values(case_id=case_id, created_at=self._db(at),
                                                records=json.dumps(records, ensure_ascii=False)))

    def outbox(self, lease_seconds: float = 120, limit: int = 100) -> list[tuple[int, list[dict]]]:
        """Records of committed actions not yet published, [(outbox id, [{topic, id, value}])],
        each leased to the caller for ``lease_seconds``: two workers (or two threads) flushing at
        once never take the same row; a row whose publisher died is taken again once its lease ends."""
        now = self._now(None).astimezone(UTC).replace(tzinfo=None)
        taken = []
        with self.engine.begin() as db:
            rows = db.execute(sa.select(outbox_t.c.id, outbox_t.c.records).where(
                outbox_t.c.sent_at.is_(None), sa.or_(outbox_t.c.leased_until.is_(None), outbox_t.c.leased_until < now))
                .order_by(outbox_t.c.id).limit(limit)).all()
            for r in rows:
                if db.execute(outbox_t.update().where(
                        outbox_t.c.id == r.id, outbox_t.c.sent_at.is_(None),
                        sa.or_(outbox_t.c.leased_until.is_(None), outbox_t.c.leased_until < now))
                        .values(leased_until=now + timedelta(seconds=lease_seconds))).rowcount:
                    taken.append((r.id, json.loads(r.records)))
        return taken

    def outbox_sent(self, ids: list[int]) -> None:
        with self.engine.begin() as db:
            db.execute(outbox_t.update().where(outbox_t.c.id.in_(ids)).values(sent_at=self._db(self._now(None))))

    # --- reading -----------------------------------------------------------------------

    def get(self, tracking_no: str) -> dict:
        with self.engine.connect() as db:
            case = self._case(db, tracking_no)
            msgs = db.execute(sa.select(messages_t).where(messages_t.c.case_id == case.id)
                              .order_by(messages_t.c.received_at, messages_t.c.message_id)).all()
            events = db.execute(sa.select(events_t).where(events_t.c.case_id == case.id)
                                .order_by(events_t.c.id)).all()  # the order things happened in
            ext = self._pending_extension(db, case.id)
        out = self._row(case, [m.message_id for m in msgs])
        out.update(title=case.title, text=case.text, rule=case.rule, model_version=case.model_version,
                   config_hash=case.config_hash, triage=case.triage, check_code=case.check_code,
                   classification=_classification(case.envelope),
                   extension=ext and {"until": self._local(ext.until), "reason": ext.reason,
                                      "requested_by": ext.requested_by},
                   messages=[{"message_id": m.message_id, "channel": m.channel,
                              "received_at": self._local(m.received_at), "score": m.score} for m in msgs],
                   events=[{"at": self._local(e.at), "event": e.event, "office_id": e.office_id,
                            "actor": e.actor, "note": e.note, "account": e.account, "client": e.client}
                           for e in events])
        return out

    def envelope(self, tracking_no: str) -> dict:
        """The routed (masked) message that opened the case, as the ledger received it."""
        with self.engine.connect() as db:
            case = self._case(db, tracking_no)
        return json.loads(case.envelope) if case.envelope else {}

    def track(self, tracking_no: str, check_code: str) -> dict | None:
        """The case, if the check code is its own; None alike for an unknown number and a wrong code."""
        with self.engine.connect() as db:
            row = db.execute(sa.select(cases_t.c.check_code).where(cases_t.c.tracking_no == tracking_no)).first()
        stored = row.check_code if row and row.check_code else "-" * 6
        if not secrets.compare_digest(stored.encode(), (check_code or "").strip().encode()) or row is None:
            return None
        return self.get(tracking_no)

    def open_cases(self, *, office_id: str | None = None, triage: bool | None = None, extension: bool = False,
                   by_deadline: bool = False, limit: int | None = None, offset: int = 0) -> list[dict]:
        """Open cases of an office (lead or co-handling), of triage, or with an extension request
        waiting (``extension``), each with its classification and pending request; oldest first,
        or by answer deadline (``by_deadline``: none last), ``limit`` of them from ``offset``."""
        q = self._open(office_id, triage, extension)
        order = ((cases_t.c.answer_due.is_(None), cases_t.c.answer_due) if by_deadline else ())
        q = q.order_by(*order, cases_t.c.received_at, cases_t.c.id).limit(limit).offset(offset or None)
        with self.engine.connect() as db:
            rows = db.execute(q).all()
            pending = {e.case_id: e for e in db.execute(sa.select(extensions_t).where(
                extensions_t.c.state == "pending", extensions_t.c.case_id.in_([r.id for r in rows] or [-1])))}
        out = []
        for r in rows:
            if office_id is not None and office_id not in offices_of(r):
                continue
            ext = pending.get(r.id)
            out.append({**self._row(r, []), "title": r.title, "text": r.text, "triage": r.triage,
                        "classification": _classification(r.envelope),
                        "extension": ext and {"until": self._local(ext.until), "reason": ext.reason,
                                              "office_id": ext.office_id, "requested_by": ext.requested_by}})
        return out

    def count_open(self, *, office_id: str | None = None, triage: bool | None = None) -> int:
        """How many :meth:`open_cases` there are (a page of them is what a queue shows)."""
        q = self._open(office_id, triage, False).with_only_columns(sa.func.count())
        with self.engine.connect() as db:
            return db.execute(q).scalar_one()

    @staticmethod
    def _open(office_id: str | None, triage: bool | None, extension: bool):
        q = sa.select(cases_t).where(cases_t.c.status.in_(OPEN))
        if triage is not None:
            q = q.where(cases_t.c.triage.is_(triage))
        if office_id is not None:  # co_offices is a JSON list: match the quoted id, then check
            q = q.where(sa.or_(cases_t.c.office_id == office_id, cases_t.c.co_offices.contains(f'"{office_id}"')))
        if extension:
            q = q.where(cases_t.c.id.in_(sa.select(extensions_t.c.case_id).where(extensions_t.c.state == "pending")))
        return q

    def late(self, now: datetime, hours: dict[str, float], limit: int) -> tuple[int, list[dict]]:
        """Open cases with a 督办 milestone missed at ``now`` — ``hours``: claim, reply and close
        hours from receipt, the reply also due by the answer deadline — or past that deadline
        unanswered: how many, and the ``limit`` whose deadline passed first."""
        at = now.astimezone(UTC).replace(tzinfo=None)

        def past(h: str):
            return cases_t.c.received_at <= at - timedelta(hours=hours[h])

        missed = sa.or_(sa.and_(cases_t.c.claimed_at.is_(None), past("claim")),
                        sa.and_(cases_t.c.replied_at.is_(None), sa.or_(past("reply"), cases_t.c.answer_due <= at)),
                        sa.and_(cases_t.c.closed_at.is_(None), past("close")))
        q = sa.select(cases_t).where(cases_t.c.status.in_(OPEN), missed)
        with self.engine.connect() as db:
            n = db.execute(q.with_only_columns(sa.func.count())).scalar_one()
            rows = db.execute(q.order_by(sa.func.coalesce(cases_t.c.answer_due, cases_t.c.received_at), cases_t.c.id)
                              .limit(limit)).all()
        return n, [{**self._row(r, []), "triage": r.triage} for r in rows]

    def status_counts(self) -> dict[str, int]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(cases_t.c.status, sa.func.count()).group_by(cases_t.c.status)).all()
        return {status: n for status, n in rows}

    def cases(self, start: datetime, end: datetime) -> Iterator[dict]:
        """Cases received in [start, end), as plain dicts (the report's input; without the texts,
        which a month's worth would make many megabytes to read)."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(*ROW_COLUMNS).where(cases_t.c.received_at >= self._db(start),
                                                            cases_t.c.received_at < self._db(end))
                              .order_by(cases_t.c.received_at, cases_t.c.id)).all()
            links: dict[int, list[str]] = {}
            if rows:
                ids = [r.id for r in rows]
                for i in range(0, len(ids), 500):
                    for m in db.execute(sa.select(messages_t.c.case_id, messages_t.c.message_id)
                                        .where(messages_t.c.case_id.in_(ids[i:i + 500]))
                                        .order_by(messages_t.c.received_at)):
                        links.setdefault(m.case_id, []).append(m.message_id)
        for r in rows:
            yield self._row(r, links.get(r.id, []))

    def _row(self, r, message_ids: list[str]) -> dict:
        return {
            "tracking_no": r.tracking_no, "message_ids": message_ids, "office_id": r.office_id,
            "office_name": r.office_name, "co_offices": json.loads(r.co_offices), "category": r.category,
            "type": r.type, "jurisdiction": r.jurisdiction, "channel": r.channel,
            "received_at": self._local(r.received_at), "first_response_due": self._local(r.first_response_due),
            "answer_due": self._local(r.answer_due), "claimed_at": self._local(r.claimed_at),
            "replied_at": self._local(r.replied_at), "closed_at": self._local(r.closed_at),
            "status": r.status, "satisfaction": r.satisfaction, "duplicates": max(0, len(message_ids) - 1),
        }

    def latest(self, n: int = 5) -> list[dict]:
        """The newest cases' tracking numbers, offices and categories (for ``up --demo``'s summary)."""
        cols = (cases_t.c.tracking_no, cases_t.c.office_name, cases_t.c.category, cases_t.c.status)
        with self.engine.connect() as db:
            rows = db.execute(sa.select(*cols).order_by(cases_t.c.id.desc()).limit(n)).all()
        return [dict(r._mapping) for r in rows]

    def counts(self) -> dict:
        with self.engine.connect() as db:
            return {"cases": db.execute(sa.select(sa.func.count()).select_from(cases_t)).scalar_one(),
                    "messages": db.execute(sa.select(sa.func.count()).select_from(messages_t)).scalar_one()}


_AT = object()  # "the action's time" in a change set

Outbox = Callable[[Any, datetime, int], list[dict]]
"""(case row, the action's time, which assignment of the case it is) → records to publish."""


@dataclass(frozen=True)
class _Step:
    """One action on a case, as :meth:`Ledger._act` checks and records it."""

    event: str
    allowed: tuple[str, ...]
    """The statuses it may be taken in."""
    office_id: str | None = None
    """The acting office, which must be the case's (None: not an office's action)."""
    triage: bool | None = None
    """Whether the case must be in triage (True), must not be (False), or either."""
    note: str | None = None
    changes: dict = field(default_factory=dict)
    then: Callable[[Any, Any, datetime], None] | None = None
    """More work in the same transaction: (connection, case row, time)."""
    keep_status: bool = False
    lead_only: bool = False
    """Only the lead office, not a co-handling one."""


def offices_of(case) -> set[str]:
    """The lead and co-handling offices of a case row."""
    return {case.office_id, *json.loads(case.co_offices)}


def _classification(envelope: str | None) -> dict:
    if not envelope:
        return {}
    return json.loads(envelope).get("classification") or {}


def _dt(value) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
