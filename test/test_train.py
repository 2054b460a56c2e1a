"""The training loop on tiny synthetic runs: loss falls, SAD switches on, exact resume, export."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import shared_path
from lanesad_ros.data.frames import DataError
from lanesad_ros.data.tusimple import read_tusimple_labels
from lanesad_ros.detector import Detector
from lanesad_ros.lanes import LaneDetections
from lanesad_ros.metrics.culane import CULaneScorer
from lanesad_ros.metrics.tusimple import TuSimpleScorer
from lanesad_ros.model import build_model
from lanesad_ros.model.weights import read_metadata, save_weights
from lanesad_ros.training.checkpoint import load_checkpoint, resume_conflicts
from lanesad_ros.training.cli import main
from lanesad_ros.training.config import load_config, validate
from lanesad_ros.training.data import MixedDataset, frame_clip, load_frames, read_split_file, sample_rng
from lanesad_ros.training.export import export_checkpoint
from lanesad_ros.training.trainer import Trainer, build_network
from lanesad_ros.training.tune import validation_frames

VAL = [{"type": "synthetic", "name": "synthetic_val", "seed": 99, "width": 320, "height": 180, "size": 2}]


def tiny_config(tmp_path, **train) -> dict:
    """64x160 ENet-SAD on a handful of small synthetic frames, CPU, no TensorBoard/progress."""
    cfg = {
        "name": "tiny",
        "model": {"name": "enet_sad", "num_lanes": 4, "input_size": [64, 160], "crop_top": 0.3},
        "data": {
            "train": [{"type": "synthetic", "seed": 1, "width": 320, "height": 180, "size": 4}],
            "num_workers": 0,
        },
        "optim": {"name": "adam", "lr": 0.003, "weight_decay": 0.0},
        "train": {"iterations": 6, "batch_size": 2, "sad_start_iter": 3, "seed": 3, "device": "cpu",
                  "log_interval": 100, "checkpoint_interval": 3, "output_dir": str(tmp_path / "run"),
                  "tensorboard": False, "progress": False, **train},
        "eval": {"interval": 0, "overlays": 1},
    }
    return validate(cfg)


def test_sample_order_is_a_function_of_seed_iteration_slot(tmp_path):
    trainer = Trainer(tiny_config(tmp_path))
    data = trainer.train_dataset()
    assert isinstance(data, MixedDataset)
    a, b = data[(5, 1)], data[(5, 1)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["seg"], b["seg"])
    assert sample_rng(3, 5, 1).integers(1 << 30) == sample_rng(3, 5, 1).integers(1 << 30)
    assert sample_rng(3, 5, 1).integers(1 << 30) != sample_rng(3, 5, 2).integers(1 << 30)
    h, w = 64, 160
    assert a["image"].shape == (3, h, w) and a["seg"].shape == (h, w) and a["exist"].shape == (4,)


def test_loss_falls_on_a_short_cpu_run(tmp_path):
    cfg = tiny_config(tmp_path, iterations=30, sad_start_iter=25, checkpoint_interval=1000)
    trainer = Trainer(cfg)
    trainer.run()
    losses = [r["loss"] for r in trainer.history]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert (tmp_path / "run" / "last.pt").is_file()


def test_sad_switches_on_at_configured_iteration(tmp_path, capsys):
    cfg = tiny_config(tmp_path, iterations=6, sad_start_iter=2)
    cfg["optim"].update(name="sgd", lr=0.01)
    trainer = Trainer(cfg)
    trainer.run()
    distill = [r["distill"] for r in trainer.history]
    assert [r["sad"] for r in trainer.history] == [False, False, True, True, True, True]
    assert distill[:2] == [0.0, 0.0]
    # Softmaxed attention maps of an untrained net are nearly one-hot, so a single step's
    # distillation term can be exactly 0 when two blocks peak at the same position.
    assert sum(distill[2:]) > 0.0, distill
    assert "SAD (self attention distillation) switched on at iteration 2" in capsys.readouterr().out


def test_kill_and_resume_continues_exactly(tmp_path):
    full = Trainer(tiny_config(tmp_path / "a"))
    full.run()
    # "Killed" right after the checkpoint at iteration 3 ...
    killed = Trainer(tiny_config(tmp_path / "b"))
    killed.run(stop_at=3)
    ckpt = tmp_path / "b" / "run" / "last.pt"
    assert load_checkpoint(ckpt)["iteration"] == 3
    del killed
    torch.manual_seed(12345)  # whatever the process did in between must not matter
    np.random.seed(7)
    # ... and resumed in a fresh Trainer.
    resumed = Trainer(tiny_config(tmp_path / "b"), resume=ckpt)
    assert resumed.iteration == 3
    resumed.run()
    expected = [r["loss"] for r in full.history[3:]]
    got = [r["loss"] for r in resumed.history]
    assert len(got) == 3
    assert abs(got[0] - expected[0]) < 1e-6, (got, expected)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    for p, q in zip(full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_checkpoint_loads_with_weights_only_and_has_everything(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, iterations=3))
    trainer.run()
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    for key in ("model", "optimizer", "scheduler", "scaler", "iteration", "rng", "data_order", "config"):
        assert key in ckpt
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"}
    assert ckpt["data_order"] == {"seed": 3, "next_iteration": 3, "batch_size": 2, "world_size": 1}
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_eval_export_and_detector(tmp_path):

    cfg = tiny_config(tmp_path, iterations=2)
    cfg["data"]["val"] = validate({"data": {"val": VAL}})["data"]["val"]
    trainer = Trainer(cfg)
    result = trainer.run()  # evaluates at the last iteration
    metrics = result["last_metrics"]
    assert metrics["tusimple"]["frames"] == 2
    for key in ("accuracy", "fp", "fn"):
        assert 0.0 <= metrics["tusimple"][key] <= 1.0
    assert list((tmp_path / "run" / "overlays").glob("*.png"))
    out = export_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "w" / "tiny.safetensors")
    meta = read_metadata(out)
    assert meta["input_size"] == [64, 160] and meta["crop_top"] == 0.3 and meta["model"] == "enet_sad"
    assert meta["training"]["iterations"] == 2 and "synthetic" in meta["training"]["data"]
    assert meta["metrics"]["tusimple"]["frames"] == 2
    detector = Detector.from_weights(out, device="cpu", backend="torch")
    frame = trainer.val_sets()[0][1][0]
    det = detector.detect(frame.load_image())
    assert isinstance(det, LaneDetections)
    assert (det.image_width, det.image_height) == (320, 180)
    # Self-training: pseudo-labels from the exported weights read back as a tusimple entry.


    (tmp_path / "unlabelled").mkdir()
    cv2.imwrite(str(tmp_path / "unlabelled" / "a.jpg"), frame.load_image())
    labels = tmp_path / "pseudo.json"
    assert main(["pseudo-label", str(out), str(labels), str(tmp_path / "unlabelled" / "a.jpg"),
                 "--root", str(tmp_path), "--min-confidence", "0"]) == 0
    frames = read_tusimple_labels(labels, tmp_path)
    assert len(frames) == 1 and frames[0].meta["raw_file"] == "unlabelled/a.jpg"
    assert frames[0].image_path.is_file()
    assert len(frames[0].h_samples) == 56 and frames[0].h_samples[-1] == round(710 * 180 / 720)


def test_cli_train_resume_and_export(tmp_path, capsys):
    cfg = tiny_config(tmp_path, iterations=2, checkpoint_interval=1)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["--config", str(path), "train.iterations=1"]) == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 1
    assert main(["--config", str(path), "--resume"]) == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 2
    out = tmp_path / "cli.safetensors"
    assert main(["export", str(tmp_path / "run" / "last.pt"), str(out), "--set", 'note="cli"']) == 0
    assert json.loads(out.with_suffix(".json").read_text())["note"] == "cli"


def test_cli_reports_config_errors(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  batch: 3\n")
    assert main(["--config", str(path)]) == 2
    assert "train.batch" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_resume_rejects_a_different_data_order(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, iterations=1))
    trainer.run()
    with pytest.raises(ValueError, match=r"train\.seed 3 -> 4"):
        Trainer(tiny_config(tmp_path, iterations=2, seed=4), resume=tmp_path / "run" / "last.pt")


@pytest.fixture(scope="module")
def one_iteration_run(tmp_path_factory):
    """A tiny run stopped after one iteration: (its config file, its last.pt)."""
    folder = tmp_path_factory.mktemp("resume")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(folder, iterations=1)))
    assert main(["--config", str(path)]) == 0
    return path, folder / "run" / "last.pt"


@pytest.mark.parametrize("overrides,difference", [
    (["model.num_lanes=6"], "model.num_lanes 4 -> 6"),
    (["model.input_size=[80,160]"], "model.input_size [64, 160] -> [80, 160]"),
    (["model.name=resnet18_sad"], "model.name 'enet_sad' -> 'resnet18_sad'"),
    (["optim.name=sgd"], "optim.name 'adam' -> 'sgd'"),
    (["optim.name=sgd", "model.num_lanes=6"], "model.num_lanes 4 -> 6; optim.name 'adam' -> 'sgd'"),
])
def test_cli_resume_with_a_different_config_says_what_differs(one_iteration_run, capsys, overrides, difference):
    """Architecture, input size, lane count or optimiser changed since the checkpoint: one line, exit 2."""
    path, checkpoint = one_iteration_run
    capsys.readouterr()
    assert main(["--config", str(path), *overrides, "train.iterations=2", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lanesad-train: error: cannot resume from "), err
    assert f"differs from the checkpoint's in {difference} (a resume may change only " in err, err
    assert "Traceback" not in err and load_checkpoint(checkpoint)["iteration"] == 1


def test_resume_may_change_the_learning_rate_schedule(tmp_path):
    Trainer(tiny_config(tmp_path, iterations=2)).run()
    resumed = Trainer(validate({**tiny_config(tmp_path, iterations=4),
                                "optim": {"name": "adam", "lr": 0.001, "weight_decay": 0.01}}),
                      resume=tmp_path / "run" / "last.pt")
    assert resumed.iteration == 2
    group = resumed.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.01
    assert group["lr"] == pytest.approx(0.001 * (1 - 2 / 4) ** 0.9), "the new lr on the new 4-iteration poly schedule"
    resumed.run()
    assert resumed.iteration == 4


def test_a_run_begun_without_amp_resumes_with_it(tmp_path):
    """device: auto / amp: true recipes: a run begun on the CPU (no AMP, empty scaler state) resumed where AMP
    is on. GradScaler refused the empty state ("saved from a disabled instance"); now AMP starts fresh there.
    Tested with PyTorch's CPU GradScaler standing in for the CUDA one."""
    Trainer(tiny_config(tmp_path, iterations=2)).run()
    checkpoint = tmp_path / "run" / "last.pt"
    assert load_checkpoint(checkpoint)["scaler"] == {}
    resumed = Trainer(tiny_config(tmp_path, iterations=4))
    resumed.scaler = torch.amp.GradScaler("cpu", enabled=True)
    resumed.load(checkpoint)
    assert resumed.iteration == 2 and resumed.scaler.is_enabled()
    with pytest.raises(RuntimeError, match="disabled instance"):  # what a plain load did
        torch.amp.GradScaler("cpu", enabled=True).load_state_dict({})
    assert resume_conflicts(tiny_config(tmp_path, amp=False), tiny_config(tmp_path, amp=True)) == []


