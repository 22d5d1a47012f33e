"""The office directory, expanded from the department templates of the config.

Every county-level division gets the county departments (its 城管局, 住建局, …)
plus its government office as fallback; the city gets the city departments, the
special offices and the 问政办 triage office. Office ids are
``<jurisdiction code>-<department code>``, which is also the topic suffix
(``wz.office.360703-cgj``).
"""

from __future__ import annotations

from .schema import CATEGORIES, Office, Settings


def build_offices(settings: Settings) -> list[Office]:
    return list(_build(settings))


def _build(settings: Settings):
    cfg = settings.offices
    absent = set(cfg.absent)

    def office(code: str, jname: str, dept, kind="department") -> Office | None:
        oid = f"{code}-{dept.code}"
        if oid in absent:
            return None
        name = cfg.names.get(oid, f"{jname}{dept.name}")
        return Office(id=oid, name=name, jurisdiction=code, categories=tuple(dept.categories), kind=kind)

    levels = [(j.code, j.name, cfg.county_departments) for j in settings.gazetteer]
    levels.append((settings.city.code, settings.city.name, cfg.city_departments))
    for code, name, departments in levels:
        for dept in departments:
            if (o := office(code, name, dept)) is not None:
                yield o
        if (o := office(code, name, cfg.county_government, "government")) is not None:
            yield o
    yield Office(
        id=f"{settings.city.code}-{cfg.triage.code}",
        name=f"{settings.city.name}{cfg.triage.name}",
        jurisdiction=settings.city.code,
        kind="triage",
    )
    yield from cfg.special


class OfficeDirectory:
    """Who handles what, where: the (category, jurisdiction) → office table."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.offices = {o.id: o for o in build_offices(settings)}
        self.triage = next(o for o in self.offices.values() if o.kind == "triage")
        self._table: dict[tuple[str, str], Office] = {}
        self._government: dict[str, Office] = {}
        for o in self.offices.values():
            if o.kind == "government":
                self._government[o.jurisdiction] = o
            if o.kind == "department":
                for category in o.categories:
                    self._table.setdefault((category, o.jurisdiction), o)

    def handling(self, category: str, jurisdiction: str) -> tuple[Office, str]:
        """The lead office and how it was found: the table, the fallback chain, or triage."""
        if (o := self._table.get((category, jurisdiction))) is not None:
            return o, "table"
        if (o := self._government.get(jurisdiction)) is not None:
            return o, "fallback:government"
        return self.triage, "fallback:triage"

    def uncovered(self) -> list[tuple[str, str]]:
        """(category, jurisdiction) pairs no department takes: they fall back."""
        codes = [j.code for j in self.settings.gazetteer] + [self.settings.city.code]
        return [(c, j) for j in codes for c in CATEGORIES if (c, j) not in self._table]
