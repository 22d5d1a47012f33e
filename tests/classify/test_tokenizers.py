"""Each model tokenises with its own words: two models in one process (a replay over
several model versions) decide exactly as each did alone."""

import json
import subprocess
import sys

import pytest

from wenzheng.classify.model import Classifier
from wenzheng.config import load

from .test_model import TINY

# A place name only model A's configuration knows, and one only model B's knows: each is
# one token for its own model and pieces (红旗/大道/口, 垃圾站/旁) for the other.
WORD_A, WORD_B = "红旗大道口", "垃圾站旁"
ROWS = TINY + [
    {"text": f"{WORD_A}的路灯坏了好几天", "category": "urban_management", "type": "complaint"},
    {"text": f"{WORD_B}天天有人占道经营", "category": "urban_management", "type": "complaint"},
    {"text": f"{WORD_A}工地拖欠工资", "category": "labour_social_security", "type": "help"},
    {"text": f"{WORD_B}的饭店老板欠工资不给", "category": "labour_social_security", "type": "complaint"},
]
PROBES = [f"{WORD_A}{WORD_B}的路灯坏了", f"{WORD_B}红旗大道的烧烤摊", f"请问{WORD_A}附近社保怎么交",
          f"{WORD_B}{WORD_A}拖欠工资", "文清路路灯坏了", f"{WORD_A}垃圾站旁边大道口"]
RECORD = ("import json,sys; from wenzheng.classify.model import Classifier;"
          "m=Classifier.load(sys.argv[1], None);"
          "print(json.dumps([p.record(m.version) for p in m.predict([{'text': t} for t in json.loads(sys.argv[2])])]))")


def _settings(word: str):
    settings = load().settings
    return settings.model_copy(update={"places": {**settings.places, "360702": [word]}})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    return [Classifier.train(ROWS, _settings(w)).save(root / name) for name, w in (("a", WORD_A), ("b", WORD_B))]


def _recorded(model_dir) -> list[dict]:
    """The decisions of a model alone in a fresh process, as a classify worker made them."""
    out = subprocess.run([sys.executable, "-c", RECORD, str(model_dir), json.dumps(PROBES, ensure_ascii=False)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_two_models_interleaved_in_one_process_decide_as_each_did_alone(models):
    recorded = [_recorded(d) for d in models]
    loaded = [Classifier.load(d, None) for d in models]
    replayed = [[], []]
    for text in PROBES:  # a, b, a, b …
        for k, model in enumerate(loaded):
            replayed[k].append(model.predict([{"text": text}])[0].record(model.version))
    assert replayed == recorded
    assert [m.predict([{"text": t} for t in PROBES]) for m in loaded] == [
        [m.predict([{"text": t}])[0] for t in PROBES] for m in loaded]


def test_each_model_keeps_its_own_words(models):
    a, b = (Classifier.load(d, None) for d in models)
    text = PROBES[0]
    assert WORD_A in a.tokenizer.tokenize(text) and WORD_A not in b.tokenizer.tokenize(text)
    assert WORD_B in b.tokenizer.tokenize(text) and WORD_B not in a.tokenizer.tokenize(text)
    assert WORD_A in a.tokenizer.words and WORD_A not in b.tokenizer.words


def test_the_global_dictionary_is_never_touched(models):
    import jieba

    for d in models:
        Classifier.load(d, None).predict([{"text": PROBES[0]}])
    assert jieba.dt.FREQ.get(WORD_A) is None and jieba.dt.FREQ.get(WORD_B) is None
