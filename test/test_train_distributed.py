"""Multi-process training as docs/training.md runs it: torchrun, 2 ranks on the CPU (gloo), a tiny synthetic config.

The manual's two single-machine torchrun lines are run as they stand there (only their
config / checkpoint argument is replaced): both ranks must step, rank 0 alone must write the
checkpoints (seen with inotify), and ``--resume`` from an intermediate checkpoint must end
with exactly the weights, optimiser state and RNG states of the uninterrupted run.
"""
from __future__ import annotations

import ctypes
import math
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml

from conftest import REPO_ROOT
from lanesad_ros.training.checkpoint import load_checkpoint
from lanesad_ros.training.config import validate
from lanesad_ros.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with the gloo backend is not available")

# The launcher part of docs/training.md's single-machine lines; what follows it is --config CFG or --resume CKPT.
LAUNCHER = ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "lanesad_ros.training"]
IN_MOVED_TO, IN_CREATE = 0x80, 0x100  # inotify(7) event bits
RANK_LINE = re.compile(r"rank (\d) of 2: (\d+) steps, iterations (\d+)\.\.(\d+), last loss [0-9.]+")


def readme_line(option: str) -> list[str]:
    """docs/training.md's torchrun line ``LAUNCHER option VALUE``, split as a shell splits it."""
    for line in (REPO_ROOT / "docs" / "training.md").read_text(encoding="utf-8").splitlines():
        argv = shlex.split(line) if line.startswith("torchrun ") else []
        if argv[:len(LAUNCHER)] == LAUNCHER and argv[len(LAUNCHER):len(LAUNCHER) + 1] == [option]:
            assert len(argv) == len(LAUNCHER) + 2, f"docs/training.md: more than {option} VALUE: {line}"
            return argv
    raise AssertionError(f"docs/training.md has no line '{' '.join(LAUNCHER)} {option} ...'")


