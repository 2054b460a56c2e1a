"""The one YAML configuration loader for training (and any tool that wants the same rules).

A config file may name a ``_base_`` file (path relative to itself); the two are deep-merged,
the child winning. Command-line overrides ``key.sub=value`` are parsed as YAML scalars/lists
(``train.iterations=100``, ``optim.name=adam``, ``model.input_size=[144,400]``). The merged
result is checked against ``SCHEMA``: an unknown key, a wrong type or a bad choice raises
``ConfigError`` naming the dotted key (and the file), so typos never train silently with a
default.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lanesad_ros.data.synthetic.profile import PROFILES, scene_profile
from lanesad_ros.fileio import write_text_atomic


def resolve_path(text: str) -> Path:
    """Config path -> Path: ``$VARS`` and ``~`` expanded; relative paths are relative to the CWD."""
    return Path(os.path.expanduser(os.path.expandvars(text)))


class ConfigError(ValueError):
    """A configuration problem; the message names the file and/or the dotted key."""


@dataclass(frozen=True)
class Field:
    """One leaf of the schema: allowed types, default, optional choices."""

    types: tuple[type, ...]
    default: Any = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    required: bool = False
    item_schema: dict[str, Any] | None = field(default=None, hash=False)


MODEL_NAMES = ("enet_sad", "resnet18_sad", "resnet34_sad")
DATASET_TYPES = ("tusimple", "culane", "bdd100k", "synthetic")

# One entry of data.train / data.val: which loader, where, how much weight in the mix.
DATASET_SCHEMA: dict[str, Any] = {
    "type": Field((str,), required=True, choices=DATASET_TYPES),
    "name": Field((str,), nullable=True),
    # tusimple: root + label json files; culane: root + list file; bdd100k: root + labels json/dir
    "root": Field((str,), nullable=True),
    "labels": Field((str, list), nullable=True),
    "list_file": Field((str,), nullable=True),
    # bdd100k: image folder relative to root
    "images": Field((str,), nullable=True),
    # raw_file names (tusimple) or image paths to leave out, e.g. held-out test frames
    "exclude": Field((list,), default=[]),
    # a held-out split by clip: a text file of clip folders (raw_file without the file name,
    # one a line, '#' comments); "held_out" keeps only those clips, "rest" all the others
    "split_file": Field((str,), nullable=True),
    "split": Field((str,), default="rest", choices=("rest", "held_out")),
    # mixing weight of this source in the training stream
    "weight": Field((float,), default=1.0),
    # synthetic: geometry label files (TuSimple json, glob allowed), number of distinct scenes
    "geometry": Field((str, list), nullable=True),
    "size": Field((int,), nullable=True),
    "seed": Field((int,), default=0),
    "width": Field((int,), default=1280),
    "height": Field((int,), default=720),
    # synthetic: how the cameras and scenes vary (lanesad_ros.data.synthetic.profile): highway
    # (the default, TuSimple-like), varied or city; options override per-ingredient probabilities
    "profile": Field((str,), default="highway", choices=tuple(PROFILES)),
    "profile_options": Field((dict,), default={}),
    # corrupt/missing files: "raise" names the file; "skip" counts and skips it
    "on_error": Field((str,), default="raise", choices=("raise", "skip")),
    "max_frames": Field((int,), nullable=True),
    # real frames: decode once, resize to [width, height] (labels scaled) and keep in memory;
    # a 144x400 input needs no more than 640x360 of a 1280x720 frame
    "load_size": Field((list,), nullable=True),
}

SCHEMA: dict[str, Any] = {
    "name": Field((str,), default="run"),
    "description": Field((str,), default=""),
    "model": {
        "name": Field((str,), default="enet_sad", choices=MODEL_NAMES),
        "num_lanes": Field((int,), default=4),
        "input_size": Field((list,), default=[288, 800]),
        "crop_top": Field((float,), default=0.0),
        "mean": Field((list,), default=[0.485, 0.456, 0.406]),
        "std": Field((list,), default=[0.229, 0.224, 0.225]),
        "options": Field((dict,), default={}),
        "init_weights": Field((str,), nullable=True),
    },
    "data": {
        "train": Field((list,), default=[], item_schema=DATASET_SCHEMA),
        "val": Field((list,), default=[], item_schema=DATASET_SCHEMA),
        "augment": Field((dict,), default={}),
        "line_width": Field((int,), nullable=True),
        "num_workers": Field((int,), default=0),
        # another fold of a split by clip: replaces the split_file of every train/val entry that has one
        "split_file": Field((str,), nullable=True),
    },
    "optim": {
        "name": Field((str,), default="sgd", choices=("sgd", "adam", "adamw")),
        "lr": Field((float,), default=0.01),
        "momentum": Field((float,), default=0.9),
        "weight_decay": Field((float,), default=1e-4),
        "poly_power": Field((float,), default=0.9),
        "warmup_iters": Field((int,), default=0),
        "grad_clip": Field((float,), nullable=True),
    },
    "loss": {
        "bg_weight": Field((float,), default=0.4),
        "iou_weight": Field((float,), default=0.1),
        "exist_weight": Field((float,), default=0.1),
        "distill_weight": Field((float,), default=0.1),
        "distill_pairs": Field((list,), nullable=True),
    },
    "train": {
        "iterations": Field((int,), default=60000),
        "batch_size": Field((int,), default=12),
        "sad_start_iter": Field((int,), default=40000),
        "seed": Field((int,), default=0),
        "device": Field((str,), default="auto"),
        "amp": Field((bool,), default=True),
        "num_threads": Field((int,), nullable=True),
        "deterministic": Field((bool,), default=True),
        "log_interval": Field((int,), default=20),
        "checkpoint_interval": Field((int,), default=1000),
        "keep_checkpoints": Field((bool,), default=False),
        "output_dir": Field((str,), default="outputs/run"),
        "tensorboard": Field((bool,), default=True),
        "progress": Field((bool,), default=True),
        "sync_bn": Field((bool,), default=False),
    },
    "eval": {
        "interval": Field((int,), default=2000),
        "metric": Field((str,), default="auto", choices=("auto", "tusimple", "culane", "bdd100k", "none")),
        "best_key": Field((str,), default="auto"),
        "max_frames": Field((int,), nullable=True),
        "overlays": Field((int,), default=4),
        "postprocess": Field((dict,), default={}),
    },
    "export": {
        "path": Field((str,), nullable=True),
        "which": Field((str,), default="best", choices=("best", "last")),
        "training_data": Field((str,), nullable=True),
    },
}


# YAML 1.1 reads "1e-3" (no dot) as a string; numbers written that way are meant as floats.
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _yaml_value(raw: str) -> Any:
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    return value


def _is_field(node: Any) -> bool:
    return isinstance(node, Field)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; nested dicts merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML mapping, resolving its ``_base_`` chain (paths relative to each file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    resolved = path.resolve()
    if resolved in _seen:
        raise ConfigError(f"{path}: _base_ chain loops back to {resolved}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    base = data.pop("_base_", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: _base_ must be a file path string")
    base_data = read_yaml(path.parent / base, _seen + (resolved,))
    return deep_merge(base_data, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (["a", "b"], YAML-typed value)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected key.sub=value")
    try:
        value = _yaml_value(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {exc}") from exc
    return key.split("."), value


def apply_overrides(config: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``config`` with each ``key.sub=value`` applied (keys checked later).

    A part that is a whole number indexes a list already in the config, as mmengine's
    ``--cfg-options`` do: ``data.train.0.root=/data/tusimple`` sets the first training set's root.
    ConfigError names the override when a part runs into a value that is neither a section nor a
    list, or an index is not in the list.
    """
    out = copy.deepcopy(config)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = out
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth])
            index = re.fullmatch(r"[0-9]+", part) is not None
            if isinstance(node, list):
                if not index or int(part) >= len(node):
                    valid = f"0-{len(node) - 1}" if node else "it is empty"
                    raise ConfigError(f"override {text!r}: {where} is a list of {len(node)}; {part!r} is not an index "
                                      f"in it ({valid})")
                key: Any = int(part)
            elif isinstance(node, dict):
                if index and part not in node:
                    raise ConfigError(f"override {text!r}: {where or 'the config'} has no list here to index with "
                                      f"{part!r}")
                key = part
            else:
                raise ConfigError(f"override {text!r}: {where} is not a section")
            if depth == len(parts) - 1:
                node[key] = value
            else:
                if isinstance(node, dict):
                    node.setdefault(key, {})
                node = node[key]
    return out


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


