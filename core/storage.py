"""Local state in SQLite, opened one way so every store gets the same durability.

The delivery journal, the push spool, the web-form and Open311 indexes,
WeChat's seen-set and the SQLite case ledger each hold state that a crash at
any instant must leave consistent, and that several workers of one machine may
share. Each of them opens its database here:

- ``journal_mode=WAL``: readers never block the writer; workers share a file.
- ``synchronous=FULL``: a commit is fsync'd before it returns. The delivery
  order rests on this: a push is answered only after its spool commit, and a
  checkpoint moves only after the journal says *done*.
- ``busy_timeout``: another process holding the write lock makes us wait, not fail.
- ``BEGIN IMMEDIATE``: a transaction takes the write lock when it starts, so
  two writers never deadlock upgrading a read lock.
- One connection per store, shared by the process's threads
  (``check_same_thread`` off) behind one lock: a sqlite3 connection holds one
  transaction at a time, so readers take the lock too.

Plain :mod:`sqlite3`, not SQLAlchemy: the journal is hit on every batch, and
SQLAlchemy Core made its lookup → pending → done round 3-4x slower (2.2 ms
against 0.6 ms for one message, 5.1 ms against 1.2 ms for 100). The stores keep
their SQL to what PostgreSQL accepts too (``ON CONFLICT``, never ``OR IGNORE``
or ``OR REPLACE``; only the ``?`` placeholders differ), so that the delivery
journal can live in a shared PostgreSQL instead (:class:`SharedDB`, ``state.url``):
another class with the same :meth:`~LocalDB.transaction` and :meth:`~LocalDB.query`,
not new SQL. That is what makes "exactly once" hold when a stage runs on several
machines: a partition that moves to another machine's worker comes with the
journal entries its first owner left (see wenzheng.core.delivery).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

BUSY_TIMEOUT_MS = 30_000
PRAGMAS = (f"busy_timeout={BUSY_TIMEOUT_MS}", "journal_mode=WAL", "synchronous=FULL")
BEGIN = "BEGIN IMMEDIATE"

Row = tuple[Any, ...]
T = TypeVar("T")


def prepare(conn: sqlite3.Connection, *extra: str) -> None:
    """Make a new connection autocommit (transactions are our explicit ``BEGIN IMMEDIATE``)
    and set the PRAGMAs above, then ``extra`` ones (the ledger adds ``foreign_keys=ON``).
    SQLAlchemy engines call it from their ``connect`` event."""
    conn.isolation_level = None
    for pragma in (*PRAGMAS, *extra):
        conn.execute(f"PRAGMA {pragma}")


class LocalDB:
    """One SQLite database of local state (the module docstring says how it is opened)."""

    def __init__(self, path: Path, schema: str = "") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.conn = sqlite3.connect(path, check_same_thread=False)
        prepare(self.conn)
        if schema:
            self.conn.executescript(schema)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and the write lock; commit (fsync'd) on exit, roll back on an error."""
        with self.lock:
            self.conn.execute(BEGIN)
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:  # SQLite may have rolled back already (disk full)
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self.lock:
            self.conn.close()


_shared: dict[tuple[Callable[[Path], Any], Path], Any] = {}
_shared_lock = threading.Lock()


def shared(factory: Callable[[Path], T], path: Path) -> T:
    """The process's one ``factory(path)``: every thread of a worker uses the same store
    (one connection, one lock) instead of each opening its own."""
    key = (factory, path)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = factory(path)
        return cast(T, _shared[key])


# Workers of two machines starting at once against one PostgreSQL: ``CREATE TABLE IF NOT
# EXISTS`` races there (the loser fails on pg_type's unique index), so every creation of
# tables takes this transaction-scoped advisory lock first. DDL is transactional in
# PostgreSQL: the lock is held until the tables are committed.
SCHEMA_LOCK = 0x77656E7A  # "wenz"
SCHEMA_LOCK_SQL = f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"


def create_tables(engine: Any, meta: Any, then: Callable[[Any], None] | None = None) -> None:
    """``meta.create_all`` on a SQLAlchemy engine, then ``then(connection)`` (an upgrade step) in
    the same transaction, serialised on PostgreSQL by SCHEMA_LOCK (SQLite's writers are
    serialised already)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(SCHEMA_LOCK_SQL)
        meta.create_all(conn)
        if then is not None:
            then(conn)


class _PgTx:
    """A transaction's connection, speaking sqlite3's ``execute``/``executemany`` with ``?``."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.conn.cursor()
        cur.execute(sql.replace("?", "%s"), params)
        return cur

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cur = self.conn.cursor()
        cur.executemany(sql.replace("?", "%s"), rows)
        return cur


class SharedDB:
    """State in a PostgreSQL database that the workers of every machine share.

    ``url`` is a libpq URL (``postgresql://user@host/db``; SQLAlchemy's
    ``postgresql+psycopg://`` is accepted too). One connection per store behind one
    lock, as :class:`LocalDB`; a commit is durable when it returns (PostgreSQL's
    default ``synchronous_commit``)."""

    def __init__(self, url: str, schema: str = "") -> None:
        import psycopg

        self.url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.lock = threading.Lock()
        self.conn = psycopg.connect(self.url, autocommit=False)
        if schema:
            try:
                with self.transaction() as tx:
                    tx.execute(SCHEMA_LOCK_SQL)
                    for statement in filter(str.strip, schema.split(";")):
                        tx.execute(statement)
            except BaseException:
                self.conn.close()
                raise

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.lock:
            try:
                yield _PgTx(self.conn)
            except BaseException:
                self.conn.rollback()
                raise
            self.conn.commit()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.lock:
            try:
                rows: list[Row] = self.conn.execute(sql.replace("?", "%s"), params).fetchall()
            finally:
                self.conn.rollback()  # end the read's implicit transaction
            return rows

    def close(self) -> None:
        with self.lock:
            self.conn.close()
