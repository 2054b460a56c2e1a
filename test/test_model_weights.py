"""Weights files: safetensors + JSON round trip, and a WeightsError naming the file for each failure."""
from __future__ import annotations

import json

import pytest
import torch

from lanesad_ros.model import build_model
from lanesad_ros.model.weights import (
    WeightsError,
    load_weights,
    metadata_preprocessor,
    read_metadata,
    save_weights,
)
from lanesad_ros.preprocess import IMAGENET_MEAN, IMAGENET_STD

SIZE = (64, 128)


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("enet_sad", num_lanes=4, input_size=SIZE)
    path = tmp_path / "enet.safetensors"
    save_weights(model, path, {"crop_top": 0.25, "training": {"iterations": 3}})
    return model.eval(), path


def test_round_trip_restores_outputs_and_metadata(saved):
    model, path = saved
    loaded, meta = load_weights(path)
    assert not loaded.training
    assert (loaded.name, loaded.num_lanes, loaded.input_size) == ("enet_sad", 4, SIZE)
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)
    assert meta["format"] == "lanesad-weights/1"
    assert meta["model"] == "enet_sad" and meta["num_lanes"] == 4 and meta["input_size"] == list(SIZE)
    assert meta["crop_top"] == 0.25 and meta["training"] == {"iterations": 3}
    assert meta["mean"] == list(IMAGENET_MEAN) and meta["std"] == list(IMAGENET_STD)
    assert read_metadata(path) == meta
    assert sorted(p.name for p in path.parent.iterdir()) == ["enet.json", "enet.safetensors"]  # no temp files left


def test_model_options_survive_round_trip(tmp_path):
    model = build_model("enet_sad", input_size=SIZE, share_weights="e2_e3_e4")
    path = tmp_path / "shared.safetensors"
    save_weights(model, path, {})
    loaded, meta = load_weights(path)
    assert meta["model_options"] == {"share_weights": "e2_e3_e4"}
    assert len(loaded.bodies) == 1


def test_resnet_round_trip(tmp_path):
    model = build_model("resnet18_sad", num_lanes=2, input_size=SIZE).eval()
    path = tmp_path / "r18.safetensors"
    save_weights(model, path, None)
    loaded, meta = load_weights(path)
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        assert torch.equal(model(x)[0], loaded(x)[0])
    assert meta["num_lanes"] == 2 and meta["crop_top"] == 0.0


def test_wrapped_models_save_bare_tensor_names(tmp_path):
    model = build_model("enet_sad", input_size=SIZE)
    path = tmp_path / "wrapped.safetensors"
    save_weights(torch.nn.DataParallel(model), path, {})
    loaded, _ = load_weights(path)
    assert loaded.state_dict().keys() == model.state_dict().keys()


def test_metadata_preprocessor(saved):
    _, path = saved
    pre = metadata_preprocessor(read_metadata(path))
    assert pre.input_size == SIZE and pre.crop_top == 0.25 and pre.mean == IMAGENET_MEAN


def test_metadata_contradicting_model_rejected(tmp_path):
    model = build_model("enet_sad", input_size=SIZE)
    with pytest.raises(ValueError, match="num_lanes"):
        save_weights(model, tmp_path / "w.safetensors", {"num_lanes": 5})
    with pytest.raises(ValueError, match=".safetensors"):
        save_weights(model, tmp_path / "w.pt", {})


def test_missing_file_named(tmp_path):
    path = tmp_path / "nothing.safetensors"
    with pytest.raises(WeightsError, match="nothing.safetensors"):
        load_weights(path)


def test_corrupt_safetensors_named(saved):
    _, path = saved
    path.write_bytes(b"\x00garbage, not a safetensors file" * 4)
    with pytest.raises(WeightsError, match="enet.safetensors"):
        load_weights(path)


def test_truncated_safetensors_named(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="enet.safetensors"):
        load_weights(path)


def test_missing_metadata_named(saved):
    _, path = saved
    path.with_suffix(".json").unlink()
    with pytest.raises(WeightsError, match="enet.json"):
        load_weights(path)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"format": "other"}'])
def test_invalid_metadata_named(saved, text):
    _, path = saved
    path.with_suffix(".json").write_text(text)
    with pytest.raises(WeightsError, match="enet.json"):
        read_metadata(path)


@pytest.mark.parametrize("field,value", [("model", "scnn"), ("num_lanes", 0), ("input_size", [64]), ("std", [0, 1, 1])])
def test_bad_metadata_field_named(saved, field, value):
    _, path = saved
    meta = json.loads(path.with_suffix(".json").read_text())
    meta[field] = value
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="enet.json"):
        load_weights(path)


def test_other_lane_count_tensors_named(tmp_path):
    """Tensors of a 5-lane model under metadata saying 4 lanes: a shape mismatch, named."""
    path = tmp_path / "five.safetensors"
    save_weights(build_model("enet_sad", num_lanes=5, input_size=SIZE), path, {})
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["num_lanes"] = 4
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"five.safetensors.*4 lanes.*classifier.weight"):
        load_weights(path)


def test_required_lane_count_checked(saved):
    _, path = saved
    with pytest.raises(WeightsError, match=r"enet.safetensors is for 4 lanes, 5 are needed"):
        load_weights(path, num_lanes=5)


def test_weights_of_another_model_named(tmp_path):
    path = tmp_path / "r18.safetensors"
    save_weights(build_model("resnet18_sad", input_size=SIZE), path, {})
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["model"] = "enet_sad"
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="r18.safetensors"):
        load_weights(path)
