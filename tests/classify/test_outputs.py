"""A classifier output beyond category, type and jurisdiction: named in the configuration
(``classifier.outputs``), learnt from a labelled field, predicted, recorded, evaluated, and
kept by a saved model; the three fixed fields and their record stay as they were."""

import json
import pickle
import subprocess
import sys

import pytest

from wenzheng.app.cli import main
from wenzheng.classify.model import Classifier, check_outputs
from wenzheng.config import load

from .test_model import TINY

URGENT = ["老人被困电梯里出不来了", "煤气泄漏味道很大赶紧来人", "孩子走丢了一个小时还没找到"]
CALM = ["建议公园多装几张长椅", "请问社保卡怎么补办", "感谢社区工作人员的耐心帮助"]
ROWS = [dict(r, urgency="normal") for r in TINY] + [
    {"text": t, "category": "public_security", "type": "help", "urgency": "urgent"} for t in URGENT
] + [{"text": t, "category": "civil_affairs", "type": "suggestion", "urgency": "normal"} for t in CALM]
FIXED_KEYS = ["category", "category_confidence", "type", "type_confidence", "jurisdiction",
              "jurisdiction_source", "model_version"]


def _settings(outputs):
    settings = load().settings
    return settings.model_copy(update={"classifier": settings.classifier.model_copy(update={"outputs": outputs})})


@pytest.fixture(scope="module")
def model():
    return Classifier.train(ROWS * 2, _settings(["urgency"]))


def test_an_output_named_in_the_configuration_is_learnt_predicted_and_recorded(model):
    assert model.outputs == ["urgency"] and set(model.meta["labels"]["urgency"]) == {"normal", "urgent"}
    (p,) = model.predict([{"text": "电梯里有人被困出不来了"}])
    assert p.label("urgency") == "urgent" and 0.5 < p.confidence("urgency") <= 1
    rec = p.record(model.version)
    assert list(rec)[:7] == FIXED_KEYS  # the fixed fields first, as they always were
    assert rec["urgency"] == "urgent" and rec["urgency_confidence"] == p.confidence("urgency")


def test_the_output_is_evaluated_per_class(model):
    report = model.evaluate(ROWS)
    assert report["outputs"] == ["urgency"]
    assert set(report["urgency"]["per_class"]) == {"normal", "urgent"}
    assert report["urgency"]["accuracy"] >= 0.9 and "ece" in report["urgency"]
    assert "macro_f1" in report["category"] and report["accuracy"] == report["category"]["accuracy"]


def test_the_output_survives_pickle_and_save_and_load_in_another_process(model, tmp_path):
    probe = [{"text": "煤气泄漏了快来人"}, {"text": "请问社保卡怎么补办"}]
    want = [p.record(model.version) for p in model.predict(probe)]
    copy = pickle.loads(pickle.dumps(model))
    assert [p.record(copy.version) for p in copy.predict(probe)] == want
    model.save(tmp_path / "m")
    code = ("import json,sys; from wenzheng.classify.model import Classifier;"
            "m=Classifier.load(sys.argv[1], None);"
            "print(json.dumps([p.record(m.version) for p in m.predict(json.loads(sys.argv[2]))]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m"), json.dumps(probe, ensure_ascii=False)],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == want


def test_evaluate_command_reports_the_output(model, tmp_path, capsys):
    model.save(tmp_path / "m")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(data), "--report", str(tmp_path / "r")]) == 0
    assert set(json.loads(capsys.readouterr().out)["urgency"]["per_class"]) == {"normal", "urgent"}
    assert "## urgency" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "r" / "confusion_urgency.png").is_file()


def test_without_outputs_the_record_is_the_fixed_one():
    model = Classifier.train(ROWS, _settings([]))
    (p,) = model.predict([{"text": "电梯里有人被困"}])
    assert model.outputs == [] and "urgency" not in model.heads and list(p.record("v")) == [*FIXED_KEYS, "category_top"]


def test_an_output_the_data_does_not_label_is_unknown_not_missing():
    model = Classifier.train(TINY, load().settings, outputs=["urgency"])
    (p,) = model.predict([{"text": "路灯坏了"}])
    assert "urgency" not in model.heads and p.record("v")["urgency"] == "unknown"
    assert p.record("v")["urgency_confidence"] == 0.0


@pytest.mark.parametrize("bad", ["category", "model_version", "type_confidence", "Urgency", "a-b", 3])
def test_outputs_that_would_clash_with_the_record_are_refused(bad):
    with pytest.raises(ValueError, match="classifier output"):
        check_outputs([bad])
    assert check_outputs(["urgency", "urgency", "risk"]) == ["urgency", "risk"]


def test_a_prediction_lists_the_three_likeliest_categories(tiny_model):
    """The dispatcher sees the model's top three: likeliest first, the first the prediction."""
    from wenzheng.classify.model import Classifier
    from wenzheng.config import load

    model = Classifier.load(tiny_model, load().settings)
    (p,) = model.predict([{"text": "小区楼下的烧烤店油烟直排，晚上还很吵，已经好几个月了"}])
    rec = p.record("v")
    top = rec["category_top"]
    assert len(top) == 3 and top[0] == {"category": p.category, "confidence": p.category_confidence}
    assert [t["confidence"] for t in top] == sorted((t["confidence"] for t in top), reverse=True)
    assert len({t["category"] for t in top}) == 3
