"""Benchmarks: `./dev bench` (or `python -m benchmarks`). Figures, not pass/fail."""

PRIVACY = {"pseudonym_key": "benchmark-key-not-a-secret"}
"""The ``privacy`` section of every benchmark's configuration: workers refuse to start without a key."""
