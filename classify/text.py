"""Text normalisation and tokenisation, before any feature is made.

``tokenize`` is a module-level function on purpose: a TfidfVectorizer that holds
``jieba.lcut`` (a bound method with an RLock) cannot be pickled, so a trained
model refers to this function by name and loads in any process.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable

import jieba

from wenzheng.privacy import mask_text

jieba.setLogLevel(logging.WARNING)

_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@[\w\u4e00-\u9fff\-]{1,30}")
_HASHTAG = re.compile(r"#([^#\n]{1,40})#")
_SPEAKER = re.compile(r"(坐席|话务员|客服|接线员|市民|来电人|群众)\s*[:：]")
_SPACE = re.compile(r"\s+")
_STOP = frozenset("的 了 是 我 你 他 她 它 们 在 有 和 就 都 也 还 这 那 啊 吧 呢 吗 嗯 哦 呀 么 一下 一个 什么 怎么 那个 这个 就是 然后 请问 您好 你好 喂".split())

_user_words: set[str] = set()


def normalise(text: str) -> str:
    """Full-width to half-width, URLs dropped, @mentions and #hashtags# kept as words, PII masked."""
    text = unicodedata.normalize("NFKC", text or "")
    text = _URL.sub(" ", text)
    text = _MENTION.sub(lambda m: " " + m.group(0)[1:] + " ", text)
    text = _HASHTAG.sub(lambda m: " " + m.group(1) + " ", text)
    text = _SPEAKER.sub(" ", text)
    text = mask_text(text)
    return _SPACE.sub(" ", text).strip()


def add_words(words: Iterable[str]) -> None:
    """Teach jieba the city's place names and the domain's terms (one token each)."""
    for w in words:
        if w and len(w) >= 2 and w not in _user_words:
            jieba.add_word(w, freq=20000)
            _user_words.add(w)


def tokenize(text: str) -> list[str]:
    return [t for t in jieba.lcut(normalise(text)) if t.strip() and t not in _STOP and not t.isdigit()]


def identity(tokens: list[str]) -> list[str]:
    """The vectorizer's analyzer: tokens are made once and shared by every head."""
    return tokens
