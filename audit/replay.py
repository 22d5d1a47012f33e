"""Audit replay: re-read a topic over a time or offset range and decide again.

``wenzheng replay`` answers "why did this message go to that office, and what would
today's model have done?" from the topics alone:

* **Read-only.** A consumer without a group (nothing committed) is assigned the
  topic's partitions; the start is found by time (``offsets_for_times``) or given as
  an offset, the end likewise, else the high watermark the fetch responses report —
  never ``end_offsets``, which Tansu answers wrongly. Records are also filtered by
  their own timestamps: Tansu looks times up among its append times and says "none"
  as offset 0 (both in tests/test_broker_gaps.py), so its answers are only bounds.
* **Decide again.** Each message is classified and routed again with a chosen
  model and configuration. By default the ones recorded on the message
  (``classification.model_version``, ``routing.config_hash``): the model is found by
  its version among the machine's model directories, the configuration in the
  snapshot a route worker keeps at start (``<state.dir>/configs/<hash>.json``). With
  those the replay must reproduce every decision; the report says if it did not.
* **Compare and report.** Category, type, jurisdiction, lead and co-offices, triage,
  the rule and the deadlines are compared with what was decided at the time; the
  differing messages go to ``diffs.jsonl`` with why (which model, which rule), and a
  summary — agreement per category, jurisdiction and office — to the terminal,
  ``summary.csv`` and ``report.html``.
* **Republish.** ``--republish-to`` writes the replayed decisions to a topic that is
  not one of the live ones. Replaying the dead-letter topic into the intake topic
  re-feeds what was dead-lettered: the original intake record (classify's dead
  letters) or the quarantined hotline file parsed again (after a connector fix).
  Both go through the delivery journal, so a second re-feed writes nothing twice.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from wenzheng.config import ConfigError, LoadedConfig, OfficeDirectory, load_snapshot
from wenzheng.core import envelope
from wenzheng.core.delivery import Out
from wenzheng.core.errors import BadMessage, TransientError
from wenzheng.core.kafka import Topics, client_kwargs, read_partition
from wenzheng.core.kafka import consumer as make_consumer

log = logging.getLogger(__name__)


class ReplayError(Exception):
    """A replay that cannot be done as asked (said in one line)."""

CLASSIFICATION = ("category", "type", "jurisdiction")
ROUTING = ("office_id", "co_offices", "triage", "rule", "deadlines")
BATCH = 2000
END_SLACK_MS = 60_000


# --- reading ---------------------------------------------------------------------------


def read_only_consumer(settings) -> KafkaConsumer:
    """No group: nothing is committed, no live group is disturbed."""
    return make_consumer(settings, group=None, max_poll_records=BATCH,
                         fetch_max_bytes=64 << 20, max_partition_fetch_bytes=16 << 20)


def _ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=envelope.TZ)
    return int(value.timestamp() * 1000)


def plan(c: KafkaConsumer, topic: str, *, start: datetime | None = None, end: datetime | None = None,
         partition: int | None = None, start_offset: int | None = None,
         end_offset: int | None = None) -> dict[TopicPartition, tuple[int, int | None]]:
    """Per partition, [first offset, end offset) — end None: up to the high watermark."""
    parts = c.partitions_for_topic(topic)
    if not parts:
        raise ReplayError(f"topic {topic} does not exist")
    if partition is not None and partition not in parts:
        raise ReplayError(f"topic {topic} has no partition {partition} (it has {len(parts)})")
    tps = [TopicPartition(topic, p) for p in sorted(parts) if partition is None or p == partition]
    begin = c.beginning_offsets(tps)
    starts = c.offsets_for_times({tp: _ms(start) for tp in tps}) if start else {}
    # Record timestamps are the producers' clocks: the end is looked up a little later and
    # records are filtered by their own timestamps as they are read (see read()).
    ends = c.offsets_for_times({tp: _ms(end) + END_SLACK_MS for tp in tps}) if end else {}
    out = {}
    for tp in tps:
        if start is not None:
            if (found := _found(starts.get(tp))) is None:
                continue  # nothing at or after the start
            first = found
        else:
            first = max(begin[tp], start_offset or 0)
        last = _found(ends.get(tp)) if end is not None else end_offset
        if last is None or first < last:
            out[tp] = (first, last)
    return out


def _found(answer) -> int | None:
    """An offsets_for_times answer; Tansu says "none" as offset 0 with timestamp -1."""
    if answer is None or answer.offset < 0 or answer.timestamp < 0:
        return None
    return answer.offset


def read(c: KafkaConsumer, ranges: dict[TopicPartition, tuple[int, int | None]], start: datetime | None = None,
         end: datetime | None = None, idle_timeout: float = 30.0) -> Iterator:
    """The records of ``ranges``, partition batches interleaved; ends at each range's end or
    at the high watermark of the fetch responses, whichever is first. With ``start`` or
    ``end``, records whose own timestamp is outside [start, end) are passed over."""
    lo = _ms(start) if start else None
    hi = _ms(end) if end else None
    if not ranges:
        return
    c.assign(list(ranges))
    for tp, (first, _) in ranges.items():
        c.seek(tp, first)
    open_ = dict(ranges)
    progress = time.monotonic()
    while open_:
        batch = c.poll(timeout_ms=500)
        for tp, recs in batch.items():
            if tp not in open_:
                continue
            end = open_[tp][1]
            for r in recs:
                if end is not None and r.offset >= end:
                    break
                if (lo is None or r.timestamp >= lo) and (hi is None or r.timestamp < hi):
                    yield r
            progress = time.monotonic()
        for tp in list(open_):
            end, hw, pos = open_[tp][1], c.highwater(tp), c.position(tp)
            if (end is not None and pos >= end) or (hw is not None and pos >= hw):
                del open_[tp]
        if open_:
            c.assign(list(open_))  # keeps positions; a finished partition is fetched no more
        if time.monotonic() - progress > idle_timeout:
            raise TransientError(f"no records for {idle_timeout:.0f}s from {sorted(str(tp) for tp in open_)}")


# --- deciding again --------------------------------------------------------------------


class Decider:
    """Classifies and routes again with the recorded (or a chosen) model and configuration."""

    def __init__(self, config: LoadedConfig, model: str = "recorded", config_version: str = "recorded",
                 models: list[str] = ()):
        self.config, self.model_choice, self.config_choice = config, model, config_version
        self.state_dir = config.settings.state.dir
        self.extra_models = list(models)
        self._configs: dict[str, tuple[LoadedConfig, object]] = {}
        self._models: dict[tuple[str, str], object] = {}

    def _config(self, recorded: str | None):
        key = self.config_choice if self.config_choice != "recorded" else (recorded or "current")
        if key not in self._configs:
            from wenzheng.route.router import Router

            config = self.config if key in ("current", self.config.hash) else load_snapshot(self.state_dir, key)
            self._configs[key] = (config, Router(config, OfficeDirectory(config.settings)))
        return self._configs[key]

    def _model(self, recorded: str | None, config: LoadedConfig):
        from wenzheng.classify import registry
        from wenzheng.classify.model import Classifier

        choice = self.model_choice
        if choice == "recorded":
            if not recorded:
                raise BadMessage("no model version recorded on the message (pass --model)")
            choice = recorded
        key = (choice, config.hash)
        if key not in self._models:
            s = config.settings
            if choice == "current":  # as the live workers pick it: promoted, configured, baseline
                live = self.config.settings
                current = (registry.promoted(live) or {}).get("path") or live.classifier.model_dir
                if current:
                    model = Classifier.load(current, s)
                else:
                    from wenzheng.classify.model import baseline

                    model = baseline(s, registry.models_dir(live))
            elif Path(choice).is_dir():
                model = Classifier.load(choice, s)
            else:
                model = registry.find(s, choice, self.extra_models)
            log.info("replay model", extra={"model": model.version, "config": config.hash[:12]})
            self._models[key] = model
        return self._models[key]

    def decide(self, items: list[dict]) -> list[dict]:
        """``items``: prepared messages (see :func:`prepare`). Per item, the replayed
        ``{"classification", "routing"}`` or ``{"error": reason}``."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        results: list[dict] = [{} for _ in items]
        for i, it in enumerate(items):
            try:
                config, router = self._config((it.get("routing") or {}).get("config_hash"))
                model = self._model((it.get("classification") or {}).get("model_version"), config)
                groups[(id(model), id(router))].append(i)
                results[i] = {"model": model, "router": router}
            except (BadMessage, ConfigError, ValueError, OSError) as exc:
                results[i] = {"error": str(exc)}
        for idx in groups.values():
            model, router = results[idx[0]]["model"], results[idx[0]]["router"]
            inputs = [{k: v for k, v in items[i].items() if k not in ("classification", "routing")} for i in idx]
            for i, env, p in zip(idx, inputs, self._predict(model, inputs), strict=True):
                if p is None:
                    results[i] = {"error": "the model cannot read this message (no text?)"}
                    continue
                c = p.record(model.version)
                r = router.route({**env, "classification": c})
                results[i] = {"classification": c, "routing": r}
        return results

    @staticmethod
    def _predict(model, inputs: list[dict]) -> list:
        """The batch at once; one by one (None for the unreadable) if it fails."""
        try:
            return model.predict(inputs)
        except Exception:
            out = []
            for env in inputs:
                try:
                    out.append(model.predict([env])[0])
                except Exception:
                    out.append(None)
            return out


