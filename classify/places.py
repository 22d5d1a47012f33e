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
* where no name is found, the words that name the city on its own platform
  (市里, 市区, 我市, 市公安局, 市图书馆 …, not the 市 of 城市 or 超市) give the city.

The text is expected in ``text.clean`` form (simplified, half-width): the
resolver converts it itself when asked to (``resolve(text, clean=True)``).
"""

from __future__ import annotations

import re

from wenzheng.config import UNKNOWN, Settings

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

STRONG, COUNTY_SHORT, SHORT = 0, 1, 2


class PlaceResolver:
    def __init__(self, settings: Settings, *, township_aliases: str = "guarded", city_cues: bool = True):
        """``township_aliases``: ``guarded`` (default), ``never`` or ``always``; ``city_cues``: whether
        市里, 市区, 市公安局 … name the city (both switches are there for measurement)."""
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
        ordered = sorted(self.names, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def words(self) -> list[str]:
        """Names for jieba's user dictionary: only those that are words in their own right.

        Township short names are left out: ``高兴`` or ``水东`` as dictionary words
        would split ``自来水东边`` wrongly, and the full names carry them.
        """
        return [n for n, k in self.kind.items() if k != SHORT]

    def matches(self, text: str) -> list[tuple[str, str, int]]:
        """(name, code, position) of every place name that counts in ``text``."""
        out = []
        if not self._pattern or not text:
            return out
        pos, search = 0, self._pattern.search
        while (m := search(text, pos)) is not None:
            name, end = m.group(0), m.end()
            k = self.kind[name]
            if k == SHORT and not _PLACE_AFTER.match(text, end):
                pos = m.start() + 1
                continue
            if k == COUNTY_SHORT and _ROAD_AFTER.match(text, end):
                pos = end
                continue
            out.append((name, self.names[name], m.start()))
            pos = end
        return out

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


def _canon(name: str) -> str:
    from .text import clean

    return clean(str(name)).strip()
