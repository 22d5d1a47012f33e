"""Text normalisation and tokenisation, before any feature is made.

``normalise`` makes one canonical form of a message, whatever channel it came
from: full-width → half-width (NFKC), traditional → simplified (OpenCC ``t2s``),
ASCII lower-cased, URLs dropped, ``@mentions`` and ``#hashtags#`` kept as plain
words, emoji and Weibo ``[表情]`` codes folded to two sentiment tokens
(``emopos`` / ``emoneg``, every other emoji dropped), hotline speaker tags
dropped, phone and ID numbers masked.

``Tokenizer`` cuts the normalised text with jieba (HMM off: a dictionary of the
domain terms in ``data/terms.txt`` and the city's place names keeps the words
that matter whole, and the character bigrams of ``features`` cover what the
dictionary does not know). Each model has its own ``Tokenizer``, with the words
it was trained with.

``sentences`` and ``request_indices`` find where a citizen states the demand (the
first and last sentences and those with 希望/要求/恳请…), which a model may weigh
again; ``load_handbook`` reads the 归口 handbook's subtopic names, phrasings and type
cues, which a model may take as dictionary words and as marker tokens.

``identity`` is the vectorizer's analyzer, a module-level function on purpose: a
TfidfVectorizer that holds a tokenizer method (jieba's holds an RLock) cannot be
pickled, so a trained model makes its tokens itself and loads in any process.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
import weakref
from collections.abc import Iterable
from math import log
from pathlib import Path

import jieba

from wenzheng.core.privacy import mask_text

jieba.setLogLevel(logging.WARNING)
logger = logging.getLogger(__name__)

TERMS_FILE = Path(__file__).resolve().parent / "data" / "terms.txt"
HANDBOOK_FILE = Path(__file__).resolve().parent / "data" / "taxonomy.yaml"

_URL = re.compile(r"(?:https?://|www\.)[0-9a-z\-._~:/?#\[\]@!$&'()*+,;=%]+")
_MENTION = re.compile(r"@([\w\-\u4e00-\u9fff]{1,30})")
_HASHTAG = re.compile(r"#([^#\n]{1,40})#")
_SPEAKER = re.compile(r"(坐席|话务员|客服|接线员|工作人员|市民|来电人|来电者|群众)\s*:")
_WEIBO_FACE = re.compile(r"\[([\u4e00-\u9fffa-z]{1,4})\]")
_SPACE = re.compile(r"\s+")
_HAN_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")

POSITIVE, NEGATIVE = "emopos", "emoneg"

# Emoji that carry the writer's mood become emopos / emoneg; every other emoji
# (objects, weather, flags, food …), skin tones, variation selectors and
# zero-width joiners are dropped, one code point at a time. Measured: folding
# adds ~0.5 point of type macro-F1 over dropping them all, and unlike raw emoji
# tokens it covers emoji the training data never showed.
_POS_EMOJI = "👍👏🙏😊😄😁😀😃😆🥰😍🤗🤝💯🎉🎊🌹💐❤💕💖💗💓😘☺👌💪🌟✨🙌😇🥳"
_NEG_EMOJI = "😤😡😠🤬👎😭😢😰😱😓😩😫😞💔😒🙄😔😖😣😥😨😪😵🤯😳😬🥺😟😕🙁☹😑😐🤦🤷💢⚠❗🆘"
_EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2190-\u21FF\u2300-\u23FF"
    "\u3297\u3299\u303D\u00A9\u00AE\u203C\u2049\u2122\u2139\uFE0F\u200D\U000E0020-\U000E007F]"
)
# Weibo's [表情] codes ([微笑] is as often sarcastic as not, so it stays a word).
_FACES_POS = frozenset("赞 good 鼓掌 爱你 心 给力 威武 哈哈 嘻嘻 太开心 感谢 握手 加油 棒 耶 好棒 ok 笑哈哈 爱心".split())
_FACES_NEG = frozenset("怒 抓狂 泪 衰 悲伤 委屈 哼 鄙视 弱 吐 伤心 晕 汗 怒骂 失望 生气 可怜 黑线 费解 打脸 裂开 允悲 苦涩".split())

# Only particles and fillers: TF-IDF weighs the rest, and words like 谢谢, 请 or 您
# tell a type (measured: a longer list cost ~0.5 point of macro-F1 on both heads).
_STOP = frozenset("的 了 是 在 和 就 都 也 还 这 那 啊 吧 呢 吗 嗯 哦 呀 么 哈 呐 嘛 噢 诶 唉 喂".split())
# Punctuation carries little but "?" (咨询) and "!" (投诉, 表扬); both are kept.
_KEEP_PUNCT = frozenset("?!")

_t2s = None


def _converter():
    """The OpenCC converter, made once per process (a few ms) and cached."""
    global _t2s
    if _t2s is None:
        try:
            import opencc

            _t2s = opencc.OpenCC("t2s").convert
        except Exception as exc:  # noqa: BLE001 — classification must not stop for want of it
            logger.warning("OpenCC is not available (%s): traditional characters are not converted", exc)
            _t2s = _same
    return _t2s


def _same(text: str) -> str:
    return text


def _emoji(m: re.Match) -> str:
    ch = m.group(0)
    if ch in _POS_EMOJI:
        return f" {POSITIVE} "
    if ch in _NEG_EMOJI:
        return f" {NEGATIVE} "
    return " "


def _face(m: re.Match) -> str:
    word = m.group(1)
    if word in _FACES_POS:
        return f" {POSITIVE} "
    if word in _FACES_NEG:
        return f" {NEGATIVE} "
    return f" {word} "


def clean(text: str) -> str:
    """The canonical characters of a message (NFKC, simplified, lower-cased); nothing removed.

    Place names are resolved on this form: masking could eat a county name
    (``我是瑞金叶坪乡的`` reads to the name masker as 我是 + a name).
    """
    if not text:
        return ""
    if not text.isascii():
        text = _converter()(unicodedata.normalize("NFKC", text))
    return text.lower()


def normalise(text: str) -> str:
    """The form features are made from: ``clean``, then URLs, mentions, hashtags, emoji, speaker tags, PII."""
    return _strip(clean(text))


def _strip(text: str) -> str:
    if not text:
        return ""
    if "http" in text or "www." in text:
        text = _URL.sub(" ", text)
    if "@" in text:
        text = _MENTION.sub(r" \1 ", text)
    if "#" in text:
        text = _HASHTAG.sub(r" \1 ", text)
    if "[" in text:
        text = _WEIBO_FACE.sub(_face, text)
    text = _EMOJI.sub(_emoji, text)
    if ":" in text:
        text = _SPEAKER.sub(" ", text)
    text = mask_text(text)
    return _SPACE.sub(" ", text).strip()


def load_terms(path: Path = TERMS_FILE) -> list[str]:
    """The domain terms (one per line; ``#`` starts a comment)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        word = line.split("#", 1)[0].strip()
        if word:
            out.append(word)
    return out


_BASE: jieba.Tokenizer | None = None
_built: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # words → their jieba Tokenizer
_lock = threading.Lock()


def _base() -> jieba.Tokenizer:
    """jieba's packaged dictionary, loaded once per process (about a second) and never changed:
    every model's dictionary starts as a copy of it."""
    global _BASE
    if _BASE is None:
        base = jieba.Tokenizer()
        base.initialize()
        _BASE = base
    return _BASE


def _words(words: Iterable[str]) -> tuple[str, ...]:
    """The words a dictionary can take, canonical and sorted: jieba weighs a word by the
    dictionary it meets, so one order makes one dictionary wherever it is built."""
    out = set()
    for w in words:
        w = clean(str(w)).strip()
        if len(w) >= 2 and not _SPACE.search(w):
            out.add(w)
    return tuple(sorted(out))


def _build(words: tuple[str, ...]) -> jieba.Tokenizer:
    """A jieba Tokenizer of its own: a copy of the base dictionary (the word strings are
    shared, so a copy costs ~15 MB and ~10 ms, not another load) plus ``words``."""
    with _lock:
        if (dt := _built.get(words)) is not None:
            return dt
        base = _base()
        dt = jieba.Tokenizer()
        dt.FREQ, dt.total, dt.initialized = dict(base.FREQ), base.total, True
        for w in words:
            # Enough weight to keep the word whole where it stands, not so much that
            # it swallows its neighbours' characters (降低保费 must not yield 低保).
            dt.add_word(w, freq=max(dt.suggest_freq(w, False), 2000))
        _built[words] = dt
        return dt


class Tokenizer:
    """jieba's dictionary with one model's words (domain terms, place names), cut without HMM.

    Each model has its own: jieba's global dictionary keeps every word anyone added, so two
    models in one process (a replay over model versions) would cut as neither did when it
    decided. Only the words are pickled; the dictionary is rebuilt from them on first use
    and shared by every Tokenizer with the same words in the process.
    """

    def __init__(self, words: Iterable[str] = ()):
        self.words = _words(words)
        self._dt: jieba.Tokenizer | None = None

    def __getstate__(self) -> dict:
        return {"words": self.words}

    def __setstate__(self, state: dict) -> None:
        self.words, self._dt = tuple(state["words"]), None

    @property
    def jieba(self) -> jieba.Tokenizer:
        """The jieba Tokenizer itself (its ``lcut(text, HMM=False)`` is what ``segment`` mirrors)."""
        if self._dt is None:
            self._dt = _build(self.words)
        return self._dt

    def segment(self, text: str) -> list[str]:
        """``self.jieba.lcut(text, HMM=False)``, token for token, at about twice the speed.

        The same dictionary, the same DAG and the same maximum-probability route; only the
        Python around it is leaner (no generators, no DAG dict, no tuple ``max``).
        ``tests/classify/test_text.py`` checks it against jieba on the corpus.
        """
        dt = self.jieba
        freq, logtotal = dt.FREQ, log(dt.total)
        out: list[str] = []
        pos = 0
        for m in _JIEBA_BLOCK.finditer(text):
            if m.start() > pos:
                out.extend(text[pos : m.start()])
            _route(m.group(0), freq, logtotal, out)
            pos = m.end()
        if pos < len(text):
            out.extend(text[pos:])
        return out

    def cut(self, normalised: str) -> list[str]:
        """The words of text that is already ``normalise``d; stop words, numbers and
        punctuation but ``?`` and ``!`` dropped."""
        verdicts = _verdicts
        out = []
        for t in self.segment(normalised):
            k = verdicts.get(t)
            if k is None:
                k = _keep(t)
                if len(verdicts) < 200_000:
                    verdicts[t] = k
            if k:
                out.append(t)
        return out

    def tokenize(self, text: str) -> list[str]:
        """``normalise`` then ``cut``: the words of one message."""
        return self.cut(normalise(text))

    def features(self, normalised: str, chars: int = 0, shortest: int | None = None) -> list[str]:
        """The vectorizer's input: the words, plus character n-grams (marked ``~``) of lengths
        ``shortest``…``chars`` when ``chars`` > 0."""
        words = self.cut(normalised)
        if chars:
            words.extend(char_ngrams(normalised, chars, "~", shortest))
        return words


_terms_only: Tokenizer | None = None


def tokenize(text: str) -> list[str]:
    """The words of one message with the domain terms only (no model's place names)."""
    global _terms_only
    if _terms_only is None:
        _terms_only = Tokenizer(load_terms())
    return _terms_only.tokenize(text)


# jieba's own block pattern: runs of these are cut with the dictionary, every
# other character stands alone.
_JIEBA_BLOCK = re.compile("[\u4E00-\u9FD5a-zA-Z0-9+#&\\._%\\-]+")


def _route(s: str, freq: dict, logtotal: float, out: list[str]) -> None:
    n = len(s)
    score = [0.0] * (n + 1)
    nxt = list(range(1, n + 2))
    get = freq.get
    for idx in range(n - 1, -1, -1):
        best = None
        end = idx + 1
        i = idx + 1
        f = get(s[idx])
        while f is not None:  # FREQ holds every prefix of every word (0 for mere prefixes)
            if f:
                v = log(f) - logtotal + score[i]
                if best is None or v >= best:  # jieba's max over (score, end): the longer on a tie
                    best, end = v, i
            if i >= n:
                break
            i += 1
            f = get(s[idx:i])
        score[idx] = -logtotal + score[idx + 1] if best is None else best
        nxt[idx] = end
    x, buf = 0, ""
    while x < n:
        y = nxt[x]
        w = s[x:y]
        if y - x == 1 and w.isascii() and w.isalnum():  # jieba joins single letters and digits
            buf += w
        else:
            if buf:
                out.append(buf)
                buf = ""
            out.append(w)
        x = y
    if buf:
        out.append(buf)


_verdicts: dict[str, bool] = {}


def _keep(t: str) -> bool:
    if t in _STOP or t.isdigit():
        return False
    if len(t) == 1 and not t.isalnum():
        return t in _KEEP_PUNCT
    return t.strip(" *.-_,:;/\\'\"()[]{}<>~`|+#&%") != ""


def char_ngrams(normalised: str, n: int = 2, mark: str = "", shortest: int | None = None) -> list[str]:
    """Character n-grams of the Chinese runs (each prefixed with ``mark``), of lengths ``shortest``
    (default ``n``) to ``n``, for typos and words the dictionary lacks."""
    out: list[str] = []
    runs = _HAN_RUN.findall(normalised)
    for k in range(shortest or n, n + 1):
        for run in runs:
            out.extend([mark + run[i : i + k] for i in range(len(run) - k + 1)])
    return out


# Sentence ends of normalised text (NFKC made ！？； half-width; newlines are spaces by then).
_SENTENCE = re.compile(r"(?<=[。!?;])|\s+")
# How citizens state what they want done (the 归口 handbook's main-demand rule: the closing
# 希望/请求/要求 sentence names the matter a message belongs to).
_REQUEST_CUE = re.compile("希望|要求|恳请|请求|恳求|呼吁|盼望|期盼|建议|能否|能不能|尽快|务必|请|麻烦")


def sentences(normalised: str) -> list[str]:
    """The sentences of normalised text. Every boundary is a character jieba never joins to a
    word, so cutting the sentences one by one gives the words of cutting the whole."""
    return [x for x in _SENTENCE.split(normalised) if x]


def request_indices(parts: list[str]) -> list[int]:
    """Which sentences state the request: the first, the last, and any with a request cue."""
    if not parts:
        return []
    last = len(parts) - 1
    return [i for i, x in enumerate(parts) if i in (0, last) or _REQUEST_CUE.search(x)]


def load_handbook(path: Path = HANDBOOK_FILE) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(terms, phrasings) of the 归口 handbook, each by label: a category code, or ``type:<code>``.

    Terms are the pieces of the subtopic names (占道经营/流动摊贩 → 占道经营, 流动摊贩) and
    the types' cues; phrasings are the subtopics' typical sentences and the types' examples.
    """
    import yaml

    if not path.is_file():
        return {}, {}
    book = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    terms: dict[str, list[str]] = {}
    phrasings: dict[str, list[str]] = {}
    for cat in book.get("categories") or []:
        for sub in cat.get("subtopics") or []:
            terms.setdefault(cat["code"], []).extend(_NAME_PARTS.split(sub.get("name") or ""))
            phrasings.setdefault(cat["code"], []).extend(sub.get("phrasings") or [])
    for typ in book.get("types") or []:
        terms.setdefault(f"type:{typ['code']}", []).extend(typ.get("cues") or [])
        phrasings.setdefault(f"type:{typ['code']}", []).extend(typ.get("examples") or [])
    return ({k: [w for w in v if 2 <= len(w) <= 8] for k, v in terms.items()}, phrasings)


_NAME_PARTS = re.compile(r"[/、，,（）()\s]+")


def identity(tokens: list[str]) -> list[str]:
    """The vectorizer's analyzer: tokens are made once and shared by every head."""
    return tokens
