"""Personal data: masked everywhere but the raw intake topic.

Phone numbers, ID numbers and names of citizens never leave ``wz.intake``
unmasked. Masking keeps enough shape for a human to read the message
(``139****1234``) and none that identifies the person. Authors are carried as a
keyed pseudonym, stable per channel and handle, so repeated reports by the same
person can be linked without knowing who they are.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

# 18-digit resident ID: region, birth date, sequence, check digit (may be X); read out on
# the phone it is often written in groups (360702 19850101 1234).
_ID18 = re.compile(r"(?<![0-9])[1-9]\d{5}[- ]?(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[- ]?"
                   r"\d{3}[0-9Xx](?![0-9A-Za-z])")
# Full-width digits, letters, ＋ and －, and the ideographic space as half-width: a number
# typed with a Chinese input method must be masked like any other (，。：stay as they are).
_HALF_WIDTH = {c: c - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))
               for c in range(r[0], r[1] + 1)} | {0xFF0B: 0x2B, 0xFF0D: 0x2D, 0x3000: 0x20}
_WIDE = re.compile("[\uff0b\uff0d\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\u3000]")  # a search is ~20x cheaper than translate
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?![0-9])")
_THREE_DIGITS = re.compile(r"\d\d\d")
_LANDLINE = re.compile(r"(?<![0-9])(0\d{2,3})[- ]?(\d{7,8})(?![0-9])")
# "我叫刘建华" / "本人王芳" / "姓名：李四" / "联系人张先生"
_NAME_CUE = re.compile(
    r"(我叫|我是|本人|姓名[:：]?|联系人[:：]?|名字叫|叫做)"
    r"([\u4e00-\u9fff]{1}(?:先生|女士|师傅|阿姨|老师)|[\u4e00-\u9fff]{2,3})"
)
_protected: re.Pattern[str] | None = None
_protected_words: set[str] = set()


def protect(words: Iterable[str]) -> None:
    """Words that are never a person's name (the city's place names): "我是瑞金叶坪乡的" keeps 瑞金."""
    global _protected
    new = {w for w in words if w and len(w) >= 2} - _protected_words
    if new:
        _protected_words.update(new)
        _protected = re.compile("|".join(map(re.escape, sorted(_protected_words, key=len, reverse=True))))


_NOT_NAMES = {"市民", "群众", "业主", "住户", "租户", "家长", "村民", "一名", "一个", "这里", "那个", "居民", "老人"}


def mask_text(text: str, names: Iterable[str] = ()) -> str:
    """Mask phone and ID numbers, names given by the source, and names the text introduces."""
    if not text:
        return text
    if _WIDE.search(text):
        text = text.translate(_HALF_WIDTH)
    for name in sorted({n for n in names if n and len(n) >= 2}, key=len, reverse=True):
        text = text.replace(name, _mask_name(name))
    if _THREE_DIGITS.search(text):  # every number masked has a run of three; most messages none
        text = _ID18.sub(lambda m: m.group(0)[:6] + "************", text)
        text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
        text = _LANDLINE.sub(lambda m: f"{m.group(1)}-****{m.group(2)[-2:]}", text)

    def cue(m: re.Match) -> str:
        who = m.group(2)
        if who in _NOT_NAMES or who[:2] in _NOT_NAMES:
            return m.group(0)
        if _protected is not None and _protected.match(m.string, m.start(2)):
            return m.group(0)
        return m.group(1) + _mask_name(who)

    return _NAME_CUE.sub(cue, text)


def _mask_name(name: str) -> str:
    if name.endswith(("先生", "女士", "师傅", "阿姨", "老师")):
        return name  # 王先生 names a surname only, as the platforms publish it
    return name[0] + "*" * (len(name) - 1)


def mask_phone(number: str | None) -> str | None:
    if not number:
        return number
    digits = re.sub(r"\D", "", number)
    return digits[:3] + "****" + digits[-4:] if len(digits) >= 7 else "****"


def pseudonym(key: bytes, channel: str, handle: str | None) -> str | None:
    """A stable, keyed pseudonym of an author handle (phone, openid, Weibo uid)."""
    if not handle:
        return None
    digest = hmac.new(key, f"{channel}:{handle}".encode(), hashlib.sha256).hexdigest()
    return f"p-{digest[:20]}"


def contains_pii(text: str) -> bool:
    """True if unmasked phone or ID numbers remain (used by tests and the privacy check)."""
    if _WIDE.search(text):
        text = text.translate(_HALF_WIDTH)
    return bool(_MOBILE.search(text) or _ID18.search(text))
