"""wenzheng (问政): citizens' messages in, classified and routed to the office that must answer.

The shared core lives here (envelope, privacy, Kafka helpers, delivery journal,
stage runner, HTTP service, CLI); the pipeline's steps are the subpackages
``wenzheng.ingest`` → ``wenzheng.classify`` → ``wenzheng.route`` → ``wenzheng.sinks``,
with the city's ``wenzheng.config`` beside them.
"""

__version__ = "0.1.0"
