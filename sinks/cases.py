"""The case ledger: every routed message becomes (or joins) a case with a tracking number.

One code path for SQLite (the default: ``<state dir>/ledger.sqlite3``) and PostgreSQL
(production: ``ledger.url = postgresql://…``), through SQLAlchemy Core.

Tables:

* ``cases`` — one per problem: the tracking number a citizen reads out on the phone
  (``<city.case_prefix><YYYYMMDD>-<6-digit daily sequence>``, e.g. GZ20261122-000123,
  by the day of receipt in the city's time zone), the lead and co-handling offices,
  category, type, jurisdiction, channel, deadlines, status and its times, satisfaction,
  the masked text (for repeat matching), and the rule, model version and config hash
  that routed it.
* ``case_messages`` — every message id, linked to its case (``message_id`` is the
  primary key: recording a message twice is a no-op, so the ledger stage is idempotent).
* ``case_events`` — the status history: received, routed, merged, claimed, replied,
  closed, reopened, with time, office, actor and note.
* ``case_seq`` — the last sequence number per day. A new case takes the next one with
  ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` inside the transaction that inserts the
  case: PostgreSQL's row lock and SQLite's single writer make two ledger workers take
  different numbers, and a rolled-back case gives its number back.

Recording a message is one transaction: look the id up (done → the same case);
look for an open or recently closed case of the same jurisdiction whose text is a
near-duplicate (:mod:`wenzheng.sinks.repeats`) → link the message to it with a
``merged`` event; else a new case with its ``received`` and ``routed`` events.

Times are stored in UTC and returned in the city's time zone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from wenzheng.core import storage
from wenzheng.core.errors import BadMessage, TransientError, WenzhengError

from .repeats import Deduper, normalise

log = logging.getLogger(__name__)
UTC = ZoneInfo("UTC")
STATUSES = ("received", "routed", "claimed", "replied", "closed", "reopened")
VERBS = {"claimed": "claim", "replied": "reply to", "closed": "close", "reopened": "reopen"}

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
    sa.Index("cases_place_time", "jurisdiction", "received_at"),
    sa.Index("cases_received", "received_at"),
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
)
seq_t = sa.Table(
    "case_seq", meta,
    sa.Column("day", sa.String(8), primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
)


def _case_norm(title: str | None, text: str | None) -> str:
    """What a case is matched on for repeats: one helper, so renormalising stored cases
    gives exactly what recording them did."""
    return normalise(f"{title or ''} {text or ''}".strip())


class CaseError(WenzhengError):
    """An office action the case's state does not allow (unknown case, wrong office, order)."""


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
            meta.create_all(self.engine)
        except OperationalError as exc:
            raise TransientError(f"case ledger unreachable: {str(exc.orig).strip().splitlines()[0]}") from None

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
            changed = [(r.id, n) for r in rows if (n := _case_norm(r.title, r.text)) != r.norm]
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

    def _record(self, db, msg_id, routed, r, c, received, routed_at) -> dict:
        row = db.execute(sa.select(cases_t.c.tracking_no).join(messages_t, messages_t.c.case_id == cases_t.c.id)
                         .where(messages_t.c.message_id == msg_id)).first()
        if row:
            return {"tracking_no": row.tracking_no, "created": False, "merged": False, "duplicate": True}
        norm = _case_norm(routed.get("title"), routed.get("text"))
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
            tracking_no=tracking, status="routed", jurisdiction=jurisdiction,
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
                    rule=r.get("rule"), model_version=r.get("model_version"), config_hash=r.get("config_hash"))

    def _next_seq(self, db, day: str) -> int:
        if self.sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(seq_t).values(day=day, last=1)
        stmt = stmt.on_conflict_do_update(index_elements=[seq_t.c.day], set_={"last": seq_t.c.last + 1})
        return db.execute(stmt.returning(seq_t.c.last)).scalar_one()

    # --- office actions ----------------------------------------------------------------

    def _case(self, db, tracking_no: str):
        row = db.execute(sa.select(cases_t).where(cases_t.c.tracking_no == tracking_no)).first()
        if row is None:
            raise CaseError(f"no case {tracking_no}")
        return row

    def _act(self, tracking_no: str, event: str, allowed: tuple[str, ...], office_id: str | None,
             actor: str | None, note: str | None, at: datetime | None, changes: dict) -> dict:
        at = self._now(at)
        with self.engine.begin() as db:
            case = self._case(db, tracking_no)
            offices = {case.office_id, *json.loads(case.co_offices)}
            if office_id is not None and office_id not in offices:
                raise CaseError(f"{tracking_no} is not a case of office {office_id} (it is {', '.join(sorted(offices))}'s)")
            if case.status not in allowed:
                raise CaseError(f"{tracking_no} is {case.status}: cannot {VERBS[event]} it (only when {' or '.join(allowed)})")
            values = {k: (self._db(at) if v is _AT else v) for k, v in changes.items()}
            db.execute(cases_t.update().where(cases_t.c.id == case.id).values(status=event, **values))
            db.execute(events_t.insert().values(case_id=case.id, at=self._db(at), event=event, office_id=office_id,
                                                actor=actor, note=note))
        return self.get(tracking_no)

    def claim(self, tracking_no: str, office_id: str, actor: str = "", at: datetime | None = None) -> dict:
        return self._act(tracking_no, "claimed", ("routed", "reopened"), office_id, actor, None, at,
                         {"claimed_at": _AT})

    def reply(self, tracking_no: str, office_id: str, text: str, actor: str = "", at: datetime | None = None) -> dict:
        if not text.strip():
            raise CaseError("a reply needs its text")
        return self._act(tracking_no, "replied", ("claimed",), office_id, actor, text, at, {"replied_at": _AT})

    def close(self, tracking_no: str, satisfaction: int | None = None, actor: str = "", note: str | None = None,
              at: datetime | None = None) -> dict:
        if satisfaction is not None and not 1 <= satisfaction <= 5:
            raise CaseError("satisfaction is 1 (very dissatisfied) to 5 (very satisfied)")
        return self._act(tracking_no, "closed", ("replied",), None, actor, note, at,
                         {"closed_at": _AT, "satisfaction": satisfaction})

    def reopen(self, tracking_no: str, reason: str, actor: str = "", at: datetime | None = None) -> dict:
        if not reason.strip():
            raise CaseError("reopening needs a reason")
        return self._act(tracking_no, "reopened", ("replied", "closed"), None, actor, reason, at,
                         {"replied_at": None, "closed_at": None, "claimed_at": None})

    # --- reading -----------------------------------------------------------------------

    def get(self, tracking_no: str) -> dict:
        with self.engine.connect() as db:
            case = self._case(db, tracking_no)
            msgs = db.execute(sa.select(messages_t).where(messages_t.c.case_id == case.id)
                              .order_by(messages_t.c.received_at, messages_t.c.message_id)).all()
            events = db.execute(sa.select(events_t).where(events_t.c.case_id == case.id)
                                .order_by(events_t.c.id)).all()  # the order things happened in
        out = self._row(case, [m.message_id for m in msgs])
        out.update(title=case.title, text=case.text, rule=case.rule, model_version=case.model_version,
                   config_hash=case.config_hash, triage=case.triage,
                   messages=[{"message_id": m.message_id, "channel": m.channel,
                              "received_at": self._local(m.received_at), "score": m.score} for m in msgs],
                   events=[{"at": self._local(e.at), "event": e.event, "office_id": e.office_id,
                            "actor": e.actor, "note": e.note} for e in events])
        return out

    def cases(self, start: datetime, end: datetime) -> Iterator[dict]:
        """Cases received in [start, end), as plain dicts (the report's input)."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(cases_t).where(cases_t.c.received_at >= self._db(start),
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


def _dt(value) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
