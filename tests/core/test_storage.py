"""The one way local state opens SQLite: durable settings, transactions, writers that share a file."""

from __future__ import annotations

import sqlite3
import threading

import pytest
import sqlalchemy as sa

from wenzheng.core import storage
from wenzheng.core.storage import LocalDB, shared

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)"


def pragmas(query) -> tuple:
    return tuple(query(f"PRAGMA {p}")[0][0] for p in ("journal_mode", "synchronous", "busy_timeout"))


def test_opened_durable_wal_full_with_a_busy_timeout(tmp_path):
    db = LocalDB(tmp_path / "sub" / "s.sqlite3", SCHEMA)  # the folder is made
    assert pragmas(db.query) == ("wal", 2, storage.BUSY_TIMEOUT_MS)
    assert db.conn.isolation_level is None  # autocommit: our BEGIN IMMEDIATE is the only transaction
    db.close()


def test_a_transaction_commits_or_rolls_back_whole(tmp_path):
    db = LocalDB(tmp_path / "s.sqlite3", SCHEMA)
    with db.transaction() as tx:
        tx.executemany("INSERT INTO t VALUES (?, ?)", [("a", 1), ("b", 2)])
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('c', 3)")
        raise RuntimeError("killed half-way")
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('d', 4)")
        tx.execute("INSERT INTO t VALUES ('a', 5)")
    db.close()
    again = LocalDB(tmp_path / "s.sqlite3", SCHEMA)  # what was committed outlives the connection
    assert again.query("SELECT k, n FROM t ORDER BY k") == [("a", 1), ("b", 2)]
    again.close()


def test_threads_and_a_second_connection_write_without_losing_an_update(tmp_path):
    one = LocalDB(tmp_path / "s.sqlite3", SCHEMA)
    other = LocalDB(tmp_path / "s.sqlite3", SCHEMA)  # as another worker process on the machine would
    with one.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('n', 0)")

    def bump(db: LocalDB) -> None:
        for _ in range(50):
            with db.transaction() as tx:  # read-modify-write: safe only under the write lock
                (n,) = tx.execute("SELECT n FROM t WHERE k='n'").fetchone()
                tx.execute("UPDATE t SET n=? WHERE k='n'", [n + 1])

    threads = [threading.Thread(target=bump, args=(db,)) for db in (one, one, other, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert one.query("SELECT n FROM t")[0][0] == 200
    one.close()
    other.close()


def test_shared_is_one_store_per_path(tmp_path):
    class Store:
        def __init__(self, path):
            self.path = path

    a = shared(Store, tmp_path / "a.sqlite3")
    assert shared(Store, tmp_path / "a.sqlite3") is a
    assert shared(Store, tmp_path / "b.sqlite3") is not a


def test_a_sqlalchemy_engine_gets_the_same_settings(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    sa.event.listen(engine, "connect", lambda dbapi, _: storage.prepare(dbapi, "foreign_keys=ON"))
    with engine.connect() as db:
        assert pragmas(lambda q: db.exec_driver_sql(q).all()) == ("wal", 2, storage.BUSY_TIMEOUT_MS)
        assert db.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_workers_starting_together_on_an_empty_shared_database_all_start(pg_schema):
    """Two machines' workers start at once against one PostgreSQL: ``CREATE TABLE IF NOT
    EXISTS`` alone races there (a unique violation on pg_type), so schema creation is
    serialised. Every journal, ledger and accounts store must open, and the tables exist once."""
    from wenzheng.core.delivery import Journal
    from wenzheng.sinks.accounts import Accounts
    from wenzheng.sinks.cases import Ledger

    url, schema = pg_schema
    libpq = f"{url}?options=-csearch_path%3D{schema}"
    opened: list[str] = []
    failed: list[BaseException] = []
    start = threading.Barrier(12)

    def open_one(i: int) -> None:
        start.wait()
        try:
            if i % 3 == 0:
                Journal("unused", url=libpq).close()
            elif i % 3 == 1:
                Ledger(url, schema=schema).engine.dispose()
            else:
                engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
                Accounts(engine)
                engine.dispose()
            opened.append(str(i))
        except BaseException as exc:  # noqa: BLE001 — collected, asserted below
            failed.append(exc)

    threads = [threading.Thread(target=open_one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == [] and len(opened) == 12
