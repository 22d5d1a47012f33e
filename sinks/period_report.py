"""`wenzheng report --month 2026-11` (or ``--from/--to``): how the offices did in a period.

For the cases *received* in the period (by the case ledger), per lead office and per
category, as of ``now`` (the report's time, default: the present) — not those the
dispatcher marked invalid or joined to another case as a repeat:

* **received** — cases (a repeated report merged into a case counts once; ``messages``
  counts every message, repeats included);
* **replied** — cases with a reply; **reply rate** = replied / received;
* **on time** — replied no later than the case's answer deadline (a case without one
  counts as on time when replied); **on-time rate** = on time / replied;
* **overdue** — not replied and past the answer deadline at ``now``, or replied late;
  every overdue case is listed;
* **satisfaction** — the mean rating (1–5) where citizens gave one, and how many did.

Each row's figures satisfy on time ≤ replied ≤ received, and the offices' rows add up
to the total. Output: a table in the terminal, ``--csv F`` and ``--html F`` (one
self-contained page with the charts inline; chart labels are office ids and category
codes, since a CJK font cannot be assumed on a server).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from wenzheng.config import UNKNOWN
from wenzheng.config import load as load_config
from wenzheng.core.command import Command, UsageError, parse_time

FIELDS = ("received", "messages", "replied", "on_time", "overdue", "rated", "satisfaction_sum")
LABEL = 44  # terminal columns of the name (code) column


@dataclass
class Row:
    key: str
    name: str
    received: int = 0
    messages: int = 0
    replied: int = 0
    on_time: int = 0
    overdue: int = 0
    rated: int = 0
    satisfaction_sum: int = 0

    def add(self, case: dict, now: datetime) -> bool:
        """Count one case; True when it is overdue."""
        self.received += 1
        self.messages += 1 + case.get("duplicates", 0)
        due, replied = case.get("answer_due"), case.get("replied_at")
        late = False
        if replied is not None:
            self.replied += 1
            if due is None or replied <= due:
                self.on_time += 1
            else:
                late = True
        elif due is not None and now > due:
            late = True
        self.overdue += late
        if case.get("satisfaction") is not None:
            self.rated += 1
            self.satisfaction_sum += case["satisfaction"]
        return late

    @property
    def reply_rate(self) -> float | None:
        return self.replied / self.received if self.received else None

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.replied if self.replied else None

    @property
    def satisfaction(self) -> float | None:
        return self.satisfaction_sum / self.rated if self.rated else None

    def as_dict(self) -> dict:
        return {"key": self.key, "name": self.name, **{f: getattr(self, f) for f in FIELDS if f != "satisfaction_sum"},
                "reply_rate": _r(self.reply_rate), "on_time_rate": _r(self.on_time_rate),
                "satisfaction": _r(self.satisfaction)}


@dataclass
class Report:
    start: datetime
    end: datetime
    now: datetime
    total: Row = field(default_factory=lambda: Row("total", "合计"))
    offices: dict[str, Row] = field(default_factory=dict)
    categories: dict[str, Row] = field(default_factory=dict)
    overdue: list[dict] = field(default_factory=list)

    def table(self) -> str:
        head = f"{'':{LABEL}} {'received':>8} {'replied':>8} {'rate':>6} {'on time':>8} {'rate':>6} {'overdue':>8} {'satisf.':>7}"
        lines = [f"cases received {self.start:%Y-%m-%d} – {self.end - timedelta(seconds=1):%Y-%m-%d}, "
                 f"as of {self.now:%Y-%m-%d %H:%M}", "", "by office", head]
        for rows in (self.offices, self.categories):
            if rows is self.categories:
                lines += ["", "by category", head]
            for r in sorted(rows.values(), key=lambda r: (-r.received, r.key)):
                lines.append(_line(r))
        lines += ["", _line(self.total), "", f"overdue: {len(self.overdue)}"]
        shown = self.overdue[:50]
        width = max((display_width(o["office_name"] or o["office_id"]) for o in shown), default=0)
        for o in shown:
            office = pad(o["office_name"] or o["office_id"], width)
            lines.append(f"  {o['tracking_no']}  {office}  due {o['answer_due']:%m-%d %H:%M}  {o['status']}")
        if len(self.overdue) > 50:
            lines.append(f"  … and {len(self.overdue) - 50} more (see --csv / --html)")
        return "\n".join(lines)

    def rows(self) -> list[dict]:
        out = [{"group": "office", **r.as_dict()} for r in self.offices.values()]
        out += [{"group": "category", **r.as_dict()} for r in self.categories.values()]
        return out + [{"group": "total", **self.total.as_dict()}]

    def write_csv(self, path) -> None:
        rows = self.rows()
        with open(path, "w", newline="", encoding="utf-8-sig") as f:  # -sig: Excel opens it as UTF-8
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    def write_html(self, path) -> None:
        def table(rows: dict[str, Row], title: str) -> str:
            cols = ("received", "replied", "reply_rate", "on_time", "on_time_rate", "overdue", "satisfaction")
            body = "".join(
                "<tr><td>" + html.escape(r.name) + f"</td><td><code>{html.escape(r.key)}</code></td>"
                + "".join(f"<td>{_fmt(r.as_dict()[c], c)}</td>" for c in cols) + "</tr>"
                for r in sorted(rows.values(), key=lambda r: (-r.received, r.key)))
            return (f"<h2>{title}</h2><table><tr><th>名称</th><th>code</th>"
                    + "".join(f"<th>{c}</th>" for c in cols) + f"</tr>{body}</table>")

        overdue = "".join(
            f"<tr><td>{html.escape(o['tracking_no'])}</td><td>{html.escape(o['office_name'] or o['office_id'])}</td>"
            f"<td>{o['answer_due']:%Y-%m-%d %H:%M}</td><td>{html.escape(o['status'])}</td></tr>" for o in self.overdue)
        page = f"""<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<title>问政 report {self.start:%Y-%m-%d} – {self.end:%Y-%m-%d}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:first-child{{text-align:left}}</style>