def _validate_node(value: Any, schema: dict[str, Any], prefix: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}{prefix or 'config'}: expected a mapping, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for key in value:
        if key not in schema:
            dotted = f"{prefix}.{key}" if prefix else str(key)
            known = ", ".join(sorted(schema))
            raise ConfigError(f"{where}unknown config key '{dotted}' (known here: {known})")
    for key, node in schema.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if not _is_field(node):
            out[key] = _validate_node(value.get(key, {}), node, dotted, where)
            continue
        if key not in value:
            if node.required:
                raise ConfigError(f"{where}missing required config key '{dotted}'")
            out[key] = copy.deepcopy(node.default)
            continue
        item = value[key]
        if float in node.types and isinstance(item, str) and _FLOAT_RE.match(item.strip()):
            item = float(item)
        if item is None:
            if not (node.nullable or node.default is None):
                raise ConfigError(f"{where}config key '{dotted}' must not be null (expected {_type_names(node.types)})")
            out[key] = None
            continue
        if not _type_ok(item, node.types):
            raise ConfigError(
                f"{where}config key '{dotted}' expects {_type_names(node.types)}, "
                f"got {type(item).__name__} {item!r}"
            )
        if float in node.types and isinstance(item, int) and not isinstance(item, bool) and int not in node.types:
            item = float(item)
        if node.choices is not None and item not in node.choices:
            raise ConfigError(f"{where}config key '{dotted}' must be one of {list(node.choices)}, got {item!r}")
        if node.item_schema is not None:
            item = [
                _validate_node(entry, node.item_schema, f"{dotted}[{i}]", where) for i, entry in enumerate(item)
            ]
        out[key] = item
    return out


