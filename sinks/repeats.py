"""Repeated reports (重复交办): is a new message the same problem as an open case?

The ledger asks only about open cases of the same jurisdiction within a time window;
this module decides whether two texts report the same problem at the same place.

A text is normalised (NFKC, traditional → simplified, masked personal data, @/#/URLs,
greetings and fillers dropped, punctuation kept as clause breaks) and read for

* its **places** by kind — town (镇/乡/街道), road, estate (小区, 花园, 名都 …), venue
  (市场, 医院, 小学 …), village — and its **numbers** (28号, 3栋, 2单元, 5组, 302室);
* its **problem types** from a small lexicon of what citizens report (停水/没水/断水 are
  one type, 停电/没电 another, 路灯, 井盖, 油烟, 噪音, 垃圾, 积水, 欠薪 …);
* the character bigrams of the rest (the problem in the citizen's own words).

Two texts are the same problem only when all of these hold:

1. **No place conflict**: where both name a place of one kind, one's name appears in the
   other's text (唐江幸福路 and 幸福路 agree; 幸福路 and 解放路 do not); where both give a
   number of one kind, it is the same (3栋 is not 5栋).
2. **A shared anchor**: a road, estate, venue or village of one appears in the other's
   text (a town too, when one of them names nothing more specific: 龙岭镇工业园 and
   龙岭工业园). A text that names no place at all (全县的低保评定不公平) never repeats
   a specific one.
3. **The same problem**: when both have problem types, they share one (停水 is never
   停电), and then the score is 0.6 + 0.4 × the bigram overlap; when one or both have
   none, the score is the bigram overlap coefficient alone.

The threshold (0.6) and the rules were set on ``sinks/data/repeat_pairs.jsonl`` (46
pairs written by the team) and checked on ``repeat_pairs_holdout.jsonl`` (100 pairs
written apart from this code: 50 repeats and 50 hard negatives of five kinds), precision
first — a false merge hides a citizen's case, a missed one costs a clerk a second look.
The figures are in tests/sinks/test_repeats.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

_MASKED = re.compile(r"\d{3}\*{4}\d{4}|\d{6}\*{8}[\dXx]{4}|\d{6}\*{12}|\[[^\]]{1,6}\]|[*＊]{2,}")
_FILLERS = re.compile("市民来电反映|市民来电|来电反映|来电人|市民|坐席|网友|你好|您好|喂|请问|麻烦|谢谢|感谢|领导|"
                      "我想|反映一下|反映个|反映|投诉一下|就是|然后|一下|嗯|啊|呢|吧|哦")
_NOISE = re.compile(r"[\W_]+", re.UNICODE)
_TAG = re.compile(r"#[^#]{1,30}#|@\S{1,30}|https?://\S+")


def normalise(text: str) -> str:
    """The form the ledger keeps and compares: clauses separated by single spaces."""
    from wenzheng.classify.text import clean  # NFKC, simplified, lower-cased

    t = clean(text or "")
    t = _TAG.sub(" ", _MASKED.sub(" ", t))
    t = _FILLERS.sub(" ", t)
    return _NOISE.sub(" ", t).strip().lower()


_NOT_PLACE = "的了在和是有那这个我们你他她它都也还又被把给从到向对跟与及或很太最就才没不上里边旁县区市镇乡某近问通全各本邻条"
# Words that end like a place and name none: a road in general, a county road, 城乡 (居民医保).
_GENERIC = tuple("公路 马路 道路 县道 国道 省道 村道 小路 大路 水泥路 城乡 下乡 农村 乡村".split())
_KINDS = {  # suffix → kind
    "县": "county", "市": "county", "区": "county",
    "城区": "area", "新区": "area", "园区": "area", "开发区": "area", "工业园": "area",
    "镇": "town", "乡": "town", "街道": "town",
    "大道": "road", "大街": "road", "路": "road", "街": "road", "巷": "road",
    "小区": "estate", "花园": "estate", "社区": "estate", "名都": "estate", "名城": "estate", "华府": "estate",
    "公馆": "estate", "家园": "estate", "新村": "estate", "新城": "estate", "公寓": "estate", "花苑": "estate",
    "国际": "estate", "楼盘": "estate",
    "村": "village",
    "农贸市场": "venue", "菜市场": "venue", "市场": "venue", "大桥": "venue", "桥": "venue", "广场": "venue",
    "中心小学": "venue", "小学": "venue", "中学": "venue", "幼儿园": "venue", "学校": "venue", "医院": "venue",
    "卫生院": "venue", "派出所": "venue", "工地": "venue", "公园": "venue", "体育馆": "venue", "图书馆": "venue",
    "车站": "venue", "公交站": "venue", "超市": "venue", "银行": "venue", "养猪场": "venue", "养鸭场": "venue",
}
_SUFFIX = "|".join(sorted(_KINDS, key=len, reverse=True))
_PLACE = re.compile(rf"([^{_NOT_PLACE}\W\d]{{1,5}}?)({_SUFFIX})")
_NUMBER = re.compile(r"(\d+)\s*(号楼|栋|幢|单元|组|室|号)")
_NUMBER_KIND = {"号楼": "building", "栋": "building", "幢": "building", "单元": "unit", "组": "group",
                "室": "room", "号": "number"}
_SPECIFIC = ("road", "estate", "venue", "village")

# What citizens report, by type: a text may have several. Two texts whose types are all
# different report different problems, whatever else they share.
_PROBLEMS = {
    "water": "停水 没水 断水 来水 水压 没有水 供水",
    "water_quality": "水质 发黄 黄水 浑浊 水有异味",
    "power": "停电 没电 断电 跳闸 变压器 电压 供电",
    "gas": "燃气 天然气 煤气",
    "streetlight": "路灯 灯不亮 景观灯",
    "manhole": "井盖 窨井",
    "noise": "噪音 噪声 太吵 吵得 吵闹 吵死 打桩 广场舞 音响 喇叭 ktv 施工",
    "fumes": "油烟",
    "garbage": "垃圾",
    "flooding": "积水 内涝 被淹 就淹 淹了 水深",
    "sewage": "化粪池 下水道 污水 倒灌 排污",
    "elevator": "电梯",
    "traffic": "堵车 拥堵 堵得 红绿灯 信号灯",
    "road": "路面 塌陷 塌方 大坑 坑洼 坑 破损 压烂 烂路 回填",
    "wages": "工资 工钱 欠薪 拖欠 包工头",
    "food": "过期 变质 食品 饭菜 食堂 缺斤短两",
    "dogs": "流浪狗 狗",
    "toilet": "厕所",
    "stalls": "占道 摆摊 摊贩 流动摊",
    "parking": "乱停 停车",
    "fees": "收费 乱收费 多收",
    "building": "违建 违章 搭建",
    "welfare": "低保 救助 补贴",
    "medical": "挂号 专家号 医保",
    "school_bus": "校车",
}
_PROBLEM_RE = re.compile("|".join(sorted({w for ws in _PROBLEMS.values() for w in ws.split()}, key=len, reverse=True)))
_PROBLEM_OF = {w: p for p, ws in _PROBLEMS.items() for w in ws.split()}
_HAN = re.compile(r"[\u4e00-\u9fff]+")
_STOP_GRAMS = frozenset("一个 两天 三天 几天 好久 很久 一直 已经 晚上 每天 现在 我们 他们 这里 那里 希望 能不 不能 问题 "
                        "情况 严重 处理 解决 没有 什么 时候 怎么 为什 还是 可以 不是 知道 相关 部门 尽快 请求 到底 有没 没人".split())


ADDRESS_KEY = re.compile(r"§([0-9a-f]{12})")


class Parsed:
    __slots__ = ("norm", "places", "stems", "numbers", "addresses", "problems", "grams")

    def __init__(self, norm: str):
        # A case's norm ends with the keyed fingerprints of the home addresses its masked
        # text hides (§a3f0…): different ones are different households.
        self.addresses = frozenset(ADDRESS_KEY.findall(norm))
        norm = ADDRESS_KEY.sub(" ", norm).strip() if self.addresses else norm
        self.norm = norm
        self.places: dict[str, set[str]] = {}
        # What must appear in another text for it to name the same place: the name without
        # its suffix (幸福 of 幸福路), or the whole name where that leaves one character.
        self.stems: dict[str, set[str]] = {}
        for m in _PLACE.finditer(norm):
            name, kind = m.group(1) + m.group(2), _KINDS[m.group(2)]
            if kind != "county" and not name.endswith(_GENERIC):  # the ledger compares within one county
                self.places.setdefault(kind, set()).add(name)
                self.stems.setdefault(kind, set()).add(m.group(1) if len(m.group(1)) >= 2 else name)
        self.numbers: dict[str, set[str]] = {}
        for m in _NUMBER.finditer(norm):
            self.numbers.setdefault(_NUMBER_KIND[m.group(2)], set()).add(m.group(1))
        rest = _NUMBER.sub(" ", _PLACE.sub(" ", norm))
        self.problems = {_PROBLEM_OF[w] for w in _PROBLEM_RE.findall(rest)}  # not the 坑 of 银坑镇
        self.grams = frozenset(g for run in _HAN.findall(rest) for i in range(len(run) - 1)
                               if (g := run[i : i + 2]) not in _STOP_GRAMS)

    def specific(self) -> bool:
        return any(self.places.get(k) for k in _SPECIFIC)


@lru_cache(maxsize=20_000)
def parts(norm: str) -> Parsed:
    """A normalised text parsed once: an open case is compared with every new message of its
    county, and parsing it again each time was half the ledger's cost per message."""
    return Parsed(norm)


