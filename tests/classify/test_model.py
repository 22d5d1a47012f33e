import json
import pickle
import subprocess
import sys

from wenzheng.classify.model import Classifier
from wenzheng.classify.text import normalise, tokenize
from wenzheng.cli import main
from wenzheng.config import CATEGORIES, load

TINY = [
    {"text": "章贡区文清路路灯坏了一个星期了晚上黑漆漆的", "category": "urban_management", "type": "complaint", "jurisdiction": "360702"},
    {"text": "小区门口占道经营的烧烤摊天天摆到半夜", "category": "urban_management", "type": "complaint", "jurisdiction": "unknown"},
    {"text": "垃圾清运车好几天没来了臭气熏天", "category": "urban_management", "type": "complaint", "jurisdiction": "360700"},
    {"text": "公司拖欠工资三个月老板跑路了怎么办", "category": "labour_social_security", "type": "help", "jurisdiction": "360703"},
    {"text": "请问灵活就业人员社保怎么缴纳", "category": "labour_social_security", "type": "consultation", "jurisdiction": "unknown"},
    {"text": "工地包工头欠我们农民工工资不给", "category": "labour_social_security", "type": "complaint", "jurisdiction": "360731"},
]


def test_normalise_masks_and_halfwidths():
    out = normalise("＠赣州发布 #停水# 电话１３９０７９７１２３４ http://t.cn/abc 我家停水了")
    assert "１" not in out and "13907971234" not in out and "http" not in out
    assert "停水" in out and "赣州发布" in out


def test_place_names_are_one_token():
    settings = load().settings
    model = Classifier.train(TINY, settings)
    assert "唐江镇" in tokenize("南康区唐江镇的路灯坏了")
    (p,) = model.predict([{"text": "南康区唐江镇的路灯坏了"}])
    assert (p.jurisdiction, p.jurisdiction_source) == ("360703", "place:南康区")


def test_model_pickles_and_loads_in_another_process(tmp_path):
    model = Classifier.train(TINY, load().settings)
    pickle.dumps(model.vectorizer)  # a jieba.lcut tokenizer would fail here (RLock)
    model.save(tmp_path / "m", {"accuracy": 1.0})
    code = ("import json,sys; from wenzheng.classify.model import Classifier; from wenzheng.config import load;"
            "m=Classifier.load(sys.argv[1], load().settings); p=m.predict([{'text':'拖欠工资不给怎么办'}])[0];"
            "print(json.dumps([m.version, p.category]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [model.version, "labour_social_security"]


def test_cli_classify_returns_one_line_per_input_with_contract_fields(tiny_model, tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [{"id": "a1", "text": "章贡区路灯坏了好几天", "channel": "wechat"},
             {"text": "拖欠工资三个月了", "title": "讨薪"},
             {"id": "a3", "text": "寻乌县自来水停了一天了"}]
    src.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["classify", "--model", str(tiny_model), "--input", str(src), "--output", str(out)]) == 0
    got = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(got) == 3
    for inp, row in zip(lines, got, strict=True):
        assert {k: row[k] for k in inp} == inp  # input fields kept, same order of lines
        assert row["category"] in CATEGORIES
        assert 0 <= row["category_confidence"] <= 1
        assert row["type"] in ("consultation", "complaint", "suggestion", "help", "praise")
        assert row["model_version"]
    assert got[0]["jurisdiction"] == "360702" and got[2]["jurisdiction"] == "360734"


def test_cli_classify_rejects_bad_input_in_one_line(tiny_model, tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "ok"}\n{"title": "no text"}\n', encoding="utf-8")
    assert main(["classify", "--model", str(tiny_model), "--input", str(src)]) == 2
    assert "bad.jsonl:2: needs an object with `text`" in capsys.readouterr().err


def test_train_and_evaluate_commands(tmp_path, capsys):
    data = tmp_path / "history.csv"
    rows = TINY * 4
    data.write_text("text,category,type\n" + "".join(f"{r['text']},{r['category']},{r['type']}\n" for r in rows),
                    encoding="utf-8")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert (tmp_path / "m" / "meta.json").is_file()
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(data)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["category"]["accuracy"] >= 0.8 and "macro_f1" in report and "type" in report
    assert "per_class" in report["category"]
