"""The switchable features and calibrations (``DEFAULT_PARAMS``), the triage threshold
they are judged by, and the pictures and baseline a person reads."""

import json
import pickle

import numpy as np
import pytest
from scipy import sparse

from wenzheng.app.cli import main
from wenzheng.classify.model import (
    DEFAULT_PARAMS,
    NEUTRAL_PARAMS,
    Classifier,
    auto_route,
    fit_head,
    make_head,
    routing_curve,
)
from wenzheng.config import load

from .test_model import TINY

ROWS = TINY * 3 + [
    {"title": "路灯", "text": "您好。我家门口晚上很黑。希望尽快把路灯修好", "category": "urban_management", "type": "help"},
    {"title": "讨薪", "text": "您好。干了半年活。恳请帮我们要回工资", "category": "labour_social_security", "type": "help"},
] * 3

VARIANTS = [{"chars": 3, "chars_min": 1}, {"title_weight": 3}, {"request_weight": 2}, {"handbook": "words"},
            {"handbook": "markers"}, {"calibration": "isotonic"}, {"calibration": "temperature"}]


@pytest.mark.parametrize("params", VARIANTS, ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()))
def test_every_variant_trains_predicts_and_loads_as_it_was(params, tmp_path):
    model = Classifier.train(ROWS, load().settings, params=params)
    probe = [{"text": "工地老板拖欠工资不给", "title": "讨薪"}, {"text": "路灯坏了晚上很黑，希望尽快修"}]
    want = [p.record(model.version) for p in model.predict(probe)]
    assert [r["category"] for r in want] == ["labour_social_security", "urban_management"]
    assert all(0 < r["category_confidence"] <= 1 for r in want)
    model.save(tmp_path / "m")
    again = Classifier.load(tmp_path / "m", None)
    assert {k: again.params[k] for k in params} == params
    assert [p.record(again.version) for p in again.predict(probe)] == want


def test_features_change_as_the_parameters_say():
    settings = load().settings
    record = {"title": "路灯坏了", "text": "您好。我家门口有人占道经营。希望尽快修好路灯"}

    def feats(**params):
        model = Classifier._blank({**DEFAULT_PARAMS, **params}, None)
        return model._features(record, f"{record['title']} {record['text']}")

    plain = feats()
    assert feats(title_weight=2).count("路灯") == plain.count("路灯") + 1
    assert feats(request_weight=1).count("希望") == 2 * plain.count("希望")
    assert feats(request_weight=1).count("家门口") == plain.count("家门口") == 1  # a middle sentence, no cue
    assert "~路" in feats(chars=3, chars_min=1) and "~路" not in plain
    assert "§urban_management" in feats(handbook="markers") and not any(t.startswith("§") for t in plain)
    assert settings  # the configuration loads with the new classifier settings


def test_a_model_saved_before_a_parameter_existed_decides_as_it_did(tmp_path):
    model = Classifier.train(TINY, load().settings)
    probe = [{"text": t} for t in ("路灯坏了希望尽快修", "拖欠工资", "请问社保怎么交")]
    want = [p.record(model.version) for p in model.predict(probe)]
    model.save(tmp_path / "m")
    blob = pickle.loads((tmp_path / "m" / "model.pkl").read_bytes())
    blob["params"] = {k: v for k, v in blob["params"].items() if k not in NEUTRAL_PARAMS}
    del blob["handbook"]
    (tmp_path / "m" / "model.pkl").write_bytes(pickle.dumps(blob))
    old = Classifier.load(tmp_path / "m", None)
    assert {k: old.params[k] for k in NEUTRAL_PARAMS} == NEUTRAL_PARAMS
    assert [p.record(old.version) for p in old.predict(probe)] == want


@pytest.mark.parametrize("method", ["sigmoid", "isotonic", "temperature"])
@pytest.mark.parametrize("k", [2, 3])
def test_every_compact_head_gives_its_calibrated_probabilities(method, k):
    rng = np.random.default_rng(k)
    X = sparse.random(150, 30, density=0.3, format="csr", random_state=k, dtype=np.float32)
    y = [f"c{i}" for i in rng.integers(0, k, 150)]
    params = {**DEFAULT_PARAMS, "calibration": method}
    fitted = make_head(y, params).fit(X, y)
    head = fit_head(X, y, params)
    assert np.allclose(head.predict_proba(X), fitted.predict_proba(X), atol=1e-5)
    assert list(head.predict(X)) == list(fitted.predict(X))
    again = pickle.loads(pickle.dumps(head))
    assert np.array_equal(again.predict_proba(X), head.predict_proba(X))


def test_unknown_parameter_choices_are_refused():
    with pytest.raises(ValueError, match="calibration must be one of"):
        Classifier.train(TINY, None, params={"calibration": "platt"})


def test_the_threshold_for_95_percent_routes_the_most_it_can():
    conf = [0.99, 0.95, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    ok = [True, True, True, True, True, True, True, False, True, False]
    t, share, acc = routing_curve(conf, ok)
    assert list(t) == [0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]  # ties are one threshold
    assert share[1] == 0.3 and acc[-1] == 0.8
    got = auto_route(conf, ok, configured=0.5)
    assert (got["min_confidence"], got["share_routed"], got["accuracy_routed"]) == (0.6, 0.7, 1.0)
    assert got["configured"] == {"min_confidence": 0.5, "share_routed": 0.8, "accuracy_routed": 0.875}
    assert auto_route([0.9, 0.8], [False, True])["min_confidence"] is None


def test_evaluate_writes_reliability_and_routing_pictures_and_the_threshold(tiny_model, tmp_path, capsys):
    from wenzheng.classify.model import corpus_files, is_test, read_labelled

    data = tmp_path / "t.jsonl"
    rows = [r for r in read_labelled(corpus_files()) if is_test(r)][:200]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert main(["evaluate", "--model", str(tiny_model), "--data", str(data), "--report", str(tmp_path / "r")]) == 0
    route = json.loads(capsys.readouterr().out)["category"]["auto_route"]
    assert route["target_accuracy"] == 0.95 and route["configured"]["min_confidence"] == 0.65
    assert route["min_confidence"] is None or route["accuracy_routed"] >= 0.95
    for name in ("reliability_category", "reliability_type", "routing_category"):
        assert (tmp_path / "r" / f"{name}.png").read_bytes().startswith(b"\x89PNG"), name
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "routing_category.png" in md and "configured routing.min_confidence 0.65" in md


def test_pictures_are_drawn_without_a_cjk_font(monkeypatch, tmp_path):
    from wenzheng.classify import report

    monkeypatch.setattr(report, "cjk_font", lambda: None)
    report._reliability([0.2, 0.9, 0.95], [False, True, True], report._t("可靠性图", "reliability"),
                        tmp_path / "r.png")
    assert (tmp_path / "r.png").is_file()


def test_train_measures_the_textbook_baseline_on_the_same_split(tmp_path, capsys):
    data = tmp_path / "h.jsonl"
    data.write_text("".join(json.dumps(dict(r, id=f"r{i}"), ensure_ascii=False) + "\n"
                            for i, r in enumerate(ROWS * 3)), encoding="utf-8")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--report"]) == 0
    out = json.loads(capsys.readouterr().out)
    base = out["metrics"]["baseline"]
    assert "LinearSVC" in base["model"] and 0 <= base["category"]["macro_f1"] <= 1 and "type" in base
    md = (tmp_path / "m" / "report.md").read_text(encoding="utf-8")
    assert "## Against the textbook baseline" in md and "| category |" in md
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "n"), "--no-baseline"]) == 0
    assert "baseline" not in json.loads(capsys.readouterr().out)["metrics"]