def _check_semantics(cfg: dict[str, Any], where: str) -> None:
    """Constraints across keys that the per-key types cannot express."""
    size = cfg["model"]["input_size"]
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise ConfigError(f"{where}config key 'model.input_size' must be [height, width] positive ints, got {size}")
    if not 0.0 <= cfg["model"]["crop_top"] < 1.0:
        raise ConfigError(f"{where}config key 'model.crop_top' must be in [0, 1), got {cfg['model']['crop_top']}")
    for key in ("mean", "std"):
        vals = cfg["model"][key]
        if len(vals) != 3 or not all(_type_ok(v, (float,)) for v in vals):
            raise ConfigError(f"{where}config key 'model.{key}' must be three numbers, got {vals}")
    for key in ("iterations", "batch_size"):
        if cfg["train"][key] <= 0:
            raise ConfigError(f"{where}config key 'train.{key}' must be > 0, got {cfg['train'][key]}")
    if cfg["train"]["sad_start_iter"] < 0:
        raise ConfigError(f"{where}config key 'train.sad_start_iter' must be >= 0")
    if cfg["model"]["num_lanes"] <= 0:
        raise ConfigError(f"{where}config key 'model.num_lanes' must be > 0")
    for i, entry in enumerate(cfg["data"]["train"]):
        if entry["weight"] <= 0:
            raise ConfigError(f"{where}config key 'data.train[{i}].weight' must be > 0")
        if entry["type"] != "synthetic" and not entry["root"]:
            raise ConfigError(f"{where}config key 'data.train[{i}].root' is required for type {entry['type']}")
        try:
            scene_profile(entry["profile"], entry["profile_options"])
        except ValueError as exc:
            raise ConfigError(f"{where}config key 'data.train[{i}].profile_options': {exc}") from None


def validate(config: dict[str, Any], source: str | Path | None = None) -> dict[str, Any]:
    """Check ``config`` against the schema; returns a complete config with defaults filled in."""
    where = f"{source}: " if source is not None else ""
    out = _validate_node(config, SCHEMA, "", where)
    _check_semantics(out, where)
    if out["data"]["split_file"]:
        for entry in out["data"]["train"] + out["data"]["val"]:
            if entry["split_file"]:
                entry["split_file"] = out["data"]["split_file"]
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """YAML file (with ``_base_``) + overrides -> validated config dict with defaults filled in."""
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides)
    return validate(raw, path)


def dump(config: dict[str, Any], path: str | Path) -> None:
    """Write a config as YAML, atomically."""
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))
