"""Normalisation, the user dictionary and the segmenter, before any feature is made."""

import pickle

import jieba
import pytest

from wenzheng.classify import text as T
from wenzheng.classify.model import corpus_files, read_labelled
from wenzheng.classify.places import PlaceResolver
from wenzheng.config import load


@pytest.fixture(scope="module")
def places():
    return PlaceResolver(load().settings)


@pytest.fixture(scope="module")
def city(places):
    """A model's tokenizer: the domain terms and the city's place names."""
    return T.Tokenizer(T.load_terms() + places.words())


@pytest.mark.parametrize(("raw", "want"), [
    ("於都縣的路燈壞了一個星期", "于都县的路灯坏了一个星期"),      # traditional → simplified
    ("請問住房公積金怎麼提取", "请问住房公积金怎么提取"),
    ("ＡＰＰ里的１２３号，怎么办？", "app里的123号,怎么办?"),        # full-width → half-width, lower-cased
])
def test_clean_makes_one_canonical_form(raw, want):
    assert T.clean(raw) == want
    assert T.clean("plain ASCII") == "plain ascii"
    assert T.clean("") == ""


def test_normalise_mentions_hashtags_and_urls():
    out = T.normalise("@赣州发布 @问政赣州 #停水# 看这里 https://t.cn/A6x?y=1&z=2 还有 www.gz.gov.cn/a 家里停水了")
    assert "@" not in out and "#" not in out
    assert "赣州发布" in out and "问政赣州" in out and "停水" in out
    assert "http" not in out and "t.cn" not in out and "gov.cn" not in out
    assert "家里停水了" in out


def test_emoji_fold_to_two_sentiment_tokens_and_the_rest_drop():
    assert T.tokenize("太感谢了👍👍") == ["太", "感谢", T.POSITIVE, T.POSITIVE]
    assert T.tokenize("谢谢🙏🏻") == ["谢谢", T.POSITIVE]  # the skin tone is no word
    assert T.NEGATIVE in T.tokenize("气死了😡")
    words = T.tokenize("开车🚗去🏥看病")
    assert "🚗" not in words and "🏥" not in words and T.POSITIVE not in words and T.NEGATIVE not in words
    assert T.NEGATIVE in T.tokenize("又停电了[怒]") and T.POSITIVE in T.tokenize("点赞[赞]")
    assert "可爱" in T.tokenize("[可爱]")  # an unknown Weibo face keeps its word


def test_phone_and_id_numbers_are_masked():
    out = T.normalise("电话１３９０７９７１２３４，身份证360702199001011234，座机0797-8123456")
    assert "13907971234" not in out and "360702199001011234" not in out and "8123456" not in out
    assert "139****1234" in out
    assert not any(t.isdigit() or "*" in t for t in T.tokenize("电话13907971234找我"))


def test_speaker_tags_of_hotline_transcripts_are_dropped():
    words = T.tokenize("坐席：您好，12345请讲。市民：我家停水了")
    assert "坐席" not in words and "市民" not in words and "停水" in words
    assert "12345" not in words  # numbers carry nothing


def test_domain_terms_are_one_token():
    for term in ("住房公积金", "不动产证", "拖欠工资", "低保", "宅基地", "校外培训", "预付卡", "噪声扰民", "占道经营"):
        assert term in T.tokenize(f"关于{term}的问题"), term
    # but not so heavy that they swallow their neighbours
    assert "低保" not in T.tokenize("降低保费")


def test_place_names_are_one_token(places, city):
    assert "龙华乡" in city.tokenize("龙华乡的路灯坏了")  # the old rank of 龙华镇 is a word too
    assert "唐江镇" in city.tokenize("南康区唐江镇的路灯坏了")
    assert "于都县" in city.tokenize("於都縣的路燈壞了")  # traditional text meets the same words
    assert "唐江镇" not in T.tokenize("南康区唐江镇的路灯坏了")  # the terms-only tokenizer knows no places
    assert "高兴" not in places.words() and "解放" not in places.words()  # short aliases are not added


def test_terms_file_is_read_without_comments(tmp_path):
    f = tmp_path / "terms.txt"
    f.write_text("# a comment\n住房公积金\n\n预付卡  # inline\n", encoding="utf-8")
    assert T.load_terms(f) == ["住房公积金", "预付卡"]
    assert T.load_terms(tmp_path / "missing.txt") == []
    assert len(T.load_terms()) >= 300


def test_segment_is_jieba_without_hmm(city):
    texts = [r["text"] for r in read_labelled(corpus_files())[::7]]
    texts += ["ABC123 abc-def 3.5% C++ #tag", "", "  ", "中文English混合123测试", "𠀀罕见字"]
    for t in texts:
        for s in (t, T.normalise(t)):
            assert city.segment(s) == city.jieba.lcut(s, HMM=False), s
    assert T.Tokenizer().segment("南康区唐江镇") == jieba.lcut("南康区唐江镇", HMM=False)  # no words: jieba's own


def test_tokenizers_with_the_same_words_share_one_dictionary_and_pickle_without_it(city):
    again = T.Tokenizer(reversed([*city.words, "唐江镇"]))  # order and repeats do not matter
    assert again.words == city.words and again.jieba is city.jieba
    copy = pickle.loads(pickle.dumps(city))
    assert len(pickle.dumps(city)) < 200_000 and copy.words == city.words and copy.jieba is city.jieba


def test_char_ngrams_and_features():
    assert T.char_ngrams("路灯坏了 ok 停水", 2) == ["路灯", "灯坏", "坏了", "停水"]
    tok = T.Tokenizer(T.load_terms())
    feats = tok.features("路灯坏了", 2)
    assert "路灯" in feats and "~灯坏" in feats
    assert tok.features("路灯坏了", 0) == tok.cut("路灯坏了") == T.tokenize("路灯坏了")
    assert T.identity(["a"]) == ["a"]


def test_char_ngrams_of_several_lengths():
    assert T.char_ngrams("路灯坏 停水", 3, "~", 2) == ["~路灯", "~灯坏", "~停水", "~路灯坏"]
    assert T.char_ngrams("路灯", 2, "", 1) == ["路", "灯", "路灯"]
    assert T.Tokenizer().features("路灯坏了", 3, 1).count("~路") == 1


def test_sentences_cut_as_the_whole_and_the_request_is_first_last_and_cued(city):
    for r in read_labelled(corpus_files())[::11]:
        n = T.normalise(r["text"])
        assert [w for s in T.sentences(n) for w in city.cut(s)] == city.cut(n)
    parts = T.sentences(T.normalise("您好。我家门口的路灯坏了。已经一个月了！希望尽快修好；谢谢"))
    assert parts == ["您好。", "我家门口的路灯坏了。", "已经一个月了!", "希望尽快修好;", "谢谢"]
    assert T.request_indices(parts) == [0, 3, 4]
    assert T.request_indices([]) == []


def test_the_handbook_gives_terms_and_phrasings_by_label(tmp_path):
    terms, phrasings = T.load_handbook()
    assert "占道经营" in terms["urban_management"] and "流动摊贩" in terms["urban_management"]
    assert "举报" in terms["type:complaint"] and phrasings["type:consultation"]
    assert all(2 <= len(w) <= 8 for ws in terms.values() for w in ws)
    assert T.load_handbook(tmp_path / "missing.yaml") == ({}, {})
