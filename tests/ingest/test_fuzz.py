"""Property: whatever upstream sends, each connector's parser makes every item an envelope
or a dead letter (both writable records) and lets nothing else escape but an upstream
error. The table and the strategies are benchmarks/fuzz.py's, which runs 10,000 cases per
parser; here ~100 each, shrunk to the smallest failing case if one fails."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from benchmarks.fuzz import TARGETS, Harness, Target


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_hostile_input_never_escapes_the_connector(target: Target, tmp_path):
    harness = Harness(tmp_path)

    @settings(max_examples=100, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(target.strategy)
    def one(case):
        target.run(harness, case)

    one()
