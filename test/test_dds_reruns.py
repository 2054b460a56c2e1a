"""The rerun policy of test/dds_reruns.py, run on a throw-away test file (pytester)."""
from __future__ import annotations

import configparser

import pytest

from conftest import REPO_ROOT

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


HANGS = """
import ctypes
import time


def test_hangs_in_python():
    time.sleep(60)


def test_after_the_hang():
    pass


def test_frozen_holding_the_gil():
    libc = ctypes.PyDLL(None)  # PyDLL keeps the GIL during the call
    mutex = ctypes.create_string_buffer(64)  # zeroed: an unlocked default mutex
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)  # never returns, as Fast DDS's TCP disconnect did in CI


def test_never_reached():
    pass
"""


@pytest.mark.flaky(reruns=0)
def test_a_hung_test_fails_and_a_frozen_one_ends_the_run(pytester):
    """pytest.ini's limits, scaled down: a test hung in Python fails (pytest-timeout) and the run goes on; one
    frozen in a C call holding the GIL, where no Python handler runs, ends the run with every thread's Python stack."""
    ini = configparser.ConfigParser()
    ini.read(REPO_ROOT / "pytest.ini")
    limits = ini["pytest"]
    assert 0 < float(limits["timeout"]) < float(limits["faulthandler_timeout"])
    assert limits.getboolean("faulthandler_exit_on_timeout")
    pytester.makepyfile(HANGS)
    result = pytester.runpytest_subprocess("-v", "-o", "timeout=2", "-o", "faulthandler_timeout=5",
                                           "-o", "faulthandler_exit_on_timeout=true", timeout=60)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, out
    assert "test_hangs_in_python FAILED" in out and "test_after_the_hang PASSED" in out, out
    assert "Timeout (0:00:05)!" in out and "in test_frozen_holding_the_gil" in out, out
    assert "test_never_reached" not in out, out
