"""PyTorch eager backend: CPU fp32, CUDA fp16 (channels_last)."""
from __future__ import annotations

import copy

import numpy as np


class TorchBackend:
    """PyTorch eager. On CUDA the network runs in fp16 (weights cast when we own the model,
    autocast when the model is shared with a training loop) and channels_last.

    ``__call__``: (N, 3, H, W) float32 numpy -> (seg_logits (N, L+1, H, W), exist_prob (N, L))
    torch tensors on the backend's device.
    """

    def __init__(self, model, device: str, own_model: bool, fp16: bool | None = None):
        # torch is imported by whoever built ``model``; imported here, not at the top, so that the
        # backends package stays importable without paying for torch (1-2.5 s) on start-ups that
        # use another backend.
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.fp16 = (self.device.type == "cuda") if fp16 is None else fp16
        self.own_model = own_model
        self.channels_last = self.device.type == "cuda"
        if own_model:
            # A copy, so the fp32 original stays available for the ONNX export.
            model = copy.deepcopy(model).to(self.device).eval()
            if self.fp16:
                model.half()
            if self.channels_last:
                model.to(memory_format=torch.channels_last)
        self.model = model
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        suffix = "-fp16" if self.fp16 else ("-fp32" if self.device.type == "cuda" else "")
        self.name = f"torch-{self.device.type}{suffix}"

    def __call__(self, batch: np.ndarray):
        torch = self._torch
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        was_training = self.model.training
        if was_training:
            self.model.eval()
        try:
            with torch.inference_mode():
                if self.fp16 and self.own_model:
                    return self.model(x.half())
                if self.fp16:
                    with torch.autocast("cuda", dtype=torch.float16):
                        return self.model(x)
                return self.model(x)
        finally:
            if was_training:
                self.model.train()