<h1>问政 cases received {self.start:%Y-%m-%d} – {self.end - timedelta(seconds=1):%Y-%m-%d}</h1>
<p>as of {self.now:%Y-%m-%d %H:%M}: {self.total.received} cases, {self.total.replied} replied
({_fmt(_r(self.total.reply_rate), "reply_rate")}), {self.total.on_time} on time, {self.total.overdue} overdue.</p>
<img alt="cases per office" src="data:image/png;base64,{self._chart(self.offices)}">
<img alt="cases per category" src="data:image/png;base64,{self._chart(self.categories)}">
{table(self.offices, "各单位 by office")}{table(self.categories, "各类别 by category")}
<h2>超期 overdue ({len(self.overdue)})</h2><table><tr><th>tracking no</th><th>office</th><th>answer due</th><th>status</th></tr>{overdue}</table>
</html>"""
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)

    def _chart(self, rows: dict[str, Row]) -> str:
        return base64.b64encode(_bars(rows, names=False)).decode()

    def chart_png(self, group: str) -> bytes:
        """The ``offices`` or ``categories`` chart as PNG, labelled by Chinese name (the console's;
        needs a CJK font — :data:`CJK_FONTS` — which the HTML report does not assume)."""
        return _bars(self.offices if group == "offices" else self.categories, names=True)


CJK_FONTS = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC", "SimHei", "DejaVu Sans"]


@lru_cache(maxsize=1)
def _cjk_fonts() -> list[str]:
    """:data:`CJK_FONTS`, after registering the system's CJK font files with matplotlib when its
    font cache predates them (a font installed after matplotlib first ran is otherwise unseen)."""
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    if not known & set(CJK_FONTS[:-1]):
        for path in font_manager.findSystemFonts():
            if any(k in path.lower() for k in ("wqy", "notosanscjk", "sourcehansans", "simhei")):
                font_manager.fontManager.addfont(path)
    return CJK_FONTS


def _bars(rows: dict[str, Row], names: bool) -> bytes:
    """Received, replied and on-time cases of the 15 busiest rows, as horizontal bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    legend = ("受理", "已答复", "按时答复") if names else ("received", "replied", "on time")
    style: dict = {"font.family": "sans-serif", "font.sans-serif": _cjk_fonts(), "axes.unicode_minus": False} if names else {}
    top = sorted(rows.values(), key=lambda r: -r.received)[:15]
    with plt.rc_context(style):
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(top) + 1.2))
        y = range(len(top))
        for field, colour, label in zip(("received", "replied", "on_time"), ("#ccc", "#7aa", "#386"), legend,
                                        strict=True):
            ax.barh(y, [getattr(r, field) for r in top], color=colour, label=label)
        ax.set_yticks(list(y), [r.name if names else r.key for r in top], fontsize=8)
        ax.invert_yaxis()
        ax.legend(fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
    return buf.getvalue()


def build(cases, start: datetime, end: datetime, now: datetime, category_names: dict[str, str] | None = None) -> Report:
    rep = Report(start, end, now)
    names = category_names or {}
    for c in cases:
        if not start <= c["received_at"] < end:
            continue
        office = rep.offices.setdefault(c["office_id"], Row(c["office_id"], c.get("office_name") or c["office_id"]))
        cat = c.get("category") or UNKNOWN
        category = rep.categories.setdefault(cat, Row(cat, names.get(cat, cat)))
        late = office.add(c, now)
        category.add(c, now)
        rep.total.add(c, now)
        if late:
            rep.overdue.append(c)
    rep.overdue.sort(key=lambda c: (c["answer_due"], c["tracking_no"]))
    return rep


def category_names(settings) -> dict[str, str]:
    """中文名 by code, from the configuration's table of categories, and one for what no category took."""
    return {c.code: c.name for c in settings.categories} | {UNKNOWN: "未分类"}


def period(month: str | None, start: str | None, end: str | None, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in the city's time zone: a month (YYYY-MM) or --from/--to dates (inclusive)."""
    try:
        if month:
            first = date.fromisoformat(month + "-01")
            nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            return datetime.combine(first, time(), tz), datetime.combine(nxt, time(), tz)
        if start and end:
            return (datetime.combine(date.fromisoformat(start), time(), tz),
                    datetime.combine(date.fromisoformat(end) + timedelta(days=1), time(), tz))
    except ValueError as exc:
        raise UsageError(f"bad period: {exc}") from None
    raise UsageError("give --month YYYY-MM, or --from DATE and --to DATE")


class ReportCommand(Command):
    name, help = "report", "cases received, reply and on-time rates, overdue cases, per office and category"

    def configure(self, p):
        p.add_argument("--month", help="YYYY-MM")
        p.add_argument("--from", dest="start", help="YYYY-MM-DD (with --to, both inclusive)")
        p.add_argument("--to", dest="end", help="YYYY-MM-DD")
        p.add_argument("--now", type=parse_time, help="report as of this ISO time (default: now)")
        p.add_argument("--csv", help="also write the figures as CSV")
        p.add_argument("--html", help="also write an HTML page with charts")

    def execute(self, args) -> int:
        from .cases import DISCARDED, Ledger

        settings = load_config(args.config).settings
        tz = ZoneInfo(settings.city.timezone)
        start, end = period(args.month, args.start, args.end, tz)
        now = args.now.astimezone(tz) if args.now else datetime.now(tz)
        ledger = Ledger.from_settings(settings)
        try:
            cases = (c for c in ledger.cases(start, end) if c["status"] not in DISCARDED)  # spam and merged repeats
            rep = build(cases, start, end, now, category_names(settings))
        finally:
            ledger.dispose()
        print(rep.table())
        if args.csv:
            rep.write_csv(args.csv)
        if args.html:
            rep.write_html(args.html)
        return 0


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _fmt(v, column: str) -> str:
    if v is None:
        return "–"
    if column.endswith("_rate"):
        return f"{v:.1%}"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _line(r: Row) -> str:
    def pct(v):
        return f"{v:6.1%}" if v is not None else f"{'–':>6}"

    sat = f"{r.satisfaction:7.2f}" if r.satisfaction is not None else f"{'–':>7}"
    label = f"{r.name} ({r.key})" if r.name != r.key else r.key
    return (f"{pad(label, LABEL)} {r.received:8d} {r.replied:8d} {pct(r.reply_rate)} {r.on_time:8d} "
            f"{pct(r.on_time_rate)} {r.overdue:8d} {sat}")


def _columns(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Terminal columns of ``text``: a Chinese character takes two, which ``len`` and ``:34``
    padding count as one."""
    return sum(map(_columns, text))


def pad(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` terminal columns, then padded with spaces to exactly that."""
    used = 0
    for i, ch in enumerate(text):
        if used + _columns(ch) > width:
            text = text[:i]
            break
        used += _columns(ch)
    return text + " " * (width - used)

