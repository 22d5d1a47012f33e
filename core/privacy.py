"""Personal data: masked everywhere but the raw intake topic.

Phone numbers (also read out in Chinese numerals), ID numbers (18- and 15-digit),
bank cards, e-mail addresses, licence plates, house and room numbers, and names of
citizens never leave ``wz.intake`` unmasked. Masking keeps enough shape for a human
to read the message (``139****1234``, ``红旗大道**号*栋``, ``刘**``) and none that
identifies the person; what an office needs to act (the road, the estate, the
village, a surname as in 王先生) stays. Authors are carried as a keyed pseudonym,
stable per channel and handle, so repeated reports by the same person can be
linked without knowing who they are.

Names: a surname (~400 single, ~50 compound) before given-name characters, after a
cue (联系人, 我叫, 是, before 先生) or, without one, as jieba's dictionary cuts the few
characters around it; the city's place names (``protect``) are never names. What is
deliberately left alone is listed in ``tests/core/pii_cases.py`` (``KNOWN_MISSES``).

Cost: ``mask_text`` runs on every message of the classify stage. Each kind has a
cheap gate (a regular-expression scan in C) that most messages fail; jieba's
dictionary (about a second and 130 MB, once per process) loads on the first message
with a name candidate, and is asked only about the candidates that the surname and
given-name lists and a few dictionary look-ups leave.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache
from itertools import accumulate
from typing import Any

_HAN = "\u4e00-\u9fff"

# ---------------------------------------------------------------- normalisation
# Full-width digits, letters, ＋ － ＠ and the ideographic space as half-width: a number
# typed with a Chinese input method must be masked like any other (，。：stay as they are).
_HALF_WIDTH = {c: c - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))
               for c in range(r[0], r[1] + 1)} | {0xFF0B: 0x2B, 0xFF0D: 0x2D, 0xFF20: 0x40, 0x3000: 0x20}
_WIDE = re.compile("[\uff0b\uff0d\uff10-\uff19\uff20-\uff3a\uff41-\uff5a\u3000]")  # a search is ~20x cheaper than translate

# ---------------------------------------------------------------- numbers
# 18-digit resident ID: region, birth date, sequence, check digit (may be X); read out on
# the phone it is often written in groups (360702 19850101 1234, 360702 198508 081234). The 15-digit first
# generation has a two-digit year and no check digit.
_ID18 = re.compile(r"(?<![0-9])[1-9]\d{5}[- ]?(?:19|20)\d{2}[- ]?(?:0[1-9]|1[0-2])[- ]?(?:0[1-9]|[12]\d|3[01])[- ]?"
                   r"\d{3}[0-9Xx](?![0-9A-Za-z])")
_ID15 = re.compile(r"(?<![0-9])[1-9]\d{5}[- ]?\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[- ]?\d{3}(?![0-9A-Za-z])")
# Bank cards: 16-19 digits, run together or in groups of four. Only a number that passes
# the Luhn check, or follows 卡号/银行卡/账号, is a card: order numbers mostly fail it, and
# tracking numbers (GZ20261122-000123) start with letters.
_CARD = re.compile(r"(?<![0-9A-Za-z])(?:\d{16,19}|\d{4}(?:[ -]\d{4}){3}(?:[ -]?\d{1,3})?)(?![0-9A-Za-z])")
_CARD_CUE = re.compile(r"(?:卡号|卡|账号|帐号|账户|帐户)(?:是|为|[:：])?\s*$")
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?![0-9])")
_LANDLINE = re.compile(r"(?<![0-9])[(（]?(0\d{2,3})[)）]?[- ]?(\d{7,8})(?![0-9])")
# Gates: a pattern that starts with a plain character (class) is scanned at C speed, one
# that starts with a look-behind is tried at every position; the gates are of the first kind.
_ANY_DIGIT = re.compile("[0-9]")
_LONG_HINT = re.compile("[0-9]{4}(?:[0-9]{2}|[ -][0-9]{4})")  # an ID's six-digit region, a card's groups of four
_MOBILE_HINT = re.compile("1[3-9][0-9]")
_LANDLINE_HINT = re.compile("0[0-9][0-9]")
_EMAIL_HINT = re.compile("[A-Za-z0-9._%+-]@[A-Za-z0-9]")
# Numbers read out and typed as words: 一三九 七九七一 二三四五, 幺 for 1, 两 for 2, mixed
# with digits. A run of seven or more counts only if it is a mobile, a landline with its
# area code, an ID or a card once turned into digits.
_CN_NUMERALS = "零〇一二三四五六七八九幺两"
_CN_TO_DIGITS = str.maketrans(_CN_NUMERALS, "0012345678912")
_SPOKEN = re.compile(rf"[0-9{_CN_NUMERALS}](?:[ \-—–，,、]?[0-9{_CN_NUMERALS}]){{6,}}")
_CN_NUMERAL = re.compile(f"[{_CN_NUMERALS}]")
_SEPARATORS = " -—–，,、"
_GROUP = re.compile(f"[0-9]+|[^0-9{re.escape(_SEPARATORS)}]+")  # digits apart: 360722780512041一三五…
_OWN_NUMBER = re.compile(r"\d{7,}")
_MAX_GROUPS = 12  # a number is read out in six groups at most (a card: 4 4 4 4 3), each may mix digits in
_ID_SHAPE = re.compile(r"[1-9]\d{5}(?:(?:19|20)\d{2}|\d{2})(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3,4}")

# ---------------------------------------------------------------- e-mail, plates, addresses
# Bounded repetitions and a look-behind keep this linear on hostile input (a long run of
# letters before an @ would otherwise be rescanned from every position).
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-]{1,64})@([A-Za-z0-9-]{1,63}(?:[.．][A-Za-z0-9-]{1,63}){0,4}"
                    r"[.．][A-Za-z]{2,10})(?![A-Za-z0-9-])")
# 赣B12345, 赣B·D12345 (new energy, 8 characters), 赣b 1234学. Three digits at least: a
# province character before an English word is not a plate.
_PLATE = re.compile(r"([京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼] ?[A-Za-z])([ ·•・.\-]?)"
                    r"([A-Za-z0-9]{4}(?:[A-Za-z0-9]{1,2}|[学警挂港澳领试超]))(?![A-Za-z0-9])")
# House, building, unit and room numbers: 18号3栋2单元501室, 5栋1201, 8号楼3单元402, 十八号.
# 号 before 线/门/口/窗… is a metro line, a gate or a counter, not a door.
_ADDR_NUM = r"(?:(?<![0-9A-Za-z])\d{1,5}(?:[-之]\d{1,4})?|(?<![A-Za-z])[A-Za-z]|[零〇一二三四五六七八九十百两]{1,4})"
_ADDR_UNIT = r"(?:号楼|号院|号房|#楼|号(?![线门口窗台车床机站位箱柜码地文])|栋|幢|座|单元|楼|层|室|房)"
_ADDR = re.compile(rf"(?:{_ADDR_NUM}{_ADDR_UNIT})+(?:\d{{3,4}}(?:室|房|号)?(?![0-9]))?")
_ADDR_PIECE = re.compile(rf"{_ADDR_NUM}({_ADDR_UNIT})|\d{{3,4}}")
_ADDR_DIGIT = re.compile(r"[0-9A-Za-z零〇一二三四五六七八九十百两]")
_ADDR_HINT = re.compile("[0-9A-Za-z零〇一二三四五六七八九十百两#](?:号|栋|幢|座|单元|楼|层|室|房)")
_ADDR_BACK = frozenset("0123456789零〇一二三四五六七八九十百两-之")
_FLOORS = frozenset({"楼", "层"})
_NUMERAL_GIVEN = frozenset("一二三四五六七八九十")  # 赖九妹, 刘三妹: only after a strong cue
_ROOM_UNITS = frozenset({"号", "号楼", "号院", "号房", "单元", "室"})
_DOOR_UNITS = frozenset({"号", "号楼", "号院", "号房", "#楼", "栋", "幢", "座", "单元"})
# What comes before a door number that makes a single one a house: a road, an estate, a village.
_PLACE_BEFORE_DOOR = ("路", "街", "道", "巷", "弄", "村", "组", "区", "小区", "花园", "苑", "园", "城", "公寓", "家园",
                      "山庄", "府", "湾", "里", "居", "庭", "坊", "社区", "大厦", "广场", "公馆", "期")

# ---------------------------------------------------------------- names
# The ~400 common single surnames (by population, with the Hakka ones of 赣南: 赖 钟 曾 廖
# 邱 温 揭 巫 幸 危) and the compound ones.
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴"
    "莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅"
    "童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项"
    "连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞"
    "敖巩明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花"
    "权强帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母"
    "裘亓修邰赫杭况那宿鲜印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利於呼居揭干但尉冶斯元束檀衣信展阴昝智幸"
    "奉植衡富尧闭由洪赖凤钮习过鄂刑蓟訾达郦竺糜丘宓蔚弓牧隗谯缑汲邴松充"
)
_COMPOUND_SURNAMES = (
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒", "令狐", "夏侯",
    "澹台", "端木", "独孤", "南宫", "西门", "轩辕", "呼延", "钟离", "闾丘", "申屠", "太史", "公羊", "赫连", "万俟",
    "拓跋", "百里", "东郭", "濮阳", "淳于", "单于", "左丘", "司空", "司寇", "巫马", "梁丘", "乐正", "仲孙", "鲜于",
    "亓官", "公冶", "漆雕", "羊舌", "第五",
)
_SINGLE = frozenset(_SURNAMES)
_COMPOUND = frozenset(_COMPOUND_SURNAMES)
_COMPOUND_ALT = "|".join(_COMPOUND_SURNAMES)
_SURNAME_ALT = f"(?:{_COMPOUND_ALT}|(?!{_COMPOUND_ALT})[{_SURNAMES}])"  # 欧阳**: 欧 is no surname of its own
_SURNAME_AT = re.compile(f"{_SURNAME_ALT}(?=[{_HAN}])")
# Characters that end a name rather than continue it (的, 了, 是 …).
_FUNCTION = "的了着过得是在有不也都就还又被把给跟对从到这那个们吗呢吧啊呀么说讲姓某等"
_HAN_RUN = re.compile(f"[{_HAN}]+")
# Words after which a name follows for sure: a given name may then have any rare character
# and a surname that is mostly a word (联系人于洋). After the weaker 我是, 本人, 业主, 是, 叫
# (本人于上月…, 我是来表扬的…, 业主反映…) only the surnames that are mostly words count too.
_STRONG_CUE = re.compile(r"(?:姓名|名字叫|名字是|名字|名叫|叫做|我叫|联系人|户主|投诉人|举报人|反映人|来电人|当事人|"
                         r"申请人)(?:[:：是为叫]|\s)?")
_WEAK_CUE = re.compile(r"(?:我是|本人|业主|房东|车主|是|叫)[:：]?")  # 业主成立业委会, 房东不退
_SURNAME_THEN_GIVEN = re.compile(f"姓({_SURNAME_ALT})[，,、 ]?(?:名字叫|名叫|名|叫)([{_HAN}]{{1,2}})")
_BEFORE_TITLE = re.compile(f"{_SURNAME_ALT}[{_HAN}]{{1,2}}(?:先生|女士|同志)")
_TITLE_WORD = re.compile("先生|女士|同志")
# What follows a surname without being a given name: 王先生 and 李阿姨 are how the platforms
# publish a citizen, 张主任 an official by title.
_TITLES = frozenset(
    "先生 女士 小姐 同志 师傅 阿姨 老师 老板 老板娘 经理 主任 书记 局长 所长 科长 队长 村长 镇长 县长 市长 区长 部长 处长"
    " 站长 院长 校长 厂长 组长 医生 大夫 护士 警官 律师 会计 总 工 姐 哥 叔 婶 伯 爷 奶 嫂 姨 妈 爸 某 某某 老 家 氏"
    " 大爷 大妈 大姐 大哥 大叔 大婶 奶奶 爷爷 叔叔 伯伯 婆婆 同学 老人 家人 一家 两口 师 班长 姓 女 男 记者 律所"
    " 老太 老头 老汉 总经理 董事长 委员 主席 干部 支书 网格员 工作人员".split()
)
# Words the tagger calls a name (nr) that citizens write as ordinary words.
_NOT_NAMES = frozenset(
    "谢谢 谢谢你 阿姨 师傅 老先生 高峰 黎明 明星 江湖 白云 金牌 高手 马路 龙头 路人 黄牛 文明 方便 平安 安全 和谐"
    " 高兴 高度 海关 万一 万达 花园 石头 金额 时间 国家 公安 公交 公司 车主 门口 司机 田地 林地 龙舟 黄金 江南 江北"
    " 单位 单元 楼上 楼下 区域 强烈 常常 连续 成功 全部 应该 华为 包括 管理 宁可 尚未 那么 但是 于是 和平 来电 都是"
    " 原来 原因 相关 初步 信息 利益 元旦 明天 海绵 花钱 权益 帅哥 巴士 丰富 支付 国道 平台 计划 云南 敬请 来源 卫健".split()
)
# Characters of given names (伟 芳 秀 英 建 华 …, with the 水生 火根 九妹 of rural 赣南): without
# a cue, a surname is a name only when followed by these; 子 never ends one (孙子, 叶子, 苗子).
_GIVEN_CHARS = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂华建国文红玉兰珍志海林春金云凤荣萍鹏辉俊斌宇浩凯健晨欣婷雪"
    "琳晶颖慧倩玲丹燕梅莉琴清鑫波宁亮成龙飞新生福德民永东庆宏光安峰武彬帆阳锋利兵发伦义忠良勤昌贵富祥顺财元"
    "胜学友仁礼信智彪毅钢松柏坤琪瑶怡婉佳嘉雅思悦梦涵蕾露薇菲璐瑾琦晓小美淑惠翠月香莲菊彩爱素青银冬秋夏园"
    "娥琼珊蓉萱妍茜莹婧岚楠彤馨紫雯蓓媛妮姗舒诗宜若依心雨轩豪博睿哲铭宸泽昊航天逸然辰煜皓旭晖鸿振家晟达立正世"
    "兴隆江河山岩石川泉洪浪溪冰霖雷铁锦绣丰茂盛森杨桦梁材彦雄威坚康寿禄喜乐吉瑞泰旺宝珠瑛璇瑜桃杏荷花远长满"
    "君令子芬芝苗芸蔚章书贤孝恭谦朗昕昱曦星乾峻岭巍嵩崇纲宗炳焕烨炜熙鹰鸣鹤虎豹骏驰腾翔翼羽雁锐剑钧淼焱妹娣仔"
    "根水火娇蕊萌勋涌湘赣闽粤滨灵秉鉴晋珂珏琛璋"
)
_GIVEN = frozenset(_GIVEN_CHARS)
# Without any cue, a two-character name (李明, 王芳) is much weaker evidence than a three-
# character one (白水, 高清, 薄冰 and 危石 are words): only a common surname with one of the
# commonest single given names.
_SINGLE_GIVEN = frozenset(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚华红玉兰珍林春英萍鹏辉俊斌宇浩凯健晨欣婷雪琳晶颖慧倩玲丹燕梅莉琴鑫"
    "波宁亮龙飞峰彬帆锋兵毅钢坤琪瑶怡婉佳悦蕾露薇菲璐瑾琦翠莲菊蓉萱妍茜莹婧岚楠彤馨雯媛妮姗舒轩豪博睿哲铭昊航逸"
    "辰煜皓旭晖鸿振晟勋芬"
)
_TOP100 = frozenset(_SURNAMES[:100])
# A surname's first character before a given-name character (or a compound surname's
# second): the candidates without a strong cue, found by a scan at C speed.
_CANDIDATE = re.compile("[{}](?=[{}])".format(
    "".join(dict.fromkeys(_SURNAMES + "".join(c[0] for c in _COMPOUND_SURNAMES))),
    "".join(dict.fromkeys(_GIVEN_CHARS + "".join(c[1] for c in _COMPOUND_SURNAMES)))))
# Surnames that are far more often a word of their own (于 和 时 都 …): a name only after a cue.
_CUELESS_NOT_SURNAME = frozenset("于於和时都来区单门国平相初由那但干过充习达信利元原明海花强成全应商南云公钱车楼付满关师")
_MOST_COMMON = frozenset(_SURNAMES[:20])
# What follows a place or a firm, not a person: 龙翔大道, 华苑小区, 康民诊所, 金桂苑.
_PLACE_SUFFIX = frozenset("镇乡村县区市路街巷省州苑园庭府湾坊店厂所院馆楼栋")
_ASPECT = frozenset({"了", "着", "过"})  # 白建了: a verb, not a given name
_PLACE_AFTER = frozenset("小区 花园 诊所 公司 医院 学校 超市 酒店 宾馆 饭店 大道 大街 街道 社区 新城 广场 大厦 公寓 家园 山庄"
                         " 中学 小学 幼儿园 门诊 药店 药房 商场 市场 工厂 集团 大桥 公园 景区".split())
_COMMON = 100  # jieba frequency above which a surname's word (许可, 老王) is an ordinary word
_COMMON_NAME = 2000  # …and after a strong cue one as common as 高峰 (1556) is a name, 成立 is not
_RARE_NAME = 60  # jieba lists some names (刘建华, 黄国强) rarely; 阳光 and 许可, tagged nr too, are frequent
_RARE_GIVEN = 1100  # a given name jieba knows as a word (秀英 18, 文华 1074) is no everyday word (光明 1219)
_RARE_CHAR = 1000  # after a strong cue, a character this rare is a given name's (娣 228, 找 20856 is not)

_protected_words: set[str] = set()
_protected_lens: list[int] = []


def protect(words: Iterable[str]) -> None:
    """Words that are never a person's name (the city's place names): "我是瑞金叶坪乡的" keeps 瑞金."""
    global _protected_lens
    new = {w for w in words if w and len(w) >= 2} - _protected_words
    if new:
        _protected_words.update(new)
        _protected_lens = sorted({len(w) for w in _protected_words}, reverse=True)


def _protected_at(text: str, i: int) -> bool:
    """Whether a protected word starts at ``i`` or covers it (瑞金 in 我是瑞金的: 金 is a surname)."""
    for n in _protected_lens:
        for j in range(max(0, i - n + 1), i + 1):
            if text[j:j + n] in _protected_words:
                return True
    return False


def mask_text(text: str, names: Iterable[str] = ()) -> str:
    """Mask the personal data of every kind above, and the names the source gave (``names``).

    Idempotent (``mask_text(mask_text(x)) == mask_text(x)``), and linear in the length of
    the text: every pattern is anchored or bounded, so hostile input cannot make it crawl.
    """
    if not text:
        return text
    if _WIDE.search(text):
        text = text.translate(_HALF_WIDTH)
    for name in sorted({n for n in names if n and len(n) >= 2}, key=len, reverse=True):
        text = text.replace(name, _mask_name(name))
    return _mask(text)


def mask_reason(text: str) -> str:
    """A dead-letter reason or excerpt, masked like a message and stricter about digits.

    A reason quotes whatever failed to parse (``unknown speaker '市民刘建华13912345678'``),
    and a phone number with a digit too many is still somebody's: every run of seven
    digits or more keeps only its last two, unless it is a date (20261122) or part of an
    identifier with letters (GZ20261122-000123).
    """
    return _LONG_DIGITS.sub(_reason_digits, mask_text(text))


def contains_pii(text: str, kinds: Iterable[str] | None = None) -> bool:
    """True if anything ``mask_text`` masks remains unmasked (used by tests and privacy checks);
    ``kinds`` (of ``KINDS``) narrows the question: an intake record may hold a door number."""
    if _WIDE.search(text):
        text = text.translate(_HALF_WIDTH)
    if kinds is None:
        return _mask(text) != text
    return any(_STEPS[k](text) != text for k in kinds)


def pseudonym(key: bytes, channel: str, handle: str | None) -> str | None:
    """A stable, keyed pseudonym of an author handle (phone, openid, Weibo uid)."""
    if not handle:
        return None
    digest = hmac.new(key, f"{channel}:{handle}".encode(), hashlib.sha256).hexdigest()
    return f"p-{digest[:20]}"


def mask_only(text: str, kind: str) -> str:
    """One kind of ``KINDS`` alone, on half-width text: for measuring which kind masks what."""
    return _STEPS[kind](text)


def _mask(text: str) -> str:
    """Every kind in turn (the longest numbers first), each behind a gate most messages fail
    in a scan at C speed: ``_STEPS`` unrolled, with the gates they share tried once."""
    if "@" in text and _EMAIL_HINT.search(text):
        text = _EMAIL.sub(_email, text)
    text = _SPOKEN.sub(_spoken, text)
    if _ANY_DIGIT.search(text):
        if _LONG_HINT.search(text):
            text = _CARD.sub(_card, _ID15.sub(_id15, _ID18.sub(_id18, text)))
        if _MOBILE_HINT.search(text):
            text = _MOBILE.sub(_mobile, text)
        if _LANDLINE_HINT.search(text):
            text = _LANDLINE.sub(_landline, text)
    return _mask_names(_mask_addresses(_PLATE.sub(_plate, text)))


# ---------------------------------------------------------------- numbers, e-mail, plates, addresses
_NON_DIGIT = re.compile(r"\D")
_DIGIT = re.compile(r"\d")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_LONG_DIGITS = re.compile(r"(?<![0-9A-Za-z-])\d{7,}(?![0-9])")
_DATE_START = re.compile(r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")


def _luhn(digits: str) -> bool:
    total = 0
    for k, c in enumerate(reversed(digits)):
        n = ord(c) - 48
        if k % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _star_digits(s: str, keep_last: int) -> str:
    """Every digit of ``s`` as ``*`` but the last ``keep_last``; separators stay."""
    left = len(_DIGIT.findall(s)) - keep_last
    out = []
    for c in s:
        if left > 0 and "0" <= c <= "9":
            c, left = "*", left - 1
        out.append(c)
    return "".join(out)


def _card(m: re.Match[str]) -> str:
    """A card keeps its last four digits (尾号), as banks print it; a non-card stays whole."""
    s = m.group()
    digits = _NON_DIGIT.sub("", s)
    if (16 <= len(digits) <= 19 and _luhn(digits)) or _CARD_CUE.search(m.string, max(0, m.start() - 8), m.start()):
        return _star_digits(s, 4)
    if len(s) > 19 and not s[:19].isdigit() and _luhn(digits[:16]):  # 4×4 groups, then another number
        return _star_digits(s[:19], 4) + s[19:]
    return s


def _number_shape(digits: str) -> tuple[int, int] | None:
    """(digits kept at the head, at the tail) if ``digits`` is a phone, ID or card number."""
    n = len(digits)
    if n == 11 and digits[0] == "1" and digits[1] in "3456789":
        return 3, 4
    if 10 <= n <= 12 and digits[0] == "0" and digits[1] != "0":
        return 3, 2
    if n in (15, 18) and _ID_SHAPE.fullmatch(digits):
        return 6, 0
    if 16 <= n <= 19 and _luhn(digits):
        return 0, 4
    return None


def _spoken(m: re.Match[str]) -> str:
    """A number in Chinese numerals (or mixed with digits), masked in its own characters.

    The run may hold several numbers between separators (``606 139七九七…``, ``551，幺五九…``):
    the longest stretch of whole groups that is a phone, ID or card number is masked, then
    the search goes on after it.
    """
    run = m.group()
    if not _CN_NUMERAL.search(run):
        return run  # digits only: the patterns for digits see it
    groups = [(g.start(), g.end()) for g in _GROUP.finditer(run)]
    digits = [run[g0:g1].translate(_CN_TO_DIGITS) for g0, g1 in groups]
    # a number in digits of its own (13970712368，一三九…) is the digit patterns', and a wall
    wall, walls = len(groups), [0] * len(groups)
    for k in range(len(groups) - 1, -1, -1):
        if _OWN_NUMBER.fullmatch(run, *groups[k]):
            wall = k
        walls[k] = wall
    ends = list(accumulate(len(d) for d in digits))
    chars, i = list(run), 0
    while i < len(groups):
        for j in range(min(walls[i], i + _MAX_GROUPS), i, -1):
            if not 10 <= ends[j - 1] - (ends[i - 1] if i else 0) <= 19:
                continue
            shape = _number_shape("".join(digits[i:j]))
            if shape and _CN_NUMERAL.search(run, groups[i][0], groups[j - 1][1]):
                members = [k for k in range(groups[i][0], groups[j - 1][1]) if run[k] not in _SEPARATORS]
                for k in members[shape[0]:len(members) - shape[1]]:
                    chars[k] = "*"
                i = j
                break
        else:
            i += 1
    return "".join(chars)


def _reason_digits(m: re.Match[str]) -> str:
    s = m.group()
    if len(s) in (8, 12, 14) and _DATE_START.match(s):
        return s
    return "*" * (len(s) - 2) + s[-2:]


def _email(m: re.Match[str]) -> str:
    """The domain stays (an office may answer a government address), the mailbox goes."""
    local = m.group(1)
    return (local[0] + "*" * (len(local) - 1) if len(local) > 1 else "*") + "@" + m.group(2)


def _plate(m: re.Match[str]) -> str:
    """The province and city letter stay (赣B: which office), the serial goes."""
    tail = m.group(3)
    if len(_DIGIT.findall(tail)) < 3:
        return m.group()
    return m.group(1) + m.group(2) + _ALNUM.sub("*", tail)


def _address(m: re.Match[str]) -> str:
    """House and room numbers masked, the road or estate before them kept.

    Two numbered parts or more (3栋2单元, 5栋1201) are a home, unless all are floors
    (1楼2楼) or, in numerals, no door or room is numbered (一栋三层); a single door number
    (18号, 5栋) is one only after a road, an estate or a village: 11月3号, 3室1厅 and 2号线
    are not addresses.
    """
    s = m.group()
    pieces = list(_ADDR_PIECE.finditer(s))
    units = [p.group(1) for p in pieces]
    after_place = m.string[max(0, m.start() - 4):m.start()].endswith(_PLACE_BEFORE_DOOR)
    if len(units) >= 2:
        if all(u in _FLOORS for u in units) or (not _DIGIT.search(s) and _ROOM_UNITS.isdisjoint(units)):
            return s
        first, second = pieces[0], pieces[1]  # 滨江一号9栋902: the numerals name the estate
        if units[0] == "号" and not _ALNUM.search(first.group()) and _ALNUM.search(second.group()) and not after_place:
            return first.group() + _ADDR_DIGIT.sub("*", s[first.end():])
    elif not (units and units[0] in _DOOR_UNITS and after_place):
        return s
    return _ADDR_DIGIT.sub("*", s)


def address_keys(text: str, key: bytes) -> list[str]:
    """A keyed fingerprint of each home address that masking hides (幸福路12号 → ``a3f0…``).

    The masked text no longer tells 幸福路12号 from 幸福路14号, and the ledger must (two
    households' reports are two cases). A fingerprint says only "the same address, or
    not" to whoever lacks the key; with ~10^4 house numbers per road it is no secret to
    whoever has it, so it travels only where the masked text does, never in logs."""
    keys = []
    for h in _ADDR_HINT.finditer(text or ""):
        for st in range(max(0, h.start() - 12), h.start() + 1):
            if (m := _ADDR.match(text, st)) and m.end() > h.start():
                if _address(m) != m.group():
                    spot = unicodedata.normalize("NFKC", m.group()).replace(" ", "")
                    keys.append(hmac.new(key, spot.encode(), hashlib.sha256).hexdigest()[:12])
                break
    return sorted(set(keys))


def _mask_addresses(text: str) -> str:
    """``_ADDR`` tried only where a gate found a number before a unit (its own scan would
    try every position), from a few characters back: the number starts there."""
    out, last = [], 0
    for h in _ADDR_HINT.finditer(text):
        if h.start() < last:
            continue
        start = h.start()
        while start > max(last, h.start() - 12) and text[start - 1] in _ADDR_BACK:
            start -= 1
        for st in range(start, h.start() + 1):
            if (m := _ADDR.match(text, st)) and m.end() > h.start():
                out.append(text[last:m.start()] + _address(m))
                last = m.end()
                break
    out.append(text[last:])
    return "".join(out)


# ---------------------------------------------------------------- names
_tagger: Any = None  # jieba's part-of-speech tokenizer, loaded on the first name candidate
_freq: dict[str, int] = {}
_tags: dict[str, str] = {}


def _load_tagger() -> Any:
    """jieba and its tagger (about a second and ~100 MB, once per process)."""
    global _tagger, _freq, _tags
    if _tagger is None:
        import jieba
        import jieba.posseg

        jieba.setLogLevel(logging.WARNING)
        jieba.dt.check_initialized()
        _freq, _tags = jieba.dt.FREQ, jieba.posseg.dt.word_tag_tab
        _tagger = jieba.posseg.dt
    return _tagger


@lru_cache(maxsize=16384)
def _tag(window: str) -> tuple[tuple[str, str], ...]:
    """jieba's words and tags of a few characters around a candidate, by the dictionary alone:
    its HMM, which is what guesses unknown names (nr), costs a millisecond a call and also
    calls 许可, 阳光 and 查一查 names; the given-name characters decide instead."""
    return tuple((p.word, p.flag) for p in _load_tagger().cut(window, HMM=False))


def _mask_names(text: str) -> str:
    """Every given name as ``*``, the surname kept (刘**, 欧阳**), as the platforms publish."""
    spans = _name_spans(text)
    if not spans:
        return text
    out, last = [], 0
    for a, b in spans:
        a = max(a, last)
        out.append(text[last:a] + "*" * (b - a))
        last = max(last, b)
    out.append(text[last:])
    return "".join(out)


def _name_spans(text: str) -> list[tuple[int, int]]:
    """The given names' spans (start, end), in order; the surname stays, as in 刘**."""
    spans, taken = {}, []  # 姓刘名建华: the candidate 刘名 must not be looked at again
    if "姓" in text:
        for m in _SURNAME_THEN_GIVEN.finditer(text):
            spans[m.start(2)] = m.end(2)
            taken.append((m.start(), m.end()))
    found, cue = {}, _strong_cues(text)
    for m in _CANDIDATE.finditer(text):
        i = m.start()
        if text[i:i + 2] in _COMPOUND:
            if text[i + 2:i + 3] in _GIVEN:
                found[i] = 2
        elif text[i] in _SINGLE and text[i + 1] in _GIVEN:
            found[i] = 1
    for i in (i for i, level in cue.items() if level == 2):
        if sm := _SURNAME_AT.match(text, i):
            found[i] = sm.end() - i
    if not found:
        return sorted(spans.items())
    _load_tagger()
    cue = dict.fromkeys((m.end() for m in _WEAK_CUE.finditer(text)), 1) | cue
    end = t = 0
    for i in sorted(found):
        sl = found[i]
        while t < len(taken) and taken[t][1] <= i:
            t += 1
        if i < end or (t < len(taken) and taken[t][0] <= i):
            continue
        n = _name_at(text, i, sl, cue.get(i, 0), end)
        if n > sl:
            spans[i + sl] = end = i + n
    return sorted(spans.items())


def _strong_cues(text: str) -> dict[int, int]:
    """Where a name may start after a strong cue (联系人, 我叫) or before 先生/女士 (刘建华先生)."""
    cue = dict.fromkeys((m.end() for m in _STRONG_CUE.finditer(text)), 2)
    for m in _TITLE_WORD.finditer(text) if "先生" in text or "女士" in text or "同志" in text else ():
        for k in (4, 3, 2):
            if m.start() >= k and _BEFORE_TITLE.fullmatch(text, m.start() - k, m.end()):
                cue[m.start() - k] = 2
                break
    return cue


def _worth_tagging(text: str, i: int, sl: int, lo: int, cue: int) -> bool:
    """False when the dictionary already explains the surname character as part of a common
    word (公路 and 小区 end with one, 许可 and 金额 start with one), or, without a cue, when
    what follows can make no name. Most candidates stop here, before jieba."""
    if i > lo and _freq.get(text[i - 1:i + 1], 0) > _COMMON:
        return False
    if not cue and sl == 1 and text[i + 2:i + 3] not in _GIVEN and not _two_char_name(text[i], text[i + 1]):
        return False
    if _freq.get(text[i:i + sl + 1], 0) <= _COMMON:
        return True
    # 王国强: 王国 is a word, and the twenty commonest surnames are worth a second look
    return text[i] in _MOST_COMMON and text[i + 1] in _GIVEN and text[i + 2:i + 3] in _GIVEN


def _name_at(text: str, i: int, sl: int, cue: int, lo: int) -> int:
    """The length (surname included) of the name starting at ``i``, or 0; ``cue`` is 2 after
    a strong cue (联系人), 1 after a weak one (我是), else 0.

    jieba cuts two characters before the candidate (感谢建华先生 is no 谢建华), but none of a
    name found before ``lo`` (masked, it would read differently), and up to six after; the
    candidate must start one of its words.
    """
    if cue < 2 and not _worth_tagging(text, i, sl, lo, cue):
        return 0
    a = i
    while a > lo and i - a < 2 and "\u4e00" <= text[a - 1] <= "\u9fff":
        a -= 1
    b = i + sl
    while b < len(text) and b - i < sl + 5 and "\u4e00" <= text[b] <= "\u9fff":
        b += 1
    n = _name_in(text[a:b], i - a, sl, cue)
    return n if n and not _protected_at(text, i) else 0


@lru_cache(maxsize=16384)
def _name_in(window: str, off: int, sl: int, cue: int) -> int:
    """``_name_at`` on the window around the candidate, at ``off`` in it (cached: a message
    names the same person again and again, and hostile input repeats itself)."""
    tags, pos = _tag(window), 0
    for k, (word, _) in enumerate(tags):
        if pos == off:
            n, after = _name_len(tags[k:], sl, cue)
            name = window[off:off + n]
            if (n and name not in _NOT_NAMES and name[-1] not in _PLACE_SUFFIX and after not in _ASPECT
                    and not (after and (after[0] in _PLACE_SUFFIX or after in _PLACE_AFTER))):
                return n
            return 0
        pos += len(word)
        if pos > off:
            break
    return 0


def _given_ok(given: str, cue: int) -> bool:
    """Given-name characters; after a strong cue, also any rare one (娣 牯 堃)."""
    if given in _TITLES:
        return False
    if cue == 2:
        return all(c in _GIVEN or c in _NUMERAL_GIVEN or (c not in _FUNCTION and "\u4e00" <= c <= "\u9fff"
                                                          and _freq.get(c, 0) <= _RARE_CHAR) for c in given)
    return all(c in _GIVEN for c in given)


def _name_len(tags: tuple[tuple[str, str], ...], sl: int, cue: int) -> tuple[int, str]:
    """(length of the name at the first word, the word after it), or (0, "").

    Either a rare dictionary name (刘建华/nr), or the surname alone followed by one or two
    single characters (李 明) or a rare word (陈 秀英) made of given-name characters.
    """
    w0, f0 = tags[0]
    after = tags[1][0] if len(tags) > 1 else ""
    if not cue and w0[:sl] in _CUELESS_NOT_SURNAME:
        return 0, ""
    if len(w0) > sl:  # after a strong cue, 联系人高峰 is a name, however common 高峰 is
        if w0[0] in _MOST_COMMON and len(w0) == 2 and len(after) == 1 and w0[1] in _GIVEN and _given_ok(after, 0):
            return 3, tags[2][0] if len(tags) > 2 else ""  # 王国/强
        ok = len(w0) <= sl + 2 and _given_ok(w0[sl:], cue if cue == 2 else 0) and (
            (cue == 2 and _freq.get(w0, 0) <= _COMMON_NAME) or (f0.startswith("nr") and _freq.get(w0, 0) <= _RARE_NAME))
        ok = ok and (cue > 0 or len(w0) > sl + 1 or _two_char_name(w0[:sl], w0[sl:]))
        return (len(w0), after) if ok else (0, "")
    if len(w0) < sl:
        return 0, ""
    given, k = "", 1
    while k < len(tags) and len(given) < 2:
        w, f = tags[k]
        if len(w) == 1 and _given_ok(w, cue):
            given += w
        elif not given and len(w) == 2 and _given_ok(w, cue) and (
                f.startswith("nr") or _freq.get(w, 0) <= _RARE_GIVEN or (cue == 2 and _given_ok(w, 0))):
            given, k = w, k + 1
            break
        else:
            break
        k += 1
    if not given or given[-1] == "子" or (not cue and len(given) == 1 and not _two_char_name(w0, given)):
        return 0, ""
    return sl + len(given), tags[k][0] if k < len(tags) else ""


def _two_char_name(surname: str, given: str) -> bool:
    """Without a cue, 李明 is a name and 白水 is not: a top-100 surname, a common single name."""
    return surname in _TOP100 and given in _SINGLE_GIVEN


def _mask_name(name: str) -> str:
    """A name the source gave: the surname stays (欧阳** , 刘**); 王先生 stays whole, as the
    platforms publish it."""
    if name.endswith(("先生", "女士", "师傅", "阿姨", "老师")):
        return name
    keep = 2 if name[:2] in _COMPOUND_SURNAMES and len(name) > 2 else 1
    return name[:keep] + "*" * (len(name) - keep)


def _gated(gate: re.Pattern[str], pattern: re.Pattern[str],
           repl: Callable[[re.Match[str]], str]) -> Callable[[str], str]:
    return lambda t: pattern.sub(repl, t) if gate.search(t) else t


def _id18(m: re.Match[str]) -> str:
    return m.group(0)[:6] + "*" * 12


def _id15(m: re.Match[str]) -> str:
    return m.group(0)[:6] + "*" * 9


def _mobile(m: re.Match[str]) -> str:
    return f"{m.group(1)}****{m.group(3)}"


def _landline(m: re.Match[str]) -> str:
    return f"{m.group(1)}-****{m.group(2)[-2:]}"


_STEPS: dict[str, Callable[[str], str]] = {  # what _mask does, kind by kind, for measuring
    "email": _gated(_EMAIL_HINT, _EMAIL, _email),
    "spoken": lambda t: _SPOKEN.sub(_spoken, t),
    "id18": _gated(_LONG_HINT, _ID18, _id18),
    "id15": _gated(_LONG_HINT, _ID15, _id15),
    "card": _gated(_LONG_HINT, _CARD, _card),
    "mobile": _gated(_MOBILE_HINT, _MOBILE, _mobile),
    "landline": _gated(_LANDLINE_HINT, _LANDLINE, _landline),
    "plate": lambda t: _PLATE.sub(_plate, t),
    "address": _mask_addresses,
    "name": _mask_names,
}
KINDS = tuple(_STEPS)
