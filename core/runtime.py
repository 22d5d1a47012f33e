"""What every worker needs once the configuration is loaded: topics, offices,
the broker's identity and the state directory that belongs to it."""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from kafka import KafkaAdminClient

from .delivery import Journal
from .kafka import Topics, client_kwargs, ensure_topics, wait_for_broker

if TYPE_CHECKING:  # the core imports no layer above it; config is handed in
    from wenzheng.config import LoadedConfig

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, config: LoadedConfig, bootstrap: list[str] | None = None):
        settings = config.settings
        if bootstrap:  # the embedded broker's address, known only once it runs
            settings = settings.model_copy(
                update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})}
            )
        self.config = config
        self.settings = settings
        self.topics = Topics(settings.kafka.topic_prefix)
        self.offices = config.offices
        self.cluster_id: str | None = None
        self.options: dict[str, str] = {}
        """Command-line options for the stage this process runs (e.g. ``model`` for classify)."""

    @property
    def bootstrap(self) -> list[str]:
        return list(self.settings.kafka.bootstrap_servers)

    def connect(self, create_topics: bool = True) -> Runtime:
        if not self.bootstrap:
            raise ValueError("no Kafka configured: run `wenzheng up`, `wenzheng broker`, or set WENZHENG_BOOTSTRAP_SERVERS")
        wait_for_broker(self.bootstrap)
        admin = KafkaAdminClient(**client_kwargs(self.settings))
        try:
            self.cluster_id = admin.describe_cluster().get("cluster_id") or "unknown-cluster"
        finally:
            admin.close()
        if create_topics:
            ensure_topics(self.settings, self.office_queue_ids())
        return self

    def office_queue_ids(self) -> list[str]:
        return [o.id for o in self.offices.offices.values() if o.kind != "triage"]

    @cached_property
    def state_dir(self) -> Path:
        """State is kept per Kafka cluster: a new embedded broker starts from nothing."""
        if self.cluster_id is None:
            raise RuntimeError("connect() first")
        path = Path(self.settings.state.dir).expanduser() / self.cluster_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    @cached_property
    def journal(self) -> Journal:
        return Journal(self.state_dir / "delivery.sqlite3")
