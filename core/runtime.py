"""What every worker needs once the configuration is loaded: topics, offices,
the broker's identity and the state directory that belongs to it."""

from __future__ import annotations

import hashlib
import logging
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from .delivery import Journal
from .errors import WenzhengError
from .kafka import Topics, client_kwargs, ensure_topics, wait_for_broker


class ClusterChanged(WenzhengError):
    """The bootstrap servers now answer as another cluster: state keyed by the old one must not be reused."""


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
        self._topic_ids: dict[str, str] = {}
        self.options: dict[str, str] = {}
        """Command-line options for the stage this process runs (e.g. ``model`` for classify)."""

    @property
    def bootstrap(self) -> list[str]:
        return list(self.settings.kafka.bootstrap_servers)

    def connect(self, create_topics: bool = True) -> Runtime:
        if not self.bootstrap:
            raise ValueError("no Kafka configured: run `wenzheng up`, `wenzheng broker`, or set WENZHENG_BOOTSTRAP_SERVERS")
        wait_for_broker(self.bootstrap)
        if create_topics:
            ensure_topics(self.settings, self.office_queue_ids())
        self.cluster_id, self._topic_ids = self._describe()
        return self

    def check(self) -> str | None:
        """What stops this process from producing or consuming now, or None.

        A broker that does not answer, or one whose topics are missing or were made again
        since this process looked (a topic's id changes when it is recreated): a memory-only
        broker restarted and lost everything it held, or its topics were deleted. Clients
        made before that hang on state the broker forgot (an idempotent producer's id), so
        the caller rebuilds them. Raises ClusterChanged when another cluster answers."""
        try:
            cluster, ids = self._describe()
        except (KafkaError, OSError) as exc:
            return f"broker unreachable ({type(exc).__name__})"
        if self.cluster_id and cluster != self.cluster_id:
            raise ClusterChanged(f"the broker is another cluster now ({cluster}, was {self.cluster_id}): "
                                 "this worker's state belongs to the old one; restart it")
        missing = [t for t in self.topics.shared() if not ids.get(t)]
        if missing:
            return f"the broker lost {len(missing)} of its topics (restarted without its data?)"
        if self._topic_ids and ids != self._topic_ids:
            return "the broker's topics were made again (it restarted without its data)"
        return None

    def recover(self, timeout: float = 5.0) -> None:
        """Recreate what a broker that lost its state no longer has: the topics, as at start.
        Raises TransientError while the broker does not answer."""
        wait_for_broker(self.bootstrap, timeout)
        created = ensure_topics(self.settings, self.office_queue_ids())
        self._topic_ids = self._describe()[1]
        log.warning("recovered the broker: %d topics recreated", len(created))

    def _describe(self) -> tuple[str, dict[str, str]]:
        """(cluster id, {shared topic: its topic id}); a missing topic has none."""
        admin = KafkaAdminClient(**client_kwargs(self.settings), request_timeout_ms=3000)
        try:
            cluster = admin.describe_cluster().get("cluster_id") or "unknown-cluster"
            topics = admin.describe_topics(self.topics.shared())
        finally:
            admin.close()
        return cluster, {t["name"]: t.get("topic_id") or "" for t in topics if not t.get("error_code")}

    def group(self, stage: str, topic: str) -> str:
        """The consumer group of ``stage`` reading ``topic``: named after the topic's incarnation
        (its topic id), so a recreated topic is read by a new group. Offsets committed against
        the old topic mean nothing in the new one, and the embedded broker never again assigns
        partitions in a group that a member from before its restart rejoined
        (tests/test_broker_gaps.py). On a cluster whose topics are never recreated the
        name never changes."""
        base = f"{self.settings.kafka.topic_prefix}{stage}"
        topic_id = self._topic_ids.get(topic)
        # ids are time-ordered (UUIDv7): their first digits are alike for a minute; a hash is not
        return f"{base}.{hashlib.sha256(topic_id.encode()).hexdigest()[:8]}" if topic_id else base

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
        return Journal(self.state_dir / "delivery.sqlite3", self.settings.state.url)

    def prune(self) -> int:
        """Forget delivered ids older than ``state.dedup_retention_days`` (the journal stays bounded)."""
        n = self.journal.prune(self.settings.state.dedup_retention_days)
        if n:
            log.info("journal pruned: %d ids older than %s days", n, self.settings.state.dedup_retention_days)
        return n
