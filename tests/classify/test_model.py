import json
import pickle
import subprocess
import sys

import pytest

from wenzheng.app.cli import main
from wenzheng.classify.model import (
    DEFAULT_PARAMS,
    Classifier,
    LinearHead,
    is_test,
    make_head,
    split_holdout,
)
from wenzheng.classify.places import PlaceResolver
from wenzheng.classify.text import normalise
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
    assert "唐江镇" in model.tokenizer.tokenize("南康区唐江镇的路灯坏了")
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


# -- place names → jurisdiction ------------------------------------------------------

@pytest.fixture(scope="module")
def resolver():
    return PlaceResolver(load().settings)


@pytest.mark.parametrize(("text", "code", "name"), [
    ("章贡区解放路的路灯坏了", "360702", "章贡区"),
    ("南康区唐江镇的路灯坏了", "360703", "南康区"),
    ("唐江镇的路灯坏了", "360703", "唐江镇"),                  # a township resolves to its county
    ("我们唐江那边的路灯坏了", "360703", "唐江"),              # a short name followed by a place word
    ("龙华乡的垃圾没人清运", "360703", "龙华乡"),             # the old rank of 龙华镇
    ("解放街道的垃圾没人清运", "360702", "解放街道"),
    ("兴国这边停电了", "360732", "兴国"),
    ("郁孤台附近乱停车", "360702", "郁孤台"),                 # a well-known place from the configuration
    ("赣州的公交太挤了", "360700", "赣州"),                   # the city's own name
    ("市里的公交太挤了", "360700", "市里"),                   # … or a word that names it
    ("瑞金象湖镇那边还有于都的亲戚", "360781", "瑞金"),       # the county named most often (2 : 1)
    ("中心城区与赣县、南康来往的人很多", "360700", "中心城区"),  # two counties alike, and the city
])
def test_place_names_resolve_to_their_county(resolver, text, code, name):
    assert resolver.resolve(text) == (code, name)


@pytest.mark.parametrize("text", [
    "您好，很高兴为您服务，请讲",        # 高兴 is a township's short name
    "解放路的路灯坏了",                  # 解放 (解放街道) inside a road's name
    "长沙来的游客说这里好",              # 长沙 (a township in the gazetteer, and another city)
    "兴国路上有个大坑",                  # 兴国 as a road's name
    "超市里的鸡蛋过期了",                # the 市 of 超市 is no city
    "这个城市里到处是共享单车",
    "",
])
def test_common_words_and_road_names_decide_nothing(resolver, text):
    assert resolver.resolve(text) == ("unknown", None)


def test_traditional_text_resolves_after_cleaning(resolver):
    assert resolver.resolve("於都縣貢江鎮的路燈壞了", clean=True) == ("360731", "于都县")
    model = Classifier.train(TINY, load().settings)
    (p,) = model.predict([{"text": "於都縣貢江鎮的路燈壞了好幾天"}])
    assert (p.jurisdiction, p.jurisdiction_source) == ("360731", "place:于都县")


def test_a_name_two_counties_share_decides_nothing():
    settings = load().settings
    settings = settings.model_copy(update={"places": {**settings.places, "360702": ["同名广场"],
                                                      "360703": ["同名广场"]}})
    r = PlaceResolver(settings)
    assert "同名广场" in r.ambiguous
    assert r.resolve("同名广场有人跳广场舞") == ("unknown", None)
    assert r.resolve("南康区同名广场有人跳广场舞") == ("360703", "南康区")


def test_township_alias_modes_for_measurement():
    settings = load().settings
    assert PlaceResolver(settings, township_aliases="never").resolve("我们唐江那边") == ("unknown", None)
    assert PlaceResolver(settings, township_aliases="always").resolve("很高兴为您服务")[0] == "360732"
    assert PlaceResolver(settings, city_cues=False).resolve("市里的公交") == ("unknown", None)


# -- the held-out split -------------------------------------------------------------

def test_split_holdout_is_time_ordered_when_records_carry_a_time():
    rows = [{"id": str(i), "text": "x", "posted_at": f"2026-11-{i + 1:02d}T08:00:00"} for i in range(10)]
    train, test = split_holdout(list(reversed(rows)))
    assert [r["id"] for r in test] == ["8", "9"] and len(train) == 8
    assert max(r["posted_at"] for r in train) < min(r["posted_at"] for r in test)
    epoch = [{"id": str(i), "text": "x", "created_at": 1_700_000_000 + i * 5} for i in (3, 1, 2, 0, 4)]
    assert [r["id"] for r in split_holdout(epoch, 0.4)[1]] == ["3", "4"]
    dated = [{"id": str(i), "text": "x", "date": d} for i, d in enumerate(["2026-01-10", "2025-12-31", "2026-01-02"])]
    assert [r["id"] for r in split_holdout(dated, 0.3)[1]] == ["0"]


