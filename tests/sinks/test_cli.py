"""`wenzheng case` and `wenzheng report` on the configured (SQLite) ledger."""

import json

from tests.conftest import write_config
from tests.sinks.test_ledger import routed
from wenzheng.app.cli import main
from wenzheng.config import load
from wenzheng.sinks.accounts import Accounts
from wenzheng.sinks.cases import Ledger


def test_case_and_report_commands(tmp_path, capsys):
    cfg = write_config(tmp_path)
    ledger = Ledger.from_settings(load(cfg).settings)
    t = ledger.record(routed("wechat:1", "唐江镇幸福路的路灯坏了"))["tracking_no"]
    ledger.dispose()
    assert main(["case", "claim", t, "--office", "360703-cgj", "--actor", "张三", "--config", str(cfg),
                 "--at", "2026-11-23T09:40"]) == 0
    claimed = json.loads(capsys.readouterr().out)
    assert claimed["status"] == "claimed" and claimed["claimed_at"].startswith("2026-11-23T09:40:00+08:00")
    assert main(["case", "close", t, "--config", str(cfg)]) == 2  # not replied yet
    assert "cannot close it" in capsys.readouterr().err
    assert main(["case", "reply", t, "--office", "360703-cgj", "--text", "已修复", "--config", str(cfg),
                 "--at", "2026-11-24T16:00:00+08:00"]) == 0
    capsys.readouterr()
    html, csv = tmp_path / "r.html", tmp_path / "r.csv"
    assert main(["report", "--month", "2026-11", "--now", "2026-12-01T00:00:00+08:00", "--csv", str(csv),
                 "--html", str(html), "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "南康区城市管理局" in out and "overdue: 0" in out
    assert html.is_file() and "total" in csv.read_text(encoding="utf-8-sig")
    assert main(["report", "--month", "2026-13", "--config", str(cfg)]) == 2


def test_case_show_tells_the_check_code(tmp_path, capsys):
    cfg = write_config(tmp_path)
    ledger = Ledger.from_settings(load(cfg).settings)
    t = ledger.record(routed("wechat:1", "唐江镇幸福路的路灯坏了"))["tracking_no"]
    code = ledger.get(t)["check_code"]
    ledger.dispose()
    assert main(["case", "show", t, "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["check_code"] == code and len(code) == 6


def test_user_and_office_commands(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert main(["user", "add", "li", "--role", "clerk", "--office", "360703-cgj", "--config", str(cfg)]) == 0
    password = capsys.readouterr().out.split("password ")[1].split()[0]
    assert main(["user", "add", "wang", "--role", "clerk", "--config", str(cfg)]) == 2  # a clerk needs an office
    assert main(["user", "add", "zhao", "--role", "clerk", "--office", "nope", "--config", str(cfg)]) == 2
    assert main(["office", "token", "360703-cgj", "--config", str(cfg)]) == 0
    token = capsys.readouterr().out.strip()
    ledger = Ledger.from_settings(load(cfg).settings)
    accounts = Accounts(ledger.engine)
    try:
        assert accounts.login("li", password, "127.0.0.1").office_id == "360703-cgj"
        assert accounts.token_office(token) == ("360703-cgj", "")
        assert main(["user", "reset", "li", "--config", str(cfg)]) == 0
        assert accounts.login("li", password, "127.0.0.1") is None
        assert main(["user", "disable", "li", "--config", str(cfg)]) == 0
        assert main(["office", "revoke", "360703-cgj", "--config", str(cfg)]) == 0
        assert accounts.token_office(token) is None
        capsys.readouterr()
        assert main(["user", "list", "--config", str(cfg)]) == 0
        assert "disabled" in capsys.readouterr().out
    finally:
        ledger.dispose()
