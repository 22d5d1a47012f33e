"""12345 hotline transcripts: one file per call, dropped into a folder.

Accepted files (``*.json`` / ``*.csv``, UTF-8 or GB18030)::

    {"call_id": "GZ12345-20261122-000123", "started_at": "2026-11-22 09:15:03",
     "caller_number": "13907971234", "caller_name": "刘先生",
     "turns": [{"speaker": "agent", "text": "您好，12345…"},
               {"speaker": "citizen", "text": "我要反映…"}]}

or ``"text"`` instead of ``turns``; or CSV with a header
``call_id,started_at,caller_number,caller_name,speaker,text`` and one row per
turn. The citizen's words are the message; the agent's questions are kept as
context. The caller's number and name stay on the intake topic only.

A file is read once its size and mtime have held still for ``settle_seconds``,
so a file still being written is never read half-way (writers that rename a
finished ``.tmp`` into place are picked up at once). Files that cannot be read
are moved to ``quarantine/`` beside a ``.reason.txt`` and dead-lettered.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import shutil
import time
from datetime import datetime
from pathlib import Path

from wenzheng.core import envelope
from wenzheng.core.delivery import Out, Publisher
from wenzheng.core.errors import BadMessage
from wenzheng.core.privacy import pseudonym
from wenzheng.core.runtime import Runtime

from .base import Connector, Page, Pages, State

log = logging.getLogger(__name__)

AGENT = {"agent", "坐席", "话务员", "客服", "接线员", "operator"}
CITIZEN = {"citizen", "caller", "市民", "来电人", "群众", "customer"}


def read_text(data: bytes, encodings: list[str]) -> str:
    if not data.strip():
        raise BadMessage("empty file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise BadMessage("wrong encoding: UTF-16 (expected UTF-8 or GB18030)")
    for enc in encodings:
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            break
        return text
    raise BadMessage(f"wrong encoding: not {' or '.join(encodings)}")


def parse_time(value: str | None, fallback: datetime) -> datetime:
    if not value:
        return fallback
    try:
        dt = datetime.fromisoformat(str(value).strip().replace("/", "-"))
    except ValueError:
        raise BadMessage(f"bad started_at {value!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=envelope.TZ)


def _speaker(value: str) -> str:
    v = (value or "").strip().lower()
    if v in AGENT:
        return "agent"
    if v in CITIZEN:
        return "citizen"
    raise BadMessage(f"unknown speaker {value!r}")


def parse_call(name: str, text: str) -> dict:
    """A call record ``{call_id, started_at, caller_number, caller_name, turns}`` from a file's text."""
    if name.lower().endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows:
            raise BadMessage("CSV has no rows")
        missing = {"call_id", "speaker", "text"} - set(rows[0])
        if missing:
            raise BadMessage(f"CSV lacks columns {', '.join(sorted(missing))}")
        first = rows[0]
        call = {k: first.get(k) for k in ("call_id", "started_at", "caller_number", "caller_name", "location")}
        call["turns"] = [{"speaker": r["speaker"], "text": r["text"]} for r in rows]
    else:
        try:
            call = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadMessage(f"bad JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        if not isinstance(call, dict):
            raise BadMessage("JSON is not an object")
        if "turns" not in call:
            if not str(call.get("text") or "").strip():
                raise BadMessage("call has neither turns nor text")
            call["turns"] = [{"speaker": "citizen", "text": call["text"]}]
    if not str(call.get("call_id") or "").strip():
        raise BadMessage("call has no call_id")
    if not isinstance(call["turns"], list):
        raise BadMessage("turns is not a list")
    return call


class HotlineConnector(Connector):
    """The drop folder as one page per scan of the files that settled.

    Checkpoint (format 1): ``{"files": {name: {"size", "mtime_ns", "id"}}}``, the
    files published (or quarantined) as they were then; a file that changes is
    read again, one that leaves the folder is forgotten."""

    channel = "hotline"

    def __init__(self, runtime: Runtime, publisher: Publisher, name: str = "hotline") -> None:
        super().__init__(runtime, publisher, name)
        self.cfg = runtime.settings.channels.hotline
        self.poll_seconds = self.cfg.poll_seconds
        self.dir = Path(self.cfg.drop_dir).expanduser()
        self.quarantine = self.dir / "quarantine"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = runtime.settings.privacy.pseudonym_key.get_secret_value().encode()
        self._seen: dict[str, tuple[int, int]] = {}  # name → (size, mtime_ns) at the last scan

    def fetch(self, cursor: State) -> Pages:
        done = cursor.get("files", {})
        files = self.ready_files(done)
        if not files:
            return
        envelopes, dead, records, quarantined = self._read(files)
        kept = {n: r for n, r in done.items() if n in self._seen}  # _seen: what this scan found
        yield Page(envelopes, dead, state={"files": kept | records}, fetched=len(files),
                   acked=lambda: self._acked(quarantined, len(envelopes)))

    def ready_files(self, done: dict[str, dict]) -> list[Path]:
        now, ready = time.time(), []
        current: dict[str, tuple[int, int]] = {}
        for p in sorted(self.dir.iterdir()):
            if not p.is_file() or p.name.startswith(".") or p.suffix.lower() not in (".json", ".csv"):
                continue
            st = p.stat()
            sig = (st.st_size, st.st_mtime_ns)
            current[p.name] = sig
            if (prev := done.get(p.name)) and (prev["size"], prev["mtime_ns"]) == sig:
                continue  # published (or quarantined) already
            still = self._seen.get(p.name) == sig or now - st.st_mtime > 3 * self.cfg.settle_seconds
            if still and now - st.st_mtime >= self.cfg.settle_seconds:
                ready.append(p)
        self._seen = current
        return ready

    def _read(self, files: list[Path]) -> tuple[list[dict], list[Out], dict[str, dict], list[tuple[Path, str]]]:
        """Envelopes, dead letters, checkpoint records and files to quarantine for one scan."""
        envelopes: list[dict] = []
        dead: list[Out] = []
        records: dict[str, dict] = {}
        quarantined: list[tuple[Path, str]] = []
        for path in files:
            data = path.read_bytes()
            st = path.stat()
            try:
                env = self.to_envelope(path, data)
            except BadMessage as exc:
                digest = hashlib.sha256(data).hexdigest()[:12]
                excerpt = data[:300].decode("utf-8", "replace")
                dead.append(self.dead(exc.reason, f"file:{path.name}:{digest}",
                                      {"file": path.name, "quarantine": f"quarantine/{path.name}"}, excerpt))
                quarantined.append((path, exc.reason))
                continue
            if env["id"] in {e["id"] for e in envelopes}:
                log.warning("duplicate call_id in one scan", extra={"id": env["id"], "file": path.name})
            envelopes.append(env)
            records[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "id": env["id"]}
        return envelopes, dead, records, quarantined

    def to_envelope(self, path: Path, data: bytes) -> dict:
        call = parse_call(path.name, read_text(data, self.cfg.encodings))
        mtime = datetime.fromtimestamp(path.stat().st_mtime, envelope.TZ)
        citizen: list[str] = []
        agent: list[str] = []
        for turn in call["turns"]:
            if not isinstance(turn, dict):
                raise BadMessage("a turn is not an object")
            words = str(turn.get("text") or "").strip()
            if words:
                (citizen if _speaker(turn.get("speaker", "")) == "citizen" else agent).append(words)
        if not citizen:
            raise BadMessage("the caller says nothing in this transcript")
        number = str(call.get("caller_number") or "") or None
        location = {"text": call["location"]} if call.get("location") else None
        return envelope.make(
            channel="hotline",
            account=self.cfg.account,
            source_id=str(call["call_id"]).strip(),
            title=str(call.get("title") or ""),
            text="\n".join(citizen),
            context="\n".join(agent),
            posted_at=parse_time(call.get("started_at"), mtime),
            author=pseudonym(self.key, "hotline", number),
            location=location,
            pii={"caller_number": number, "caller_name": call.get("caller_name")},
            raw={"file": path.name, "call": call},
        )

    def _acked(self, quarantined: list[tuple[Path, str]], published: int) -> None:
        for path, reason in quarantined:
            self.quarantine.mkdir(exist_ok=True)
            shutil.move(str(path), self.quarantine / path.name)
            (self.quarantine / f"{path.name}.reason.txt").write_text(reason + "\n", encoding="utf-8")
        log.info("hotline files published", extra={"published": published, "quarantined": len(quarantined)})
