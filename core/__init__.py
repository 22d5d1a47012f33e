"""The shared core every stage imports, and that imports no stage.

The message envelope, errors, privacy (masking and pseudonyms), Kafka helpers,
the delivery journal, the stage runtime, metrics, the HTTP service and storage.
Layers, kept by an import contract in ``./dev test``: ``wenzheng.core`` ←
``wenzheng.config`` ← the stages (``ingest`` → ``classify`` → ``route`` →
``sinks``) ← ``wenzheng.app`` and ``wenzheng.audit``.
"""

__version__ = "0.1.0"
