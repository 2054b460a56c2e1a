"""OpenVINO backend on the CPU: the exported fp32 graph, or an INT8 model that passed its guard."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from lanesad_ros.backends.cache import BackendUnavailable
from lanesad_ros.fileio import scratch_folder


def _fsync_path(path: Path) -> None:
    """Sync a file written by another library to disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OpenVinoBackend:
    """OpenVINO on the CPU, reading the exported ONNX graph with its pooling indices rewritten
    (:func:`lanesad_ros.model.export.pool_indices_as_arithmetic`), or a quantised IR
    (``name="openvino-int8"``, see :mod:`lanesad_ros.training.quantize`). One compiled model
    per batch size (static shapes: faster kernels than a dynamic batch).

    fp32 is asked for explicitly: on CPUs with bf16 support OpenVINO would otherwise run in
    bf16, about 1.6x faster on an AVX512-BF16 EPYC but not faithful enough to switch on silently:
    with trained weights 3% of lane points moved by more than 10 px (20 synthetic frames).

    ``cache_dir``: OpenVINO's compiled-model cache (``CACHE_DIR``): a later start-up with the same
    graph, shape and settings loads the compiled blob instead of compiling (about 4x faster).
    OpenVINO writes a blob in place, so a process killed meanwhile would leave a truncated one:
    each compile runs on a scratch folder holding links to the cached blobs, and a new blob is
    moved into ``cache_dir`` only once complete (synced, renamed).
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
        self.cache_dir = cache_dir
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
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
                compiled = self._compile(str(self.static_ir))
            else:
                graph = self.graph.clone()
                graph.reshape({"image": list(shape)})
                if shape[0] == 1 and self.static_ir is not None:
                    self._save_static_ir(graph)
                compiled = self._compile(graph)
            request = compiled.create_infer_request()
            self.requests[shape] = request
        return request

    def _compile(self, model):
        """compile_model with the blob cache; a new blob reaches ``cache_dir`` only complete."""
        if self.cache_dir is None:
            return self.core.compile_model(model, "CPU", self.config)
        with scratch_folder(self.cache_dir, "compile") as scratch:
            for blob in self.cache_dir.glob("*.blob"):
                with contextlib.suppress(OSError):  # a blob that cannot be linked is compiled again
                    os.link(blob, scratch / blob.name)
            self.core.set_property({"CACHE_DIR": str(scratch)})
            compiled = self.core.compile_model(model, "CPU", self.config)
            for blob in scratch.glob("*.blob"):
                target = self.cache_dir / blob.name
                if target.exists() and os.path.samefile(blob, target):
                    continue  # read from the cache, not written
                with contextlib.suppress(OSError):  # not cached: the next start compiles again
                    _fsync_path(blob)
                    os.replace(blob, target)
        return compiled

    def _save_static_ir(self, graph) -> None:
        """Write the batch-1 graph as IR in a scratch folder, then move .bin and .xml into place
        (synced, .bin first), so an existing .xml always has its complete .bin. A failed write only
        costs the next start-up."""
        try:
            self.static_ir.parent.mkdir(parents=True, exist_ok=True)
            with scratch_folder(self.static_ir.parent, self.static_ir.stem) as scratch:
                tmp = scratch / self.static_ir.name
                self._ov.save_model(graph, str(tmp), compress_to_fp16=False)
                for suffix in (".bin", ".xml"):
                    _fsync_path(tmp.with_suffix(suffix))
                    os.replace(tmp.with_suffix(suffix), self.static_ir.with_suffix(suffix))
        except (OSError, RuntimeError):
            pass

    def prepare(self, shape: tuple[int, ...]) -> None:
        """Compile for this input shape now (start-up) rather than on the first frame."""
        self._request(tuple(shape))

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._request(batch.shape).infer({"image": batch}, share_inputs=True, share_outputs=True)
        return out["seg_logits"], out["exist_prob"]
