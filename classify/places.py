"""Jurisdiction from the place names in the text: counties, townships, streets,
villages and well-known places resolve to their county; the city's own names to
the city.

What counts as a place name (measured on the corpus, see the classifier's notes):

* full names of counties (章贡区), townships and streets (唐江镇, 解放街道) and
  villages (…村), and the well-known places of the configuration, anywhere;
* a county's short name (章贡, 于都) anywhere except as the first part of a
  road's name (兴国路, 赣州大道 name streets, not counties);
* a township's short name (解放, 长征, 高兴, 长沙 …: often a common word or another
  city) only where a place word follows it (镇, 乡, 街道, 村, 圩, 社区 …), so
  ``很高兴为您服务`` and ``解放路`` decide nothing;
* a name that the gazetteer gives to places in two counties decides nothing;
* a village or community (莲塘村, 西津路社区, 西津路居委会) resolves to its county when no
  other county has one of that name and no county or township name inside it points
  elsewhere; a name several counties share (莲塘村) decides nothing, unless a township of
  one of them is named right before it (黄陂莲塘村); a village's short name (黄坑 for 黄坑村,
  only where the gazetteer gives one) only before a 组 or a "there" (黄坑三组, 黄坑那边).
  Villages never outrank the gazetteer's other names, and are no words for jieba;
* where no name is found, the words that name the city on its own platform
  (市里, 市区, 我市, 市公安局, 市图书馆 …, not the 市 of 城市 or 超市) give the city.

The text is expected in ``text.clean`` form (simplified, half-width): the
resolver converts it itself when asked to (``resolve(text, clean=True)``).
"""

from __future__ import annotations

import logging
import re
from functools import cache

from wenzheng.config import UNKNOWN, Settings
from wenzheng.config.gazetteer import jieba_words

logger = logging.getLogger(__name__)

# After a short name, the words that make it a place: an administrative unit, a
# market town (圩), or a "there" (那边, 一带)…
# …or a township's own institutions (王母渡卫生院, 湖江派出所, 九堡供电所), or a stretch of
# road (江口那段国道).
_PLACE_AFTER = re.compile(r"(?:镇|乡|街道|街办|村|圩|社区|片区|辖区|境内|一带|那边|这边|那里|这里|附近|周边"
                          r"|派出所|卫生院|供电所|财政所|司法所|敬老院|中心小学|中学|政府|农贸市场|那段|这段)")
# After a short name, the words that make it part of a road's name.
_ROAD_AFTER = re.compile(r"(?:[东西南北中]?路(?![灯口面段边况费基网线由过])|大道|大街|街(?![道办])|巷|弄|隧道)")

# Words that name the city without its name, on the city's own platform: 市里, 市区,
# 我市, 市公安局, 市图书馆 … but not the 市 of 城市, 超市, 夜市, 菜市场, 上市 or 都市.
_CITY_CUE = re.compile(
    r"(?<![城超夜门集菜股上街花黑楼都])"
    r"(?:我市|本市|全市|市里|市区|市中心|市级|市政府|市委|市直"
    r"|市[\u4e00-\u9fff]{1,4}?(?:局|委员会|办公室|支队|中心|医院|馆))"
)

# After a village's short name: one of its groups (村民小组) or a "there".
_VILLAGE_AFTER = re.compile(r"(?:[一二三四五六七八九十\d]{1,3}组|小组|那边|这边|那里|这里|附近|周边|一带|境内|片区)")
# Village names too generic to tell one place (圩镇社区, 广场社区, 东街社区, 新街村).
_GENERIC = re.compile(r"^(?:[东西南北中新老上下前后]?[街门圩]|圩镇|广场|矿区|新区|城区|城关|中心|工业园)$")

STRONG, COUNTY_SHORT, SHORT, VILLAGE, VILLAGE_SHORT, SHARED = range(6)