def _named_in(stems: Iterable[str], text: str) -> bool:
    return any(stem in text for stem in stems)


def score(a: Parsed, b: Parsed) -> float:
    """0 for a place or number conflict, no shared anchor, or different problems; else the
    strength of the match (see the module's rules)."""
    for kind in a.stems.keys() & b.stems.keys():
        if not (_named_in(a.stems[kind], b.norm) or _named_in(b.stems[kind], a.norm)):
            return 0.0
    for kind in a.numbers.keys() & b.numbers.keys():
        if not a.numbers[kind] & b.numbers[kind]:
            return 0.0
    if a.addresses and b.addresses and not a.addresses & b.addresses:
        return 0.0
    kinds = _SPECIFIC if a.specific() and b.specific() else ("town", *_SPECIFIC)
    anchored = any(_named_in(a.stems.get(k, ()), b.norm) or _named_in(b.stems.get(k, ()), a.norm)
                   for k in kinds)
    if not anchored:
        return 0.0
    overlap = len(a.grams & b.grams) / min(len(a.grams), len(b.grams)) if a.grams and b.grams else 0.0
    if a.problems and b.problems:
        return 0.6 + 0.4 * overlap if a.problems & b.problems else 0.0
    return overlap


def similarity(a: str, b: str) -> float:
    return score(Parsed(normalise(a)), Parsed(normalise(b)))


class Deduper:
    def __init__(self, *, threshold: float = 0.6):
        self.threshold = threshold

    def match(self, text: str, candidates: Iterable[tuple[object, str]], *, normalised: bool = False):
        """The best candidate ``(key, score)`` at or above the threshold, or None. Scores a
        tenth apart or less count as equal; then the candidate sharing more of the text wins
        (the overlap coefficient favours a short candidate)."""
        mine = parts(text if normalised else normalise(text))
        best, best_rank = None, None
        for key, other in candidates:
            theirs = parts(other if normalised else normalise(other or ""))
            s = score(mine, theirs)
            rank = (round(s, 1), len(mine.grams & theirs.grams), s)
            if s >= self.threshold and (best_rank is None or rank > best_rank):
                best, best_rank = (key, s), rank
        return best
