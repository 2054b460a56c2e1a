"""PyTorch backend: CPU fp32 eager; CUDA fp16 (channels_last), replayed from CUDA graphs."""
from __future__ import annotations

import copy
import logging
import threading

import numpy as np

_LOG = logging.getLogger(__name__)

MAX_GRAPHS = 4  # input shapes captured as CUDA graphs; further shapes run eagerly
# One capture at a time in the process (PyTorch's torch.cuda.graph: "only one capture may be underway at
# a time"), and no CUDA-graph backend runs while another captures: on a node's first start-up on a GPU
# the worker's backend and the one the background measurement builds may capture at the same moment.
_CUDA_GRAPH_LOCK = threading.Lock()


class TorchBackend:
    """PyTorch. On CUDA the network runs in fp16 (weights cast when we own the model, autocast
    when the model is shared with a training loop) and channels_last.

    CUDA graphs: a model we own is captured once per input shape (after a warm-up on a side
    stream, as PyTorch's CUDA-graph notes describe, on a capture stream of its own, one capture
    in the process at a time) and replayed; ENet-SAD is launch-bound at
    batch 1, so eager fp16 took 13.1 ms and the replayed graph 2.0 ms for a 288x800 forward on an
    H200 (benchmarks/RESULTS.md, GPU section). A capture that fails leaves the backend eager
    (logged once). A model shared with training is never captured (its weights change).

    ``__call__``: (N, 3, H, W) float32 numpy -> (seg_logits (N, L+1, H, W), exist_prob (N, L))
    torch tensors on the backend's device; seg_logits in the dtype the network runs in (float16 on
    CUDA), exist_prob always float32.
    """

    def __init__(self, model, device: str, own_model: bool, fp16: bool | None = None,
                 cuda_graphs: bool | None = None):
        # torch is imported by whoever built ``model``; imported here, not at the top, so that the
        # backends package stays importable without paying for torch (1-2.5 s) on start-ups that
        # use another backend.
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.fp16 = (self.device.type == "cuda") if fp16 is None else fp16
        self.own_model = own_model
        self.channels_last = self.device.type == "cuda"
        graphs_possible = self.device.type == "cuda" and own_model
        self.cuda_graphs = graphs_possible if cuda_graphs is None else cuda_graphs
        if self.cuda_graphs and not graphs_possible:
            raise ValueError("cuda_graphs needs a CUDA device and a model the backend owns")
        self._graphs: dict[tuple[int, ...], tuple] = {}
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
        if self.fp16 and self.own_model:
            x = x.half()
        was_training = self.model.training
        if was_training:
            self.model.eval()
        try:
            with torch.inference_mode():
                if self.cuda_graphs:
                    with _CUDA_GRAPH_LOCK, torch.cuda.device(self.device):
                        outputs = self._replay(x)
                    if outputs is not None:
                        return outputs
                if self.fp16 and not self.own_model:
                    with torch.autocast("cuda", dtype=torch.float16):
                        return self.model(x)
                return self.model(x)
        finally:
            if was_training:
                self.model.train()

    def _replay(self, x):
        """Outputs of the graph captured for ``x.shape`` (captured on first use), cloned because the
        next replay overwrites them; None where this shape runs eagerly."""
        key = tuple(x.shape)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= MAX_GRAPHS:
                return None
            entry = self._graphs[key] = self._capture(x)
        static_in, graph, static_out = entry
        if graph is None:
            return None
        static_in.copy_(x)
        graph.replay()
        return tuple(t.clone() for t in static_out)

    def _capture(self, x) -> tuple:
        """(static input, CUDAGraph, static outputs) for inputs shaped like ``x``; (None, None, None)
        when capture fails (logged; that shape then runs eagerly). Called under ``_CUDA_GRAPH_LOCK``."""
        torch = self._torch
        previous = torch.cuda.current_stream()
        try:
            static_in = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(previous)
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up: cuDNN autotuning and allocations happen outside the capture
                    self.model(static_in)
            previous.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=torch.cuda.Stream(), capture_error_mode="thread_local"):
                static_out = self.model(static_in)
            return static_in, graph, tuple(static_out)
        except RuntimeError as exc:
            _LOG.warning("CUDA graph capture failed for input %s, running eagerly: %s", tuple(x.shape), exc)
            return None, None, None
        finally:
            # A capture that fails in its first or last step leaves its stream current: back to ours.
            torch.cuda.set_stream(previous)
