"""The connector template: a channel yields pages, the base class delivers them.

A connector says only what is specific to its upstream: :meth:`Connector.fetch`
reads from a cursor and yields :class:`Page` objects. The base class owns the
loop, its order and its retries, so no connector writes them. For each page —
the guarantee lives in this order:

1. ``fetch`` reads one page of what is new since the cursor (an API page, the
   files that have settled, one window of records). The cursor is a copy of the
   checkpoint state: a connector cannot move the checkpoint by changing it.
2. It turns each item into an intake envelope through :meth:`Connector.read_item`,
   which owns the rule "one item, any exception, one dead letter": whatever the
   conversion raises — a :class:`~wenzheng.core.errors.BadMessage`, or a
   ``ValueError`` from a field nobody expected to be ``"100万+"`` — makes that
   item a dead letter in the page, with its reason (masked like the excerpt), and
   the next item is read. It never fails the page nor backs the connector off;
   only a :class:`~wenzheng.core.errors.TransientError` (upstream down in the
   middle of an item) ends the poll. The page carries the checkpoint state after
   it (:attr:`Page.state`).
3. The base publishes the page through the :class:`~wenzheng.core.delivery.Publisher`:
   journaled, sent, acknowledged by Kafka (``acks=all``), journaled done.
4. Then :attr:`Page.acked` runs: what must follow Kafka's acknowledgement and
   precede the checkpoint (quarantine a page's unreadable files, record its ids
   as published).
5. Only then the checkpoint becomes the page's state, saved atomically (write,
   fsync, rename), and ``fetch`` is asked for its next page.

A crash between 3 and 5 fetches the same page again; the publisher recognises
its ids, so nothing is doubled. A crash before 3 completes loses nothing,
because the checkpoint has not moved.

**Size.** :meth:`Connector.fit` keeps every envelope a record Kafka takes. The
text, the context and the title are cut at ``channels.max_text_chars`` (256 Ki
characters by default) and end with a visible ``…[截断：原文 N 字]``; a message whose
text was cut keeps only the short top-level fields of ``raw`` (the rest would carry
the cut text a second time); and should the encoded envelope still exceed what the
producer sends (its ``max_request_size`` less room for the key and framing), the
longest text is cut further. Cut rather than dead-lettered: an overlong message is
still a citizen's message, and its opening states the problem — dead-lettered, it
would reach no office until someone re-fed it, and a re-feed would fail the same
way; the marker tells the clerk it was cut, and the original stays upstream (the
hotline file in its folder, the web-form backend's row). Only what cannot be
written at all (a lone surrogate, JSON nested deeper than 255 levels, a source id
over 512 characters, personal fields that alone exceed the record) is dead-lettered.

**Retries.** Whatever ``fetch`` raises (upstream down or throttling us:
:class:`~wenzheng.core.errors.TransientError`; a broken contract, a refused
token) and whatever ``publish`` raises (Kafka down) ends the poll where it is —
pages already delivered stay delivered — and :meth:`Connector.run_once` backs the
connector off, exponentially with jitter (2 s, 4 s, … up to 15 minutes), before
it asks upstream again. Never a tight loop.

**Checkpoint formats.** A checkpoint file carries a format version
(:attr:`Connector.CHECKPOINT_VERSION`). A connector that changes its cursor's
format bumps it and implements :meth:`Connector.migrate_checkpoint` from the
older formats (the file is rewritten once, when loaded); a checkpoint without a
migration stops the connector rather than re-read or skip upstream. The four
polling connectors are at version 1: moving them to pages kept their cursors.

**Push channels** (WeChat callbacks, Open311) cannot wait for Kafka inside an
HTTP request: they :meth:`Connector.spool` the envelopes (and dead letters) — a
durable local write, fsync'd, de-duplicated by message id — answer at once, and a
drainer publishes the spool in the order above and deletes what Kafka
acknowledged. So a broker that is briefly down delays messages but loses none.
Spooled envelopes are fitted like polled ones; a spooled row that no longer
decodes, and a record Kafka refuses, become dead letters, so a drain never stalls.
A spooled row is the unmasked message, as on the intake topic, so it is sealed
(AES-256-GCM, its key derived from ``privacy.pseudonym_key``): the spool file, its
write-ahead log and the pages SQLite frees after a drain hold ciphertext only.

A fifth channel is a new module with a ``Connector`` subclass (``from_config``
makes one per configured account, ``fetch`` yields its pages) and a config entry,
registered with the ingest worker.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from prometheus_client import Counter, Gauge

from wenzheng.core import envelope
from wenzheng.core.delivery import RECORD_OVERHEAD, Out, Publisher, printable
from wenzheng.core.errors import BadMessage, TransientError
from wenzheng.core.metrics import DEADLETTERED, ERRORS, MESSAGES_IN, MESSAGES_OUT
from wenzheng.core.privacy import mask_text
from wenzheng.core.runtime import Runtime
from wenzheng.core.service import Route
from wenzheng.core.stage import deadletter, pseudonym_key
from wenzheng.core.storage import LocalDB, shared

FETCHED = Counter("wenzheng_connector_fetched_total", "Items fetched from upstream", ["connector"])
PUBLISHED = Counter("wenzheng_connector_published_total", "Messages published to the intake topic", ["connector"])
CONNECTOR_DEAD = Counter("wenzheng_connector_deadlettered_total", "Items dead-lettered", ["connector"])
CONNECTOR_ERRORS = Counter("wenzheng_connector_errors_total", "Failed polls", ["connector", "kind"])
LAG = Gauge("wenzheng_connector_lag_seconds", "Now minus the newest upstream item's time", ["connector"])
SPOOLED = Gauge("wenzheng_connector_spooled", "Pushed messages waiting in the local spool", ["connector"])

log = logging.getLogger(__name__)

State = dict[str, Any]
Envelope = dict[str, Any]
Pages = Generator["Page", None, None]
BACKOFF_FIRST, BACKOFF_MAX = 2.0, 900.0
TEXT_FIELDS = ("text", "context", "title")
CUT = "…[截断：原文 {n} 字]"
MAX_ID_CHARS = 512
MAX_VALUE_BYTES = (1 << 20) - RECORD_OVERHEAD
"""kafka-python's default ``max_request_size`` less room for the key: for publishers that do not say."""
SLIM_KEYS, SLIM_CHARS = 50, 200
"""What a slimmed ``raw`` keeps: this many top-level fields, each a number or a string this short."""
REASON_CHARS, EXCERPT_CHARS = 300, 300
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _epoch(iso_time: Any) -> float:
    try:
        return datetime.fromisoformat(str(iso_time)).timestamp()
    except ValueError:
        return time.time()