def test_tusimple_entry_with_exclude_holds_frames_out(tmp_path):

    root = shared_path("tusimple")
    entry = validate({"data": {"train": [{"type": "tusimple", "root": str(root), "labels": "labels.json",
                                          "exclude": ["clips/lanenet/0001/20.jpg"]}]}})["data"]["train"][0]
    frames = load_frames(entry, "train")
    names = [f.meta["raw_file"] for f in frames]
    assert names == ["clips/lanenet/0000/20.jpg", "clips/lanenet/0002/20.jpg"]
    with pytest.raises(ValueError, match="labels.json"):
        load_frames({**entry, "labels": "nope/labels.json"}, "train")


def test_split_file_divides_frames_by_clip_and_load_size_scales_labels(tmp_path):

    root = shared_path("tusimple")
    split = tmp_path / "val.txt"
    split.write_text("# held out\nclips/lanenet/0001\n")
    base = {"type": "tusimple", "root": str(root), "labels": "labels.json", "split_file": str(split)}
    held = load_frames(validate({"data": {"train": [{**base, "split": "held_out"}]}})["data"]["train"][0], "train")
    rest = load_frames(validate({"data": {"train": [{**base, "load_size": [640, 360]}]}})["data"]["train"][0], "train")
    assert [f.meta["raw_file"] for f in held] == ["clips/lanenet/0001/20.jpg"]
    assert [f.meta["raw_file"] for f in rest] == ["clips/lanenet/0000/20.jpg", "clips/lanenet/0002/20.jpg"]
    full = load_frames(validate({"data": {"train": [base]}})["data"]["train"][0], "train")[0]
    small = rest[0]
    assert small.load_image().shape == (360, 640, 3) and (small.width, small.height) == (640, 360)
    np.testing.assert_allclose(small.lanes[0], full.lanes[0] * 0.5, atol=1e-4)
    with pytest.raises(ValueError, match="split file not found"):
        missing_split = {**base, "split_file": str(tmp_path / "no.txt")}
        load_frames(validate({"data": {"train": [missing_split]}})["data"]["train"][0], "train")