def torchrun(readme_argv: list[str], value: str, overrides: list[str]) -> str:
    """Run the manual's line with its last argument replaced by ``value``; returns stdout + stderr."""
    executable = Path(sys.executable).with_name("torchrun")
    argv = [str(executable if executable.is_file() else shutil.which("torchrun")), *readme_argv[1:-1], value,
            *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{shlex.join(argv)} exited {proc.returncode}:\n{output[-4000:]}"
    return output


class FolderWrites:
    """Files created in and renamed into one folder, counted by name from inotify(7) events."""

    def __init__(self, folder: Path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or self.libc.inotify_add_watch(self.fd, os.fsencode(folder), IN_MOVED_TO | IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {folder}")

    def read(self) -> tuple[Counter, Counter]:
        """(renames into the folder by final name, temporaries created by the name they stand for)."""
        renamed, temporaries = Counter(), Counter()
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(data):
                _, mask, _, size = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16: offset + 16 + size].rstrip(b"\0").decode()
                offset += 16 + size
                if mask & IN_MOVED_TO:
                    renamed[name] += 1
                elif mask & IN_CREATE and name.endswith(".tmp"):  # fileio: .<name>.<random>.tmp
                    temporaries[name[1:].rsplit(".", 2)[0]] += 1
        os.close(self.fd)
        return renamed, temporaries


def tiny_config(output_dir: Path, validation: bool = True) -> dict:
    """64x160 ENet-SAD on 4 small synthetic frames; 4 iterations, checkpoints kept every 2 and
    (with ``validation``) 2 synthetic frames evaluated at the end."""
    val = [{"type": "synthetic", "name": "val", "seed": 99, "width": 320, "height": 180, "size": 2}]
    return validate({
        "name": "tiny_ddp",
        "model": {"name": "enet_sad", "num_lanes": 4, "input_size": [64, 160], "crop_top": 0.3},
        "data": {"train": [{"type": "synthetic", "seed": 1, "width": 320, "height": 180, "size": 4}],
                 "val": val if validation else [], "num_workers": 0},
        "optim": {"name": "sgd", "lr": 0.01},
        "train": {"iterations": 4, "batch_size": 2, "sad_start_iter": 1, "seed": 3, "device": "cpu",
                  "num_threads": 1, "log_interval": 1, "checkpoint_interval": 2, "keep_checkpoints": True,
                  "output_dir": str(output_dir), "tensorboard": False, "progress": False},
        "eval": {"interval": 0, "overlays": 0},
    })


def rank_lines(output: str) -> dict[int, tuple[int, int, int]]:
    """rank -> (steps, first iteration, last iteration) from each rank's closing line."""
    return {int(m[1]): (int(m[2]), int(m[3]), int(m[4])) for m in RANK_LINE.finditer(output)}


def assert_same_state(a: dict, b: dict, where: str = "") -> None:
    """Bitwise equality of two (nested) checkpoint entries."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: max |difference| {(a.double() - b.double()).abs().max().item():.3g}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), f"{where}: nan != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_two_ranks_step_rank0_writes_and_resume_is_exact(tmp_path):
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    full_dir.mkdir()
    resumed_dir.mkdir()
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(full_dir), sort_keys=False))

    # The uninterrupted run: 4 iterations on 2 ranks, rank 0 evaluating at the end (the others wait).
    writes = FolderWrites(full_dir)
    output = torchrun(readme_line("--config"), str(config), [])
    assert rank_lines(output) == {0: (4, 0, 3), 1: (4, 0, 3)}, output[-3000:]
    assert "(world size 2)" in output and re.search(r"it 4 loss [0-9.]+ ", output), output[-3000:]
    assert output.count("eval at it 4") == 1, output[-3000:]
    renamed, temporaries = writes.read()
    written = {"config.yaml": 1, "last.pt": 2, "ckpt_0000002.pt": 1, "ckpt_0000004.pt": 1, "best.pt": 1}
    assert renamed == written and temporaries == written, (renamed, temporaries)  # once each: rank 0 alone
    assert sorted(p.name for p in full_dir.iterdir()) == sorted([*written, "metrics.jsonl"])
    full = load_checkpoint(full_dir / "last.pt")
    assert full["iteration"] == 4 and full["data_order"]["world_size"] == 2
    assert len(full["rng_ranks"]) == 2
    assert not torch.equal(full["rng_ranks"][0]["torch"], full["rng_ranks"][1]["torch"])  # seed + rank

    # Resumed from the intermediate checkpoint into another folder: the same 2 ranks, iterations 2-3.
    writes = FolderWrites(resumed_dir)
    output = torchrun(readme_line("--resume"), str(full_dir / "ckpt_0000002.pt"),
                      [f"train.output_dir={resumed_dir}"])
    assert rank_lines(output) == {0: (2, 2, 3), 1: (2, 2, 3)}, output[-3000:]
    renamed, temporaries = writes.read()
    written = {"config.yaml": 1, "last.pt": 1, "ckpt_0000004.pt": 1, "best.pt": 1}
    assert renamed == written and temporaries == written, (renamed, temporaries)
    keys = ("iteration", "model", "optimizer", "scheduler", "scaler", "rng", "rng_ranks", "data_order", "best",
            "metrics")
    for name in ("last.pt", "best.pt"):
        expected, got = load_checkpoint(full_dir / name), load_checkpoint(resumed_dir / name)
        for key in keys:
            assert_same_state(expected[key], got[key], f"{name} {key}")

    # Rank 1's gradients took part: rank 0's slots alone (one process) end elsewhere.
    alone = Trainer(tiny_config(tmp_path / "alone", validation=False))
    alone.run()
    state = alone.model.state_dict()
    assert any(not torch.equal(state[k], full["model"][k]) for k in state if state[k].is_floating_point())


def test_resume_with_another_number_of_ranks_is_refused(tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run", validation=False))
    trainer.run(stop_at=2)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    ckpt["data_order"]["world_size"] = 2
    torch.save(ckpt, tmp_path / "two_ranks.pt")
    with pytest.raises(ValueError, match=r"saved by 2 ranks, this run has 1.*global batch"):
        Trainer(tiny_config(tmp_path / "run", validation=False), resume=tmp_path / "two_ranks.pt")
