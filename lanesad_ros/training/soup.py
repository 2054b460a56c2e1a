"""Weight-space averaging: the uniform model soup of several weights files of one network, and the
weighted average ``adapt``'s blend (WiSE-FT) is made with.

Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models improves accuracy
without increasing inference time", ICML 2022 (the uniform soup). The ingredients must share their
network and their starting point (here: seeds of one recipe, all fine-tuned from the same weights), or
the average means nothing; that cannot be checked, the network and preprocessing are.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lanesad_ros.backends.cache import file_hash
from lanesad_ros.model.weights import load_weights, save_weights

# Metadata that must agree between ingredients: the network and what the Detector feeds it.
SHARED_FIELDS = ("model", "num_lanes", "input_size", "model_options", "crop_top", "mean", "std")


def soup_states(states: list[dict[str, torch.Tensor]], weights: Sequence[float] | None = None
                ) -> dict[str, torch.Tensor]:
    """The mean of every floating tensor (weights and BatchNorm statistics, in float64, stored in the
    ingredients' dtype), uniform or with ``weights`` (one per state); integer buffers (BatchNorm's
    batch counters) from the first state. ValueError if the states do not hold the same tensors of
    the same shapes, or the weights do not match the states."""
    if not states:
        raise ValueError("a soup needs at least one state")
    if weights is None:
        weights = [1.0 / len(states)] * len(states)
    if len(weights) != len(states):
        raise ValueError(f"{len(weights)} weights for {len(states)} states")
    first = states[0]
    for i, state in enumerate(states[1:], start=1):
        if state.keys() != first.keys():
            raise ValueError(f"ingredient {i} holds other tensors than ingredient 0")
        for key, value in state.items():
            if value.shape != first[key].shape:
                raise ValueError(f"ingredient {i}: {key} has shape {tuple(value.shape)}, "
                                 f"ingredient 0 {tuple(first[key].shape)}")
    return {key: sum(w * s[key].to(value.device).double() for w, s in zip(weights, states, strict=True)
                     ).to(value.dtype)
            if value.is_floating_point() else value.clone() for key, value in first.items()}


def make_soup(weights: list[str | Path], out: str | Path) -> Path:
    """Write the uniform soup of ``weights`` (two or more .safetensors files with metadata) to ``out``.

    The metadata keeps the shared network and preprocessing fields and lists the ingredients
    (absolute path, SHA-256, description, training, adaptation); the ingredients' existence
    calibration, thresholds and metrics are dropped, as they were fitted on other networks: run
    ``lanesad-train calibrate`` and ``tune`` on the soup. ValueError (naming the field and files) if
    the ingredients differ in network or preprocessing, if a file is given twice or ``out`` is one
    of them; WeightsError for an unreadable file. Both files are written atomically.
    """
    paths = [Path(p).resolve() for p in weights]
    if len(paths) < 2:
        raise ValueError(f"a soup needs two or more weights files, got {len(paths)}")
    repeated = sorted({str(p) for p in paths if paths.count(p) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} given more than once: a soup weighs each ingredient once")
    out = Path(out)
    if out.resolve() in paths:
        raise ValueError(f"{out}: the soup would overwrite one of its ingredients")
    loaded = [load_weights(p) for p in paths]
    model, first_meta = loaded[0]
    for path, (_, meta) in zip(paths[1:], loaded[1:], strict=True):
        for field in SHARED_FIELDS:
            if meta.get(field) != first_meta.get(field):
                raise ValueError(f"{path}: {field} {meta.get(field)!r} differs from {paths[0]}'s "
                                 f"{first_meta.get(field)!r}; a soup needs one network and one preprocessing")
    model.load_state_dict(soup_states([m.state_dict() for m, _ in loaded]))
    ingredients: list[dict[str, Any]] = [
        {"path": str(p), "sha256": file_hash(p),
         **{k: meta[k] for k in ("description", "training", "adaptation") if k in meta}}
        for p, (_, meta) in zip(paths, loaded, strict=True)]
    # model_options: save_weights writes the model's own
    metadata = {field: first_meta[field] for field in SHARED_FIELDS if field in first_meta and field != "model_options"}
    metadata["description"] = (f"uniform soup of {len(paths)} weights files (lanesad-train soup); "
                               "calibrate and tune it before use")
    metadata["soup"] = {"method": "uniform (Wortsman et al., ICML 2022)", "ingredients": ingredients}
    save_weights(model, out, metadata)
    return out
