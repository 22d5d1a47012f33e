"""Repeated reports (重复交办): is a new message the same problem as an open case?

Texts are normalised (NFKC, traditional → simplified, masked personal data, @/#/URLs,
greetings and fillers, punctuation removed) and split into **places** by kind — town,
road, estate, venue, house number (county names are ignored: the ledger compares within
one jurisdiction) — and the **problem**: jieba words of the rest, without stop words.
Two texts that name different places of one kind (唐江镇幸福路 vs 解放路, 28号 vs 56号)
score 0; otherwise the score is the overlap coefficient of the problem words,
|A∩B| / min(|A|,|B|), so a short hotline summary inside a long WeChat message still
matches.

The ledger only asks about cases of the same jurisdiction within a time window. The
threshold (0.6) was chosen on ``sinks/data/repeat_pairs.jsonl`` (46 pairs written by the
team, 24 duplicates, hard negatives of both kinds) for precision first: a false merge
hides a citizen's case, a missed one costs a clerk a second look. Measured there
(tests/sinks/test_repeats.py): threshold 0.4 → precision 0.83, recall 0.83; 0.5 → 0.80,
0.67; 0.55 to 0.65 → precision 1.00 (11/11), recall 0.46. Matching one message against 2,000
candidates takes ~130 ms (each candidate is re-cut). Character bigrams over the whole text (tried first)
scored same-place-other-problem pairs above true repeats (precision ≤ 0.63).
"""


from __future__ import annotations

import re
from collections.abc import Iterable

_MASKED = re.compile(r"\d{3}\*{4}\d{4}|\d{6}\*{8}[\dXx]{4}|\[[^\]]{1,6}\]|[*＊]{2,}")
_FILLERS = re.compile("你好|您好|喂|请问|麻烦|谢谢|感谢|领导|我想|反映一下|反映个|反映|投诉一下|就是|然后|一下|嗯|啊|呢|吧|哦")
_NOISE = re.compile(r"[\W_]+", re.UNICODE)
_TAG = re.compile(r"#[^#]{1,30}#|@\S{1,30}|https?://\S+")


def normalise(text: str) -> str:
    from wenzheng.classify.text import clean  # NFKC, simplified, lower-cased

    t = clean(text or "")
    t = _TAG.sub(" ", _MASKED.sub(" ", t))
    t = _FILLERS.sub("", t)
    return _NOISE.sub("", t).lower()


_NOT_PLACE = "的了在和是有那这个我们你他她它都也还又被把给从到向对跟与及或很太最就才没不上里边旁"
_KINDS = {  # suffix → kind; places of one kind that differ mean different problems
    "县": "county", "市": "county", "区": "county",
    "城区": "area", "新区": "area", "园区": "area", "开发区": "area",
    "镇": "town", "乡": "town", "街道": "town",
    "大道": "road", "大街": "road", "路": "road", "街": "road", "巷": "road",
    "小区": "estate", "花园": "estate", "村": "estate", "社区": "estate",
    "市场": "venue", "大桥": "venue", "桥": "venue", "广场": "venue", "小学": "venue", "中学": "venue",
    "学校": "venue", "医院": "venue", "工地": "venue", "公园": "venue", "养猪场": "venue", "养鸭场": "venue",
}
_SUFFIX = "|".join(sorted(_KINDS, key=len, reverse=True))
# A place's own name never holds 县, 区, 市, 镇 or 乡: "赣县区梅林镇" is 赣县 (区) and 梅林镇,
# not 区梅林镇 (which differed from a plain 梅林镇 and hid the repeat).
_PLACE = re.compile(rf"(\d+)号|([^{_NOT_PLACE}县区市镇乡\W\d]{{1,5}}?)({_SUFFIX})")


def parts(norm: str) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
    """(places by kind — county, town, road, estate, venue, number — and the problem's bigrams:
    the text without its places)."""
    places: dict[str, set[str]] = {}
    for m in _PLACE.finditer(norm):
        kind = "number" if m.group(1) else _KINDS[m.group(3)]
        places.setdefault(kind, set()).add(m.group(0))
    rest = _PLACE.sub(" ", norm)
    words = {w for w in _cut(rest) if len(w) > 1 and w not in _STOP or w in _KEY_CHARS}
    return {k: frozenset(v) for k, v in places.items()}, frozenset(words)


_STOP = frozenset("旁边 门口 附近 对面 那边 这边 一个 两天 三天 好久 很久 一直 已经 晚上 每天 现在 我们 他们 这里 那里 "
                  "希望 能不能 问题 情况 严重 处理 解决 没有 什么 时候 怎么 为什么 还是 可以 不是 知道".split())
_KEY_CHARS = frozenset("水电气灯")  # 停水 / 停电 cut as 停 + 水: one character that decides the problem


_tokenizer = None


def _cut(text: str) -> list[str]:
    """jieba words from a tokenizer of our own: the classifier teaches the shared one the
    city's place names, and a repeat must not depend on which model a process loaded."""
    global _tokenizer
    if _tokenizer is None:
        import logging

        import jieba

        jieba.setLogLevel(logging.WARNING)
        _tokenizer = jieba.Tokenizer()
    return [w for w in _tokenizer.lcut(text, HMM=False) if w.strip()]


def score(a: tuple, b: tuple) -> float:
    """0 when the two name different places of one kind (another town, road, estate, venue
    or house number); else the overlap coefficient of the problems' bigrams."""
    (pa, wa), (pb, wb) = a, b
    for kind in pa.keys() & pb.keys():
        if kind != "county" and not pa[kind] & pb[kind]:
            return 0.0
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / min(len(wa), len(wb))


def similarity(a: str, b: str) -> float:
    return score(parts(normalise(a)), parts(normalise(b)))


class Deduper:
    def __init__(self, *, threshold: float = 0.6):
        self.threshold = threshold

    def match(self, text: str, candidates: Iterable[tuple[object, str]], *, normalised: bool = False):
        """The best candidate ``(key, score)`` at or above the threshold, or None."""
        mine = parts(text if normalised else normalise(text))
        best = None
        for key, other in candidates:
            s = score(mine, parts(other if normalised else normalise(other or "")))
            if s >= self.threshold and (best is None or s > best[1]):
                best = (key, s)
        return best
