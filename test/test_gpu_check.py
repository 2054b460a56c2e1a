"""benchmarks/gpu_check.sh: without CUDA it stops at once with a clear message and runs no step."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here: the script would run for minutes")
def test_gpu_check_fails_at_once_without_cuda(tmp_path):
    out = tmp_path / "gpu_results"
    run = subprocess.run(["bash", str(REPO_ROOT / "benchmarks" / "gpu_check.sh"), str(out)], cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "gpu_check: error: CUDA is not available" in run.stderr
    assert "run this on a machine with an NVIDIA GPU" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == []  # no step ran, no half-written results
