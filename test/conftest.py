"""Fixtures shared by the test modules.

Real road data is read in place from ../shared/data (never copied into the repo); tests
that need it skip cleanly when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# dds_reruns: one rerun for a Fast DDS stall, nothing else; pytester: tests of that policy
pytest_plugins = ["dds_reruns", "pytester"]

# Camera-sized images over Fast DDS need the large-data transports, and every process of a
# test (this one included) must use the same transports or they never discover each other.
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LANESAD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the calling test when it is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread for the whole suite: the inputs are small and CI machines are
    shared, where OpenMP threads only wait on each other (40x slowdowns were seen with 2
    threads under load). Child processes (nodes) keep their own settings."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def domain_id() -> int:
    """One DDS domain per test module that starts ROS processes."""
    from rosutil import random_domain_id

    return random_domain_id()


@pytest.fixture(scope="session")
def tusimple_root() -> Path:
    return shared_path("tusimple")


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """An untrained ENet-SAD weights file + metadata (small input), for plumbing tests only."""
    return write_random_weights(tmp_path_factory.mktemp("weights"))


def write_random_weights(folder: Path, postprocess: dict | None = None) -> Path:
    """``folder``/enet_sad_random.safetensors: the untrained ENet-SAD of ``random_weights``, with
    ``postprocess`` options in its metadata when given."""
    import torch

    from lanesad_ros.model import build_model
    from lanesad_ros.model.weights import save_weights

    # Seeded: max-unpooling makes outputs jump where two pooled values are nearly tied, so
    # backend-agreement tests need the same network every run to be reproducible.
    torch.manual_seed(0)
    model = build_model("enet_sad", num_lanes=4, input_size=(144, 400))
    path = folder / "enet_sad_random.safetensors"
    meta = {"crop_top": 0.3, "training": {"data": "none (random init, tests only)"}}
    save_weights(model, path, {**meta, "postprocess": postprocess} if postprocess else meta)
    return path


@pytest.fixture
def synced_renames(monkeypatch):
    """Records fsyncs and renames; ``synced_renames(path)`` is True when the file now at ``path``
    was renamed there and had been fsynced before (a power cut then leaves old or new bytes)."""
    events: list[tuple[str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src, dst, **kwargs):
        events.append(("replace", os.stat(src).st_ino))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)

    def check(path) -> bool:
        inode = os.stat(path).st_ino
        renamed = [i for i, event in enumerate(events) if event == ("replace", inode)]
        synced = [i for i, event in enumerate(events) if event == ("fsync", inode)]
        return bool(renamed) and bool(synced) and synced[0] < renamed[-1]

    return check
