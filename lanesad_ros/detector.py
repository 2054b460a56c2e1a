"""BGR image -> lanes: the one inference path shared by the node, evaluation, demo and training.

A weights file (safetensors + JSON metadata) configures everything: the network, its input
size, crop and normalisation, and the lane count. Backends: PyTorch eager (CPU fp32, CUDA
fp16), ONNX Runtime (CPU, CUDA, TensorRT providers when present) and OpenVINO (CPU fp32, when
the ``openvino`` package is installed); ``backend="auto"`` times each available candidate at
load and keeps the fastest.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from lanesad_ros.fileio import atomic_path
from lanesad_ros.lanes import LaneDetections
from lanesad_ros.postprocess import LaneDecoder, PostprocessConfig
from lanesad_ros.preprocess import IMAGENET_MEAN, IMAGENET_STD

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
ONNX_OPSET = 17


class DetectorError(ValueError):
    """Bad input image, unusable weights or an unavailable device/backend; the message says which."""


def cache_dir() -> Path:
    """Where exported ONNX graphs are kept: $LANESAD_CACHE_DIR, else $XDG_CACHE_HOME/lanesad_ros."""
    if os.environ.get("LANESAD_CACHE_DIR"):
        return Path(os.environ["LANESAD_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lanesad_ros"


def check_image(bgr) -> np.ndarray:
    """Validate a BGR uint8 HxWx3 image; raise DetectorError naming what is wrong."""
    if not isinstance(bgr, np.ndarray):
        raise DetectorError(f"image must be a numpy array, got {type(bgr).__name__}")
    if bgr.dtype != np.uint8:
        raise DetectorError(f"image dtype must be uint8 (8-bit BGR), got {bgr.dtype}")
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise DetectorError(f"image must be HxWx3 BGR, got shape {bgr.shape}")
    if bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise DetectorError(f"image is empty (shape {bgr.shape})")
    return bgr


class _TorchBackend:
    """PyTorch eager. On CUDA the network runs in fp16 (weights cast when we own the model,
    autocast when the model is shared with a training loop) and channels_last."""

    def __init__(self, model: torch.nn.Module, device: str, own_model: bool, fp16: bool | None = None):
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

    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) float32 -> (seg_logits, exist_prob) tensors on the backend's device."""
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


class _OrtBackend:
    """ONNX Runtime on an exported graph (cached on disk by weights hash and input size).

    On the CPU the worker threads sleep instead of spinning between operators: on a CPU shared
    with other busy processes spinning threads slowed a 2-thread session about 1.7x.
    """

    def __init__(self, onnx_path: Path, device: str, threads: int | None = None):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device.startswith("cuda"):
            wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
            if not wanted:
                raise DetectorError(f"onnxruntime has no CUDA provider here (available: {', '.join(available)})")
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

    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        seg, exist = self.session.run(["seg_logits", "exist_prob"], {"image": batch})
        return torch.from_numpy(seg), torch.from_numpy(exist)