class PlaceResolver:
    # Defaults for resolvers pickled with a model before villages were known.
    near: dict[str, dict[str, str]] = {}
    _starts: dict[str, tuple[int, ...]] | None = None

    def __init__(self, settings: Settings, *, township_aliases: str = "guarded", city_cues: bool = True,
                 villages: bool = True):
        """``township_aliases``: ``guarded`` (default), ``never`` or ``always``; ``city_cues``: whether
        市里, 市区, 市公安局 … name the city; ``villages``: whether villages count (the three
        switches are there for measurement)."""
        self.city = settings.city.code
        self.city_cues = city_cues
        found: dict[str, set[str]] = {}
        kind: dict[str, int] = {}

        def add(name: str, code: str, k: int) -> None:
            name = _canon(name)
            if len(name) < 2:
                return
            found.setdefault(name, set()).add(code)
            kind[name] = min(kind.get(name, k), k)

        for j in settings.gazetteer:
            add(j.name, j.code, STRONG)
            for a in j.aliases:
                add(a, j.code, COUNTY_SHORT)
            for p in j.places:
                add(p, j.code, STRONG)
            for t in j.townships:
                add(t.name, j.code, STRONG)
                for other in _renamed(t.name, t.aliases):
                    add(other, j.code, STRONG)
                if township_aliases != "never":
                    for a in t.aliases:
                        add(a, j.code, SHORT if township_aliases == "guarded" else STRONG)
        for code, places in settings.places.items():
            for p in places:
                add(p, str(code), STRONG)
        add(settings.city.name, self.city, STRONG)
        for a in settings.city.aliases:
            add(a, self.city, COUNTY_SHORT)
        # A name shared by two counties decides nothing (the county named beside it does).
        self.names = {n: next(iter(c)) for n, c in found.items() if len(c) == 1}
        self.kind = {n: kind[n] for n in self.names}
        self.ambiguous = sorted(n for n, c in found.items() if len(c) > 1)
        self._starts = _starts(self.kind)
        if villages:
            self._add_villages(settings, set(found))
            self._starts = _starts(self.kind)

    def _add_villages(self, settings: Settings, taken: set[str]) -> None:
        """The villages' names, below every other name: one the gazetteer already has is its
        own (唐江镇), and one holding a county's or township's name that counts (唐江村 holds
        唐江) is that county's as well, so it decides nothing if it is also another's."""
        towns = {t.code: [t.name, *t.aliases] for j in settings.gazetteer for t in j.townships}
        rows = [(j.code, _village_forms(v), towns.get(v.township, [])) for j in settings.gazetteer for v in j.villages]
        canon = _canon_all({n for _, forms, ts in rows for n in [*(f for f, _ in forms), *ts]})
        codes: dict[str, set[str]] = {}
        kind: dict[str, int] = {}
        near: dict[str, dict[str, str]] = {}
        for county, forms, ts in rows:
            for raw, k in forms:
                if (name := canon[raw]) in taken or len(name) < 2:
                    continue
                codes.setdefault(name, set()).add(county)
                kind[name] = min(kind.get(name, k), k)
                beside = near.setdefault(name, {})
                for t in filter(None, map(canon.get, ts)):  # a township name two counties share points nowhere
                    beside[t] = county if beside.get(t, county) == county else ""
        self.near = {}
        for name, where in codes.items():
            where |= {code for _, code, _ in self.matches(name) if code != self.city}
            if len(where) == 1:
                self.names[name], self.kind[name] = next(iter(where)), kind[name]
            elif kind[name] == VILLAGE:  # a short name several share is simply no name
                self.kind[name], self.near[name] = SHARED, near[name]
        self.ambiguous = sorted([*self.ambiguous, *self.near])

    def words(self) -> list[str]:
        """Names for jieba's user dictionary: only those that are words in their own right.

        Township short names are left out: ``高兴`` or ``水东`` as dictionary words
        would split ``自来水东边`` wrongly, and the full names carry them. So are villages:
        4,000 rare names would change how every message is cut, for no place decided.
        """
        return [n for n, k in self.kind.items() if k in (STRONG, COUNTY_SHORT)]

    def matches(self, text: str) -> list[tuple[str, str, int]]:
        """(name, code, position) of every place name that counts in ``text``."""
        out = []
        if self._starts is None:  # a resolver pickled before villages
            self._starts = _starts(self.kind)
        pos = 0
        while (m := self._find(text, pos)) is not None:
            start, name = m
            end, k = start + len(name), self.kind[name]
            if not self._guard_passes(k, text, end) or (k >= VILLAGE and self._split(text, start, end)):
                pos = start + 1
                continue
            pos = end
            if k == COUNTY_SHORT and _ROAD_AFTER.match(text, end):
                continue
            code = self._beside(name, text, start) if k == SHARED else self.names[name]
            if code:
                out.append((name, code, start))
        return out

    def _find(self, text: str, pos: int) -> tuple[int, str] | None:
        """(start, name) of the first name from ``pos`` on, the longest where several start
        there: a dict look-up per length, quicker than a regex of 6,000 names and nothing to
        compile."""
        for i in range(pos, len(text) - 1):
            if name := self._at(text, i):
                return i, name
        return None

    def _at(self, text: str, i: int) -> str | None:
        assert self._starts is not None  # made by __init__, or on the first look-up after unpickling
        for n in self._starts.get(text[i], ()):
            if text[i : i + n] in self.kind:
                return text[i : i + n]
        return None

    @staticmethod
    def _guard_passes(k: int, text: str, end: int) -> bool:
        """A short name counts only before a place word (唐江那边, 黄坑三组)."""
        if k == SHORT:
            return _PLACE_AFTER.match(text, end) is not None
        return k != VILLAGE_SHORT or _VILLAGE_AFTER.match(text, end) is not None

    def _split(self, text: str, start: int, end: int) -> bool:
        """Whether the village name found is no name in this text: its first character ends
        a common word (反映一下杨村委会 is 一下 + 杨村, not 下杨村, another county's village), or a
        township's or county's name that counts ends it (一下杨村卫生院: 杨村镇)."""
        if start and text[start - 1 : start + 1] in _common_pairs() and not self._after_name(text, start):
            return True
        for i in range(start + 1, end - 1):
            name = self._at(text, i)
            if name and i + len(name) >= end and (k := self.kind[name]) < VILLAGE and self._guard_passes(
                k, text, i + len(name)
            ):
                return True
        return False

    def _after_name(self, text: str, start: int) -> bool:
        """Whether a county's or township's name ends at ``start`` (横水 in 横水文昌社区: 水文 is
        a word, but here two names meet)."""
        return any(self.kind.get(text[start - n : start], VILLAGE) < VILLAGE for n in range(2, min(start, 8) + 1))

    def _beside(self, name: str, text: str, start: int) -> str | None:
        """The county of a shared village name whose township is named right before it
        (黄陂莲塘村), else None: the name itself is used up either way."""
        found = {code for town, code in self.near.get(name, {}).items() if code and text.endswith(town, 0, start)}
        return found.pop() if len(found) == 1 else None

    def resolve(self, text: str, *, clean: bool = False) -> tuple[str, str | None]:
        """(code, the name that decided it) — the county named most often wins (the first named
        on a tie, or the city when it is named too); else the city if it is named or cued;
        else ``unknown``."""
        if clean:
            from .text import clean as _clean

            text = _clean(text)
        counts: dict[str, int] = {}
        first: dict[str, str] = {}
        for name, code, _ in self.matches(text):
            counts[code] = counts.get(code, 0) + 1
            first.setdefault(code, name)
        if not counts:
            if self.city_cues and (m := _CITY_CUE.search(text)):
                return self.city, m.group(0)
            return UNKNOWN, None
        counties = [c for c in counts if c != self.city]
        if not counties:
            return self.city, first[self.city]
        best = max(counties, key=lambda c: counts[c])  # max keeps the first on a tie
        tied = sum(1 for c in counties if counts[c] == counts[best]) > 1
        if tied and self.city in counts:  # 中心城区与赣县、南康…: several counties alike, and the city
            return self.city, first[self.city]
        return best, first[best]


