"""What a dispatcher's assignment publishes, and the publishing of the ledger's outbox.

An assignment (:meth:`~wenzheng.sinks.cases.Ledger.assign`) writes, in its own
transaction, the records it owes to Kafka:

* the message, as the route stage would have sent it, to the queue of the lead
  office and of each co-handling office (``wz.office.<id>``, keyed by message id) —
  its classification the dispatcher's, its routing rule ``dispatcher:<account>``;
* one correction to ``wz.labels`` in the form ``wenzheng train --labels`` reads
  (:mod:`wenzheng.classify.training`): the message ``id``, its masked ``text`` and
  ``title``, ``posted_at``, the dispatcher's ``category``, ``type`` and
  ``jurisdiction``; beside them ``predicted`` (the model's labels and confidence),
  ``model_version``, ``by``, ``at`` and the case's ``tracking_no``.

:func:`flush` then publishes them through a :class:`~wenzheng.core.delivery.Publisher`
with the stage name ``console``: the journal keys each record by (message id, topic),
so a retried or doubled flush publishes nothing twice, and the outbox row is marked
sent only after Kafka acknowledged. The n-th assignment of one case keys its
correction ``<id>:<n>``, so a reassignment after a 退回 is a correction of its own
(training takes the latest); the office queues stay keyed by the message id, so an
office given the same message again after a 退回 is not sent it twice.
"""

from __future__ import annotations

import logging
from datetime import datetime

from wenzheng.core import envelope
from wenzheng.core.delivery import Out, Publisher
from wenzheng.core.kafka import Topics

from .cases import UTC, Actor, Ledger

log = logging.getLogger(__name__)
STAGE = "console"
LABELS = ("category", "type", "jurisdiction")


def assignment_records(topics: Topics, case, env: dict, decision: dict, by: Actor, at: datetime, n: int) -> list[dict]:
    """The outbox records of the n-th assignment of ``case`` (a ledger row) whose opening
    message is ``env``."""
    model = env.get("classification") or {}
    msg_id = env.get("id") or f"case:{case.tracking_no}"
    offices = [decision["office_id"], *(decision.get("co_offices") or [])]
    routing = {**(env.get("routing") or {}), "office_id": decision["office_id"],
               "office_name": decision["office_name"], "co_offices": decision.get("co_offices") or [],
               "triage": False, "rule": f"dispatcher:{by.account}", "routed_at": envelope.iso(at),
               "deadlines": {"first_response_due": _iso(case.first_response_due),
                             "answer_due": _iso(case.answer_due)}}
    routed = {**env, "classification": {**model, **{k: decision[k] for k in LABELS}, "corrected_by": by.account},
              "routing": routing}
    label = {"schema": "wenzheng.label/1", "id": msg_id, "text": env.get("text") or case.text or "",
             "title": env.get("title") or case.title or "", "posted_at": env.get("posted_at"),
             "channel": case.channel, **{k: decision[k] for k in LABELS},
             "predicted": {**{k: model.get(k) for k in LABELS}, "category_confidence": model.get("category_confidence")},
             "model_version": model.get("model_version") or case.model_version, "by": by.account,
             "at": envelope.iso(at), "tracking_no": case.tracking_no}
    return ([{"topic": topics.office(o), "id": msg_id, "value": routed} for o in offices]
            + [{"topic": topics.labels, "id": f"{msg_id}:{n}", "value": label}])


def _iso(t: datetime | None) -> str | None:
    """A ledger column's time (naive UTC) as the envelope writes times."""
    return envelope.iso(t.replace(tzinfo=UTC)) if t else None


def flush(ledger: Ledger, publisher: Publisher) -> int:
    """Publish what committed actions owe to Kafka; return how many records were sent now."""
    sent = 0
    for row_id, records in ledger.outbox():
        outs = [Out(r["topic"], r["id"], r["value"]) for r in records]
        sent += len(publisher.publish(outs))
        ledger.outbox_sent([row_id])
        log.info("workbench records published", extra={"stage": STAGE, "outbox": row_id,
                                                       "topics": sorted({o.topic for o in outs})})
    return sent