class _OpenVinoBackend:
    """OpenVINO on the CPU, fp32, reading the exported ONNX graph with its pooling indices
    rewritten (see :func:`pool_indices_as_arithmetic`). One compiled model per batch size.

    fp32 is asked for explicitly: on CPUs with bf16 support OpenVINO would otherwise run in
    bf16, about 1.6x faster on an AVX512-BF16 EPYC but not faithful enough to switch on silently:
    with trained weights 3% of lane points moved by more than 10 px (20 synthetic frames).
    """

    def __init__(self, onnx_path: Path, threads: int | None = None):
        try:
            import openvino as ov
        except ImportError:
            raise DetectorError("backend 'openvino' needs the openvino package (pip install openvino)") from None
        self.core = ov.Core()
        self.graph = self.core.read_model(str(onnx_path))
        self.config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = threads
        self.requests = {}
        self.name = "openvino-cpu"

    def _request(self, shape: tuple[int, ...]):
        request = self.requests.get(shape)
        if request is None:
            graph = self.graph.clone()
            graph.reshape({"image": list(shape)})  # static shapes: faster kernels than a dynamic batch
            request = self.core.compile_model(graph, "CPU", self.config).create_infer_request()
            self.requests[shape] = request
        return request

    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs are views of the request's buffers: valid until the next call (the Detector
        decodes them before that)."""
        out = self._request(batch.shape).infer({"image": batch}, share_inputs=True, share_outputs=True)
        seg, exist = out["seg_logits"], out["exist_prob"]
        return torch.from_numpy(seg), torch.from_numpy(exist)


def pool_indices_as_arithmetic(model):
    """Rewrite an ONNX graph so that no MaxPool returns Indices; returns a new ModelProto.

    The PyTorch exporter writes ``max_pool2d(..., return_indices=True)`` (ENet's encoder, whose
    indices the decoder unpools with) as a 2x2/stride-2 MaxPool with Indices, minus a 1x1 MaxPool's
    Indices for each plane's offset. OpenVINO runs an indices-returning MaxPool with a reference
    kernel that took ~80% of ENet-SAD's CPU time at 288x800. The indices are cheap to compute
    instead: the window's top-left flat index plus the offset of the first maximum in row-major
    order (the element PyTorch and ONNX pick on ties). Other MaxPools are left as they are.
    """
    import onnx
    from onnx import helper, numpy_helper

    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    nodes, consts = [], {}

    def const(values) -> str:
        array = np.asarray(values, dtype=np.int64)
        key = f"lanesad_const_{'s' if array.ndim == 0 else ''}{'_'.join(str(int(v)) for v in array.ravel())}"
        consts.setdefault(key, numpy_helper.from_array(array, key))
        return key

    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        window = (list(attrs.get("kernel_shape", [])), list(attrs.get("strides", [1, 1])))
        if (node.op_type != "MaxPool" or len(node.output) < 2 or not node.output[1]
                or window not in (([2, 2], [2, 2]), ([1, 1], [1, 1])) or any(attrs.get("pads", []))
                or any(d != 1 for d in attrs.get("dilations", [])) or attrs.get("storage_order", 0)
                or attrs.get("ceil_mode", 0)):
            nodes.append(node)
            continue
        x, (y, indices) = node.input[0], node.output[:2]
        prefix = f"{node.name or y}/indices"
        k = window[0][0]

        def op(op_type, inputs, name, **kwargs):
            nodes.append(helper.make_node(op_type, inputs, [f"{prefix}/{name}"], name=f"{prefix}/{name}", **kwargs))
            return f"{prefix}/{name}"

        shape = op("Shape", [x], "shape")
        nc_shape = op("Slice", [shape, const([0]), const([2])], "nc_shape")
        h = op("Slice", [shape, const([2]), const([3])], "h")
        w = op("Slice", [shape, const([3]), const([4])], "w")
        h_out, w_out = op("Div", [h, const([k])], "h_out"), op("Div", [w, const([k])], "w_out")
        # Flat index of each window's top-left element: ((n*C + c)*H + k*i)*W + k*j.
        planes = op("Range", [const(0), op("ReduceProd", [nc_shape], "nc", keepdims=0), const(1)], "planes")
        planes = op("Mul", [planes, op("Mul", [h, w], "hw")], "plane_starts")
        planes = op("Reshape", [planes, op("Concat", [nc_shape, const([1, 1])], "nc11", axis=0)], "plane_starts_4d")
        rows = op("Range", [const(0), op("Squeeze", [h_out], "h_out_scalar"), const(1)], "rows")
        rows = op("Mul", [rows, op("Mul", [w, const([k])], "row_step")], "row_starts")
        rows = op("Unsqueeze", [rows, const([1])], "row_starts_2d")
        cols = op("Range", [const(0), op("Squeeze", [w_out], "w_out_scalar"), const(1)], "cols")
        cols = op("Mul", [cols, const([k])], "col_starts")
        base = op("Add", [op("Add", [planes, rows], "plane_row_starts"), cols], "window_starts")
        if k == 1:
            nodes.append(helper.make_node("Identity", [base], [indices], name=f"{prefix}/out"))
            nodes.append(helper.make_node("Identity", [x], [y], name=node.name))
            continue
        nodes.append(helper.make_node("MaxPool", [x], [y], name=node.name, kernel_shape=[2, 2], strides=[2, 2]))
        ends = op("Concat", [op("Mul", [h_out, const([2])], "h_even"), op("Mul", [w_out, const([2])], "w_even")],
                  "even_ends", axis=0)
        hits = [op("Equal", [op("Slice", [x, const(start), ends, const([2, 3]), const([2, 2])], f"window_{name}"), y],
                   f"is_max_{name}")
                for name, start in (("top_left", [0, 0]), ("top_right", [0, 1]), ("bottom_left", [1, 0]))]
        offset = op("Where", [hits[2], w, op("Add", [w, const([1])], "w_plus_1")], "offset_bottom")
        offset = op("Where", [hits[1], const([1]), offset], "offset_top_right")
        offset = op("Where", [hits[0], const([0]), offset], "offset")
        nodes.append(helper.make_node("Add", [base, offset], [indices], name=f"{prefix}/out"))
    del rewritten.graph.node[:]
    rewritten.graph.node.extend(nodes)
    rewritten.graph.initializer.extend(consts.values())
    return rewritten


def _state_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Detector:
    """Lane detector: ``detect(bgr) -> LaneDetections``.

    Attributes: ``metadata`` (weights metadata), ``preprocessor``, ``config``
    (PostprocessConfig), ``backend_name``, ``backend_timings_ms`` (what ``backend="auto"``
    measured), ``device``, ``camera`` (a GroundProjector, or None; when set, lanes get ground
    points), ``tracker`` (a LaneTracker, or None). Build with :meth:`from_weights` or
    :meth:`from_model`.

    ``threads``: CPU threads for inference (ONNX Runtime session, OpenVINO; for PyTorch this sets the
    process-wide ``torch.set_num_threads``). On a CPU shared with other busy processes, fewer
    threads than cores can be much faster, because a thread pool waits for its slowest thread.
    """

    def __init__(self, model: torch.nn.Module, metadata: dict, *, device: str = "auto", backend: str = "auto",
                 weights_path: Path | None = None, own_model: bool = True, threads: int | None = None,
                 postprocess: PostprocessConfig | None = None, **postprocess_overrides):
        from lanesad_ros.model.weights import metadata_preprocessor

        if not isinstance(device, str) or not (device in DEVICES or re.fullmatch(r"cuda:\d+", device)):
            raise DetectorError(f"device must be one of {DEVICES} or 'cuda:N', got {device!r}")
        if backend not in BACKENDS:
            raise DetectorError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise DetectorError(f"threads must be a positive int or None, got {threads!r}")
        if threads is not None:
            torch.set_num_threads(threads)
        self.threads = threads
        self.metadata = dict(metadata)
        self.weights_path = weights_path
        self.model_name = str(self.metadata.get("model", getattr(model, "name", "")))
        self.weights_name = weights_path.name if weights_path is not None else "<in-memory>"
        self.num_lanes = int(self.metadata["num_lanes"])
        self.preprocessor = metadata_preprocessor(self.metadata)
        try:
            # The weights' metadata may recommend postprocess settings (tuned with the weights);
            # explicit options override them.
            self.default_config = postprocess or PostprocessConfig().with_overrides(
                **self.metadata.get("postprocess", {}))
        except (TypeError, ValueError) as exc:
            raise DetectorError(f"bad postprocess settings in the metadata of {self.weights_name}: {exc}") from None
        try:
            self.config = self.default_config.with_overrides(**postprocess_overrides)
        except (TypeError, ValueError) as exc:
            raise DetectorError(f"bad postprocess options: {exc}") from None
        self._decoder = LaneDecoder(self.preprocessor, self.config, num_lanes=self.num_lanes)
        self._band_cache: dict[tuple[int, int], torch.Tensor] = {}
        self.camera = None
        self.tracker = None
        self.device = self._resolve_device(device, backend, model, own_model)
        h, w = self.preprocessor.input_size
        self._input = np.zeros((1, 3, h, w), dtype=np.float32)
        self._model = model
        self._backend = self._choose_backend(backend, own_model)
        self.backend_name = self._backend.name

    # ----- construction -----------------------------------------------------------------
    @classmethod
    def from_weights(cls, path: str | os.PathLike | None = None, device: str = "auto", backend: str = "auto",
                     num_lanes: int | None = None, threads: int | None = None,
                     **postprocess_overrides) -> "Detector":
        """Load a weights file (default: the shipped weights). ``num_lanes``: the count the
        caller needs; other weights raise DetectorError naming the file."""
        from lanesad_ros.model.weights import WeightsError, load_weights
        from lanesad_ros.weights import default_weights_path

        path = Path(path) if path is not None else default_weights_path()
        try:
            model, metadata = load_weights(path, map_location="cpu", num_lanes=num_lanes)
        except WeightsError as exc:
            raise DetectorError(str(exc)) from exc
        return cls(model, metadata, device=device, backend=backend, weights_path=path, own_model=True,
                   threads=threads, **postprocess_overrides)

    @classmethod
    def from_model(cls, model: torch.nn.Module, metadata: dict | None = None, device: str = "auto",
                   backend: str = "torch", **postprocess_overrides) -> "Detector":
        """Wrap an in-memory model (training validation). The model is not modified: it stays on
        its device, in its dtype and training mode (eval is switched on only during a forward)."""
        meta = {"model": model.name, "num_lanes": int(model.num_lanes), "input_size": list(model.input_size),
                "crop_top": 0.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        meta.update(metadata or {})
        if int(meta["num_lanes"]) != int(model.num_lanes) or list(meta["input_size"]) != list(model.input_size):
            raise DetectorError(f"metadata (num_lanes={meta['num_lanes']}, input_size={meta['input_size']}) does not "
                                f"match the model ({model.num_lanes}, {list(model.input_size)})")
        return cls(model, meta, device=device, backend=backend, own_model=False, **postprocess_overrides)

    def _resolve_device(self, device: str, backend: str, model: torch.nn.Module, own_model: bool) -> str:
        model_device = next(model.parameters()).device
        if device == "auto":
            if backend == "openvino":
                return "cpu"
            if not own_model:
                return str(model_device)
            return "cuda" if torch.cuda.is_available() or self._ort_has_cuda(backend) else "cpu"
        if device.startswith("cuda") and not (torch.cuda.is_available() or self._ort_has_cuda(backend)):
            raise DetectorError(
                f"device 'cuda' requested but CUDA is not available (torch {torch.__version__}: "
                f"torch.cuda.is_available() is False; no onnxruntime CUDA provider); use device 'cpu' or 'auto'")
        wanted = torch.device(device)
        if not own_model and (wanted.type != model_device.type
                              or (wanted.index is not None and wanted.index != model_device.index)):
            raise DetectorError(f"the in-memory model is on {model_device}, but device {device!r} was requested; "
                                f"move the model or pass device='auto'")
        return device

    @staticmethod
    def _ort_has_cuda(backend: str) -> bool:
        if backend != "onnxruntime":
            return False
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()

    def _candidates(self, backend: str, own_model: bool) -> list:
        """Backend factories to try, in order of preference when timing ties."""
        torch_ok = self.device == "cpu" or torch.cuda.is_available()
        makers = []
        if backend in ("auto", "torch") and torch_ok:
            makers.append(lambda: _TorchBackend(self._model, self.device, own_model))
        if backend in ("auto", "onnxruntime"):
            # On the CPU, ONNX Runtime too is faster without indices-returning pools (same outputs).
            makers.append(lambda: _OrtBackend(self._onnx_path(pooling_indices=self.device != "cpu"), self.device,
                                              self.threads))
        if backend == "openvino" and self.device != "cpu":
            raise DetectorError(f"backend 'openvino' runs on the CPU only here, not on device {self.device!r}")
        if backend == "openvino" or (backend == "auto" and self.device == "cpu"
                                     and importlib.util.find_spec("openvino") is not None):
            makers.append(lambda: _OpenVinoBackend(self._onnx_path(pooling_indices=False), self.threads))
        if not makers:
            raise DetectorError(f"backend {backend!r} cannot run on device {self.device!r} here")
        return makers

    def _choose_backend(self, backend: str, own_model: bool):
        makers = self._candidates(backend, own_model)
        self.backend_timings_ms: dict[str, float] = {}
        if len(makers) == 1:
            return makers[0]()
        best, best_ms, errors = None, float("inf"), []
        probe = np.random.default_rng(0).standard_normal(self._input.shape).astype(np.float32)
        for make in makers:
            try:
                candidate = make()
            except Exception as exc:  # a candidate that cannot load (export, provider) is skipped, not fatal
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            ms = self._time_backend(candidate, probe)
            self.backend_timings_ms[candidate.name] = ms
            if ms < best_ms:
                best, best_ms = candidate, ms
        if best is None:
            raise DetectorError("no inference backend could be loaded: " + "; ".join(errors))
        return best

    def _time_backend(self, candidate, probe: np.ndarray, warmup: int = 2, runs: int = 3) -> float:
        """Median wall time of a forward (including the device sync) in ms."""
        times = []
        for i in range(warmup + runs):
            start = time.perf_counter()
            seg, _ = candidate(probe)
            seg.float().sum().item()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)

    def _onnx_path(self, pooling_indices: bool = True) -> Path:
        """Exported ONNX graph of this model, reused from the cache when the weights are unchanged.
        ``pooling_indices=False``: the graph rewritten by :func:`pool_indices_as_arithmetic`."""
        from lanesad_ros.model.export import export_onnx

        h, w = self.preprocessor.input_size
        source = _file_hash(self.weights_path) if self.weights_path is not None else _state_hash(self._model)
        stem = self.weights_path.stem if self.weights_path is not None else self.model_name
        path = cache_dir() / f"{stem}-{source[:16]}-{h}x{w}-opset{ONNX_OPSET}.onnx"
        if not path.is_file():
            model = self._model
            if next(model.parameters()).dtype != torch.float32:
                raise DetectorError("ONNX export needs the fp32 model; build the onnxruntime backend before casting")
            export_onnx(model, path, opset=ONNX_OPSET)
        if pooling_indices:
            return path
        rewritten = path.with_name(path.stem + "-poolarith.onnx")
        if not rewritten.is_file():
            import onnx

            graph = pool_indices_as_arithmetic(onnx.load(str(path)))
            with atomic_path(rewritten) as tmp:
                onnx.save(graph, str(tmp))
        return rewritten

    # ----- configuration ----------------------------------------------------------------
    def set_postprocess(self, **overrides) -> None:
        """Change postprocess options (thresholds, rows, fit) on a running detector."""
        try:
            config = self.config.with_overrides(**overrides)
        except (TypeError, ValueError) as exc:
            raise DetectorError(f"bad postprocess options: {exc}") from None
        self.config = config
        self._decoder = LaneDecoder(self.preprocessor, config, num_lanes=self.num_lanes)
        self._band_cache.clear()

    # ----- inference --------------------------------------------------------------------
    def detect(self, bgr: np.ndarray) -> LaneDetections:
        """Lanes in one BGR uint8 image; timings_ms has preprocess / inference / postprocess."""
        return self.detect_batch([bgr])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[LaneDetections]:
        """Lanes in several images with one network call (images may differ in size)."""
        if len(images) == 0:
            return []
        t0 = time.perf_counter()
        for image in images:
            check_image(image)
        batch = self._input if len(images) == 1 else np.empty((len(images),) + self._input.shape[1:], np.float32)
        sizes = []
        for i, image in enumerate(images):
            if not image.flags.c_contiguous:
                image = np.ascontiguousarray(image)
            self.preprocessor.normalise(self.preprocessor.resize(image), out=batch[i])
            sizes.append((image.shape[1], image.shape[0]))
        t1 = time.perf_counter()
        seg, exist = self._backend(batch)
        if seg.device.type == "cuda":
            torch.cuda.synchronize(seg.device)  # so "inference" holds the network's time, not the copy's
        t2 = time.perf_counter()
        share = (t1 - t0) * 1e3 / len(images), (t2 - t1) * 1e3 / len(images)
        exist = exist.float().cpu().numpy()
        results = []
        for i, size in enumerate(sizes):
            t3 = time.perf_counter()
            row_probs = self._row_probs(seg[i], size)
            lanes = self._decoder.decode(row_probs, exist[i], size, gathered=True)
            if self.tracker is not None:
                lanes = self.tracker.update(lanes)
            if self.camera is not None:
                for lane in lanes:
                    lane.ground_points = self.camera.image_to_ground(lane.image_points)
            post = (time.perf_counter() - t3) * 1e3
            timings = {"preprocess": share[0], "inference": share[1], "postprocess": post}
            results.append(LaneDetections(lanes=lanes, image_width=size[0], image_height=size[1],
                                          model_name=self.model_name, weights_name=self.weights_name,
                                          latency_ms=sum(timings.values()), timings_ms=timings,
                                          exist_prob=self._decoder.existence(exist[i])))
        return results

    def _row_probs(self, seg: torch.Tensor, source_size: tuple[int, int]) -> np.ndarray:
        """Softmax over classes of only the map rows the decoder reads -> (L+1, rows, w) float32.

        On the GPU the rows are picked before the copy to host memory. On the CPU numpy does it:
        a torch thread pool on a busy shared CPU made this 0.2 ms step take over 10 ms.
        """
        if seg.device.type == "cpu":
            rows = seg.numpy()[:, self._decoder.band_index(source_size)].astype(np.float32, copy=False)
            rows -= rows.max(axis=0, keepdims=True)
            np.exp(rows, out=rows)
            rows /= rows.sum(axis=0, keepdims=True)
            return rows
        index = self._band_cache.get(source_size)
        if index is None or index.device != seg.device:
            index = torch.from_numpy(self._decoder.band_index(source_size)).to(seg.device)
            self._band_cache[source_size] = index
        return torch.softmax(seg.index_select(1, index).float(), dim=0).cpu().numpy()
