"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Weights, checkpoints, ONNX exports, label files, reports and the backend cache all go through
here. Each write goes to a temporary file beside the target (``.<name>.<random>.tmp``), is
synced to disk, then renamed over the target, and the folder is synced: after a power cut the
target holds the old bytes or the new ones, never an empty or partial file.

A writer holds an advisory lock (``flock``) on its temporary file while it writes; a write
killed on the way (SIGKILL, power cut) leaves its temporary behind unlocked, and the next
write of the same target removes it (:func:`remove_stale_temporaries`). A temporary folder
(:func:`scratch_folder`) is marked the same way by a locked ``.owner`` file in it.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# A temporary younger than this is never taken for stale: it may belong to a writer that has
# created it but not locked it yet (the two steps are microseconds apart).
STALE_MIN_AGE_S = 5.0


def _fsync_dir(folder: Path) -> None:
    """Sync a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def is_stale(path: str | os.PathLike, min_age_s: float = STALE_MIN_AGE_S) -> bool:
    """Whether a temporary file (or :func:`scratch_folder`) is left over from a dead writer: no
    process holds its lock and it is older than ``min_age_s`` seconds. False for one that is
    gone or cannot be opened."""
    if os.path.isdir(path):
        path = os.path.join(path, ".owner")
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a live writer holds it
        os.close(fd)
        return False
    try:
        return time.time() - os.fstat(fd).st_mtime >= min_age_s
    finally:
        os.close(fd)  # releases the lock


def remove_stale_temporaries(path: str | os.PathLike, min_age_s: float = STALE_MIN_AGE_S) -> list[Path]:
    """Remove the temporaries of ``path`` (``.<name>.*.tmp`` beside it) left by killed writes
    (:func:`is_stale`); returns what was removed. Temporaries of live writers are kept."""
    path = Path(path)
    removed = []
    for name in glob.glob(glob.escape(str(path.parent / f".{path.name}.")) + "*.tmp"):
        if is_stale(name, min_age_s):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
                removed.append(Path(name))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path``.

    The temporary is locked while the block runs, synced to disk before the rename, and the
    folder is synced after it. Temporaries of ``path`` left by killed writes are removed first.
    On an exception the temporary file is removed and the exception propagates. The result is
    readable by everyone (0644), like a file written with open().
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # marks it in use (see is_stale); released by os.close
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.fsync(fd)  # whoever wrote it by name: fsync flushes the file, not just this descriptor
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def scratch_folder(parent: str | os.PathLike, prefix: str) -> Iterator[Path]:
    """A new folder ``<parent>/.<prefix>.<random>.tmp``, marked in use by a locked ``.owner`` file
    while the block runs (:func:`is_stale`), removed with its contents afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=f".{prefix}.", suffix=".tmp", dir=parent))
    fd = os.open(folder / ".owner", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, synced to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))
