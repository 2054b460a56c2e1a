"""Weights files: ``<name>.safetensors`` (tensors) + ``<name>.json`` (metadata) side by side.

The metadata alone configures a detector: it names the model, lane count, input size, crop
and normalisation, so ``load_weights`` rebuilds the network with ``build_model`` and loads
the tensors into it. No pickles are ever read. Every failure raises :class:`WeightsError`
naming the offending file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from lanesad_ros.fileio import write_bytes_atomic, write_text_atomic
from lanesad_ros.model.registry import build_model, list_models
from lanesad_ros.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessor

FORMAT = "lanesad-weights/1"


class WeightsError(ValueError):
    """A weights file or its metadata is missing, corrupt or does not fit the model."""


def metadata_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a weights file."""
    return Path(path).with_suffix(".json")


def _json_default(value: Any) -> Any:
    """JSON fallback for numpy scalars/arrays, tensors and paths found in metadata."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON serialisable")


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare network inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def save_weights(model: torch.nn.Module, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write ``path`` (.safetensors) and its ``.json`` metadata, each atomically.

    ``model`` may be wrapped (DDP, DataParallel, torch.compile); the bare network is saved.

    The model's name, lane count, input size and build options are authoritative; a
    ``metadata`` entry contradicting them raises ValueError. Preprocessing defaults
    (crop_top 0, ImageNet mean/std) are filled in when absent; everything else passed
    ("training", "metrics", ...) is stored as given.
    """
    model = unwrap_model(model)
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"weights path must end in .safetensors: {path}")
    meta = dict(metadata or {})
    own = {
        "format": FORMAT,
        "model": model.name,
        "num_lanes": int(model.num_lanes),
        "input_size": [int(v) for v in model.input_size],
    }
    options = dict(getattr(model, "options", {}))
    if options:
        own["model_options"] = options
    for key, value in own.items():
        if key in meta and json.loads(json.dumps(meta[key], default=_json_default)) != value:
            raise ValueError(f"metadata {key!r}={meta[key]!r} contradicts the model ({value!r})")
    meta.update(own)
    meta.setdefault("crop_top", 0.0)
    meta.setdefault("mean", list(IMAGENET_MEAN))
    meta.setdefault("std", list(IMAGENET_STD))
    text = json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n"
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, save(tensors, metadata={"format": FORMAT, "model": model.name}))
    write_text_atomic(metadata_path(path), text)


def read_metadata(path: str | os.PathLike) -> dict:
    """Metadata of a weights file (``path`` may name the .safetensors or the .json), validated."""
    json_path = metadata_path(path)
    if not json_path.is_file():
        raise WeightsError(f"weights metadata file not found: {json_path}")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"weights metadata file {json_path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"weights metadata file {json_path} must hold a JSON object")
    if meta.get("format") != FORMAT:
        raise WeightsError(f"weights metadata file {json_path}: 'format' must be {FORMAT!r}, "
                           f"got {meta.get('format')!r}")
    if meta.get("model") not in list_models():
        raise WeightsError(f"weights metadata file {json_path}: unknown 'model' {meta.get('model')!r} "
                           f"(known: {', '.join(list_models())})")
    lanes = meta.get("num_lanes")
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise WeightsError(f"weights metadata file {json_path}: 'num_lanes' must be a positive int, got {lanes!r}")
    size = meta.get("input_size")
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise WeightsError(f"weights metadata file {json_path}: 'input_size' must be [height, width], got {size!r}")
    options = meta.get("model_options", {})
    if not isinstance(options, dict):
        raise WeightsError(f"weights metadata file {json_path}: 'model_options' must be an object, got {options!r}")
    try:
        metadata_preprocessor(meta)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"weights metadata file {json_path}: bad preprocessing fields: {exc}") from None
    return meta


def metadata_preprocessor(metadata: dict) -> Preprocessor:
    """The Preprocessor a weights file was trained with (input size, crop, normalisation)."""
    return Preprocessor.from_metadata(metadata)


def load_weights(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                 num_lanes: int | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model named in the metadata, load the tensors, return (model in eval mode, metadata).

    ``num_lanes``, when given, is the lane count the caller needs; weights for another
    count raise WeightsError. Tensor names and shapes must match the rebuilt model exactly.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    meta = read_metadata(path)
    if num_lanes is not None and meta["num_lanes"] != num_lanes:
        raise WeightsError(f"weights file {path} is for {meta['num_lanes']} lanes, {num_lanes} are needed")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"weights file {path} is not a readable safetensors file: {exc}") from None
    try:
        model = build_model(meta["model"], num_lanes=meta["num_lanes"], input_size=tuple(meta["input_size"]),
                            **meta.get("model_options", {}))
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"weights metadata file {metadata_path(path)} "
                           f"does not describe a buildable model: {exc}") from None
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in tensors]
    problems += [f"unexpected {k}" for k in tensors if k not in expected]
    problems += [
        f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} problems)" if len(problems) > 5 else "")
        raise WeightsError(
            f"weights file {path} does not fit {meta['model']} with {meta['num_lanes']} lanes "
            f"at input {meta['input_size']}: {shown}"
        )
    model.load_state_dict(tensors, strict=True)
    model.to(map_location)
    model.eval()
    return model, meta
