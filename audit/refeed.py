"""Re-feeding dead letters, and where replayed decisions may be written.

Replaying the dead-letter topic into the intake topic re-feeds what was dead-lettered:
the original intake record (classify's dead letters) or the quarantined hotline file
parsed again (after a connector fix), its id keyed as the connector keys it (so it needs
the pseudonym key). Both go through the delivery journal, so a second re-feed writes
nothing twice.
"""

from __future__ import annotations

import json
from collections import Counter

from wenzheng.core import envelope
from wenzheng.core.delivery import Out
from wenzheng.core.errors import BadMessage
from wenzheng.core.kafka import Topics

from .read import ReplayError


def check_target(topics: Topics, source: str, target: str) -> None:
    """Never into a live topic — except dead letters back into the intake topic."""
    if source == topics.deadletter and target == topics.intake:
        return
    if target in topics.shared() or target.startswith(topics.office("")):
        raise ReplayError(f"--republish-to {target} is a live topic; choose a new one (e.g. {topics.prefix}replay.<date>)"
                          + (" (dead letters may go back to the intake topic)" if source == topics.deadletter else ""))


def refeed(runtime, value: dict, fetch) -> Out:
    """The intake record a dead letter stands for, ready to go back into intake.

    ``fetch(topic, partition, offset)`` reads one record. Raises BadMessage with the reason
    when there is nothing to re-feed or it is still not a valid message."""
    src = value.get("source") or {}
    target = runtime.topics.intake
    if value.get("schema") != "wenzheng.deadletter/1":
        raise BadMessage("not a dead letter")
    if {"topic", "partition", "offset"} <= set(src):
        if src["topic"] != target:
            raise BadMessage(f"dead-lettered by {value.get('stage')} from {src['topic']}: only intake records are re-fed")
        rec = fetch(src["topic"], int(src["partition"]), int(src["offset"]))
        if rec is None:
            raise BadMessage(f"{src['topic']}[{src['partition']}]@{src['offset']} is no longer in Kafka (retention)")
        env = envelope.validate(envelope.decode(rec.value))
        return Out(target, env["id"], env)
    if "file" in src and "quarantine" in src:  # a hotline transcript the connector could not read
        from wenzheng.ingest.hotline import HotlineConnector

        if problem := runtime.settings.privacy.key_problem():  # its id is keyed as the connector keys it
            raise BadMessage(problem)

        hotline = HotlineConnector(runtime, None)  # type: ignore[arg-type]  # only its reader: publishes nothing
        path = hotline.dir / src["quarantine"]
        if not path.is_file():
            raise BadMessage(f"quarantined file {path} is gone")
        return Out(target, (env := hotline.to_envelope(path, path.read_bytes()))["id"], env)
    if "quarantine" in src:
        raise BadMessage(f"{value.get('stage')}: the payload is kept in quarantine ({src['quarantine']}), "
                         "but re-feeding it is built for hotline files only")
    raise BadMessage(f"nothing kept to re-feed from (source {json.dumps(src, ensure_ascii=False)}): "
                     "the upstream item must be fetched again")


def refeed_all(runtime, records, fetch, errors: Counter, totals: Counter) -> list[Out]:
    """The intake records a batch of dead letters stands for. Without ``fetch`` (not re-feeding
    into intake) each dead letter is only counted, with its stage and reason; a dead letter
    that cannot be re-fed is counted under why."""
    outs: list[Out] = []
    for rec in records:
        try:
            value = envelope.decode(rec.value)
            if fetch is None:
                totals["dead letters"] += 1
                errors[f"{value.get('stage')}: {value.get('reason')}"[:200]] += 1
                continue
            outs.append(refeed(runtime, value, fetch))
        except BadMessage as exc:
            errors[exc.reason[:200]] += 1
    return outs
