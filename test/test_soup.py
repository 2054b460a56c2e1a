"""lanesad-train soup: the uniform average of several weights files of one network."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch

from lanesad_ros.model import build_model
from lanesad_ros.model.weights import load_weights, save_weights
from lanesad_ros.training.cli import main as train_main
from lanesad_ros.training.soup import make_soup, soup_states

SIZE = (64, 128)


def ingredient(tmp_path, name: str, seed: int, size=SIZE, crop_top: float = 0.3):
    torch.manual_seed(seed)
    model = build_model("enet_sad", num_lanes=4, input_size=size)
    with torch.no_grad():  # BatchNorm statistics differ between seeds too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(seed + 1)
    path = tmp_path / f"{name}.safetensors"
    save_weights(model, path, {"crop_top": crop_top, "description": f"seed {seed}",
                               "training": {"seed": seed}, "adaptation": {"blend": 0.3},
                               "exist_calibration": {"method": "platt", "scale": 0.7, "bias": 1.0},
                               "postprocess": {"exist_threshold": 0.3, "prob_threshold": 0.4,
                                               "exist_calibration": {"method": "platt", "scale": 0.7, "bias": 1.0}},
                               "metrics": {"validation": {"f1": 0.8}}})
    return path, model.state_dict()


def test_soup_is_the_mean_of_its_ingredients_and_says_what_it_holds(tmp_path):
    paths, states = zip(*(ingredient(tmp_path, f"w{i}", seed=i) for i in range(3)), strict=True)
    out = make_soup(list(paths), tmp_path / "soup.safetensors")
    model, meta = load_weights(out)
    soup = model.state_dict()
    for key, value in states[0].items():
        if value.is_floating_point():
            mean = (states[0][key] + states[1][key] + states[2][key]) / 3
            torch.testing.assert_close(soup[key], mean, rtol=1e-6, atol=1e-6)
        else:  # BatchNorm's batch counters: the first ingredient's
            assert torch.equal(soup[key], value)
    assert not torch.equal(soup["exist.fc2.weight"], states[0]["exist.fc2.weight"])
    assert meta["crop_top"] == 0.3 and meta["input_size"] == list(SIZE)
    assert [i["path"] for i in meta["soup"]["ingredients"]] == [str(p.resolve()) for p in paths]
    assert meta["soup"]["ingredients"][1]["sha256"] == hashlib.sha256(paths[1].read_bytes()).hexdigest()
    assert meta["soup"]["ingredients"][2]["description"] == "seed 2"
    assert [i["training"]["seed"] for i in meta["soup"]["ingredients"]] == [0, 1, 2]
    assert meta["soup"]["ingredients"][0]["adaptation"] == {"blend": 0.3}
    # fitted on other networks: the soup must be calibrated and tuned again
    assert "postprocess" not in meta and "metrics" not in meta and "exist_calibration" not in meta


def test_soup_of_one_state_is_that_state():
    state = build_model("enet_sad", input_size=SIZE).state_dict()
    soup = soup_states([state])
    assert all(torch.equal(soup[k], v) for k, v in state.items())


@pytest.mark.parametrize(("other", "field"), [({"size": (64, 256)}, "input_size"), ({"crop_top": 0.0}, "crop_top")])
def test_ingredients_of_another_network_or_preprocessing_refused(tmp_path, other, field):
    first, _ = ingredient(tmp_path, "a", seed=0)
    second, _ = ingredient(tmp_path, "b", seed=1, **other)
    with pytest.raises(ValueError, match=f"b.safetensors: {field} .* differs from .*a.safetensors"):
        make_soup([first, second], tmp_path / "soup.safetensors")
    assert not (tmp_path / "soup.safetensors").exists()


def test_cli_writes_the_soup_and_refuses_bad_input(tmp_path, capsys):
    first, _ = ingredient(tmp_path, "a", seed=0)
    second, _ = ingredient(tmp_path, "b", seed=1)
    out = tmp_path / "soup.safetensors"
    assert train_main(["soup", str(out), str(first), str(second)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["soup"]["method"].startswith("uniform")
    capsys.readouterr()
    for args, message in [
        ([str(tmp_path / "x.safetensors"), str(first)], "a soup needs two or more weights files, got 1"),
        ([str(first), str(first), str(second)], "would overwrite one of its ingredients"),
        ([str(tmp_path / "y.safetensors"), str(first), str(second), str(first)], "a.safetensors given more than once"),
        ([str(tmp_path / "z.safetensors"), str(first), str(tmp_path / "missing.safetensors")], "not found"),
    ]:
        assert train_main(["soup", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lanesad-train: error: ") and message in err
    assert not any((tmp_path / f"{n}.safetensors").exists() for n in "xyz")


def test_weighted_soup_and_its_refusal():
    a = {"w": torch.zeros(2), "n": torch.tensor(3)}
    b = {"w": torch.full((2,), 4.0), "n": torch.tensor(7)}
    mixed = soup_states([a, b], [0.75, 0.25])
    assert torch.equal(mixed["w"], torch.full((2,), 1.0)) and int(mixed["n"]) == 3
    with pytest.raises(ValueError, match="1 weights for 2 states"):
        soup_states([a, b], [1.0])