def test_unreadable_data_fails_before_the_run_folder_is_written(tmp_path):
    """A config naming data that is not there ends with the loader's error and writes nothing: no empty
    run folder, and the config.yaml of a run already in that folder stays as it was."""
    cfg = tiny_config(tmp_path)
    cfg["data"]["train"] = [validate({"data": {"train": [
        {"type": "tusimple", "root": str(tmp_path / "nowhere"), "labels": "labels.json"}]}})["data"]["train"][0]]
    with pytest.raises(DataError, match="label file not found: .*nowhere"):
        Trainer(cfg).run()
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("name: earlier run\n")
    with pytest.raises(DataError, match="label file not found: .*nowhere"):
        Trainer(cfg).run()
    assert (tmp_path / "run" / "config.yaml").read_text() == "name: earlier run\n"
    cfg = tiny_config(tmp_path / "v")  # the validation data too, before a step is trained
    cfg["data"]["val"] = [validate({"data": {"val": [
        {"type": "tusimple", "root": str(tmp_path / "no_val"), "labels": "test_label.json"}]}})["data"]["val"][0]]
    trainer = Trainer(cfg)
    with pytest.raises(DataError, match="label file not found: .*no_val"):
        trainer.run()
    assert trainer.iteration == 0 and not (tmp_path / "v" / "run").exists()


