"""The soak benchmark's frame audit (benchmarks/bench_soak.py) on simulated newest-frame-wins nodes."""
from __future__ import annotations

import importlib.util

import numpy as np

from conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("bench_soak", REPO_ROOT / "benchmarks" / "bench_soak.py")
bench_soak = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_soak)

MS = 1_000_000


def newest_wins(sent: np.ndarray, work_ns: int, lost: frozenset[int] = frozenset(), transport_ns: int = 2 * MS):
    """Answers of a node that takes the newest frame that has arrived whenever it is free.

    Returns [(stamp, arrival of its LaneArray)] and {stamp: arrival of its last output}."""
    arrive = [(int(s) + transport_ns, i) for i, s in enumerate(sent) if i not in lost]
    answers, busy_until, free, taken = [], {}, 0, -1
    while True:
        present = [i for t, i in arrive if i > taken and t <= max(free, 0)]
        waiting = [(t, i) for t, i in arrive if i > taken]
        if not waiting:
            return answers, busy_until
        if present:
            i = max(present)  # the newest frame that is there wins
            start = free
        else:
            t, i = waiting[0]  # idle: the next frame to arrive is taken at once
            start = t
        taken, free = i, start + work_ns
        answers.append((int(sent[i]), free + MS))
        busy_until[int(sent[i])] = free + 3 * MS  # markers and points follow the lanes


def test_a_busy_node_skipping_frames_is_explained_and_a_frame_lost_while_idle_is_not():
    sent = np.arange(300, dtype=np.int64) * 33_333_333 + 10**18  # 10 s at 30 Hz
    answers, busy = newest_wins(sent, work_ns=100 * MS)  # busy: 2 of 3 frames replaced by newer ones
    audit = bench_soak.frame_audit(sent, answers, busy, idle_tolerance_ns=50 * MS)
    assert audit["answered"] < len(sent) / 2  # newest-wins skipped most frames ...
    assert audit["skipped_while_idle"] == 0  # ... all of them explained
    assert audit["last_answered"] and audit["answered_in_order"]

    answers, busy = newest_wins(sent, work_ns=10 * MS, lost=frozenset({40, 299}))  # idle between frames
    audit = bench_soak.frame_audit(sent, answers, busy, idle_tolerance_ns=10 * MS)
    assert audit["answered"] == len(sent) - 2
    assert audit["skipped_while_idle_stamps"] == [int(sent[40])]
    assert not audit["last_answered"]


def test_answers_out_of_order_or_never_sent_are_reported():
    sent = np.arange(10, dtype=np.int64) * 33_333_333 + 10**18
    answers, busy = newest_wins(sent, work_ns=20 * MS)
    swapped = answers[:3] + [(answers[4][0], answers[3][1]), (answers[3][0], answers[4][1])] + answers[5:]
    audit = bench_soak.frame_audit(sent, swapped + [(1, answers[-1][1] + MS)], busy | {1: 0}, 10 * MS)
    assert not audit["answered_in_order"] and audit["answers_not_sent"] == 1


def test_results_section_is_replaced_in_place_and_kept_by_run_all(tmp_path):
    spec = importlib.util.spec_from_file_location("run_all", REPO_ROOT / "benchmarks" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Model forward\n\n| a |\n\n## Start-up\n\ntext\n")
    bench_soak.update_results(results, "# Soak (issue 21): lane_detector for 60 min at 30 Hz\n\n| t | RSS |\n")
    bench_soak.update_results(results, "# Soak (issue 21): lane_detector for 2 min at 30 Hz\n\n| t | fds |\n")
    text = results.read_text()
    assert text.count("## Soak (issue 21)") == 1 and "| t | fds |" in text and "60 min" not in text
    assert text.index("## Start-up") < text.index("## Soak (issue 21)")
    assert run_all.previous_soak(results) == "## Soak (issue 21): lane_detector for 2 min at 30 Hz\n\n| t | fds |"
    results.write_text(text.replace("## Soak", "## Model forward again\n\n## Soak") + "## Later\n\nx\n")
    assert run_all.previous_soak(results).endswith("| t | fds |")  # up to the next section