def _json_int(digits: str) -> int | str:
    if len(digits) > 20:
        return digits
    n = int(digits)
    return n if -(1 << 63) <= n < (1 << 64) else digits


def read_json(text: str) -> Any:
    """JSON as upstream wrote it, minus the two ways the standard parser crashes on hostile
    input: nesting deeper than the recursion limit (a BadMessage, like any bad JSON), and
    integers of over 4,300 digits (Python refuses to convert them). Integers beyond 64 bits
    stay their digits, since orjson cannot write them either."""
    try:
        return json.loads(text, parse_int=_json_int)
    except RecursionError:
        raise BadMessage("bad JSON: nested too deep") from None
    except json.JSONDecodeError as exc:
        raise BadMessage(f"bad JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def reason_for(exc: BaseException) -> str:
    """Why an item could not be read, fit for a dead letter. A BadMessage says it itself;
    anything else is named with where in wenzheng it was raised and its message with every
    quoted value blanked (``invalid literal for int() with base 10: '…'``), because Python's
    messages quote the input and the input may be personal."""
    if isinstance(exc, BadMessage):
        return exc.reason
    where = ""
    for frame, line in traceback.walk_tb(exc.__traceback__):
        module = frame.f_globals.get("__name__", "")
        if module.startswith("wenzheng."):
            where = f" at {module}:{line}"
    detail = _QUOTED.sub("'…'", str(exc)[:1000])[:200]
    return f"unreadable: {type(exc).__name__}{where}" + (f" ({detail})" if detail else "")


def fingerprint(item: Any) -> str:
    """A short hash of an item that has no readable id, for its dead letter's id (stable, so a
    re-read page dead-letters it once)."""
    dump = json.dumps(item, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(dump.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, ending with a marker of its original length."""
    if len(text) <= limit:
        return text
    marker = CUT.format(n=len(text))
    return text[: max(0, limit - len(marker))] + marker


def _slim(raw: Any) -> dict[str, Any]:
    """``raw`` without what makes it large: its short top-level fields, and the names of the others."""
    if not isinstance(raw, dict):
        return {"_omitted": [type(raw).__name__]}
    kept = {k: v for k, v in list(raw.items())[:SLIM_KEYS]
            if v is None or isinstance(v, bool | int | float) or (isinstance(v, str) and len(v) <= SLIM_CHARS)}
    return kept | {"_omitted": [printable(str(k), SLIM_CHARS) for k in list(raw)[:SLIM_KEYS] if k not in kept]}


def _encoded_size(value: Envelope) -> int:
    try:
        return len(envelope.encode(value))
    except TypeError as exc:  # orjson.JSONEncodeError: a lone surrogate, nesting over 255 levels
        raise BadMessage(f"cannot be written as UTF-8 JSON: {exc}") from None


@dataclass
class Page:
    """One page of upstream, as :meth:`Connector.fetch` yields it."""

    envelopes: list[dict[str, Any]] = field(default_factory=list)
    dead: list[Out] = field(default_factory=list)
    """Dead letters of the items that could not be read (:meth:`Connector.dead`)."""
    state: State | None = None
    """The checkpoint state once this page is delivered; None: the checkpoint stays."""
    fetched: int = 0
    """Items read upstream for this page, published or not (the fetched metric)."""
    acked: Callable[[], None] | None = None
    """Runs once Kafka acknowledged the page, before the checkpoint moves (step 4)."""


class Checkpoint:
    """One connector's state: a format version and a dict, saved atomically."""

    def __init__(self, path: Path, version: int = 1,
                 migrate: Callable[[int, State], State] | None = None) -> None:
        self.path, self.version = path, version
        self.state: State = {}
        if not path.exists():
            return
        doc = json.loads(path.read_text(encoding="utf-8"))
        found = doc.get("version")
        if found == version:
            self.state = doc["state"]
            return
        if not isinstance(found, int) or found > version or migrate is None:
            raise ValueError(f"{path}: checkpoint format {found} (expected {version}, no migration)")
        self.state = migrate(found, doc["state"])
        self.save()
        log.info("checkpoint migrated from format %s to %s", found, version, extra={"file": str(path)})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": self.version, "state": self.state}, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class Spool:
    """Pushed messages, durable on local disk until Kafka has them (one file per worker state),
    sealed once :meth:`use_key` gave it a key (rows written without one stay readable)."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS spool (connector TEXT, msg_id TEXT, payload BLOB, "
              "spooled_ms INTEGER, PRIMARY KEY (connector, msg_id))")
    SEALED = b"\x01"
    """The first byte of a sealed payload (a JSON one starts with ``{``)."""

    def __init__(self, path: Path) -> None:
        self.db = LocalDB(path, self.SCHEMA)
        self._key = b""
        self._aead: AESGCM | None = None

    def use_key(self, key: bytes) -> Spool:
        """Seal what is added from now on with a key derived from ``key`` (the pseudonym key)."""
        if key and key != self._key:
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"wenzheng spool").derive(key)
            self._key, self._aead = key, AESGCM(derived)
        return self

    def _seal(self, data: bytes) -> bytes:
        if self._aead is None:
            return data
        nonce = os.urandom(12)
        return self.SEALED + nonce + self._aead.encrypt(nonce, data, None)

    def _open(self, payload: bytes) -> bytes:
        """The payload as it was added; ``b""`` for a sealed one that does not open (damaged,
        or sealed under another key), which the drain dead-letters."""
        if payload[:1] != self.SEALED:
            return payload
        try:
            return self._aead.decrypt(payload[1:13], payload[13:], None) if self._aead else b""
        except InvalidTag:
            return b""

    def add(self, connector: str, values: list[dict[str, Any]]) -> int:
        """Keep ``values`` (each with an ``id``); return how many were new."""
        now = int(time.time() * 1000)
        with self.db.transaction() as tx:
            return tx.executemany("INSERT INTO spool VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                  [(connector, v["id"], self._seal(envelope.encode(v)), now)
                                   for v in values]).rowcount

    def rows(self, connector: str, limit: int = 500) -> list[tuple[str, bytes]]:
        """The oldest (message id, payload) rows, undecoded: a damaged one must not stop the rest."""
        rows = self.db.query("SELECT msg_id, payload FROM spool WHERE connector=? ORDER BY spooled_ms LIMIT ?",
                             [connector, limit])
        return [(r[0], self._open(bytes(r[1]))) for r in rows]

    def take(self, connector: str, limit: int = 500) -> list[dict[str, Any]]:
        return [json.loads(payload) for _, payload in self.rows(connector, limit)]

    def remove(self, connector: str, ids: list[str]) -> None:
        with self.db.transaction() as tx:
            tx.executemany("DELETE FROM spool WHERE connector=? AND msg_id=?", [(connector, i) for i in ids])

    def count(self, connector: str) -> int:
        return int(self.db.query("SELECT COUNT(*) FROM spool WHERE connector=?", [connector])[0][0])


def _same(env: Envelope) -> Envelope:
    return env


def spool_for(runtime: Runtime) -> Spool:
    return shared(Spool, runtime.state_dir / "spool.sqlite3").use_key(pseudonym_key(runtime))


class Connector:
    """A channel account that wenzheng polls (or that pushes to it)."""

    channel: str
    poll_seconds: float = 0.0
    """How often the ingest worker calls :meth:`run_once`; 0: push only, never polled."""
    CHECKPOINT_VERSION = 1
    """The format of this connector's checkpoint state (see the module docstring)."""

    def __init__(self, runtime: Runtime, publisher: Publisher, name: str) -> None:
        self.runtime, self.publisher, self.name = runtime, publisher, name
        self.key = pseudonym_key(runtime)
        """The pseudonym key: authors' pseudonyms, message ids, dead letters' ids (before the
        checkpoint: a migration may need it)."""
        path = runtime.state_dir / "checkpoints" / f"{name}.json"
        self.checkpoint = Checkpoint(path, self.CHECKPOINT_VERSION, self.migrate_checkpoint)
        self._lock = threading.Lock()  # one poll at a time per connector
        self._backoff = 0.0
        self._resume_at = 0.0
        self._drain_lock = threading.Lock()
        self._drain_wanted = threading.Event()
        self._drainer: threading.Thread | None = None
        self.max_text_chars: int = runtime.settings.channels.max_text_chars

    @classmethod
    def from_config(cls, runtime: Runtime, make_publisher: Callable[[str], Publisher]) -> list[Connector]:
        """One connector per configured account of this channel (default: one for the channel)."""
        return [cls(runtime, make_publisher(cls.channel), cls.channel)]

    def routes(self) -> list[Route]:
        """HTTP routes a push channel serves on the ingest worker."""
        return []

    @property
    def stage(self) -> str:
        return f"ingest.{self.name}"

    # --- what a connector supplies ---------------------------------------------------

    def fetch(self, cursor: State) -> Pages:
        """Pages of what is new since ``cursor`` (steps 1–2), in upstream order.

        The generator is resumed only after the page it yielded was delivered and
        checkpointed, so it may keep its place in local variables. Push-only
        connectors keep this default: nothing to fetch."""
        yield from ()

    def migrate_checkpoint(self, version: int, state: State) -> State:
        """The checkpoint state of an older ``version`` in this connector's current format."""
        raise ValueError(f"{self.name}: no migration from checkpoint format {version}")

    def envelope(self, **fields: Any) -> Envelope:
        """An intake envelope of this channel (``envelope.make``'s fields), its id keyed: every
        connector makes its envelopes here, so none can put a caller's number in an id."""
        fields.setdefault("channel", self.channel)
        return envelope.make(id_key=self.key, **fields)

    # --- one item (step 2) -----------------------------------------------------------

    def read_item(self, page: Page, convert: Callable[[], Envelope | None],
                  dead: Callable[[str], Out]) -> Envelope | None:
        """Step 2 for one item: ``convert()``'s envelope, fitted, joins the page; if it raises
        anything but a TransientError, ``dead(reason)`` joins it instead. Returns the
        envelope, or None (the item was skipped, or dead-lettered)."""
        try:
            env = convert()
            if env is not None:
                page.envelopes.append(self.fit(env))
            return env
        except TransientError:
            raise
        except Exception as exc:  # one item, any exception: its dead letter, and the next item
            page.dead.append(self._dead_letter(dead, exc))
            return None

    def _dead_letter(self, dead: Callable[[str], Out], exc: Exception) -> Out:
        reason = reason_for(exc)
        if not isinstance(exc, BadMessage):
            CONNECTOR_ERRORS.labels(self.name, "item").inc()  # a case the connector's code did not foresee
        try:
            return dead(reason)
        except Exception as again:  # an item that defeats its own description (too deep to hash)
            reason = f"{reason}; describing it failed too: {reason_for(again)}"
            return self.dead(reason, f"{self.channel}:unreadable:{uuid.uuid4().hex}", {"connector": self.name})

    def fit(self, env: Envelope) -> Envelope:
        """``env`` as a record Kafka takes (module docstring, **Size**); raises BadMessage
        when it cannot be one."""
        if len(source := str(env.get("source_id") or "")) > MAX_ID_CHARS:
            raise BadMessage(f"source id of {len(source)} characters (at most {MAX_ID_CHARS})")
        whole = {f: env[f] for f in TEXT_FIELDS if isinstance(env.get(f), str)}
        budget = dict.fromkeys(whole, self.max_text_chars)
        limit = getattr(self.publisher, "max_value_bytes", MAX_VALUE_BYTES)
        slimmed = False
        for _ in range(8):
            for f, text in whole.items():
                env[f] = cut(text, budget[f])
            excess = _encoded_size(env) - limit
            if "raw" in env and not slimmed and (excess > 0 or any(env[f] is not t for f, t in whole.items())):
                env["raw"], slimmed = _slim(env["raw"]), True
                continue
            if excess <= 0:
                return env
            longest = max(whole, key=lambda f: len(env[f]), default=None)
            if longest is None or budget[longest] == 0:
                break
            budget[longest] = max(0, len(env[longest]) - excess)  # a character is a byte at least
        raise BadMessage(f"message of {_encoded_size(env)} bytes even cut, over the record limit of {limit}")

    # --- the loop --------------------------------------------------------------------

    def poll(self) -> int:
        """Fetch page by page from the checkpoint, each one published, then checkpointed;
        return how many messages were published. Raises what fetch or publish raised."""
        published = 0
        with closing(self.fetch(copy.deepcopy(self.checkpoint.state))) as pages:
            for page in pages:
                published += self._deliver(page)
        return published

    def _deliver(self, page: Page) -> int:
        """Steps 3–5 for one page."""
        FETCHED.labels(self.name).inc(page.fetched)
        self.publish(page.envelopes, page.dead)  # raises unless Kafka acknowledged everything
        if page.acked is not None:
            page.acked()
        if page.state is not None and page.state != self.checkpoint.state:
            self.checkpoint.state = copy.deepcopy(page.state)
            self.checkpoint.save()
        return len(page.envelopes)

    def run_once(self) -> int:
        """The scheduler's entry point: drain the spool, then poll. Never raises, so one
        bad poll never stops the schedule; after a failure it backs off (module docstring)."""
        if time.monotonic() < self._resume_at or not self._lock.acquire(blocking=False):
            return 0
        try:
            n = self.drain() + self.poll()
            self._backoff = 0.0
            return n
        except Exception as exc:
            self._back_off(exc)
            return 0
        finally:
            self._lock.release()

    def resume(self, publisher: Publisher) -> None:
        """After the broker recovered: publish through ``publisher`` (new Kafka clients), and
        ask upstream again at the next tick — the back-off was Kafka's fault, not upstream's."""
        with self._lock, self._drain_lock:  # not while a poll or a drain is publishing
            old, self.publisher = self.publisher, publisher
            self._backoff, self._resume_at = 0.0, 0.0
        old.close(producer=False)

    def _back_off(self, exc: Exception) -> None:
        kind = "transient" if getattr(exc, "transient", False) else "poll"
        ERRORS.labels(self.stage, kind).inc()
        CONNECTOR_ERRORS.labels(self.name, kind).inc()
        self._backoff = min(BACKOFF_MAX, max(BACKOFF_FIRST, self._backoff * 2))
        self._resume_at = time.monotonic() + self._backoff * random.uniform(0.5, 1.0)
        if kind == "transient":
            log.warning("poll failed, backing off %.0fs: %s", self._backoff, exc, extra={"connector": self.name})
        else:
            log.exception("poll failed, backing off %.0fs", self._backoff, extra={"connector": self.name})

    # --- the push path ---------------------------------------------------------------

    @property
    def dead_spool(self) -> str:
        """The spool key of this connector's dead letters (beside its messages)."""
        return f"{self.name}#dead"

    def spool(self, envelopes: list[dict[str, Any]], dead: Sequence[Out] = ()) -> int:
        """The push path: keep the envelopes (and dead letters) durably and return at once;
        a drainer publishes them. Returns how many envelopes were new.

        The drainer thread wakes at once, so a push reaches Kafka in milliseconds
        while the broker is up; while it is down the scheduled :meth:`run_once`
        keeps retrying with back-off."""
        page = Page(dead=list(dead))
        for env in envelopes:
            self.read_item(page, partial(_same, env), partial(self._dead_envelope, env))
        spool = spool_for(self.runtime)
        added = spool.add(self.name, page.envelopes) if page.envelopes else 0
        if page.dead:
            spool.add(self.dead_spool, [o.value for o in page.dead])
        FETCHED.labels(self.name).inc(len(envelopes))
        SPOOLED.labels(self.name).inc(added)
        if self._drainer is None or not self._drainer.is_alive():
            self._drainer = threading.Thread(target=self._drain_loop, name=f"drain-{self.name}", daemon=True)
            self._drainer.start()
        self._drain_wanted.set()
        return added

    def _drain_loop(self) -> None:
        while self._drain_wanted.wait(timeout=30):
            self._drain_wanted.clear()
            try:
                self.drain()
            except Exception as exc:  # Kafka down: the scheduled run_once retries with back-off
                log.warning("drain failed: %s", exc, extra={"connector": self.name})
                return

    def drain(self) -> int:
        """Publish what the push path spooled, then forget it (after Kafka acknowledged);
        return how many messages were published."""
        with self._drain_lock:
            total = self._drain(self.name) + self._drain(self.dead_spool)
            SPOOLED.labels(self.name).set(spool_for(self.runtime).count(self.name))
        return total

    def _drain(self, key: str) -> int:
        spool, total = spool_for(self.runtime), 0
        while rows := spool.rows(key):
            page = self._unspool(key, rows)
            self.publish(page.envelopes, page.dead)  # a record Kafka refuses comes back as a dead letter
            spool.remove(key, [msg_id for msg_id, _ in rows])
            total += len(page.envelopes)
        return total

    def _unspool(self, key: str, rows: list[tuple[str, bytes]]) -> Page:
        page = Page()
        for msg_id, payload in rows:
            try:
                value = json.loads(payload)
            except ValueError:
                value = None
            if not isinstance(value, dict) or not isinstance(value.get("id"), str):  # damaged on disk
                page.dead.append(self.dead("a spooled record that no longer decodes", msg_id, {"spool": key}))
                continue
            if key == self.dead_spool:  # a spooled dead letter as it was made (deadletter()'s key)
                page.dead.append(Out(self.runtime.topics.deadletter, f"{value.get('stage')}:{msg_id}", value))
            else:
                page.envelopes.append(value)
        return page

    def _dead_envelope(self, env: Envelope, reason: str) -> Out:
        msg_id = str(env.get("id"))
        return self.dead(reason, msg_id, {"id": msg_id}, str(env.get("text") or "")[:EXCERPT_CHARS])

    # --- publishing ------------------------------------------------------------------

    def publish(self, envelopes: list[dict[str, Any]], dead: Sequence[Out] = ()) -> None:
        """Step 3: returns once Kafka acknowledged every record."""
        outs = [Out(self.runtime.topics.intake, e["id"], e) for e in envelopes] + list(dead)
        MESSAGES_IN.labels(self.stage).inc(len(outs))
        refused = getattr(self.publisher, "refused", 0)  # (test doubles of the publisher count none)
        sent = self.publisher.publish(outs)
        refused = getattr(self.publisher, "refused", 0) - refused
        for o in sent:
            MESSAGES_OUT.labels(self.stage, o.topic).inc()
        DEADLETTERED.labels(self.stage).inc(len(dead) + refused)
        PUBLISHED.labels(self.name).inc(sum(1 for o in sent if o.topic == self.runtime.topics.intake))
        CONNECTOR_DEAD.labels(self.name).inc(len(dead) + refused)
        if envelopes:
            newest = max(str(e.get("posted_at") or "") for e in envelopes)
            LAG.labels(self.name).set(max(0.0, time.time() - _epoch(newest)))

    def dead(self, reason: str, msg_id: str, source: dict[str, Any], excerpt: str = "") -> Out:
        """The dead letter of an unreadable item; the reason is masked like the excerpt, since
        it may quote the item (``bad time '13907971234'``), and every string is cut short and
        made printable (a lone surrogate in a name would make the dead letter unwritable). The
        id is keyed (``envelope.opaque_id``) before it is logged: a file name may be a phone number."""
        reason = printable(mask_text(printable(reason, 4 * REASON_CHARS)), REASON_CHARS)
        msg_id = envelope.opaque_id(msg_id, self.key)
        source = {k: printable(v, REASON_CHARS) if isinstance(v, str) else v for k, v in source.items()}
        log.warning("dead-lettered: %s", reason, extra={"connector": self.name, "id": msg_id})
        return deadletter(self.runtime, self.stage, reason, msg_id=msg_id, source=source,
                          excerpt=printable(excerpt, EXCERPT_CHARS))

    def close(self) -> None:
        """Release what the connector holds open (HTTP sessions, SFTP connections)."""
