"""The one table of categories (categories.yaml): validated, defaulted for older
configurations and snapshots, copied to a new city, and read by the report and Open311."""

import hashlib
import json
from types import SimpleNamespace

import pytest
import yaml

from wenzheng.config import CATEGORIES, ConfigError, load, load_snapshot
from wenzheng.config.loader import DEFAULT_DIR
from wenzheng.config.schema import packaged_categories

from .test_loader import copy_default, edit


def test_the_packaged_table_lists_the_twelve_codes_with_names_and_scopes():
    config = load()
    table = config.settings.categories
    assert [c.code for c in table] == list(CATEGORIES)
    assert all(c.name and "、" in c.scope for c in table)
    assert (table[0].name, table[8].name) == ("城市管理", "水电气暖讯")
    assert config.sources["categories"].name == "categories.yaml"


@pytest.mark.parametrize(("change", "message"), [
    (lambda cs: cs.append({"code": "parking", "name": "停车"}), "unknown category 'parking'"),
    (lambda cs: cs.pop(), "missing categories: civil_affairs"),
    (lambda cs: cs.append(dict(cs[0])), "category 'urban_management' listed twice"),
    (lambda cs: cs[0].update(nmae="城管"), "categories.0.nmae"),
])
def test_a_bad_table_is_refused_naming_the_file(tmp_path, change, message):
    d = copy_default(tmp_path)
    edit(d / "categories.yaml", lambda data: change(data["categories"]))
    with pytest.raises(ConfigError, match="categories.yaml") as exc:
        load(d)
    assert message in str(exc.value)


def test_a_configuration_or_snapshot_from_before_the_table_gets_the_packaged_one(tmp_path):
    d = copy_default(tmp_path)
    (d / "categories.yaml").unlink()
    assert tuple(load(d).settings.categories) == packaged_categories()
    # a route worker's snapshot written before the table existed: it loads, and keeps its hash
    old = load(d).settings.model_dump(mode="json")
    del old["categories"]
    digest = hashlib.sha256(json.dumps(old, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    configs = tmp_path / "state" / "configs"
    configs.mkdir(parents=True)
    (configs / f"{digest}.json").write_text(json.dumps(old, ensure_ascii=False), encoding="utf-8")
    again = load_snapshot(tmp_path / "state", digest[:12])
    assert again.hash == digest and again.settings.categories[0].code == "urban_management"
    (configs / f"{digest}.json").write_text(json.dumps({**old, "places": {}}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ConfigError, match="edited"):
        load_snapshot(tmp_path / "state", digest)


def test_the_report_and_open311_read_the_citys_table(tmp_path):
    from wenzheng.ingest.open311 import Open311Connector
    from wenzheng.sinks.period_report import category_names

    d = copy_default(tmp_path)
    edit(d / "categories.yaml", lambda data: data["categories"][0].update(name="城管执法", scope="占道经营、违章搭建"))
    settings = load(d).settings
    assert category_names(settings)["urban_management"] == "城管执法"
    assert category_names(settings)["unknown"] == "未分类"
    connector = SimpleNamespace(runtime=SimpleNamespace(settings=settings))
    status, _, body = Open311Connector.handle_services(connector, None)
    services = json.loads(body)
    assert status == 200 and [s["service_code"] for s in services] == list(CATEGORIES)
    assert services[0] == {"service_code": "urban_management", "service_name": "城管执法",
                           "description": "城管执法：占道经营、违章搭建", "metadata": False, "type": "realtime",
                           "keywords": "占道经营,违章搭建", "group": "城管执法"}


def test_config_city_copies_the_table(tmp_path, monkeypatch):
    """The gazetteer is the packaged one here: what matters is which files are copied."""
    from wenzheng.app.cli import main
    from wenzheng.config import gazetteer

    data = yaml.safe_load((DEFAULT_DIR / "gazetteer.yaml").read_text(encoding="utf-8"))
    monkeypatch.setattr(gazetteer, "build_city", lambda name: data)
    out = tmp_path / "other"
    assert main(["config", "city", "赣州市", "--out", str(out)]) == 0
    assert (out / "categories.yaml").read_bytes() == (DEFAULT_DIR / "categories.yaml").read_bytes()
    assert load(out).sources["categories"] == out / "categories.yaml"


def test_the_handbook_names_categories_and_types_as_the_configuration_does():
    """classify/data/taxonomy.yaml (the 归口 handbook for corpus writers) repeats the codes and
    names for its readers; it must not drift from the table and the type codes."""
    from wenzheng.classify.model import CORPUS_DIR
    from wenzheng.config import MESSAGE_TYPES

    handbook = yaml.safe_load((CORPUS_DIR.parent / "taxonomy.yaml").read_text(encoding="utf-8"))
    assert [(c["code"], c["name"]) for c in handbook["categories"]] == [(c.code, c.name) for c in packaged_categories()]
    assert [t["code"] for t in handbook["types"]] == list(MESSAGE_TYPES)


def test_every_boundary_lists_the_categories_its_rule_and_examples_decide_for():
    """A boundary's ``between`` is how writers and readers find it from a category; a rule that
    sends a case to a category it does not list hides that case (five did, found by the
    corpus writers)."""
    import re

    from wenzheng.classify.model import CORPUS_DIR

    handbook = yaml.safe_load((CORPUS_DIR.parent / "taxonomy.yaml").read_text(encoding="utf-8"))
    codes = {c["code"] for c in handbook["categories"]}
    missing = {}
    for b in handbook["boundaries"]:
        named = set(re.findall(r"[a-z_]+", b["rule"])) & codes
        named |= {e["code"] for e in b.get("examples") or []}
        if b["between"] != ["all"] and named - set(b["between"]):
            missing[b["id"]] = sorted(named - set(b["between"]))
    assert not missing
