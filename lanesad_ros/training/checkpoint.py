"""Training checkpoints: global RNG state as tensors, atomic torch.save, and the weights_only reader.

A checkpoint is a dict with ``format == CHECKPOINT_FORMAT`` holding model, optimiser, scheduler,
AMP scaler, RNG states, the data-order state and the config (see ``Trainer.state``). It is
written atomically and read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lanesad_ros.fileio import atomic_path

CHECKPOINT_FORMAT = "lanesad-checkpoint/1"

# Config keys (dotted; a prefix covers its sub-keys) that a resume may change. Each takes effect
# from the resumed iteration on: the learning-rate schedule (lr, poly_power, warmup_iters,
# iterations) is rebuilt from the new values, weight_decay/momentum/grad_clip and the loss
# weights are read from the new config, SAD starts at the new sad_start_iter, and logging,
# checkpointing, evaluation and export follow the new settings. Everything else (model
# architecture and input, optimiser type, training data and augmentation, seed, batch size,
# AMP, SyncBN) fixes what the checkpoint's tensors and the data order mean: changing it is a
# new run, started from the old weights with model.init_weights.
RESUMABLE_KEYS = (
    "name", "description", "model.init_weights",
    "optim.lr", "optim.momentum", "optim.weight_decay", "optim.poly_power", "optim.warmup_iters", "optim.grad_clip",
    "loss", "data.val", "data.num_workers",
    "train.iterations", "train.sad_start_iter", "train.device", "train.amp", "train.num_threads", "train.deterministic",
    "train.log_interval", "train.checkpoint_interval", "train.keep_checkpoints", "train.output_dir",
    "train.tensorboard", "train.progress",
    "eval", "export",
)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and prefix.count(".") < 1:  # sections and their keys
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _resumable(key: str) -> bool:
    return any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE_KEYS)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resume_conflicts(saved: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's config and the new one in keys a resume may not change.

    Both are validated configs (``training.config.validate``). Returns ``"key old -> new"``
    strings, sorted by key; empty when the resume can go on (see ``RESUMABLE_KEYS``).
    """
    old, new = _flatten(saved), _flatten(config)
    return [f"{key} {_short(old.get(key))} -> {_short(new.get(key))}"
            for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key) and not _resumable(key)]


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors and plain types (loadable with weights_only=True)."""
    version, internal, gauss = random.getstate()
    key, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
        "numpy": {"key": str(key), "state": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["key"], npst["state"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, synced to disk, then os.replace: never a
    half-written or empty file, even after a power cut; a write killed on the way leaves a
    temporary that the next save removes (:func:`lanesad_ros.fileio.atomic_path`)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (weights_only); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe files
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a lanesad training checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt
