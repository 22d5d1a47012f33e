"""Shared fixtures: a real embedded broker per session, and per-test configurations.

Every test that touches Kafka gets its own topic prefix, state directory and
drop folder, so tests never see each other's messages on the shared broker.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from wenzheng.app.up import stop_processes
from wenzheng.config import DEFAULT_DIR, load
from wenzheng.core import envelope

BOOTSTRAP_ENV = "WENZHENG_TEST_BOOTSTRAP_SERVERS"
TEST_KEY = "test-key-not-for-production"
"""The pseudonym key of every test configuration (``write_config``): message ids are keyed with it."""


def expected_id(channel: str, source_id: object) -> str:
    """The message id a test configuration gives the item ``source_id`` of ``channel``."""
    return envelope.message_id(channel, str(source_id), TEST_KEY.encode())


def make_envelope(**fields) -> dict:
    """``envelope.make`` with the test key, as a connector of a test configuration makes envelopes."""
    return envelope.make(id_key=TEST_KEY.encode(), **fields)


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory) -> str:
    """A real Kafka-protocol broker: the embedded Tansu, or WENZHENG_TEST_BOOTSTRAP_SERVERS."""
    if servers := os.environ.get(BOOTSTRAP_ENV):
        yield servers
        return
    from wenzheng.app.broker import EmbeddedBroker

    broker = EmbeddedBroker(log_file=tmp_path_factory.mktemp("broker") / "tansu.log").start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def write_config(directory: Path, bootstrap: str | None = None, **sections) -> Path:
    """A copy of the default city with runtime sections replaced (state and drop dir inside ``directory``)."""
    cfg = directory / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    for f in DEFAULT_DIR.glob("*.yaml"):
        shutil.copy(f, cfg / f.name)
    prefix = f"t{uuid.uuid4().hex[:8]}."
    runtime = {
        "kafka": {"bootstrap_servers": [bootstrap] if bootstrap else [], "topic_prefix": prefix, "partitions": 3},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "state": {"dir": str(directory / "state")},
        "privacy": {"pseudonym_key": TEST_KEY},
    }
    runtime.update({k: v for k, v in sections.items() if k in runtime or k in ("classifier", "ledger")})
    (cfg / "runtime.yaml").write_text(yaml.safe_dump(runtime, allow_unicode=True), encoding="utf-8")
    channels = {"channels": {"hotline": {"enabled": True, "drop_dir": str(directory / "drop"),
                                         "poll_seconds": 0.5, "settle_seconds": 0.2}}}
    (cfg / "channels.yaml").write_text(yaml.safe_dump(channels, allow_unicode=True), encoding="utf-8")
    return cfg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def config_dir(tmp_path, bootstrap) -> Path:
    return write_config(tmp_path, bootstrap)


@pytest.fixture
def config(config_dir):
    return load(config_dir)


@pytest.fixture
def runtime(config):
    from wenzheng.core.runtime import Runtime

    rt = Runtime(config).connect()
    yield rt
    rt.journal.close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A model trained on the packaged corpus's training split, once per session."""
    from wenzheng.classify.model import Classifier, corpus_files, is_test, read_labelled

    settings = load().settings
    rows = [r for r in read_labelled(corpus_files()) if not is_test(r)]
    model = Classifier.train(rows, settings)
    return model.save(tmp_path_factory.mktemp("model") / "m")


class Workers:
    """`wenzheng worker …` subprocesses that a test starts, kills and restarts."""

    def __init__(self, config_dir: Path, log_dir: Path):
        self.config_dir, self.log_dir = config_dir, log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, kind: str, *extra: str) -> subprocess.Popen:
        with open(self.log_dir / f"{kind}.log", "ab") as log:
            p = subprocess.Popen([sys.executable, "-m", "wenzheng.app", "worker", kind, "--config", str(self.config_dir),
                                  "--port", "0", *extra], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.procs[kind] = p
        return p

    def stop_all(self) -> None:
        stop_processes(self.procs, 20)


@pytest.fixture
def workers(config_dir, tmp_path):
    w = Workers(config_dir, tmp_path)
    yield w
    w.stop_all()


# --- the case ledger on SQLite and on this machine's real PostgreSQL ---------------------
# (skipped, saying why, when none answers; each PostgreSQL test gets a schema of its own)

PG_URL = os.environ.get("WENZHENG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_admin():
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as db:
            db.execute(sa.text("select 1"))
        return engine
    except Exception as exc:  # noqa: BLE001 — any reason to skip is said
        pytest.skip(f"no PostgreSQL at {PG_URL} ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                    "set WENZHENG_TEST_POSTGRES_URL")


@pytest.fixture
def pg_schema():
    import sqlalchemy as sa

    engine = _pg_admin()
    schema = f"wz_{uuid.uuid4().hex[:10]}"
    with engine.begin() as db:
        db.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield PG_URL, schema
    finally:
        with engine.begin() as db:
            db.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    """(url, schema) of an empty ledger database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}", None
    return request.getfixturevalue("pg_schema")
