import json
from pathlib import Path

from wenzheng.sinks.repeats import Deduper, similarity

DATA = Path(__file__).resolve().parents[2] / "sinks" / "data"
PAIRS, HOLDOUT = DATA / "repeat_pairs.jsonl", DATA / "repeat_pairs_holdout.jsonl"


def _measure(threshold: float, pairs: Path = PAIRS) -> tuple[float, float]:
    rows = [json.loads(line) for line in pairs.read_text(encoding="utf-8").splitlines()]
    hits = [(similarity(r["a"], r["b"]) >= threshold, r["duplicate"]) for r in rows]
    tp = sum(1 for h, d in hits if h and d)
    fp = sum(1 for h, d in hits if h and not d)
    return tp / max(1, tp + fp), tp / sum(1 for _, d in hits if d)


def test_precision_first_on_the_labelled_pairs():
    """Measured: the team's 46 pairs precision 1.00, recall 0.88; the 100 pairs written apart
    from this code (50 repeats, 50 hard negatives) precision 1.00, recall 0.54."""
    precision, recall = _measure(Deduper().threshold)
    assert precision == 1.0 and recall >= 0.85, (precision, recall)
    precision, recall = _measure(Deduper().threshold, HOLDOUT)
    assert precision == 1.0 and recall >= 0.5, (precision, recall)


def test_what_keeps_two_reports_apart():
    same = "于都县贡江镇金桥国际小区3栋电梯停运一周了，老人上下楼很困难"
    assert similarity(same, "金桥国际3栋的电梯还是坏的，一个礼拜了没人修") >= 0.6  # the repeat
    assert similarity(same, same.replace("3栋", "5栋")) == 0  # another building
    assert similarity("贡江镇锦绣江南小区停水了", "贡江镇锦绣江南小区停电了") == 0  # another problem
    assert similarity("宁都县的低保评定不公平，有车有房也能评上", "宁都县梅江镇某村低保名单不公平，有车有房也评上") == 0
    assert similarity("长宁镇新城区燃气管道漏气", "长宁镇老城区燃气管道漏气") == 0  # another part of town
    assert similarity("银坑镇汽车站的班车取消了", "银坑镇汽车站门口黑车乱要价") < 0.6  # 坑 of 银坑 is no pothole


def test_a_county_name_before_a_town_is_not_part_of_it():
    from wenzheng.sinks.repeats import normalise, parts

    for text in ("赣县区梅林镇某工地拖欠工资", "于都县罗坳镇低保名单有问题"):
        places = parts(normalise(text)).places
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


def test_masked_neighbours_stay_two_cases_by_their_address_fingerprints():
    from wenzheng.core.privacy import address_keys, mask_text
    from wenzheng.sinks.cases import _case_norm
    from wenzheng.sinks.repeats import Deduper

    a, b = "章贡区幸福路12号家里停水两天了", "章贡区幸福路14号家里停水两天了"
    assert mask_text(a) == mask_text(b)  # masking alone can no longer tell the households apart

    def norm(text: str) -> str:
        return _case_norm("", mask_text(text), address_keys(text, b"k"))

    dedupe = Deduper()
    assert dedupe.match(norm(a), [("neighbour", norm(b))], normalised=True) is None
    assert dedupe.match(norm(a), [("same", norm("幸福路12号停水两天了，还没来水"))], normalised=True)[0] == "same"
    assert "12" not in norm(a) and "§" in norm(a)  # a fingerprint, not the number
