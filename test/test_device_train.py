"""tools/device_train.py: packing the training data for the GPU machine, and its refusals."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import tarfile

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("device_train", REPO_ROOT / "tools" / "device_train.py")
device_train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(device_train)


def fake_datasets(root):
    image = np.random.default_rng(0).integers(0, 255, (72, 128, 3), dtype=np.uint8)
    for name in device_train.DATASETS:
        folder = root / name / "clips" / "a"
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "1.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
        (root / name / "labels.json").write_text(json.dumps({"raw_file": "clips/a/1.jpg"}))
    return image


def test_pack_reencodes_images_and_brings_the_start_weights(tmp_path):
    if subprocess.run(["git", "cat-file", "-e", f"{device_train.ROUND2_COMMIT}^{{commit}}"], cwd=REPO_ROOT).returncode:
        pytest.skip(f"commit {device_train.ROUND2_COMMIT} (the round-2 weights) is not in this clone (shallow?)")
    image = fake_datasets(tmp_path / "src")
    size = device_train.pack(tmp_path / "src", tmp_path / "pack")
    for name in device_train.DATASETS:
        packed = tmp_path / "pack" / "data" / name
        assert json.loads((packed / "labels.json").read_text()) == {"raw_file": "clips/a/1.jpg"}
        got = cv2.imread(str(packed / "clips" / "a" / "1.jpg"))
        assert got.shape == image.shape  # same size: the labels' pixel coordinates still hold
        assert (packed / "clips" / "a" / "1.jpg").stat().st_size < (tmp_path / "src" / name / "clips" / "a" /
                                                                    "1.jpg").stat().st_size
    init = tmp_path / "pack" / "init"
    assert (init / "enet_sad_default.safetensors").stat().st_size > 10**6
    assert json.loads((init / "enet_sad_default.json").read_text())["input_size"] == [144, 400]
    assert size == sum(p.stat().st_size for p in (tmp_path / "pack").rglob("*") if p.is_file())


def test_pack_names_a_missing_dataset(tmp_path):
    fake_datasets(tmp_path / "src")
    shutil.rmtree(tmp_path / "src" / "culane-train")
    with pytest.raises(ValueError, match="no culane-train"):
        device_train.pack(tmp_path / "src", tmp_path / "pack")


def test_every_run_is_forced_onto_cuda_with_amp(tmp_path):
    cmd = device_train.train_command("long", "config/train/enet_sad_multicam_long.yaml", "train.seed=1 data.x=2",
                                     tmp_path, 3)
    assert cmd[cmd.index("--config") + 1] == "config/train/enet_sad_multicam_long.yaml"
    for item in ("train.seed=1", "data.x=2", "train.device=cuda", "train.amp=true", "data.num_workers=3",
                 f"export.path={tmp_path / 'long' / 'enet_sad_default.safetensors'}"):
        assert item in cmd
    assert cmd.index("train.seed=1") < cmd.index("train.device=cuda")  # the forced values come last and win


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_run_refuses_without_cuda(tmp_path, capsys):
    assert device_train.main(["run", "--run", "a", "config/train/enet_sad_multicam.yaml", "",
                              "--out", str(tmp_path)]) == 2
    assert "CUDA is not available here" in capsys.readouterr().err
    assert not (tmp_path / "runs.tar.gz").exists()


def test_stop_at_stops_each_run_at_its_checkpoint_and_exports_it(tmp_path, monkeypatch, capsys):
    """A CPU dry run of ``run`` (CUDA faked, the forced device put back to the CPU): a run is stopped once its
    checkpoint of iteration 2 exists (kept although the config says not to keep checkpoints), and that
    checkpoint, not the last, becomes its weights; a run whose checkpoints never hit 2 fails the call, is named
    with the reason, and comes back with its own weights and its checkpoints."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "_base_": str(REPO_ROOT / "config/train/enet_sad_default.yaml"),
        "model": {"input_size": [64, 160]},
        "data": {"train": [{"type": "synthetic", "seed": 1, "width": 320, "height": 180, "size": 4}],
                 "num_workers": 0},
        "train": {"iterations": 400, "batch_size": 2, "checkpoint_interval": 2, "keep_checkpoints": False,
                  "sad_start_iter": 1000, "tensorboard": False}}))
    forced = device_train.train_command
    monkeypatch.setattr(device_train, "train_command", lambda *a: [
        {"train.device=cuda": "train.device=cpu", "train.amp=true": "train.amp=false"}.get(x, x) for x in forced(*a)])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device_train, "PACK", tmp_path / "no_pack")
    runs = tmp_path / "runs"
    assert device_train.run([("a", str(config), ""),
                             ("odd", str(config), "train.checkpoint_interval=3 train.iterations=5")], limit=300,
                            out=tmp_path / "out", stop_at=2, runs_dir=runs) == 1
    out = capsys.readouterr()
    assert "a: stopped at ckpt_0000002.pt after" in out.out  # stopped, not run to iteration 400
    meta = json.loads((runs / "a" / "enet_sad_default.json").read_text())
    assert meta["training"]["iterations"] == 2 and meta["stopped_at"] == 2
    assert not list((runs / "a").glob("*.pt"))
    assert "odd ended (exit 0) without writing ckpt_0000002.pt (does train.checkpoint_interval" in out.err
    assert "odd: not the weights asked for" in out.err
    odd = json.loads((runs / "odd" / "enet_sad_default.json").read_text())
    assert odd["training"]["iterations"] == 5 and "stopped_at" not in odd
    assert (runs / "odd" / "ckpt_0000003.pt").exists()  # kept: they go back in the archive
    with tarfile.open(tmp_path / "out" / "runs.tar.gz") as tar:
        assert {"runs/a/enet_sad_default.safetensors", "runs/odd/ckpt_0000003.pt"} <= set(tar.getnames())


def test_stop_at_must_be_a_positive_iteration(capsys):
    with pytest.raises(SystemExit):
        device_train.main(["run", "--run", "a", "config/train/enet_sad_multicam.yaml", "", "--stop-at", "0"])
    assert "--stop-at must be a positive iteration, got 0" in capsys.readouterr().err
