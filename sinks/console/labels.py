"""The console's words: Chinese names of statuses, events, message types and channels, and
the filters the templates format times, deadlines and 督办 colours with."""

from __future__ import annotations

import json
from datetime import datetime

STATUS = {"received": "已受理", "routed": "待签收", "claimed": "办理中", "replied": "已答复", "closed": "已办结",
          "reopened": "重新办理", "returned": "退回待分派", "invalid": "无效件", "duplicate": "重复件（已并案）"}
EVENT = {"received": "受理", "routed": "分派", "merged": "合并重复件", "claimed": "签收", "replied": "答复",
         "closed": "办结", "reopened": "重新办理", "assigned": "调度分派", "returned": "退回",
         "invalid": "标记无效", "duplicate": "标记重复", "extension": "申请延期", "ext_approved": "同意延期",
         "ext_refused": "不同意延期"}
PUBLIC_EVENT = {"received": "已受理", "routed": "已转交承办单位", "assigned": "已转交承办单位", "claimed": "承办单位已签收",
                "replied": "已答复", "closed": "已办结", "reopened": "重新办理", "returned": "重新分派中",
                "ext_approved": "答复期限已延长", "duplicate": "已并入同一问题的其他案件", "invalid": "不予受理"}
"""What a citizen sees of the history: no internal steps, no notes, no people."""
TYPE = {"consultation": "咨询", "complaint": "投诉", "suggestion": "建议", "help": "求助", "praise": "表扬"}
CHANNEL = {"hotline": "12345热线", "wechat": "微信", "weibo": "微博", "webform": "网站留言", "web": "网站留言"}
GRADE = {"red": "红牌", "orange": "橙牌", "yellow": "黄牌", None: "正常"}
MILESTONE = {"claim": "签收", "reply": "答复", "close": "办结"}
INVALID_REASONS = {"spam": "垃圾信息/骚扰", "invalid": "无实质内容", "test": "测试或误拨"}


def when(t: datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M}" if t else "—"


def left(due: datetime | None, now: datetime) -> str:
    """The time to a deadline, or how far past it: 剩余 2小时05分 / 超时 1天3小时."""
    if due is None:
        return "—"
    seconds = int((due - now).total_seconds())
    word = "剩余" if seconds >= 0 else "超时"
    m = abs(seconds) // 60
    days, hours, minutes = m // 1440, m % 1440 // 60, m % 60
    if days:
        return f"{word} {days}天{hours}小时"
    return f"{word} {hours}小时{minutes:02d}分" if hours else f"{word} {minutes}分钟"


def merged(note: str | None) -> str:
    """What a ``merged`` event joined: the dispatcher's repeat (another case) or the matcher's (a message)."""
    try:
        what = json.loads(note or "{}")
    except ValueError:
        return ""
    if not isinstance(what, dict):
        return ""
    if what.get("case"):
        return f"并入 {what['case']}"
    return f"{CHANNEL.get(str(what.get('channel')), '来件')}，相似度 {what.get('score', 0):.0%}" if what.get("message_id") else ""


def percent(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"