def prepare(value, record) -> dict:
    """A replayable message: routed and classified records as they are (masked already);
    raw intake records validated and masked, as the classify stage would have."""
    if not isinstance(value, dict):
        raise BadMessage("not a JSON object")
    if isinstance(value.get("classification"), dict):
        return value
    env = envelope.validate(value)
    return envelope.masked(env, {"topic": record.topic, "partition": record.partition, "offset": record.offset})


def differences(recorded_c: dict | None, recorded_r: dict | None, c: dict, r: dict) -> list[str]:
    fields = []
    if recorded_c:
        fields += [f for f in CLASSIFICATION if recorded_c.get(f) != c.get(f)]
    if recorded_r:
        fields += [f for f in ROUTING if recorded_r.get(f) != r.get(f)]
    return fields


def why(recorded_c: dict, recorded_r: dict | None, c: dict, r: dict, changed: list[str]) -> str:
    parts = []
    moved = [f for f in CLASSIFICATION if f in changed]
    if moved:
        what = ", ".join(f"{f} {recorded_c.get(f)}→{c.get(f)}" for f in moved)
        parts.append(f"model {recorded_c.get('model_version')}→{c.get('model_version')}: {what}")
    if recorded_r and any(f in changed for f in ROUTING):
        if recorded_r.get("rule") != r.get("rule"):
            parts.append(f"rule {recorded_r.get('rule')}→{r.get('rule')}")
        elif "deadlines" in changed:
            parts.append("deadlines")
        if recorded_r.get("config_hash") != r.get("config_hash"):
            parts.append(f"config {str(recorded_r.get('config_hash'))[:12]}→{str(r.get('config_hash'))[:12]}")
    return "; ".join(parts) or "; ".join(changed)


