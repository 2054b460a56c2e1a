"""Export of the inference graph to ONNX: input "image" [N, 3, H, W] -> "seg_logits", "exist_prob"."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from lanesad_ros.fileio import atomic_path


class _InferenceGraph(torch.nn.Module):
    """The plain forward (no attention outputs) as a module with exactly two outputs."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        seg_logits, exist_prob = self.model(image)
        return seg_logits, exist_prob


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write the model's inference graph at its configured input size to ``path`` atomically.

    The batch dimension is dynamic; height and width are fixed to ``model.input_size``.
    Uses the TorchScript-based exporter (``dynamo=False``), which handles every op these
    networks use (ENet's unpooling is a ScatterElements) in one self-contained file.
    The model is exported in eval mode and left in the mode it came in. Returns the path.
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    path = Path(path)
    height, width = model.input_size
    device = next(model.parameters()).device
    dummy = torch.zeros(1, 3, height, width, device=device)
    was_training = model.training
    model.eval()
    try:
        with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
            # The shape checks in forward are constant for a fixed-size trace; nothing to report.
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding")
            warnings.simplefilter("ignore", category=DeprecationWarning)
            torch.onnx.export(
                _InferenceGraph(model), (dummy,), tmp, dynamo=False, opset_version=opset,
                input_names=["image"], output_names=["seg_logits", "exist_prob"],
                dynamic_axes={"image": {0: "batch"}, "seg_logits": {0: "batch"}, "exist_prob": {0: "batch"}},
            )
    finally:
        model.train(was_training)
    return path
