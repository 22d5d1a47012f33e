"""The README's picture of the pipeline is `wenzheng topology`'s output, not a drawing that can drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_shows_what_topology_prints():
    # A process of its own: the registry is process-wide, and other tests load plugins into it.
    out = subprocess.run([sys.executable, "-m", "wenzheng.app", "topology"], capture_output=True, text=True,
                         encoding="utf-8", timeout=60, check=True).stdout.rstrip()
    assert "stages" in out and "ingest" in out
    assert out in README.read_text(encoding="utf-8"), "README.md's topology block is stale: paste `wenzheng topology`"
