"""Atomic writes: the old file survives a failed write, the new one is world-readable."""
import stat

import pytest

from lanesad_ros.fileio import atomic_path, write_text_atomic


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
