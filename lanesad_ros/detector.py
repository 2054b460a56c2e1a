"""BGR image -> lanes: the one inference path shared by the node, evaluation, demo and training.

A weights file (safetensors + JSON metadata) configures everything: the network, its input
size, crop and normalisation, and the lane count. Backends (:mod:`lanesad_ros.backends`):
PyTorch eager (CPU fp32, CUDA fp16), ONNX Runtime (CPU, CUDA, TensorRT providers when
present) and OpenVINO (CPU fp32, and INT8 where a quantised model passed its accuracy guard,
when the ``openvino`` package is installed). ``backend="auto"`` runs the choice remembered for
this machine, weights and input size, or measures the candidates once and remembers
(:mod:`lanesad_ros.backends.selection`); ``backend_reason`` says which and why.

Start-up cost: a CPU start-up whose backend and exported graph are already in the cache
(:mod:`lanesad_ros.backends.cache`) neither imports torch nor rebuilds the network; each step
of :meth:`Detector.from_weights` is timed in ``startup_phases_ms`` (the node logs them).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import time
from pathlib import Path

import numpy as np

from lanesad_ros.backends import cache
from lanesad_ros.backends.cache import BackendUnavailable, ChoiceStore
from lanesad_ros.backends.onnxruntime_backend import OrtBackend, ort_has_cuda
from lanesad_ros.backends.openvino_backend import OpenVinoBackend
from lanesad_ros.backends.selection import Candidate, measure_and_remember, remembered, unsettled_reason
from lanesad_ros.backends.torch_backend import TorchBackend
from lanesad_ros.ground_check import check_on_ground
from lanesad_ros.lanes import Lane, LaneDetections
from lanesad_ros.postprocess import LaneDecoder, PostprocessConfig
from lanesad_ros.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessor
from lanesad_ros.weights import default_weights_path

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "openvino-int8")
ONNX_OPSET = cache.ONNX_OPSET


class DetectorError(ValueError):
    """Bad input image, unusable weights or an unavailable device/backend; the message says which."""


def cache_dir() -> Path:
    """Where exported graphs, compiled models and backend choices are kept; see :mod:`lanesad_ros.backends.cache`."""
    return cache.cache_dir()


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


def _torch():
    """The torch module, imported on first need: a start-up that runs a cached ONNX Runtime or
    OpenVINO backend never needs it (importing it costs 1-2.5 s on 2 cores)."""
    import torch

    return torch


def _load_weights(path: Path, num_lanes: int | None):
    """(model, metadata) from a weights file; imported here because it imports torch (see _torch)."""
    from lanesad_ros.model.weights import WeightsError, load_weights

    try:
        return load_weights(path, map_location="cpu", num_lanes=num_lanes)
    except WeightsError as exc:
        raise DetectorError(str(exc)) from exc


def _export_graphs(model, plain: Path, rewritten: Path | None) -> None:
    """Write the ONNX graphs; imported here because the exporter imports torch and onnx (see _torch)."""
    from lanesad_ros.model.export import export_graphs

    try:
        export_graphs(model, plain, rewritten, opset=ONNX_OPSET)
    except ValueError as exc:
        raise DetectorError(f"{exc}; build the onnxruntime backend before casting") from None


class Detector:
    """Lane detector: ``detect(bgr) -> LaneDetections``.

    Attributes: ``metadata`` (weights metadata), ``preprocessor``, ``config``
    (PostprocessConfig), ``backend_name``, ``backend_reason`` (why this backend: remembered or
    measured, with the timings), ``backend_timings_ms`` (what the choice was based on),
    ``cache_note`` (why exported graphs and choices are not kept between starts: an unwritable
    cache folder; "" when they are),
    ``startup_phases_ms`` (time of each start-up step), ``device``, ``camera`` (a
    GroundProjector, or None; when set, lanes get ground points and, unless the ``ground_check``
    postprocess option is off, lanes implausible on the road are dropped: :mod:`lanesad_ros.ground_check`),
    ``tracker`` (a LaneTracker, or None). Build with :meth:`from_weights` or :meth:`from_model`.

    ``threads``: CPU threads for inference (ONNX Runtime session, OpenVINO; for PyTorch this sets the
    process-wide ``torch.set_num_threads``). On a CPU shared with other busy processes, fewer
    threads than cores can be much faster, because a thread pool waits for its slowest thread.
    ``remeasure``: with ``backend="auto"``, measure the candidates again instead of running the
    remembered choice (also ``LANESAD_REMEASURE_BACKEND=1``).
    ``background``: with ``backend="auto"`` and no remembered choice, answer at once on the torch
    backend while a thread (``backend_choice_thread``, started by :meth:`start_backend_choice`:
    the caller decides when, e.g. once its own start-up can no longer be abandoned) exports,
    compiles and measures the candidates, then switches to the chosen one and calls
    ``on_backend_chosen(detector)``.
    ``startup_phases_ms``: phases already spent before construction (loading), listed first.
    """

    def __init__(self, model, metadata: dict, *, device: str = "auto", backend: str = "auto",
                 weights_path: Path | None = None, own_model: bool = True, threads: int | None = None,
                 remeasure: bool = False, background: bool = False, on_backend_chosen=None,
                 startup_phases_ms: dict[str, float] | None = None, postprocess: PostprocessConfig | None = None,
                 **postprocess_overrides):
        if not isinstance(device, str) or not (device in DEVICES or re.fullmatch(r"cuda:\d+", device)):
            raise DetectorError(f"device must be one of {DEVICES} or 'cuda:N', got {device!r}")
        if backend not in BACKENDS:
            raise DetectorError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise DetectorError(f"threads must be a positive int or None, got {threads!r}")
        if model is None and weights_path is None:
            raise DetectorError("a Detector needs a model or a weights file")
        self.startup_phases_ms: dict[str, float] = dict(startup_phases_ms or {})
        self.threads = threads
        self.metadata = dict(metadata)
        self.weights_path = weights_path
        self.model_name = str(self.metadata.get("model", getattr(model, "name", "")))
        self.weights_name = weights_path.name if weights_path is not None else "<in-memory>"
        self.num_lanes = int(self.metadata["num_lanes"])
        try:
            self.preprocessor = Preprocessor.from_metadata(self.metadata)
        except (KeyError, TypeError, ValueError) as exc:
            raise DetectorError(f"bad preprocessing fields in the metadata of {self.weights_name}: {exc}") from None
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
        self._band_cache: dict = {}
        self.camera = None
        self.tracker = None
        self._model = model
        self._own_model = own_model
        self._source: str | None = None
        h, w = self.preprocessor.input_size
        self._input = np.zeros((1, 3, h, w), dtype=np.float32)
        self.device = self._resolve_device(device, backend)
        start = time.perf_counter()
        # Why the backend cache is not the persistent one ("" when it is); left-overs of killed
        # start-ups are cleared before anything is read from it.
        self.cache_note = ""
        if backend != "torch":
            cache.sweep()
            self.cache_note = cache.cache_note()
        self.on_backend_chosen = on_backend_chosen
        self._backend = self._build_backend(backend, remeasure, background)
        self.backend_name = self._backend.name
        self.startup_phases_ms["backend"] = (time.perf_counter() - start) * 1e3

    # ----- construction -----------------------------------------------------------------
    @classmethod
    def from_weights(cls, path: str | os.PathLike | None = None, device: str = "auto", backend: str = "auto",
                     num_lanes: int | None = None, threads: int | None = None, remeasure: bool = False,
                     background: bool = False, on_backend_chosen=None, **postprocess_overrides) -> Detector:
        """Load a weights file (default: the shipped weights). ``num_lanes``: the count the
        caller needs; other weights raise DetectorError naming the file.

        When the backend to run is a CPU ONNX Runtime/OpenVINO one whose graph is already in the
        cache for these exact files (so they were loaded and validated before), the network is
        not rebuilt and torch is not imported; anything else loads the weights in full.
        """
        phases: dict[str, float] = {}
        start = time.perf_counter()
        path = Path(path) if path is not None else default_weights_path()
        model, metadata = None, cls._cached_metadata(path, num_lanes, device, backend, remeasure)
        phases["weights_hash"] = (time.perf_counter() - start) * 1e3
        if metadata is None:
            start = time.perf_counter()
            model, metadata = _load_weights(path, num_lanes)
            phases["load_weights"] = (time.perf_counter() - start) * 1e3
        return cls(model, metadata, device=device, backend=backend, weights_path=path, own_model=True,
                   threads=threads, remeasure=remeasure, background=background, on_backend_chosen=on_backend_chosen,
                   startup_phases_ms=phases, **postprocess_overrides)

    @staticmethod
    def _cached_metadata(path: Path, num_lanes: int | None, device: str, backend: str, remeasure: bool) -> dict | None:
        """The weights' metadata without loading the network, when a cached CPU graph for exactly
        these files exists (written after a full, validated load); None otherwise."""
        cpu = device == "cpu" or (device == "auto" and cache.cuda_impossible())
        if not cpu or backend not in ("auto", "onnxruntime", "openvino", "openvino-int8") or remeasure:
            return None
        json_path = path.with_suffix(".json")
        try:
            source = cache.file_hash(path, json_path)
            metadata = json.loads(json_path.read_text(encoding="utf-8"))
            base = cache.artefact_stem(path.stem, source, tuple(metadata["input_size"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # the full load reports what is wrong
        if not cache.onnx_path(base, rewritten=True).is_file() or not cache.onnx_path(base, rewritten=False).is_file():
            return None
        if num_lanes is not None and metadata.get("num_lanes") != num_lanes:
            raise DetectorError(f"weights file {path} is for {metadata.get('num_lanes')} lanes, {num_lanes} are needed")
        return metadata

    @classmethod
    def from_model(cls, model, metadata: dict | None = None, device: str = "auto",
                   backend: str = "torch", **postprocess_overrides) -> Detector:
        """Wrap an in-memory model (training validation). The model is not modified: it stays on
        its device, in its dtype and training mode (eval is switched on only during a forward)."""
        meta = {"model": model.name, "num_lanes": int(model.num_lanes), "input_size": list(model.input_size),
                "crop_top": 0.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        meta.update(metadata or {})
        if int(meta["num_lanes"]) != int(model.num_lanes) or list(meta["input_size"]) != list(model.input_size):
            raise DetectorError(f"metadata (num_lanes={meta['num_lanes']}, input_size={meta['input_size']}) does not "
                                f"match the model ({model.num_lanes}, {list(model.input_size)})")
        return cls(model, meta, device=device, backend=backend, own_model=False, **postprocess_overrides)

    @property
    def model(self):
        """The torch network (loaded from the weights file on first use when start-up skipped it)."""
        if self._model is None:
            start = time.perf_counter()
            self._model, _ = _load_weights(self.weights_path, self.num_lanes)
            self.startup_phases_ms["load_weights"] = (time.perf_counter() - start) * 1e3
        return self._model

    def _resolve_device(self, device: str, backend: str) -> str:
        own_model = self._own_model
        if device == "auto":
            if backend.startswith("openvino"):
                return "cpu"
            if not own_model:
                return str(next(self._model.parameters()).device)
            if cache.cuda_impossible():
                return "cpu"
            return "cuda" if _torch().cuda.is_available() or self._ort_has_cuda(backend) else "cpu"
        if device.startswith("cuda") and (cache.cuda_impossible() or not (
                _torch().cuda.is_available() or self._ort_has_cuda(backend))):
            raise DetectorError(
                f"device 'cuda' requested but CUDA is not available (torch {cache.package_version('torch')}: "
                f"torch.cuda.is_available() is False; no onnxruntime CUDA provider); use device 'cpu' or 'auto'")
        if not own_model:
            torch = _torch()
            wanted, model_device = torch.device(device), next(self._model.parameters()).device
            if wanted.type != model_device.type or (wanted.index is not None and wanted.index != model_device.index):
                raise DetectorError(f"the in-memory model is on {model_device}, but device {device!r} was requested; "
                                    f"move the model or pass device='auto'")
        return device

    @staticmethod
    def _ort_has_cuda(backend: str) -> bool:
        return backend == "onnxruntime" and ort_has_cuda()

    # ----- backends ---------------------------------------------------------------------
    def source_hash(self) -> str:
        """sha256 of the weights and metadata files (of the state_dict for an in-memory model)."""
        if self._source is None:
            if self.weights_path is not None:
                self._source = cache.file_hash(self.weights_path, self.weights_path.with_suffix(".json"))
            else:
                self._source = cache.state_hash(self._model)
        return self._source

    def artefact_base(self) -> str:
        """Name stem of this model's cached artefacts (weights stem, source hash, input size)."""
        stem = self.weights_path.stem if self.weights_path is not None else self.model_name
        return cache.artefact_stem(stem, self.source_hash(), self.preprocessor.input_size)

    def onnx_path(self, pooling_indices: bool = True) -> Path:
        """Exported ONNX graph of this model, from the cache when these weights were exported before.
        ``pooling_indices=False``: the graph rewritten by ``pool_indices_as_arithmetic``."""
        base = self.artefact_base()
        plain, rewritten = cache.onnx_path(base, rewritten=False), cache.onnx_path(base, rewritten=True)
        wanted = plain if pooling_indices else rewritten
        if not wanted.is_file():
            start = time.perf_counter()
            _export_graphs(self.model, plain, None if pooling_indices else rewritten)
            self.startup_phases_ms["onnx_export"] = (time.perf_counter() - start) * 1e3
        return wanted

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(1, 3, H, W): the network input of one frame."""
        return tuple(self._input.shape)

    def use_backend(self, backend, reason: str) -> None:
        """Run ``detect`` on ``backend`` from now on (one attribute assignment: a detect() in flight
        finishes on the backend it started with). Used by the background choice and the INT8 guard."""
        self._backend = backend
        self.backend_name = backend.name
        self.backend_reason = reason

    def _make_torch(self):
        if self.threads is not None:
            _torch().set_num_threads(self.threads)
        return TorchBackend(self.model, self.device, self._own_model)

    def _make_ort(self):
        # On the CPU, ONNX Runtime too is faster without indices-returning pools (same outputs).
        return OrtBackend(self.onnx_path(pooling_indices=self.device != "cpu"), self.device, self.threads)

    def _make_openvino(self):
        graph = self.onnx_path(pooling_indices=False)
        backend = OpenVinoBackend(graph, self.threads, cache_dir=cache.cache_dir() / "openvino",
                                  static_ir=graph.with_name(graph.stem + "-b1.xml"))
        backend.prepare(self._input.shape)
        return backend

    def _make_openvino_int8(self):
        folder = cache.int8_dir(self.artefact_base())
        guard = cache.read_guard(folder)
        if guard is None or not guard.get("passed"):
            why = ("no INT8 model for these weights" if guard is None
                   else f"its accuracy guard failed: {guard.get('verdict')}")
            raise BackendUnavailable(f"backend 'openvino-int8' unavailable: {why} ({folder}; "
                                     f"make one with python -m lanesad_ros.training.quantize)")
        backend = OpenVinoBackend(folder / "model.xml", self.threads, cache_dir=cache.cache_dir() / "openvino",
                                  name="openvino-int8", static_ir=folder / "model-b1.xml")
        backend.prepare(self._input.shape)
        return backend

    def _candidates(self, backend: str) -> list[Candidate]:
        """Backends to try, in order of preference (a later one must be clearly faster to be chosen)."""
        cpu = self.device == "cpu"
        makers = []
        if backend in ("openvino", "openvino-int8") and not cpu:
            raise DetectorError(f"backend {backend!r} runs on the CPU only here, not on device {self.device!r}")
        openvino_ok = cpu and importlib.util.find_spec("openvino") is not None
        if backend == "openvino" or (backend == "auto" and openvino_ok):
            makers.append(Candidate("openvino", self._make_openvino))
        if backend in ("auto", "torch") and (cpu or _torch().cuda.is_available()):
            makers.append(Candidate("torch", self._make_torch))
        if backend in ("auto", "onnxruntime"):
            makers.append(Candidate("onnxruntime", self._make_ort))
        if backend == "openvino-int8" or (backend == "auto" and openvino_ok and self.weights_path is not None
                                          and (cache.read_guard(cache.int8_dir(self.artefact_base())) or {}).get(
                                              "passed") is True):
            makers.append(Candidate("openvino-int8", self._make_openvino_int8))
        if not makers:
            raise DetectorError(f"backend {backend!r} cannot run on device {self.device!r} here")
        return makers

    def _choice_fields(self, candidates: list[Candidate]) -> dict:
        return {"machine": cache.machine_id(), "source": self.source_hash(),
                "input_size": list(self.preprocessor.input_size), "device": self.device, "threads": self.threads,
                "candidates": [c.kind for c in candidates], "export": cache.EXPORT_VERSION,
                "versions": {name: cache.package_version(name) for name in cache.VERSIONED_PACKAGES}}

    def _build_backend(self, backend: str, remeasure: bool, background: bool):
        candidates = self._candidates(backend)
        self.backend_timings_ms: dict[str, float] = {}
        self.backend_choice_thread: threading.Thread | None = None
        try:
            if backend != "auto":
                built = candidates[0].make()
                self.backend_reason = f"requested (backend={backend})"
                return built
            store = ChoiceStore() if self._own_model and self.weights_path is not None else None
            fields = self._choice_fields(candidates)
            choice, why = remembered(candidates, fields, store, remeasure)
            if choice is not None and choice.settled:
                self.backend_timings_ms = choice.timings_ms
                self.backend_reason = choice.reason
                return choice.backend
            previous = None
            if choice is not None:  # measured under load: it answers, and is measured again
                why, previous = unsettled_reason(choice.record), choice.record
            answering = choice.backend if choice is not None else None
            torch_first = next((c for c in candidates if c.kind == "torch"), None)
            if background and len(candidates) > 1 and (answering is not None or torch_first is not None):
                built = answering if answering is not None else torch_first.make()
                self.backend_reason = f"{built.name} answers while the candidates are measured ({why})"
                self.backend_choice_thread = threading.Thread(
                    target=self._measure_in_background, args=(candidates, fields, store, why, previous, remeasure),
                    name="lanesad_backend_choice", daemon=True)
                return built  # start_backend_choice() starts the thread once ``built`` is installed
            choice = measure_and_remember(candidates, self._probe(), fields, store, why, previous, remeasure)
        except (BackendUnavailable, ValueError) as exc:
            raise DetectorError(str(exc)) from None
        self.backend_timings_ms = choice.timings_ms
        self.backend_reason = choice.reason
        return choice.backend

    def start_backend_choice(self) -> None:
        """Start the background measurement of a ``background=True`` detector (no-op without one,
        or when it was started already). A process that may still exit during its start-up starts
        it afterwards: a daemon thread inside an ONNX export or an OpenVINO compile when the
        interpreter exits can take the process down with it."""
        thread = self.backend_choice_thread
        if thread is not None and thread.ident is None:
            thread.start()

    def _probe(self) -> np.ndarray:
        return np.random.default_rng(0).standard_normal(self._input.shape).astype(np.float32)

    def _measure_in_background(self, candidates: list[Candidate], fields: dict, store, why: str,
                               previous: dict | None, remeasure: bool) -> None:
        """Thread body: measure, remember, then switch ``detect`` to the chosen backend. The switch
        is one attribute assignment: a detect() in flight finishes on the backend it started with."""
        start = time.perf_counter()
        try:
            choice = measure_and_remember(candidates, self._probe(), fields, store, why, previous, remeasure)
        except Exception as exc:  # the answering backend goes on; say why nothing changed
            self.backend_reason += f"; measurement failed ({type(exc).__name__}: {exc}), staying on {self.backend_name}"
        else:
            self.backend_timings_ms = choice.timings_ms
            self.use_backend(choice.backend, choice.reason + " (measured in the background)")
        self.startup_phases_ms["background_choice"] = (time.perf_counter() - start) * 1e3
        if self.on_backend_chosen is not None:
            self.on_backend_chosen(self)

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
    def detect(self, bgr: np.ndarray, stamp_s: float | None = None) -> LaneDetections:
        """Lanes in one BGR uint8 image; timings_ms has preprocess / inference / postprocess.

        ``stamp_s``: the image's time (header stamp, seconds); the tracker ages its tracks by it
        (:mod:`lanesad_ros.tracking`). None: tracks age by frame count only.
        """
        return self.detect_batch([bgr], None if stamp_s is None else [stamp_s])[0]

    def network_outputs(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's outputs for one BGR image: (logits (L+1, H, W), existence probabilities (L,)),
        numpy. :meth:`decode` turns them into lanes with the current postprocess settings, so
        settings can be compared without running the network again (``lanesad-train tune``)."""
        check_image(bgr)
        batch = np.empty_like(self._input)
        self.preprocessor.normalise(self.preprocessor.resize(np.ascontiguousarray(bgr)), out=batch[0])
        seg, exist = self._backend(batch)
        if not isinstance(seg, np.ndarray):  # a torch tensor
            seg, exist = seg.float().cpu().numpy(), exist.float().cpu().numpy()
        return seg[0], exist[0]

    def decode(self, outputs: tuple[np.ndarray, np.ndarray], source_size: tuple[int, int]) -> list[Lane]:
        """Lanes (source pixels of a ``source_size`` (W, H) image) from :meth:`network_outputs` with the
        current postprocess settings; no tracking, no ground points."""
        seg, exist = outputs
        return self._decoder.decode(self._row_probs(seg, source_size), exist, source_size, gathered=True)

    def detect_batch(self, images: list[np.ndarray], stamps_s: list[float] | None = None) -> list[LaneDetections]:
        """Lanes in several images with one network call (images may differ in size); ``stamps_s``:
        one time per image, as in :meth:`detect`."""
        if len(images) == 0:
            return []
        if stamps_s is not None and len(stamps_s) != len(images):
            raise DetectorError(f"{len(stamps_s)} stamps for {len(images)} images")
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
        if not isinstance(seg, np.ndarray):  # a torch tensor
            if seg.device.type == "cuda":
                # So "inference" holds the network's time, not the copy's. This thread's stream only: a
                # device-wide sync could spoil a CUDA-graph capture of another thread's backend.
                _torch().cuda.current_stream(seg.device).synchronize()
            else:
                seg = seg.numpy()
            exist = exist.float().cpu().numpy()
        t2 = time.perf_counter()
        share = (t1 - t0) * 1e3 / len(images), (t2 - t1) * 1e3 / len(images)
        results = []
        for i, size in enumerate(sizes):
            t3 = time.perf_counter()
            row_probs = self._row_probs(seg[i], size)
            lanes = self._decoder.decode(row_probs, exist[i], size, gathered=True)
            ground = None  # per lane its road points (keep_all rows), when already projected
            if self.camera is not None and self.config.ground_check:
                # lanes implausible on the road plane go, as the decoder's geometry rules drop lanes
                verdict = check_on_ground(lanes, self.camera)
                lanes = [lane for lane, ok in zip(lanes, verdict.keep, strict=True) if ok]
                ground = [g for g, ok in zip(verdict.ground, verdict.keep, strict=True) if ok]
            if self.tracker is not None:
                lanes = self.tracker.update(lanes, image_size=size, stamp_s=None if stamps_s is None else stamps_s[i])
                ground = None  # tracked lanes have other image points
            if self.camera is not None:
                for k, lane in enumerate(lanes):
                    lane.ground_points = (self.camera.image_to_ground(lane.image_points) if ground is None
                                          else ground[k][np.isfinite(ground[k][:, 0])])
            post = (time.perf_counter() - t3) * 1e3
            timings = {"preprocess": share[0], "inference": share[1], "postprocess": post}
            results.append(LaneDetections(lanes=lanes, image_width=size[0], image_height=size[1],
                                          model_name=self.model_name, weights_name=self.weights_name,
                                          latency_ms=sum(timings.values()), timings_ms=timings,
                                          exist_prob=self._decoder.existence(exist[i])))
        return results

    def _row_probs(self, seg, source_size: tuple[int, int]) -> np.ndarray:
        """Softmax over classes of only the map rows the decoder reads -> (L+1, rows, w) float32.

        ``seg``: one image's (L+1, H, W) logits, numpy (CPU) or a CUDA tensor. On the GPU the rows
        are picked before the copy to host memory. On the CPU numpy does it: a torch thread pool
        on a busy shared CPU made this 0.2 ms step take over 10 ms.
        """
        if isinstance(seg, np.ndarray):
            rows = seg[:, self._decoder.band_index(source_size)].astype(np.float32, copy=False)
            rows -= rows.max(axis=0, keepdims=True)
            np.exp(rows, out=rows)
            rows /= rows.sum(axis=0, keepdims=True)
            return rows
        torch = _torch()
        index = self._band_cache.get(source_size)
        if index is None or index.device != seg.device:
            index = torch.from_numpy(self._decoder.band_index(source_size)).to(seg.device)
            self._band_cache[source_size] = index
        return torch.softmax(seg.index_select(1, index).float(), dim=0).cpu().numpy()
