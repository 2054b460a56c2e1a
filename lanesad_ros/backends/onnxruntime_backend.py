"""ONNX Runtime backend on an exported graph: CPU, CUDA and TensorRT providers when present."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lanesad_ros.backends.cache import BackendUnavailable


class OrtBackend:
    """ONNX Runtime on an exported graph (cached on disk, see :mod:`lanesad_ros.backends.cache`).

    On the CPU the worker threads sleep instead of spinning between operators: on a CPU shared
    with other busy processes spinning threads slowed a 2-thread session about 1.7x.
    ``__call__``: (N, 3, H, W) float32 -> (seg_logits, exist_prob) numpy arrays.
    """

    def __init__(self, onnx_path: Path, device: str, threads: int | None = None):
        # Imported here: a start-up that runs another backend need not load onnxruntime.
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device.startswith("cuda"):
            wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
            if not wanted:
                raise BackendUnavailable(f"onnxruntime has no CUDA provider here (available: {', '.join(available)})")
        else:
            wanted = []
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if not wanted:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), sess_options=options,
                                            providers=wanted + ["CPUExecutionProvider"])
        first = self.session.get_providers()[0]
        kind = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda"}.get(first, "cpu")
        self.name = f"onnxruntime-{kind}"

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seg, exist = self.session.run(["seg_logits", "exist_prob"], {"image": batch})
        return seg, exist


def ort_has_cuda() -> bool:
    """Whether the installed onnxruntime offers the CUDA provider."""
    # Imported here: only asked when onnxruntime is requested on a machine that may have CUDA.
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()
