"""The YAML config loader: _base_ merging, dotted overrides, validation errors naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from lanesad_ros.training.config import ConfigError, apply_overrides, load_config, parse_override, validate

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_parse_override_types():
    assert parse_override("train.iterations=100") == (["train", "iterations"], 100)
    assert parse_override("optim.lr=1e-3") == (["optim", "lr"], 1e-3)
    assert parse_override("train.amp=false") == (["train", "amp"], False)
    assert parse_override("model.input_size=[144, 400]") == (["model", "input_size"], [144, 400])
    assert parse_override("optim.name=adam") == (["optim", "name"], "adam")
    assert parse_override("export.path=a=b.safetensors") == (["export", "path"], "a=b.safetensors")
    assert parse_override("model.init_weights=") == (["model", "init_weights"], None)


@pytest.mark.parametrize("bad", ["noequals", "=3", "a..b=1", ".a=1"])
def test_parse_override_rejects_malformed(bad):
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override(bad)


def test_base_merge_and_overrides(tmp_path):
    write(tmp_path / "base.yaml",
          "model:\n  name: enet_sad\n  input_size: [288, 800]\ntrain:\n  iterations: 10\n  batch_size: 4\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\ntrain:\n  iterations: 20\n")
    cfg = load_config(child, ["train.batch_size=2", "optim.lr=0.5"])
    assert cfg["train"]["iterations"] == 20  # child wins
    assert cfg["train"]["batch_size"] == 2  # override wins
    assert cfg["model"]["input_size"] == [288, 800]  # from base
    assert cfg["optim"]["lr"] == 0.5
    assert cfg["optim"]["momentum"] == 0.9  # schema default
    assert isinstance(cfg["loss"]["bg_weight"], float)


def test_int_accepted_for_float_and_converted():
    cfg = validate({"optim": {"lr": 1}})
    assert cfg["optim"]["lr"] == 1.0 and isinstance(cfg["optim"]["lr"], float)


def test_unknown_key_names_dotted_key(tmp_path):
    path = write(tmp_path / "c.yaml", "train:\n  iteratoins: 5\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "train.iteratoins" in str(err.value) and str(path) in str(err.value)


def test_unknown_key_from_override():
    with pytest.raises(ConfigError, match="optim.learning_rate"):
        load_config(None, ["optim.learning_rate=0.1"])


def test_bad_type_names_key_and_type():
    with pytest.raises(ConfigError, match=r"train.batch_size' expects int, got str"):
        validate({"train": {"batch_size": "eight"}})
    with pytest.raises(ConfigError, match=r"train.amp' expects bool"):
        validate({"train": {"amp": 1}})


def test_bad_choice_and_semantics():
    with pytest.raises(ConfigError, match="model.name"):
        validate({"model": {"name": "scnn"}})
    with pytest.raises(ConfigError, match="model.input_size"):
        validate({"model": {"input_size": [288]}})
    with pytest.raises(ConfigError, match="model.crop_top"):
        validate({"model": {"crop_top": 1.5}})


def test_dataset_entries_checked():
    with pytest.raises(ConfigError, match=r"data.train\[0\].type"):
        validate({"data": {"train": [{"root": "x"}]}})
    with pytest.raises(ConfigError, match=r"data.train\[0\].weight"):
        validate({"data": {"train": [{"type": "synthetic", "weight": "high"}]}})
    with pytest.raises(ConfigError, match=r"data.val\[1\].colour"):
        validate({"data": {"val": [{"type": "synthetic"}, {"type": "synthetic", "colour": 1}]}})
    with pytest.raises(ConfigError, match=r"data.train\[0\].root"):
        validate({"data": {"train": [{"type": "tusimple"}]}})


def test_data_split_file_replaces_every_entrys_split_file():
    """Another fold of a split by clip is one key: data.split_file takes the place of the split file of
    every train/val entry that has one; entries without one (synthetic scenes) stay without."""
    entries = {"train": [{"type": "tusimple", "root": "t", "split_file": "a.txt"}, {"type": "synthetic"}],
               "val": [{"type": "culane", "root": "c", "split_file": "a.txt", "split": "held_out"}]}
    cfg = validate({"data": {**entries, "split_file": "b.txt"}})
    assert [e["split_file"] for e in cfg["data"]["train"] + cfg["data"]["val"]] == ["b.txt", None, "b.txt"]
    assert [e["split_file"] for e in validate({"data": entries})["data"]["train"]] == ["a.txt", None]


def test_missing_file_and_missing_base(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    child = write(tmp_path / "child.yaml", "_base_: gone.yaml\n")
    with pytest.raises(ConfigError, match="gone.yaml"):
        load_config(child)


def test_base_loop_detected(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yaml")


def test_invalid_yaml_names_file(tmp_path):
    path = write(tmp_path / "broken.yaml", "train: [1, 2\n")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_config(path)


def test_override_into_non_section():
    with pytest.raises(ConfigError, match="is not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_override_indexes_a_list():
    """The training guide's first command: a dataset root set by its index in data.train."""
    cfg = load_config(REPO / "config" / "train" / "enet_sad_tusimple.yaml", ["data.train.0.root=/data/tusimple"])
    assert cfg["data"]["train"][0]["root"] == "/data/tusimple"
    raw = {"data": {"train": [{"root": "a"}, {"root": "b"}]}}
    out = apply_overrides(raw, ["data.train.1.root=c", "data.train.0=null"])
    assert out["data"]["train"] == [None, {"root": "c"}]
    assert raw["data"]["train"][1]["root"] == "b"  # a copy


@pytest.mark.parametrize("bad, why", [("data.train.2.root=x", "is a list of 2; '2' is not an index in it \\(0-1\\)"),
                                      ("data.train.first.root=x", "is a list of 2; 'first'"),
                                      ("data.train.-1.root=x", "is a list of 2; '-1' is not an index")])
def test_override_list_index_errors(bad, why):
    with pytest.raises(ConfigError, match=f"override '{bad}': data.train {why}"):
        apply_overrides({"data": {"train": [{"root": "a"}, {"root": "b"}]}}, [bad])


def test_override_index_without_a_list_names_it():
    with pytest.raises(ConfigError, match=r"data.train is a list of 0; '0' is not an index in it \(it is empty\)"):
        apply_overrides({"data": {"train": []}}, ["data.train.0.root=x"])
    with pytest.raises(ConfigError, match="data has no list here to index with '0'"):  # data.train missing
        apply_overrides({"data": {}}, ["data.0.root=x"])
    with pytest.raises(ConfigError, match="'²' is not an index"):
        apply_overrides({"data": {"train": [{}]}}, ["data.train.²=x"])


def test_shipped_configs_validate():
    files = sorted((REPO / "config" / "train").glob("*.yaml"))
    names = {f.name for f in files}
    for model in ("enet_sad", "resnet18_sad", "resnet34_sad"):
        for data in ("tusimple", "culane", "bdd100k"):
            assert f"{model}_{data}.yaml" in names
    assert "enet_sad_default.yaml" in names
    for f in files:
        if f.name.startswith("_base_"):
            continue
        cfg = load_config(f)
        assert cfg["model"]["name"] in f.name
        assert cfg["data"]["train"], f.name
        assert 0 <= cfg["train"]["sad_start_iter"] < cfg["train"]["iterations"], f.name
