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

**The folder is open to whoever can write to it**, so it is read as hostile
ground. Each file is one item of the template's rule (base.py): whatever reading
it raises — JSON nested 100,000 deep, a speaker that is a number, a CSV field
over csv's 128 KiB limit, a lone surrogate — makes that file a dead letter, and
the rest of the scan is published. Entries are looked at with ``lstat`` and
opened relative to the folder with ``O_NOFOLLOW`` (and ``O_NONBLOCK``: a FIFO
cannot hang the poll), so only regular files in the folder are ever read. A
symbolic link is never followed: the link itself is moved to quarantine and
dead-lettered, with nothing of its target; so is anything else that is not a
regular file (a FIFO, a folder named ``x.json``). A file over
:data:`MAX_FILE_BYTES` is quarantined unread. A scan is published in pages of
:data:`PAGE_FILES` files.

**Archive.** Once Kafka acknowledged a page, its files move to
``archive/YYYY-MM-DD/`` (the day they were published, in the city's time zone) and
day folders older than ``archive_days`` are deleted (0: a published file is deleted
at once). So the folder holds only what is new, and the idle scan, the checkpoint
and the memory of the connector stay as small after a year as on the first day (20,000
published files left in place cost an idle worker 17% of a core and a 1.9 MB
checkpoint rewritten at every poll). A crash between Kafka's acknowledgement and the
move leaves the file where it was: the next scan reads it again and the delivery
journal knows its id, so it is archived, not published twice.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import logging
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from wenzheng.core import envelope
from wenzheng.core.delivery import Out, Publisher
from wenzheng.core.errors import BadMessage
from wenzheng.core.privacy import pseudonym
from wenzheng.core.runtime import Runtime

from .base import EXCERPT_CHARS, Connector, Envelope, Page, Pages, State, read_json

log = logging.getLogger(__name__)

AGENT = {"agent", "坐席", "话务员", "客服", "接线员", "operator"}
CITIZEN = {"citizen", "caller", "市民", "来电人", "群众", "customer"}
MAX_FILE_BYTES = 64 << 20
"""Larger files are quarantined unread: a call's transcript is a few KiB, and the text kept is capped anyway."""
PAGE_FILES = 100
"""Files per page: a scan of thousands is published page by page, not held in memory at once."""
QUARANTINE, ARCHIVE = "quarantine", "archive"
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {"l": "symbolic link", "d": "folder", "p": "FIFO", "s": "socket", "c": "device", "b": "device"}


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


def _scalar(value: Any, what: str) -> str:
    """A field as text: a string or a number is one; a list, an object or a boolean is not."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadMessage(f"{what} is not text")
    return str(value).strip()


def parse_time(value: Any, fallback: datetime) -> datetime:
    text = _scalar(value, "started_at")
    if not text:
        return fallback
    try:
        dt = datetime.fromisoformat(text.replace("/", "-"))
        return (dt if dt.tzinfo else dt.replace(tzinfo=envelope.TZ)).astimezone(envelope.TZ)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00+14:00 is before year 1 in Beijing
        raise BadMessage(f"bad started_at {text[:40]!r}") from None


def _speaker(value: Any) -> str:
    v = _scalar(value, "speaker").lower()
    if v in AGENT:
        return "agent"
    if v in CITIZEN:
        return "citizen"
    raise BadMessage(f"unknown speaker {v[:20]!r}")


def _parse_csv(text: str) -> dict[str, Any]:
    try:
        rows = list(csv.DictReader(io.StringIO(text)))
    except csv.Error as exc:  # a field over csv's 128 KiB limit, a NUL
        raise BadMessage(f"bad CSV: {exc}") from None
    if not rows:
        raise BadMessage("CSV has no rows")
    missing = {"call_id", "speaker", "text"} - set(rows[0])
    if missing:
        raise BadMessage(f"CSV lacks columns {', '.join(sorted(missing))}")
    first = rows[0]
    call = {k: first.get(k) for k in ("call_id", "started_at", "caller_number", "caller_name", "location")}
    call["turns"] = [{"speaker": r["speaker"], "text": r["text"]} for r in rows]
    return call


def parse_call(name: str, text: str) -> dict[str, Any]:
    """A call record ``{call_id, started_at, caller_number, caller_name, turns}`` from a file's text."""
    if name.lower().endswith(".csv"):
        call = _parse_csv(text)
    else:
        call = read_json(text)
        if not isinstance(call, dict):
            raise BadMessage("JSON is not an object")
        if "turns" not in call:
            if not _scalar(call.get("text"), "text"):
                raise BadMessage("call has neither turns nor text")
            call["turns"] = [{"speaker": "citizen", "text": call["text"]}]
    if not _scalar(call.get("call_id"), "call_id"):
        raise BadMessage("call has no call_id")
    if not isinstance(call["turns"], list):
        raise BadMessage("turns is not a list")
    return call


def _words(turns: list[Any]) -> tuple[list[str], list[str]]:
    """What the caller said, and what the agent said."""
    citizen: list[str] = []
    agent: list[str] = []
    for turn in turns:
        if not isinstance(turn, dict):
            raise BadMessage("a turn is not an object")
        words = _scalar(turn.get("text"), "a turn's text")
        if words:
            (citizen if _speaker(turn.get("speaker")) == "citizen" else agent).append(words)
    return citizen, agent


@dataclass
class _Entry:
    """One entry of a scan: its name and lstat, and once read, its bytes."""

    name: str
    st: os.stat_result
    data: bytes = b""

    @property
    def regular(self) -> bool:
        return stat.S_ISREG(self.st.st_mode)

    @property
    def kind(self) -> str:
        return _KINDS.get(stat.filemode(self.st.st_mode)[0], "special file")


class HotlineConnector(Connector):
    """The drop folder as pages of the files that settled.

    Checkpoint (format 2): ``{"files": {name: {"size", "mtime_ns", "id"}}}``, only the
    files published but not archived yet (their move failed): the folder itself says
    what is new, since published files leave it. Such a file is not read again while it
    is unchanged, and is archived at the next scan; one that leaves the folder is
    forgotten. Format 1 listed every published file still in the folder: the same
    meaning, so it migrates as it is, and the first scan archives those files."""

    channel = "hotline"
    CHECKPOINT_VERSION = 2

    def __init__(self, runtime: Runtime, publisher: Publisher, name: str = "hotline") -> None:
        super().__init__(runtime, publisher, name)
        self.cfg = runtime.settings.channels.hotline
        self.poll_seconds = self.cfg.poll_seconds
        self.dir = Path(self.cfg.drop_dir).expanduser()
        self.quarantine = self.dir / QUARANTINE
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tz = ZoneInfo(runtime.settings.city.timezone)
        self._seen: dict[str, tuple[int, int]] = {}  # name → (size, mtime_ns) at the last scan
        self._swept: date | None = None  # the day old archive folders were last deleted

    def migrate_checkpoint(self, version: int, state: State) -> State:
        if version == 1:  # every published file still in the folder: unarchived, as format 2 says
            return {"files": dict(state.get("files", {}))}
        return super().migrate_checkpoint(version, state)

    def fetch(self, cursor: State) -> Pages:
        self._sweep_archive()
        before = cursor.get("files", {})
        entries = self.ready_files(before)
        unarchived = {n: r for n, r in before.items() if n in self._seen}  # _seen: what this scan found
        if not entries and not before:  # (unarchived is part of before)
            return  # idle: nothing read, nothing written
        retry = dict(unarchived)  # published earlier, still here: archived with the first page
        folder = os.open(self.dir, _DIR)
        try:
            for i in range(0, max(len(entries), 1), PAGE_FILES):
                records: dict[str, dict[str, Any]] = {}
                page, quarantined = self._read(folder, entries[i : i + PAGE_FILES], records)
                unarchived.update(records)
                page.state = {"files": unarchived}  # what _acked cannot archive stays in it
                page.acked = partial(self._acked, folder, quarantined, retry | records, unarchived)
                retry = {}
                yield page
        finally:
            os.close(folder)

    def ready_files(self, done: dict[str, dict[str, Any]]) -> list[_Entry]:
        """The entries to read now: regular files that settled and changed since published,
        and at once whatever is not a regular file (to be quarantined unread)."""
        now, ready = time.time(), []
        current: dict[str, tuple[int, int]] = {}
        with os.scandir(self.dir) as found:
            for e in found:
                if e.name.startswith(".") or not e.name.lower().endswith((".json", ".csv")):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    ready.append(_Entry(e.name, st))
                    continue
                sig = current[e.name] = (st.st_size, st.st_mtime_ns)
                if (prev := done.get(e.name)) and (prev["size"], prev["mtime_ns"]) == sig:
                    continue  # published already
                still = self._seen.get(e.name) == sig or now - st.st_mtime > 3 * self.cfg.settle_seconds
                if still and now - st.st_mtime >= self.cfg.settle_seconds:
                    ready.append(_Entry(e.name, st))
        self._seen = current
        return sorted(ready, key=lambda entry: entry.name)

    def _read(self, folder: int, entries: list[_Entry],
              records: dict[str, dict[str, Any]]) -> tuple[Page, list[tuple[str, str]]]:
        """One page of files, and the names to quarantine (with why) once it is published;
        ``records`` gains the files published."""
        page, quarantined = Page(fetched=len(entries)), list[tuple[str, str]]()
        for entry in entries:
            env = self.read_item(page, partial(self._convert, folder, entry),
                                 partial(self._dead_file, entry, quarantined))
            if env is None:
                continue
            if any(r["id"] == env["id"] for r in records.values()):
                log.warning("duplicate call_id in one page", extra={"id": env["id"], "file": entry.name})
            records[entry.name] = {"size": entry.st.st_size, "mtime_ns": entry.st.st_mtime_ns, "id": env["id"]}
        return page, quarantined

    def _convert(self, folder: int, entry: _Entry) -> Envelope | None:
        """The envelope of one entry; None when it changed or left since the scan (a later scan reads it)."""
        if not entry.regular:
            raise BadMessage(f"a {entry.kind}, not a regular file: never opened")
        data = self._load(folder, entry)
        if data is None:
            return None
        entry.data = data
        return self.to_envelope(self.dir / entry.name, data, entry.st.st_mtime)

    def _load(self, folder: int, entry: _Entry) -> bytes | None:
        if entry.st.st_size > MAX_FILE_BYTES:
            raise BadMessage(f"file of {entry.st.st_size} bytes, over the limit of {MAX_FILE_BYTES}")
        try:
            fd = os.open(entry.name, _OPEN, dir_fd=folder)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            entry.st = os.lstat(entry.name, dir_fd=folder)  # a link put in the file's place since the scan
            raise BadMessage("a symbolic link, not a regular file: never opened") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if (st.st_ino, st.st_size, st.st_mtime_ns) != (entry.st.st_ino, entry.st.st_size, entry.st.st_mtime_ns):
                return None  # replaced or still changing
            return f.read(MAX_FILE_BYTES)

    def to_envelope(self, path: Path, data: bytes, mtime: float | None = None) -> Envelope:
        call = parse_call(path.name, read_text(data, self.cfg.encodings))
        citizen, agent = _words(call["turns"])
        if not citizen:
            raise BadMessage("the caller says nothing in this transcript")
        when = datetime.fromtimestamp(os.lstat(path).st_mtime if mtime is None else mtime, envelope.TZ)
        number = _scalar(call.get("caller_number"), "caller_number") or None
        location = _scalar(call.get("location"), "location")
        return self.envelope(
            channel="hotline",
            account=self.cfg.account,
            source_id=_scalar(call["call_id"], "call_id"),
            title=_scalar(call.get("title"), "title"),
            text="\n".join(citizen),
            context="\n".join(agent),
            posted_at=parse_time(call.get("started_at"), when),
            author=pseudonym(self.key, "hotline", number),
            location={"text": location} if location else None,
            pii={"caller_number": number, "caller_name": _scalar(call.get("caller_name"), "caller_name") or None},
            raw={"file": path.name, "call": call},
        )

    def _dead_file(self, entry: _Entry, quarantined: list[tuple[str, str]], reason: str) -> Out:
        """The dead letter of a file (it is quarantined once the page is published). Only a
        regular file's source names it ``quarantine``, the key a re-feed reads back: a link's
        target is never read, not even then."""
        quarantined.append((entry.name, reason))
        st = entry.st
        digest = hashlib.sha256(entry.data or f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        moved = f"{QUARANTINE}/{entry.name}"
        source = {"file": entry.name, "quarantine": moved} if entry.regular else \
            {"file": entry.name, "moved_to": moved, "kind": entry.kind}
        excerpt = entry.data[:EXCERPT_CHARS].decode("utf-8", "replace")
        return self.dead(reason, f"file:{entry.name}:{digest}", source, excerpt)

    # --- quarantine and archive (step 4) --------------------------------------------

    def _acked(self, folder: int, quarantined: list[tuple[str, str]], published: dict[str, dict[str, Any]],
               unarchived: dict[str, dict[str, Any]]) -> None:
        """Move the page's unreadable entries to quarantine and its published files to the
        archive; ``unarchived`` (the page's checkpoint state) loses the files archived. A move
        that fails is logged, not raised: a quarantined entry is read and dead-lettered again
        (the journal knows it), a published file stays in the checkpoint, archived next scan."""
        if quarantined:
            self._in_subfolder(folder, QUARANTINE, partial(self._quarantine, folder, quarantined))
        if published:
            for name in self._archive(folder, published):
                unarchived.pop(name, None)
        log.info("hotline files published", extra={"published": len(published), "quarantined": len(quarantined)})

    def _in_subfolder(self, folder: int, name: str, use: Callable[[int], object]) -> None:
        """``use(fd)`` of the folder ``name`` in ``folder`` (made if need be); logged if it cannot be had."""
        try:
            target = self._subfolder(folder, name)
        except OSError as exc:
            log.error("no %s folder: %s", name, exc, extra={"connector": self.name})
            return
        try:
            use(target)
        finally:
            os.close(target)

    def _subfolder(self, folder: int, name: str) -> int:
        """The folder ``name`` in ``folder``, opened without following a link: something else
        planted under its name (a link to another folder) is moved aside and a real folder made."""
        try:
            return os.open(name, _DIR, dir_fd=folder)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            aside = f".{name}-not-a-folder-{uuid.uuid4().hex[:8]}"
            os.replace(name, aside, src_dir_fd=folder, dst_dir_fd=folder)
            log.warning("%s was not a folder; moved aside as %s", name, aside, extra={"connector": self.name})
        try:
            os.mkdir(name, 0o755, dir_fd=folder)
        except FileExistsError:  # another reader of the folder made it meanwhile
            pass
        return os.open(name, _DIR, dir_fd=folder)

    def _quarantine(self, folder: int, quarantined: list[tuple[str, str]], target: int) -> None:
        for name, reason in quarantined:
            self._quarantine_one(folder, target, name, reason)

    def _quarantine_one(self, folder: int, target: int, name: str, reason: str) -> None:
        """Move the entry itself (a link is moved, never what it points to) and write why beside it."""
        try:
            os.replace(name, name, src_dir_fd=folder, dst_dir_fd=target)
            tmp = f".{uuid.uuid4().hex}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=target)
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
                f.write(reason + "\n")
            os.replace(tmp, f"{name}.reason.txt", src_dir_fd=target, dst_dir_fd=target)  # replaces a planted link too
        except OSError as exc:
            log.warning("could not quarantine: %s", exc.strerror, extra={"connector": self.name, "file": name})

    def _archive(self, folder: int, published: dict[str, dict[str, Any]]) -> list[str]:
        """Move published files to today's archive folder (or delete them, with ``archive_days``
        0); return the names that left the folder. A file that changed since it was read stays:
        the next scan reads it again."""
        gone: list[str] = []

        def move(day: int | None) -> None:
            for name, record in published.items():
                try:
                    st = os.stat(name, dir_fd=folder, follow_symlinks=False)
                    if (st.st_size, st.st_mtime_ns) != (record["size"], record["mtime_ns"]):
                        continue
                    if day is None:
                        os.unlink(name, dir_fd=folder)
                    else:
                        os.replace(name, self._free_name(day, name), src_dir_fd=folder, dst_dir_fd=day)
                except FileNotFoundError:
                    pass  # archived by another reader of the folder, or removed
                except OSError as exc:  # (no file name in the log: it may be the caller's number)
                    log.warning("could not archive a file: %s", exc.strerror, extra={"connector": self.name})
                    continue
                gone.append(name)

        if self.cfg.archive_days == 0:
            move(None)
        else:
            day = datetime.now(self.tz).date().isoformat()
            self._in_subfolder(folder, ARCHIVE, lambda archive: self._in_subfolder(archive, day, move))
        return gone

    @staticmethod
    def _free_name(day: int, name: str) -> str:
        """``name``, or if the archive already has a file of that name today, ``name`` with a suffix."""
        candidate = name
        while True:
            try:
                os.stat(candidate, dir_fd=day, follow_symlinks=False)
            except FileNotFoundError:
                return candidate
            stem, dot, ext = name.rpartition(".")
            candidate = f"{stem}.{uuid.uuid4().hex[:8]}{dot}{ext}"

    def _sweep_archive(self) -> None:
        """Once a day: delete the archive's day folders older than ``archive_days``. Opened
        without following links, so a planted ``archive`` link deletes nothing elsewhere."""
        today = datetime.now(self.tz).date()
        if self._swept == today:
            return
        self._swept = today
        cutoff = today - timedelta(days=self.cfg.archive_days)
        try:
            archive = os.open(self.dir / ARCHIVE, _DIR)
        except OSError:
            return  # none yet (or not a folder: the next archive move sets it aside)
        try:
            for name in os.listdir(archive):
                try:
                    old = date.fromisoformat(name) < cutoff
                except ValueError:
                    continue
                if old:
                    shutil.rmtree(name, dir_fd=archive, onerror=self._sweep_failed)
                    log.info("archive day deleted", extra={"connector": self.name, "day": name})
        finally:
            os.close(archive)

    def _sweep_failed(self, function: object, path: str, exc_info: tuple[type, BaseException, object]) -> None:
        why = getattr(exc_info[1], "strerror", None) or type(exc_info[1]).__name__  # not the path: a file name
        log.warning("could not delete from the archive: %s", why, extra={"connector": self.name})