# --- the audit -------------------------------------------------------------------------


@dataclass
class Audit:
    """What the replay found, as it goes: counts, agreement by dimension, the changes."""

    out: Path
    read: int = 0
    replayed: int = 0
    compared: int = 0
    agreed: int = 0
    errors: Counter = field(default_factory=Counter)
    by: dict = field(default_factory=lambda: {d: defaultdict(lambda: [0, 0]) for d in ("category", "jurisdiction", "office")})
    changes: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)

    def __post_init__(self):
        self.out.mkdir(parents=True, exist_ok=True)
        self._diffs = open(self.out / "diffs.jsonl", "w", encoding="utf-8")  # noqa: SIM115 — closed in close()

    def add(self, msg: dict, result: dict) -> None:
        if "error" in result:
            self.errors[result["error"][:200]] += 1
            return
        self.replayed += 1
        c, r = result["classification"], result["routing"]
        rc, rr = msg.get("classification"), msg.get("routing")
        self.models[(rc or {}).get("model_version"), c["model_version"]] += 1
        if not rc:
            return  # nothing decided at the time (a raw intake record): replayed, not compared
        self.compared += 1
        changed = differences(rc, rr, c, r)
        ok = not changed
        self.agreed += ok
        for dim, value in (("category", rc.get("category")), ("jurisdiction", rc.get("jurisdiction")),
                           ("office", (rr or {}).get("office_id"))):
            if value is not None:
                cell = self.by[dim][value]
                cell[0] += 1
                cell[1] += ok
        if ok:
            return
        for f in changed:
            if f in ("deadlines", "co_offices"):
                self.changes[(f, "…", "…")] += 1
            else:
                old = (rr or {}).get(f) if f in ROUTING else rc.get(f)
                new = r.get(f) if f in ROUTING else c.get(f)
                self.changes[(f, str(old), str(new))] += 1
        reason = why(rc, rr, c, r, changed)
        self.reasons[reason.split(":")[0] if reason.startswith("model") else reason] += 1
        keep = ("category", "category_confidence", "type", "jurisdiction", "model_version")
        keep_r = ("office_id", "co_offices", "triage", "rule", "config_hash", "deadlines")
        self._diffs.write(json.dumps({
            "id": msg.get("id"), "channel": msg.get("channel"), "received_at": msg.get("received_at"),
            "title": msg.get("title"), "text": (msg.get("text") or "")[:200],
            "changed": changed, "why": reason,
            "recorded": {**{k: rc.get(k) for k in keep}, **{k: (rr or {}).get(k) for k in keep_r}},
            "replayed": {**{k: c.get(k) for k in keep}, **{k: r.get(k) for k in keep_r}},
        }, ensure_ascii=False) + "\n")

    def close(self) -> dict:
        self._diffs.close()
        summary = self.summary()
        rows = [("total", "", self.compared, self.agreed, _rate(self.agreed, self.compared))]
        for dim, cells in self.by.items():
            for value, (n, ok) in sorted(cells.items(), key=lambda kv: (-kv[1][0], kv[0])):
                rows.append((dim, value, n, ok, _rate(ok, n)))
        with open(self.out / "summary.csv", "w", encoding="utf-8-sig", newline="") as f:  # BOM: Excel reads UTF-8
            w = csv.writer(f)
            w.writerow(["dimension", "value", "messages", "agreed", "agreement"])
            w.writerows(rows)
        with open(self.out / "changes.csv", "w", encoding="utf-8-sig", newline="") as f:
            w = csv.writer(f)
            w.writerow(["field", "recorded", "replayed", "messages"])
            w.writerows((*k, n) for k, n in self.changes.most_common())
        (self.out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
        (self.out / "report.html").write_text(self._html(summary, rows), encoding="utf-8")
        return summary

    def summary(self) -> dict:
        return {"read": self.read, "replayed": self.replayed, "compared": self.compared, "agreed": self.agreed,
                "changed": self.compared - self.agreed, "agreement": _rate(self.agreed, self.compared),
                "errors": sum(self.errors.values()), "error_reasons": dict(self.errors.most_common(10)),
                "models": {f"{a}→{b}": n for (a, b), n in self.models.items()},
                "why": dict(self.reasons.most_common(20)), "out": str(self.out)}

    def text(self, summary: dict) -> str:
        lines = [f"read {summary['read']}, replayed {summary['replayed']}, compared {summary['compared']}: "
                 f"{summary['agreed']} agree, {summary['changed']} changed "
                 f"(agreement {summary['agreement']:.2%}), {summary['errors']} not replayable"]
        lines += [f"  models {k}: {n}" for k, n in summary["models"].items()]
        if summary["why"]:
            lines.append("why they changed:")
            lines += [f"  {n:7d}  {k}" for k, n in summary["why"].items()]
        if self.changes:
            lines.append("changed decisions (field: recorded → replayed):")
            lines += [f"  {n:7d}  {f}: {a} → {b}" for (f, a, b), n in self.changes.most_common(15)]
        for dim in ("category", "office"):
            worst = sorted(((ok / n, v, n) for v, (n, ok) in self.by[dim].items() if n), key=lambda t: (t[0], -t[2]))[:5]
            if worst and worst[0][0] < 1:
                lines.append(f"lowest agreement by {dim}: " + ", ".join(f"{v} {a:.1%} of {n}" for a, v, n in worst))
        for reason, n in summary["error_reasons"].items():
            lines.append(f"  not replayable ({n}): {reason}")
        lines.append(f"report: {self.out}/report.html, summary.csv, changes.csv, diffs.jsonl")
        return "\n".join(lines)

    def _html(self, summary: dict, rows) -> str:
        e = html.escape

        def table(head, body):
            return ("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in head) + "</tr>"
                    + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in body)
                    + "</table>")

        parts = ["<!doctype html><meta charset='utf-8'><title>wenzheng replay</title>",
                 "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin:1em 0}"
                 "td,th{border:1px solid #ccc;padding:2px 8px}</style>",
                 "<h1>Replay audit</h1><pre>" + e(self.text(summary)) + "</pre>",
                 "<h2>Why decisions changed</h2>", table(["messages", "why"], [(n, k) for k, n in summary["why"].items()]),
                 "<h2>Changed decisions</h2>",
                 table(["field", "recorded", "replayed", "messages"], [(*k, n) for k, n in self.changes.most_common(200)]),
                 "<h2>Agreement</h2>",
                 table(["dimension", "value", "messages", "agreed", "agreement"],
                       [(d, v, n, ok, f"{a:.2%}") for d, v, n, ok, a in rows])]
        return "\n".join(parts)


