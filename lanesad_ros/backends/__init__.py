"""Inference backends behind the one :class:`lanesad_ros.detector.Detector` path.

- :mod:`.torch_backend`: PyTorch eager (CPU fp32, CUDA fp16);
- :mod:`.onnxruntime_backend`: ONNX Runtime (CPU, CUDA, TensorRT providers);
- :mod:`.openvino_backend`: OpenVINO on the CPU (fp32, or INT8 that passed its accuracy guard);
- :mod:`.cache`: exported graphs, compiled models and remembered choices on disk;
- :mod:`.selection`: ``backend="auto"``: the remembered choice, or a measurement and its reason.

The INT8 models ``openvino-int8`` runs are made by a command above the Detector,
:mod:`lanesad_ros.training.quantize`; the backends only read them from the cache.

Each backend is a callable: (N, 3, H, W) float32 numpy -> (seg_logits, exist_prob), with a
``name``. Importing this package loads neither torch nor a runtime: each backend imports its
own when it is built, so a start-up pays only for the backend it runs.
"""