def test_real_training_split_never_shares_a_clip():
    """The shipped recipe's validation clips and training frames are disjoint (split by clip)."""

    shared_path("tusimple-train")
    cfg = load_config("config/train/enet_sad_real.yaml")
    train = {frame_clip(f) for e in cfg["data"]["train"] if e["type"] == "tusimple" for f in load_frames(e, "train")}
    val = {frame_clip(f) for e in cfg["data"]["val"] for f in load_frames(e, "val")}
    assert len(val) == 19 and len(train) == 83 and not train & val


def test_shipped_default_weights_keep_their_validation_score():
    """The shipped weights (config/train/enet_sad_multicam.yaml and its continuation, then
    calibrate and tune) on the validation frames of both cameras they never trained on (52
    TuSimple frames, the CULane clip 06030822_0756): the metadata's recommended settings and
    figures are the ones tune wrote, and the weights still score as recorded, per camera."""

    shared_path("tusimple-train-0313")
    shared_path("culane-train")
    detector = Detector.from_weights(device="cpu", backend="torch")
    meta = detector.metadata
    validation = meta["metrics"]["validation"]
    assert meta["training"]["data"]
    assert validation["cross_fitted"]["tusimple"]["frames"] == 52
    assert validation["cross_fitted"]["culane"]["frames"] == 60
    assert {k: meta["postprocess"][k] for k in validation["chosen"]} == validation["chosen"]
    assert meta["postprocess"]["exist_calibration"]["method"] == "platt"
    assert set(meta["exist_calibration"]["per_camera"]) == {"tusimple", "culane"}
    tusimple, culane = TuSimpleScorer(), CULaneScorer()
    for frame in validation_frames(load_config("config/train/enet_sad_multicam.yaml")):
        image = frame.frame.load_image()
        lanes = detector.detect(image).lanes
        if frame.metric == "tusimple":
            tusimple.add(lanes, frame.frame)
        else:
            culane.add(lanes, frame.frame.lanes, image_size=(image.shape[1], image.shape[0]))
    on_all = validation["on_all"]
    assert tusimple.result()["accuracy"] == pytest.approx(on_all["tusimple"]["accuracy"], abs=2e-3)
    assert culane.result()["f1"] == pytest.approx(on_all["culane"]["f1"], abs=5e-3)
    assert tusimple.result()["accuracy"] >= 0.88 and culane.result()["f1"] >= 0.58


