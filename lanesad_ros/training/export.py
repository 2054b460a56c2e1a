"""Checkpoint -> deployable weights: the safetensors file plus the metadata JSON that alone configures the Detector."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lanesad_ros.model import build_model
from lanesad_ros.model.weights import save_weights
from lanesad_ros.training.checkpoint import load_checkpoint
from lanesad_ros.training.config import validate


def model_metadata(cfg: dict) -> dict[str, Any]:
    """The preprocessing part of a weights file's metadata, from a training config."""
    m = cfg["model"]
    return {
        "format": "lanesad-weights/1",
        "model": m["name"],
        "num_lanes": m["num_lanes"],
        "input_size": list(m["input_size"]),
        "crop_top": m["crop_top"],
        "mean": list(m["mean"]),
        "std": list(m["std"]),
    }


def describe_training(cfg: dict) -> str:
    """A one-line, honest description of the training data for the weights metadata."""
    if cfg["export"]["training_data"]:
        return cfg["export"]["training_data"]
    parts = []
    for entry in cfg["data"]["train"]:
        what = entry["type"]
        if entry["type"] == "synthetic":
            what += " scenes" + (f" with geometry from {entry['geometry']}" if entry["geometry"] else "")
        else:
            what += f" {entry['root']} {entry['labels'] or entry['list_file'] or ''}".rstrip()
        parts.append(f"{what} (weight {entry['weight']})")
    return "; ".join(parts)


def export_checkpoint(checkpoint: str | Path, out: str | Path, extra: dict | None = None) -> Path:
    """Checkpoint -> ``out`` (.safetensors) + ``.json`` metadata describing data, iterations and metrics."""
    ckpt = load_checkpoint(checkpoint)
    cfg = validate(ckpt["config"])
    m = cfg["model"]
    model = build_model(m["name"], num_lanes=m["num_lanes"], input_size=tuple(m["input_size"]), **m["options"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    meta = model_metadata(cfg)
    meta.pop("format")
    meta["training"] = {
        "config_name": cfg["name"],
        "description": cfg["description"],
        "data": describe_training(cfg),
        "iterations": int(ckpt["iteration"]),
        "total_iterations": cfg["train"]["iterations"],
        "batch_size": cfg["train"]["batch_size"],
        "sad_start_iter": cfg["train"]["sad_start_iter"],
        "optimizer": cfg["optim"]["name"],
        "lr": cfg["optim"]["lr"],
        "seed": cfg["train"]["seed"],
        "checkpoint": Path(checkpoint).name,
        "saved_at": ckpt.get("saved_at"),
    }
    if ckpt.get("metrics"):
        val_names = [e["name"] or e["type"] for e in cfg["data"]["val"]]
        meta["metrics"] = {"measured_on": val_names, "at_iteration": int(ckpt["iteration"]),
                           "postprocess_overrides": dict(cfg["eval"]["postprocess"]), **ckpt["metrics"]}
    if extra:
        meta.update(extra)
    out = Path(out)
    save_weights(model, out, meta)
    return out
