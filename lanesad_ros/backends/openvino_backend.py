"""OpenVINO backend on the CPU: the exported fp32 graph, or an INT8 model that passed its guard."""
from __future__ import annotations

import os
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
    ``static_ir``: where the graph reshaped to batch 1 is kept as OpenVINO IR (written on first
    use): compiling from that path with the cache skips reading and reshaping the graph.
    ``__call__``: (N, 3, H, W) float32 -> (seg_logits, exist_prob) numpy arrays that are views
    of the request's buffers, valid until the next call (the Detector decodes them before that).
    """

    def __init__(self, model_path: Path, threads: int | None = None, cache_dir: Path | None = None,
                 name: str = "openvino-cpu", static_ir: Path | None = None):
        try:
            # Imported here: optional dependency, and a start-up on another backend need not load it.
            import openvino as ov
        except ImportError:
            raise BackendUnavailable("backend 'openvino' needs the openvino package (pip install openvino)") from None
        self._ov = ov
        self.core = ov.Core()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        self.model_path = model_path
        self.static_ir = static_ir
        self._graph = None
        self.config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.requests = {}
        self.name = name

    @property
    def graph(self):
        if self._graph is None:
            self._graph = self.core.read_model(str(self.model_path))
        return self._graph

    def _request(self, shape: tuple[int, ...]):
        request = self.requests.get(shape)
        if request is None:
            if shape[0] == 1 and self.static_ir is not None and self.static_ir.is_file():
                compiled = self.core.compile_model(str(self.static_ir), "CPU", self.config)
            else:
                graph = self.graph.clone()
                graph.reshape({"image": list(shape)})
                if shape[0] == 1 and self.static_ir is not None:
                    self._save_static_ir(graph)
                compiled = self.core.compile_model(graph, "CPU", self.config)
            request = compiled.create_infer_request()
            self.requests[shape] = request
        return request

    def _save_static_ir(self, graph) -> None:
        """Write the batch-1 graph as IR: .bin first, then .xml, each renamed into place, so an
        existing .xml always has its complete .bin. A failed write only costs the next start-up."""
        tmp = self.static_ir.with_name(f".{self.static_ir.stem}.{os.getpid()}.tmp.xml")
        try:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            self._ov.save_model(graph, str(tmp), compress_to_fp16=False)
            os.replace(tmp.with_suffix(".bin"), self.static_ir.with_suffix(".bin"))
            os.replace(tmp, self.static_ir)
        except (OSError, RuntimeError):
            pass
        finally:
            for leftover in (tmp, tmp.with_suffix(".bin")):
                leftover.unlink(missing_ok=True)

    def prepare(self, shape: tuple[int, ...]) -> None:
        """Compile for this input shape now (start-up) rather than on the first frame."""
        self._request(tuple(shape))

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._request(batch.shape).infer({"image": batch}, share_inputs=True, share_outputs=True)
        return out["seg_logits"], out["exist_prob"]