def test_init_weights_from_another_input_size_resample_the_existence_fc(tmp_path):
    """Fine-tuning 144x400 weights at 208x576: every layer carried over, the existence FC resampled."""


    torch.manual_seed(0)
    small = build_model("enet_sad", num_lanes=4, input_size=(144, 400)).eval()
    save_weights(small, tmp_path / "small.safetensors")
    cfg = validate({"model": {"input_size": [208, 576], "init_weights": str(tmp_path / "small.safetensors")}})
    big = build_network(cfg).eval()
    small_state, big_state = small.state_dict(), big.state_dict()
    for key, value in small_state.items():
        if key != "exist.fc1.weight":
            assert torch.equal(value, big_state[key]), key
    assert big.exist.grid == (13, 36) and big_state["exist.fc1.weight"].shape == (128, 5 * 13 * 36)
    # the new head starts out computing what the old one computes at the new size
    image = torch.rand(1, 3, 208, 576)
    with torch.no_grad():
        torch.testing.assert_close(big(image)[1], small(image)[1], rtol=1e-4, atol=1e-5)


CULANE_CLIPS = ("driver_161_90frame/06030822_0756.MP4", "driver_161_90frame/06030819_0755.MP4")


@pytest.mark.parametrize("config, culane_val, culane_train", [
    ("enet_sad_multicam.yaml", {CULANE_CLIPS[0]}, {CULANE_CLIPS[1]}),  # fold A (multicam_val.txt): shipped
    ("enet_sad_multicam_long_foldb.yaml", {CULANE_CLIPS[1]}, {CULANE_CLIPS[0]}),  # fold B (multicam_val_foldb.txt)
    ("enet_sad_multicam_long_refit.yaml", set(), set(CULANE_CLIPS)),  # the refit: both CULane clips train
])
def test_multicam_split_keeps_clips_and_time_apart(config, culane_val, culane_train):
    """The many-camera recipe's validation (config/train/splits/multicam_val*.txt) shares no clip with
    its training frames, holds one whole CULane clip out (fold B: the other one; the refit: none, both
    train), and keeps the 0313-1 time block at least 300 clip numbers (frames of the drive) from any
    training frame of that drive."""

    shared_path("culane-train")
    shared_path("tusimple-train-0313")
    cfg = load_config(f"config/train/{config}")

    def clips(role):
        out = {}
        for e in cfg["data"][role]:
            if e["type"] != "synthetic":
                root = Path(e["root"])
                out.setdefault(e["type"], set()).update(frame_clip(f, root) for f in load_frames(e, role))
        return out

    train, val = clips("train"), clips("val")
    assert not train["tusimple"] & val["tusimple"]
    assert val.get("culane", set()) == culane_val and train["culane"] == culane_train
    assert len(val["tusimple"]) == 52 and len(train["tusimple"]) == 80 + 3 + 134

    def drive_0313(clip_set):
        return [int(c.rsplit("/", 1)[1]) for c in clip_set if c.startswith("clips/0313-1/")]

    round2_val = read_split_file(Path("config/train/splits/tusimple_val.txt"))
    block = [n for n in drive_0313(val["tusimple"] - round2_val) if n >= 40000]
    assert len(block) == 33
    assert min(abs(b - t) for b in block for t in drive_0313(train["tusimple"])) > 300


def test_checkpoint_write_is_synced_and_clears_a_killed_writes_temporary(tmp_path, synced_renames):
    """Issue 21 item 5: every SIGKILL during a checkpoint write left a ``.last.pt.*.tmp`` for good,
    and the checkpoint was renamed into place before its bytes were synced."""
    run = tmp_path / "run"
    run.mkdir()
    leftover = run / ".last.pt.k1ll3d.tmp"  # what a write killed on the way leaves (no live writer)
    leftover.write_bytes(b"PK\x03\x04 half a checkpoint")
    os.utime(leftover, (time.time() - 600, time.time() - 600))
    Trainer(tiny_config(tmp_path, iterations=3)).run()
    assert load_checkpoint(run / "last.pt")["iteration"] == 3
    assert synced_renames(run / "last.pt")
    assert not list(run.glob(".*.tmp"))
