"""The Prometheus metrics every stage reports (served on ``GET /metrics``)."""

from prometheus_client import Counter, Gauge

MESSAGES_IN = Counter("wenzheng_messages_in_total", "Records a stage consumed or fetched", ["stage"])
MESSAGES_OUT = Counter("wenzheng_messages_out_total", "Records a stage published", ["stage", "topic"])
DEADLETTERED = Counter("wenzheng_deadlettered_total", "Records sent to the dead-letter topic", ["stage"])
DUPLICATES = Counter("wenzheng_duplicates_skipped_total", "Redeliveries recognised by message id", ["stage"])
ERRORS = Counter("wenzheng_errors_total", "Errors by stage and kind", ["stage", "kind"])
LAG = Gauge("wenzheng_consumer_lag", "High watermark minus position", ["stage", "topic", "partition"])
