"""The period report: hand-made cases whose every figure is known."""

import csv
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from wenzheng.config import load
from wenzheng.sinks.period_report import build, category_names, display_width, pad, period

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 10, 12, 9, tzinfo=SH)


def case(n, office, category, *, replied=None, due_days=5, sat=None, dup=0, received=T0):
    return {"tracking_no": f"GZ20261012-{n:06d}", "message_ids": [f"m{n}"], "office_id": office,
            "office_name": {"360703-cgj": "南康区城市管理局", "360702-rsj": "章贡区人力资源和社会保障局"}[office],
            "co_offices": [], "category": category, "type": "complaint", "jurisdiction": office[:6], "channel": "wechat",
            "received_at": received, "first_response_due": None, "answer_due": received + timedelta(days=due_days),
            "claimed_at": None, "replied_at": None if replied is None else received + timedelta(days=replied),
            "closed_at": None, "status": "replied" if replied is not None else "routed", "satisfaction": sat,
            "duplicates": dup}


CASES = [
    case(1, "360703-cgj", "urban_management", replied=1, sat=5),          # on time
    case(2, "360703-cgj", "urban_management", replied=7, sat=2),          # late → overdue
    case(3, "360703-cgj", "urban_management", dup=2),                     # unreplied, past due at NOW → overdue
    case(4, "360702-rsj", "labour_social_security", replied=2),           # on time
    case(5, "360702-rsj", "labour_social_security", received=T0 + timedelta(days=15), due_days=10),  # not yet due
    case(6, "360702-rsj", "labour_social_security", received=datetime(2026, 11, 2, tzinfo=SH)),  # other month
]
NOW = datetime(2026, 11, 3, 12, tzinfo=SH)


def test_figures_add_up(tmp_path):
    start, end = period("2026-10", None, None, SH)
    assert (start, end) == (datetime(2026, 10, 1, tzinfo=SH), datetime(2026, 11, 1, tzinfo=SH))
    rep = build(CASES, start, end, NOW)
    cgj, rsj, total = rep.offices["360703-cgj"], rep.offices["360702-rsj"], rep.total
    assert (cgj.received, cgj.messages, cgj.replied, cgj.on_time, cgj.overdue) == (3, 5, 2, 1, 2)
    assert (rsj.received, rsj.replied, rsj.on_time, rsj.overdue) == (2, 1, 1, 0)
    assert cgj.satisfaction == 3.5 and rsj.satisfaction is None
    assert (total.received, total.replied, total.on_time, total.overdue) == (5, 3, 2, 2)
    for f in ("received", "replied", "on_time", "overdue", "messages"):
        assert sum(getattr(r, f) for r in rep.offices.values()) == getattr(total, f)
        assert sum(getattr(r, f) for r in rep.categories.values()) == getattr(total, f)
    assert [c["tracking_no"] for c in rep.overdue] == ["GZ20261012-000002", "GZ20261012-000003"]
    assert abs(total.reply_rate - 0.6) < 1e-9 and abs(total.on_time_rate - 2 / 3) < 1e-9

    text = rep.table()
    assert "南康区城市管理局" in text and "overdue: 2" in text
    rep.write_csv(tmp_path / "r.csv")
    rows = list(csv.DictReader((tmp_path / "r.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert {r["group"] for r in rows} == {"office", "category", "total"}
    assert next(r for r in rows if r["key"] == "360703-cgj")["overdue"] == "2"
    rep.write_html(tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2 and "南康区城市管理局" in page and "GZ20261012-000003" in page


def test_period_from_to_is_inclusive():
    start, end = period(None, "2026-10-01", "2026-10-07", SH)
    assert end - start == timedelta(days=7)


def test_the_text_table_lines_up_in_a_terminal():
    """Chinese characters take two columns: padding by characters pushed every row with a
    Chinese name out of line with the header."""
    rep = build(CASES + [case(7, "360703-cgj", None)], *period("2026-10", None, None, SH), NOW,
                category_names(load().settings))
    lines = rep.table().splitlines()
    table = lines[lines.index("by office") + 1 : lines.index("overdue: 3")]
    table = [line for line in table if line and line != "by category"]  # headers, rows and the total
    assert any("南康区城市管理局 (360703-cgj)" in line for line in table)
    assert any("劳动和社会保障 (labour_social_security)" in line for line in table)  # names from categories.yaml
    assert any(line.startswith("未分类 (unknown) ") for line in table)
    assert {display_width(line) for line in table} == {display_width(table[0])}
    overdue = [line for line in lines if line.startswith("  GZ")]
    assert len({display_width(line[: line.index(" due ")]) for line in overdue}) == 1


def test_pad_counts_wide_characters_twice_and_cuts_within_the_width():
    assert display_width("城管 ok") == 7 and display_width("ＡＢ") == 4
    assert pad("城管", 6) == "城管  " and pad("ab", 3) == "ab "
    assert pad("城市管理局", 5) == "城市 " and display_width(pad("城市管理局", 5)) == 5
    assert pad("", 2) == "  "
