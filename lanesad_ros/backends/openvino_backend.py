"""OpenVINO backend on the CPU: the exported fp32 graph, or an INT8 model that passed its guard."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lanesad_ros.backends.cache import BackendUnavailable


class OpenVinoBackend:
    """OpenVINO on the CPU, reading the exported ONNX graph with its pooling indices rewritten
    (:func:`lanesad_ros.model.export.pool_indices_as_arithmetic`), or a quantised IR
    (``name="openvino-int8"``, see :mod:`lanesad_ros.backends.quantize`). One compiled model
    per batch size (static shapes: faster kernels than a dynamic batch).

    fp32 is asked for explicitly: on CPUs with bf16 support OpenVINO would otherwise run in
    bf16, about 1.6x faster on an AVX512-BF16 EPYC but not faithful enough to switch on silently:
    with trained weights 3% of lane points moved by more than 10 px (20 synthetic frames).

    ``cache_dir``: OpenVINO's compiled-model cache (``CACHE_DIR``): a later start-up with the same
    graph, shape and settings loads the compiled blob instead of compiling (about 4x faster).
    ``__call__``: (N, 3, H, W) float32 -> (seg_logits, exist_prob) numpy arrays that are views
    of the request's buffers, valid until the next call (the Detector decodes them before that).
    """

    def __init__(self, model_path: Path, threads: int | None = None, cache_dir: Path | None = None,
                 name: str = "openvino-cpu"):
        try:
            # Imported here: optional dependency, and a start-up on another backend need not load it.
            import openvino as ov
        except ImportError:
            raise BackendUnavailable("backend 'openvino' needs the openvino package (pip install openvino)") from None
        self.core = ov.Core()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        self.graph = self.core.read_model(str(model_path))
        self.config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.requests = {}
        self.name = name

    def _request(self, shape: tuple[int, ...]):
        request = self.requests.get(shape)
        if request is None:
            graph = self.graph.clone()
            graph.reshape({"image": list(shape)})
            request = self.core.compile_model(graph, "CPU", self.config).create_infer_request()
            self.requests[shape] = request
        return request

    def prepare(self, shape: tuple[int, ...]) -> None:
        """Compile for this input shape now (start-up) rather than on the first frame."""
        self._request(tuple(shape))

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._request(batch.shape).infer({"image": batch}, share_inputs=True, share_outputs=True)
        return out["seg_logits"], out["exist_prob"]