def _renamed(name: str, aliases: list[str]) -> list[str]:
    """The township's name under its other rank: many 乡 became 镇 and people keep the old
    name (龙华乡 for 龙华镇), so each is a full name too."""
    for a, b in (("镇", "乡"), ("乡", "镇")):
        if name.endswith(a):
            return [x + b for x in {name[: -len(a)], *aliases} if len(x) >= 2]
    return []


@cache
def _common_pairs() -> frozenset[str]:
    """Two-character words of jieba's dictionary frequent enough (≥ 300: 一下, 以下, 马上, 晚上,
    not 在下 or 住在) that a village name can't start on their second character."""
    try:
        return frozenset(w for w, n in jieba_words() if len(w) == 2 and n >= 300)
    except (OSError, ModuleNotFoundError, ValueError) as exc:  # then villages are found without it
        logger.warning("no jieba dictionary (%s): village names are matched without word boundaries", exc)
        return frozenset()


def _canon(name: str) -> str:
    from .text import clean

    return clean(str(name)).strip()


def _canon_all(names: set[str]) -> dict[str, str]:
    """``_canon`` of many names in one OpenCC call (one call each would take a second)."""
    from .text import clean

    ordered = sorted(names)
    if not ordered:  # "".split("\n") is [""]: one name too many for strict zip
        return {}
    return dict(zip(ordered, (n.strip() for n in clean("\n".join(ordered)).split("\n")), strict=True))


def _village_forms(v) -> list[tuple[str, int]]:
    """(name, kind) of what people call a village: 莲塘村 (its 村委会 starts so), 西津路社区 and
    西津路居委会, old names, and its short name (黄坑) where the gazetteer gives one."""
    forms = []
    for name in (v.name, *(a for a in v.aliases if a.endswith(("村", "社区")))):
        stem = name.removesuffix("社区") if name.endswith("社区") else name.removesuffix("村")
        if len(stem) < 2 or _GENERIC.match(stem):
            continue
        forms.append((name, VILLAGE))
        if name.endswith("社区"):
            forms += [(stem + "居委会", VILLAGE), (stem + "居民委员会", VILLAGE)]
    return forms + [(a, VILLAGE_SHORT) for a in v.aliases if not a.endswith(("村", "社区"))]


def _starts(names) -> dict[str, tuple[int, ...]]:
    """The lengths of the names by their first character, longest first."""
    out: dict[str, set[int]] = {}
    for name in names:
        out.setdefault(name[0], set()).add(len(name))
    return {ch: tuple(sorted(n, reverse=True)) for ch, n in out.items()}