def _rate(ok: int, n: int) -> float:
    return ok / n if n else 1.0


# --- republishing and re-feeding ----------------------------------------------------------


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

        hotline = HotlineConnector(runtime, None)
        path = hotline.dir / src["quarantine"]
        if not path.is_file():
            raise BadMessage(f"quarantined file {path} is gone")
        return Out(target, (env := hotline.to_envelope(path, path.read_bytes()))["id"], env)
    if "quarantine" in src:
        raise BadMessage(f"{value.get('stage')}: the payload is kept in quarantine ({src['quarantine']}), "
                         "but re-feeding it is built for hotline files only")
    raise BadMessage(f"nothing kept to re-feed from (source {json.dumps(src, ensure_ascii=False)}): "
                     "the upstream item must be fetched again")


def fetcher(settings):
    c = read_only_consumer(settings)

    def fetch(topic: str, partition: int, offset: int):
        try:
            for r in read_partition(c, TopicPartition(topic, partition), offset, timeout=10):
                return r if r.offset == offset else None  # a later one: that offset is gone
        except TransientError:
            pass
        return None

    fetch.close = c.close
    return fetch


def progress(total: int | None, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="msg", unit_scale=True, disable=not enabled, file=sys.stderr, smoothing=0.1)


# --- the command --------------------------------------------------------------------------

