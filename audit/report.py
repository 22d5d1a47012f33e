"""What a replay found, for a person: the differing messages with why they changed
(``diffs.jsonl``), agreement per category, jurisdiction and office (``summary.csv``),
the changed decisions (``changes.csv``), ``summary.json``, ``report.html`` and the
summary in the terminal. Category and office appear as codes and ids."""

from __future__ import annotations

import csv
import html
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .decide import ROUTING, differences, why

KEEP_C = ("category", "category_confidence", "type", "jurisdiction", "model_version")
KEEP_R = ("office_id", "co_offices", "triage", "rule", "config_hash", "deadlines")


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
        """One replayed message: counted, compared with its recorded decision if it has one."""
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
        self.agreed += not changed
        for dim, value in (("category", rc.get("category")), ("jurisdiction", rc.get("jurisdiction")),
                           ("office", (rr or {}).get("office_id"))):
            if value is not None:
                cell = self.by[dim][value]
                cell[0] += 1
                cell[1] += not changed
        if changed:
            self._changed(msg, (rc, rr or {}), (c, r), changed)

    def _changed(self, msg: dict, recorded: tuple[dict, dict], replayed: tuple[dict, dict], changed: list[str]) -> None:
        """A message decided otherwise: counted by field and reason, and written to diffs.jsonl."""
        (rc, rr), (c, r) = recorded, replayed
        for f in changed:
            if f in ("deadlines", "co_offices"):
                self.changes[(f, "…", "…")] += 1
            else:
                old, new = (rr.get(f), r.get(f)) if f in ROUTING else (rc.get(f), c.get(f))
                self.changes[(f, str(old), str(new))] += 1
        reason = why(rc, rr, c, r, changed)
        self.reasons[reason.split(":")[0] if reason.startswith("model") else reason] += 1
        self._diffs.write(json.dumps({
            "id": msg.get("id"), "channel": msg.get("channel"), "received_at": msg.get("received_at"),
            "title": msg.get("title"), "text": (msg.get("text") or "")[:200],
            "changed": changed, "why": reason,
            "recorded": {**{k: rc.get(k) for k in KEEP_C}, **{k: rr.get(k) for k in KEEP_R}},
            "replayed": {**{k: c.get(k) for k in KEEP_C}, **{k: r.get(k) for k in KEEP_R}},
        }, ensure_ascii=False) + "\n")

    def close(self) -> dict:
        """Writes summary.csv, changes.csv, summary.json and report.html; returns the summary."""
        self._diffs.close()
        summary = self.summary()
        rows = self.agreement_rows()
        _csv(self.out / "summary.csv", ["dimension", "value", "messages", "agreed", "agreement"], rows)
        _csv(self.out / "changes.csv", ["field", "recorded", "replayed", "messages"],
             [(*k, n) for k, n in self.changes.most_common()])
        (self.out / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
        (self.out / "report.html").write_text(self._html(summary, rows), encoding="utf-8")
        return summary

    def agreement_rows(self) -> list[tuple]:
        """(dimension, value, messages, agreed, agreement): the total, then each value, most messages first."""
        rows = [("total", "", self.compared, self.agreed, _rate(self.agreed, self.compared))]
        for dim, cells in self.by.items():
            for value, (n, ok) in sorted(cells.items(), key=lambda kv: (-kv[1][0], kv[0])):
                rows.append((dim, value, n, ok, _rate(ok, n)))
        return rows

    def summary(self) -> dict:
        return {"read": self.read, "replayed": self.replayed, "compared": self.compared, "agreed": self.agreed,
                "changed": self.compared - self.agreed, "agreement": _rate(self.agreed, self.compared),
                "errors": sum(self.errors.values()), "error_reasons": dict(self.errors.most_common(10)),
                "models": {f"{a}→{b}": n for (a, b), n in self.models.items()},
                "why": dict(self.reasons.most_common(20)), "out": str(self.out)}

    def text(self, summary: dict) -> str:
        """The terminal summary: counts, models, why decisions changed, where agreement is lowest."""
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

    def refeed_text(self, totals: Counter) -> str:
        """The terminal summary of re-feeding dead letters: what was done, and why the rest were not."""
        lines = [f"read {self.read} dead letters: " + ", ".join(f"{k} {v}" for k, v in totals.items())]
        lines += [f"  {n:7d}  {reason}" for reason, n in self.errors.most_common(10)]
        return "\n".join(lines)

    def _html(self, summary: dict, rows: list[tuple]) -> str:
        e = html.escape
        parts = ["<!doctype html><meta charset='utf-8'><title>wenzheng replay</title>",
                 "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin:1em 0}"
                 "td,th{border:1px solid #ccc;padding:2px 8px}</style>",
                 "<h1>Replay audit</h1><pre>" + e(self.text(summary)) + "</pre>",
                 "<h2>Why decisions changed</h2>", _table(["messages", "why"], [(n, k) for k, n in summary["why"].items()]),
                 "<h2>Changed decisions</h2>",
                 _table(["field", "recorded", "replayed", "messages"], [(*k, n) for k, n in self.changes.most_common(200)]),
                 "<h2>Agreement</h2>",
                 _table(["dimension", "value", "messages", "agreed", "agreement"],
                        [(d, v, n, ok, f"{a:.2%}") for d, v, n, ok, a in rows])]
        return "\n".join(parts)


def _table(head, body) -> str:
    e = html.escape
    return ("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in body)
            + "</table>")


def _csv(path: Path, head: list[str], rows) -> None:
    with open(path, "w", encoding="utf-8-sig", newline="") as f:  # BOM: Excel reads UTF-8
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(rows)


def _rate(ok: int, n: int) -> float:
    return ok / n if n else 1.0


def progress(total: int | None, enabled: bool):
    """A progress bar on stderr (tqdm), off unless ``enabled``."""
    from tqdm import tqdm

    return tqdm(total=total, unit="msg", unit_scale=True, disable=not enabled, file=sys.stderr, smoothing=0.1)
