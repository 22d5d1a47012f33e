"""Routing decisions of the default city: keyword rules, 联合办理, the table, the fallback chain."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import write_config
from wenzheng.config import ConfigError, OfficeDirectory, load
from wenzheng.route.router import Router


@pytest.fixture(scope="module")
def router():
    cfg = load()
    return Router(cfg, OfficeDirectory(cfg.settings))


def message(text, category, jurisdiction, confidence=0.9, kind="complaint"):
    return {"text": text, "title": "", "channel": "wechat", "received_at": "2026-11-23T10:00:00+08:00",
            "classification": {"category": category, "category_confidence": confidence, "type": kind,
                               "jurisdiction": jurisdiction, "model_version": "m-test"}}


def test_a_keyword_rule_wins_over_the_model_and_the_county(router):
    r = router.route(message("我想问下公积金贷款额度怎么算", "civil_affairs", "360703", confidence=0.2))
    assert (r["office_id"], r["rule"], r["triage"]) == ("360700-gjj", "rule:公积金归口市公积金中心", False)
    assert r["model_version"] == "m-test" and r["config_hash"] == router.config.hash


def test_a_joint_rule_names_the_messages_own_county_offices(router):
    r = router.route(message("工地包工头拖欠我们十几个人三个月工资", "labour_social_security", "360731"))
    assert r["office_id"] == "360731-rsj" and r["co_offices"] == ["360731-zjj"]
    assert r["rule"] == "rule:欠薪涉工程项目人社住建联办"
    assert router.offices.offices[r["office_id"]].name == "于都县人力资源和社会保障局"


def test_a_joint_rule_needs_its_category_and_a_county(router):
    # the same words in another category: the table decides
    r = router.route(message("工地晚上施工噪音太大", "environment", "360702"))
    assert (r["office_id"], r["co_offices"], r["rule"]) == ("360702-sthjj", [], "table:environment@360702")
    # county unknown: a county-relative rule cannot apply, the message goes to triage
    r = router.route(message("包工头跑路了工资没发", "labour_social_security", "unknown"))
    assert (r["office_id"], r["triage"], r["rule"]) == ("360700-wzb", True, "triage:unknown_jurisdiction")
    # the city as a whole has a 人社局 and a 住建局 of its own
    r = router.route(message("市里的工地农民工工资专户谁来管", "labour_social_security", "360700"))
    assert (r["office_id"], r["co_offices"]) == ("360700-rsj", ["360700-zjj"])


def test_table_low_confidence_and_fallback(router):
    r = router.route(message("路灯不亮", "urban_management", "360703"))
    assert (r["office_id"], r["rule"]) == ("360703-cgj", "table:urban_management@360703")
    r = router.route(message("路灯不亮", "urban_management", "360703", confidence=0.3))
    assert (r["office_id"], r["triage"], r["rule"]) == ("360700-wzb", True, "triage:low_confidence")


def test_a_county_without_the_department_falls_back_to_its_government_office(tmp_path):
    cfg_dir = write_config(tmp_path)
    doc = yaml.safe_load((cfg_dir / "offices.yaml").read_text(encoding="utf-8"))
    doc["offices"]["absent"] = ["360735-nyncj"]  # 石城县 merged its 农业农村局 into another bureau
    (cfg_dir / "offices.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    cfg = load(cfg_dir)
    r = Router(cfg, OfficeDirectory(cfg.settings)).route(message("高标准农田的水渠堵了", "agriculture_rural", "360735"))
    assert (r["office_id"], r["rule"]) == ("360735-zfb", "fallback:government:agriculture_rural@360735")


def test_a_relative_rule_naming_an_unknown_department_is_refused(tmp_path):
    cfg_dir = write_config(tmp_path)
    doc = yaml.safe_load((cfg_dir / "routing.yaml").read_text(encoding="utf-8"))
    doc["routing"]["rules"][1]["co_offices"] = ["*-nope"]
    (cfg_dir / "routing.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"routing.yaml: routing.rules.1.co_offices: unknown department '\*-nope'"):
        load(cfg_dir)
