"""Jurisdiction from the place names in the text: counties, townships, streets and
well-known places resolve to their county; the city's own name to the city."""

from __future__ import annotations

import re

from wenzheng.config import UNKNOWN, Settings


class PlaceResolver:
    def __init__(self, settings: Settings):
        self.city = settings.city.code
        names: dict[str, str] = {}
        for j in settings.gazetteer:
            for name in (j.name, *j.aliases, *j.places):
                names.setdefault(name, j.code)
            for t in j.townships:
                names.setdefault(t.name, j.code)
        for code, places in settings.places.items():
            for name in places:
                names.setdefault(name, code)
        for name in (settings.city.name, *settings.city.aliases):
            names.setdefault(name, self.city)
        self.names = {n: c for n, c in names.items() if len(n) >= 2}
        ordered = sorted(self.names, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def words(self) -> list[str]:
        return list(self.names)

    def resolve(self, text: str) -> tuple[str, str | None]:
        """(code, the name that decided it) — the county named most often wins; else the city."""
        if not self._pattern or not text:
            return UNKNOWN, None
        counts: dict[str, int] = {}
        first: dict[str, str] = {}
        for m in self._pattern.finditer(text):
            code = self.names[m.group(0)]
            counts[code] = counts.get(code, 0) + 1
            first.setdefault(code, m.group(0))
        counties = {c: n for c, n in counts.items() if c != self.city}
        if counties:
            best = max(counties, key=lambda c: (counties[c], -text.find(first[c])))
            return best, first[best]
        if self.city in counts:
            return self.city, first[self.city]
        return UNKNOWN, None