_WORKER: dict = {}  # in a pool process: its Decider


def _init_worker(args) -> None:
    _WORKER["decider"] = Decider(*args)


def _decide(msgs: list[dict]) -> list[dict]:
    return _WORKER["decider"].decide(msgs)


class _Ready:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))



def run(config: LoadedConfig, *, topic: str | None = None, start: datetime | None = None, end: datetime | None = None,
        partition: int | None = None, start_offset: int | None = None, end_offset: int | None = None,
        model: str = "recorded", config_version: str = "recorded", models: list[str] = (),
        out: str | Path | None = None, republish_to: str | None = None, show_progress: bool | None = None,
        workers: int = 1, echo=print) -> dict:
    """Replay ``topic`` (see the module's text); ``workers`` processes classify and route
    (1: in this process). Returns the summary; ``echo`` gets the lines for a person."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from wenzheng.core.delivery import Publisher
    from wenzheng.core.kafka import producer as make_producer
    from wenzheng.core.runtime import Runtime

    try:
        runtime = Runtime(config).connect(create_topics=False)
    except ValueError as exc:
        raise ReplayError(str(exc)) from None
    settings, topics = runtime.settings, runtime.topics
    topic = topic or topics.routed
    refeeding = topic == topics.deadletter
    if republish_to:
        check_target(topics, topic, republish_to)
    decider_args = (config, model, config_version, list(models))
    pool = None
    if refeeding:
        decide = None
    elif workers > 1:  # forked before any Kafka client threads exist
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(decider_args,))

        def decide(msgs):
            return pool.apply_async(_decide, (msgs,))
    else:
        decider = Decider(*decider_args)

        def decide(msgs):
            return _Ready(decider.decide(msgs))
    c = read_only_consumer(settings)
    try:
        ranges = plan(c, topic, start=start, end=end, partition=partition, start_offset=start_offset,
                      end_offset=end_offset)
    except Exception:
        c.close()
        if pool is not None:
            pool.terminate()
        raise
    publisher = None
    if republish_to:
        admin = KafkaAdminClient(**client_kwargs(settings))
        try:
            if republish_to not in admin.list_topics():
                admin.create_topics([NewTopic(republish_to, len(c.partitions_for_topic(topic)),
                                              settings.kafka.replication_factor)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()
        publisher = Publisher(settings, make_producer(settings), runtime.journal, "replay")
    stamp = datetime.now(envelope.TZ).strftime("%Y%m%d-%H%M%S")
    audit = Audit(Path(out) if out else Path(f"replay-{topic}-{stamp}"))
    fetch = fetcher(settings) if refeeding and republish_to == topics.intake else None
    totals = Counter()
    known = all(e is not None for _, e in ranges.values())
    bar = progress(sum(e - s for s, e in ranges.values()) if known else None,
                   sys.stderr.isatty() if show_progress is None else show_progress)

    def publish(outs: list[Out]) -> None:
        if outs and publisher:
            sent = publisher.publish(outs)
            totals["republished"] += len(sent)
            totals["already there"] += len(outs) - len(sent)
        elif outs:
            totals["would re-feed"] += len(outs)

    def refeed_all(records) -> None:
        outs: list[Out] = []
        for rec in records:
            try:
                value = envelope.decode(rec.value)
                if fetch is None:
                    totals["dead letters"] += 1
                    audit.errors[f"{value.get('stage')}: {value.get('reason')}"[:200]] += 1
                    continue
                outs.append(refeed(runtime, value, fetch))
            except BadMessage as exc:
                audit.errors[exc.reason[:200]] += 1
        publish(outs)

    pending: deque = deque()  # batches being decided, in order; at most two per worker

    def settle(msgs, recs, results) -> None:
        outs: list[Out] = []
        for msg, rec, result in zip(msgs, recs, results, strict=True):
            audit.add(msg, result)
            if publisher and "error" not in result:
                outs.append(Out(republish_to, msg["id"], {
                    **msg, "classification": result["classification"], "routing": result["routing"],
                    "replay": {"of": {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
                               "at": envelope.iso(envelope.now())}}))
        publish(outs)
        bar.update(len(recs))

    def flush(records, last: bool = False) -> None:
        if refeeding:
            refeed_all(records)
            bar.update(len(records))
            return
        msgs, recs = [], []
        for rec in records:
            try:
                msgs.append(prepare(envelope.decode(rec.value), rec))
                recs.append(rec)
            except BadMessage as exc:
                audit.errors[exc.reason[:200]] += 1
        bar.update(len(records) - len(recs))
        if msgs:
            pending.append((msgs, recs, decide(msgs)))
        while pending and (last or len(pending) > 2 * max(1, workers) - 1):
            msgs, recs, result = pending.popleft()
            settle(msgs, recs, result.get())

    buf = []
    try:
        for rec in read(c, ranges, start, end):
            audit.read += 1
            buf.append(rec)
            if len(buf) >= BATCH:
                flush(buf)
                buf = []
        flush(buf, last=True)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
        c.close()
        if fetch:
            fetch.close()
        if publisher:
            publisher.close()
    summary = {**audit.close(), "topic": topic, "ranges": {f"{tp.partition}": [s, e] for tp, (s, e) in ranges.items()},
               **{k.replace(" ", "_"): v for k, v in totals.items()}}
    if refeeding:
        echo(f"read {audit.read} dead letters: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
        for reason, n in audit.errors.most_common(10):
            echo(f"  {n:7d}  {reason}")
    else:
        echo(audit.text(summary))
        if totals:
            echo(f"republished to {republish_to}: {totals['republished']} new, {totals['already there']} already there")
    return summary
