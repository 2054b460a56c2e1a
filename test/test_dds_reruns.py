"""The rerun policy of test/dds_reruns.py, run on a throw-away test file (pytester)."""
from __future__ import annotations

import pytest

TESTS = """
from pathlib import Path


def test_stalls_once(tmp_path_factory):
    mark = Path(__file__).with_suffix(".ran")
    if not mark.exists():
        mark.write_text("1")
        raise AssertionError("node did not exit 20.0 s after signal 2:")


def test_stalls_twice():
    raise AssertionError("node not discovered in 2 attempts of 45 s (alive, log below)")


def test_other_failure():
    raise AssertionError("LEFT 40 px off the paint")
"""


@pytest.mark.flaky(reruns=0)  # its own failure would quote the symptoms it checks
def test_only_a_dds_stall_symptom_is_rerun_and_only_once(pytester):
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-p", "dds_reruns", "-ra")
    outcomes = result.parseoutcomes()
    assert (outcomes.get("passed"), outcomes.get("failed"), outcomes.get("rerun")) == (1, 2, 2), result.stdout.str()
    result.stdout.fnmatch_lines(["*FAILED*test_stalls_twice*", "*FAILED*test_other_failure*"])
