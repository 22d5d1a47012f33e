import json
from pathlib import Path

from wenzheng.sinks.repeats import Deduper, similarity

PAIRS = Path(__file__).resolve().parents[2] / "sinks" / "data" / "repeat_pairs.jsonl"


def _measure(threshold: float) -> tuple[float, float]:
    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines()]
    hits = [(similarity(r["a"], r["b"]) >= threshold, r["duplicate"]) for r in rows]
    tp = sum(1 for h, d in hits if h and d)
    fp = sum(1 for h, d in hits if h and not d)
    return tp / max(1, tp + fp), tp / sum(1 for _, d in hits if d)


def test_precision_first_on_the_labelled_pairs():
    precision, recall = _measure(Deduper().threshold)
    assert precision == 1.0 and recall >= 0.45, (precision, recall)
    precision, recall = _measure(0.4)
    assert precision >= 0.8 and recall >= 0.8, (precision, recall)


def test_a_county_name_before_a_town_is_not_part_of_it():
    from wenzheng.sinks.repeats import normalise, parts

    for text in ("赣县区梅林镇某工地拖欠工资", "于都县罗坳镇低保名单有问题"):
        places, _ = parts(normalise(text))
        assert places["town"] <= {"梅林镇", "罗坳镇"}, places
    assert similarity("赣县区梅林镇某工地拖欠农民工工资三个月", "梅林镇那个工地欠农民工三个月工资") > 0


def test_places_of_one_kind_that_differ_never_match():
    assert similarity("南康区唐江镇幸福路的路灯坏了一个星期了", "南康区唐江镇解放路的路灯坏了一个星期了") == 0
    assert similarity("贡江镇长征大道28号小区停水两天了", "贡江镇长征大道56号小区停水两天了") == 0
    assert similarity("梅林镇某工地拖欠农民工工资三个月", "茅店镇某工地拖欠农民工工资三个月") == 0


def test_match_picks_the_best_candidate_over_the_threshold():
    d = Deduper()
    cands = [("A", "南康区唐江镇幸福路的井盖丢了，晚上很危险"), ("B", "唐江镇幸福路路灯坏了好几天，晚上很黑"),
             ("C", "唐江镇幸福路的路灯坏了")]
    key, score = d.match("你好，我反映一下唐江镇幸福路那边路灯坏了，晚上很黑", cands)
    assert key == "B" and score >= d.threshold
    assert d.match("章贡区某小学食堂饭菜变质", cands) is None