def test_split_holdout_falls_back_to_the_fixed_hash_split():
    rows = [{"id": f"r{i}", "text": "x"} for i in range(200)]
    rows[0]["posted_at"] = "2026-11-01"  # one time is not a time order
    train, test = split_holdout(rows)
    assert test == [r for r in rows if is_test(r)] and train == [r for r in rows if not is_test(r)]
    assert 20 < len(test) < 60


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_split_holdout_rejects_a_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction must be between 0 and 1"):
        split_holdout([{"id": "a", "text": "x"}], fraction)


# -- training and prediction ---------------------------------------------------------

def test_training_rejects_what_it_cannot_use():
    with pytest.raises(ValueError, match="no records to train on"):
        Classifier.train([], None)
    with pytest.raises(ValueError, match="unknown model parameters: nope"):
        Classifier.train(TINY, None, params={"nope": 1})
    with pytest.raises(ValueError, match="no usable words"):
        Classifier.train([{"text": "123", "category": "a"}, {"text": "4 5 6", "category": "b"}], None)


def test_load_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(ValueError, match="not a model directory"):
        Classifier.load(tmp_path, None)
    (tmp_path / "model.pkl").write_bytes(b"not a pickle")
    (tmp_path / "meta.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot read the model"):
        Classifier.load(tmp_path, None)


def test_progress_labels_as_strings_and_rare_labels():
    seen = []
    rows = [dict(r, jurisdiction=int(r["jurisdiction"]) if r["jurisdiction"].isdigit() else r["jurisdiction"])
            for r in TINY] + [{"text": "医院排队太久了", "category": "health", "type": "complaint"}]
    model = Classifier.train(rows, load().settings, progress=lambda i, n: seen.append((i, n)))
    assert seen[-1] == (7, 7)
    assert model.meta["rare_labels"]["category"] == ["health"]  # one example: repeated to calibrate
    assert set(model.meta["labels"]["category"]) == {"urban_management", "labour_social_security", "health"}
    report = model.evaluate(rows[:6])
    assert report["category"]["accuracy"] == 1.0  # int labels compare as the strings the model gives
    assert model.predict([]) == []


def test_jurisdiction_comes_from_the_model_only_where_no_place_name_decides():
    rows = [{"text": t, "category": "urban_management", "jurisdiction": j} for t, j in [
        ("路灯坏了很久没人修", "360700"), ("路灯不亮晚上很黑", "360700"), ("路灯一闪一闪", "360700"),
        ("网上看到别的地方垃圾分类", "unknown"), ("别的地方垃圾分类做得好", "unknown"), ("听说外地垃圾分类", "unknown"),
        ("章贡区路灯坏了", "360702"), ("章贡区垃圾分类", "360702"),
    ]]
    model = Classifier.train(rows, load().settings)
    assert model.meta["jurisdiction_head_records"] == 6
    assert set(model.meta["labels"]["jurisdiction"]) == {"360700", "unknown"}
    a, b = model.predict([{"text": "寻乌县路灯坏了"}, {"text": "路灯坏了晚上很黑"}])
    assert (a.jurisdiction, a.jurisdiction_source) == ("360734", "place:寻乌县")
    assert (b.jurisdiction, b.jurisdiction_source) == ("360700", "model")


def test_the_compact_head_gives_the_calibrated_probabilities():
    import numpy as np
    from scipy import sparse

    rng = np.random.default_rng(0)
    X = sparse.random(120, 30, density=0.3, format="csr", random_state=0, dtype=np.float32)
    for k in (2, 3):
        y = [f"c{i}" for i in rng.integers(0, k, 120)]
        fitted = make_head(y, {**DEFAULT_PARAMS, "calibration": "sigmoid"}).fit(X, y)
        head = LinearHead.from_calibrated(fitted)
        assert np.allclose(head.predict_proba(X), fitted.predict_proba(X), atol=1e-6)
        assert list(head.predict(X)) == list(fitted.predict(X))
        assert pickle.loads(pickle.dumps(head)).classes_.tolist() == fitted.classes_.tolist()


def test_a_model_loads_without_settings_and_keeps_its_place_names(tmp_path):
    model = Classifier.train(TINY, load().settings)
    model.save(tmp_path / "m")
    again = Classifier.load(tmp_path / "m", None)
    (p,) = again.predict([{"text": "寻乌县自来水停了一天了"}])
    assert (p.jurisdiction, p.jurisdiction_source) == ("360734", "place:寻乌县")
    assert again.meta["params"]["chars"] == 2


def test_tfidf_is_the_vectorizers_own_transform_to_the_bit(tiny_model):
    import numpy as np

    from wenzheng.classify.model import corpus_files, read_labelled, tfidf

    model = Classifier.load(tiny_model, None)
    rows = read_labelled(corpus_files())[:300]
    feats, _ = model._prepare(rows + [{"text": ""}, {"text": "未登录词ＸＹＺ"}])
    ours, theirs = tfidf(model.vectorizer, feats), model.vectorizer.transform(feats)
    assert ours.has_sorted_indices and ours.shape == theirs.shape
    for a in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(ours, a), getattr(theirs, a)), a
