"""The shape the code keeps: short functions, no document outside the repository cited."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "config", "ingest", "classify", "route", "sinks", "audit", "app", "tests", "benchmarks")
MAX_LINES = 60


def _sources():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "\n".join(long)


OUTSIDE = tuple(name + ".md" for name in ("CONTRACT", "STYLE"))  # the team's documents, not the project's


def test_no_document_outside_the_repository_is_cited():
    cited = [str(p.relative_to(ROOT)) for p in [*_sources(), ROOT / "README.md"]
             if any(doc in p.read_text(encoding="utf-8") for doc in OUTSIDE)]
    assert not cited
