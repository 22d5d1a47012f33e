"""Benchmarks: `./dev bench` (or `python -m benchmarks`). Figures, not pass/fail."""
