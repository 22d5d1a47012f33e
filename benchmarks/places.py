"""Place resolution on messages that name only a village, or only a township.

The messages are made here from sentence templates and names sampled from the
configuration's gazetteer (no corpus text is read), each knowing the county it
concerns. A village is *unique* when one county has a village of that name, else
*shared* (莲塘村: twelve counties): a shared name alone must be left to the model or
triage, never guessed. Each set is resolved without villages (the resolver as it was)
and with them, and counted as right, unresolved (unknown or the city) or wrong.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from wenzheng.classify.places import PlaceResolver
from wenzheng.config import UNKNOWN, load

# {v}: the village as people write it; every template names nothing else.
VILLAGE_TEMPLATES = [
    "我们{v}的路灯坏了好几天了，晚上出门很不方便",
    "{v}通往组里的水泥路被拉砂的大车压坏了，希望尽快修",
    "请问{v}今年的农村低保什么时候公示",
    "我家住在{v}，隔壁养猪场臭气熏天，投诉多次没人管",
    "{v}的自来水三天没来了，老人小孩喝水都成问题",
    "反映一下{v}有人在河道里非法采砂",
]
# {t}: a township by its full name (唐江镇) …
TOWNSHIP_TEMPLATES = [
    "{t}的垃圾没人清运，苍蝇到处飞",
    "{t}中学门口天天堵车，接送孩子太难了",
]
# … or its short name (唐江), which counts only before a place word, as people write it.
TOWNSHIP_SHORT_TEMPLATES = [
    "我们{t}那边的信号塔一直没修好",
    "{t}附近的农贸市场占道经营很严重",
    "想咨询一下{t}卫生院能不能办慢性病卡",
]
# {t}{v}: a shared village named after its township.
BESIDE_TEMPLATES = ["我是{t}{v}的村民，村里的水渠堵了", "{t}{v}的危房改造补贴一直没发下来"]


def _villages(settings) -> tuple[list[tuple[str, str, str]], dict[str, set[str]]]:
    """(name, county, township code) of every village, and the counties of each name."""
    rows = [(v.name, j.code, v.township) for j in settings.gazetteer for v in j.villages]
    counties: dict[str, set[str]] = defaultdict(set)
    for name, county, _ in rows:
        counties[name].add(county)
    return rows, counties


def _written(name: str, rnd: random.Random) -> str:
    """How a message names the village: 莲塘村 or 莲塘村委会; 西津路社区 or 西津路居委会."""
    if name.endswith("社区"):
        return rnd.choice([name, name[:-2] + "居委会", name + "居委会"])
    return rnd.choice([name, name, name + "委会"])


def _score(resolver: PlaceResolver, cases: list[tuple[str, str]]) -> dict:
    counts: Counter = Counter()
    for text, county in cases:
        got = resolver.resolve(text)[0]
        counts["unresolved" if got in (UNKNOWN, resolver.city) else "right" if got == county else "wrong"] += 1
    n = len(cases)
    return {"messages": n, **{k: round(counts[k] / n, 3) for k in ("right", "unresolved", "wrong")},
            "wrong_count": counts["wrong"]}


def _cases(settings, rnd: random.Random, n: int) -> dict[str, list[tuple[str, str]]]:
    rows, counties = _villages(settings)
    unique = [r for r in rows if len(counties[r[0]]) == 1]
    shared = [r for r in rows if len(counties[r[0]]) > 1]
    towns = {t.code: (t, j.code) for j in settings.gazetteer for t in j.townships}

    def villages(sample):
        return [(rnd.choice(VILLAGE_TEMPLATES).format(v=_written(name, rnd)), county) for name, county, _ in sample]

    beside = []
    for name, county, town in rnd.sample([r for r in shared if r[2]], n // 4):
        t = towns[town][0]
        where = rnd.choice([t.name, *t.aliases])
        beside.append((rnd.choice(BESIDE_TEMPLATES).format(t=where, v=name), county))
    township = []
    for t, county in rnd.sample(list(towns.values()), min(n, len(towns))):
        where = rnd.choice([t.name, *t.aliases])
        templates = TOWNSHIP_TEMPLATES + TOWNSHIP_SHORT_TEMPLATES if where == t.name else TOWNSHIP_SHORT_TEMPLATES
        township.append((rnd.choice(templates).format(t=where), county))
    return {
        "village_unique": villages(rnd.sample(unique, n * 3 // 5)),
        "village_shared": villages(rnd.sample(shared, n * 2 // 5)),
        "village_shared_after_its_township": beside,
        "township": township,
    }


def run(n: int = 200, seed: int = 7) -> dict:
    settings = load().settings
    if not any(j.villages for j in settings.gazetteer):
        return {"error": "the configuration has no villages.tsv"}
    rows, counties = _villages(settings)
    cases = _cases(settings, random.Random(seed), n)
    before, after = PlaceResolver(settings, villages=False), PlaceResolver(settings)
    out: dict = {
        "villages": len(rows),
        "names_one_county": sum(1 for c in counties.values() if len(c) == 1),
        "names_several_counties": sum(1 for c in counties.values() if len(c) > 1),
    }
    for key, items in cases.items():
        out[key] = {"without_villages": _score(before, items), "with_villages": _score(after, items)}
    return out
