"""Atomic writes: the old file survives a failed write, the new one is world-readable."""
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lanesad_ros.fileio import atomic_path, remove_stale_temporaries, write_text_atomic


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "weights.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.json"]


def test_written_file_is_readable_by_everyone(tmp_path):
    target = tmp_path / "sub" / "labels.json"
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


WRITER = """
import sys, time
from lanesad_ros.fileio import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a checkpoint")
    print(tmp, flush=True)
    time.sleep(60)
"""


def test_a_killed_write_leaves_no_temporary_for_good_and_a_live_one_is_kept(tmp_path):
    """Issue 21 item 5: each SIGKILL during a checkpoint write left a ``.last.pt.*.tmp`` behind."""
    target = tmp_path / "last.pt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        tmp = Path(writer.stdout.readline().strip())
        old = time.time() - 3600
        os.utime(tmp, (old, old))  # old enough to be taken for stale, were it not locked
        write_text_atomic(target, "from a second writer")
        assert tmp.exists(), "the temporary of a live writer was removed"
    finally:
        writer.kill()
        writer.wait()
    assert tmp.exists()
    os.utime(tmp, (old, old))
    write_text_atomic(target, "after the kill")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert target.read_text() == "after the kill"


def test_a_fresh_unlocked_temporary_is_not_taken_for_stale(tmp_path):
    """A writer creates its temporary an instant before it locks it: a young one is left alone."""
    target = tmp_path / "last.pt"
    young = tmp_path / ".last.pt.abc123.tmp"
    young.write_bytes(b"")
    assert remove_stale_temporaries(target) == [] and young.exists()
    os.utime(young, (time.time() - 60, time.time() - 60))
    assert remove_stale_temporaries(target) == [young] and not young.exists()


def test_the_bytes_are_synced_before_the_rename(tmp_path, synced_renames):
    """Issue 21 item 5: a rename before the data reaches the disk can leave an empty file after a
    power cut. The temporary must be fsynced before it is renamed over the target."""
    with atomic_path(tmp_path / "model.onnx") as tmp:
        tmp.write_bytes(b"graph")  # written by name, as torch.save and the ONNX exporter do
    assert synced_renames(tmp_path / "model.onnx")
