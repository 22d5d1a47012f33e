"""Routing: which office handles a classified message, and why.

In order: keyword rules of the config (a city's 归口 rules win over the model);
then triage when the category is unknown or below the confidence threshold;
then the (category, jurisdiction) table, falling back to the county government
office, then to the city 问政办's triage queue. Every decision records the rule
that made it, the model version and the configuration's hash, for audits.
"""

from __future__ import annotations

from datetime import datetime

from wenzheng.config import UNKNOWN, LoadedConfig, OfficeDirectory

from .deadlines import deadlines
from .workcal import WorkCalendar


class Router:
    def __init__(self, config: LoadedConfig, offices: OfficeDirectory):
        self.config, self.settings, self.offices = config, config.settings, offices
        self.calendar = WorkCalendar.from_settings(config.settings)

    def _office_id(self, office: str, jurisdiction: str) -> str | None:
        """A rule's office: as written, or ``*-<dept>`` as the message county's department."""
        if not office.startswith("*-"):
            return office
        oid = f"{jurisdiction}{office[1:]}"
        return oid if oid in self.offices.offices else None

    def route(self, env: dict) -> dict:
        c = env["classification"]
        text = f"{env.get('title') or ''} {env.get('text') or ''}"
        lead, co, rule, triage = None, [], None, False
        for r in self.settings.routing.rules:
            if r.keywords and not any(k in text for k in r.keywords):
                continue
            if r.category and r.category != c["category"]:
                continue
            if r.jurisdiction and r.jurisdiction != c["jurisdiction"]:
                continue
            found = [self._office_id(o, c["jurisdiction"]) for o in (r.office, *r.co_offices)]
            ids = [i for i in found if i is not None]
            if len(ids) < len(found):
                continue  # a county-relative rule, and the message has no such county office
            lead, co, rule = self.offices.offices[ids[0]], ids[1:], f"rule:{r.name}"
            break
        if lead is None:
            if c["category"] == UNKNOWN or c["category_confidence"] < self.settings.routing.min_confidence:
                lead, rule, triage = self.offices.triage, "triage:low_confidence", True
            elif c["jurisdiction"] == UNKNOWN:
                lead, rule, triage = self.offices.triage, "triage:unknown_jurisdiction", True
            else:
                lead, how = self.offices.handling(c["category"], c["jurisdiction"])
                rule = f"{how}:{c['category']}@{c['jurisdiction']}"
                triage = lead.kind == "triage"
        received = datetime.fromisoformat(env["received_at"])
        return {
            "office_id": lead.id,
            "office_name": lead.name,
            "co_offices": co,
            "triage": triage,
            "rule": rule,
            "model_version": c.get("model_version"),
            "config_hash": self.config.hash,
            "deadlines": deadlines(self.settings.time_limits, self.calendar, c.get("type", ""), env.get("channel", ""), received),
        }
