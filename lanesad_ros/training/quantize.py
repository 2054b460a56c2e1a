"""OpenVINO INT8 post-training quantisation (NNCF) of a weights file, with an accuracy guard on every camera.

    python -m lanesad_ros.training.quantize [--weights W] [--config CFG] [--calibration DIR ...]
                                            [--frames N] [--threads N]

A command above the Detector (it calibrates and guards with it), beside the other commands that
turn trained weights into artefacts (:mod:`lanesad_ros.training.export`); the backends only
read what it leaves in the cache.

1. Calibration: NNCF's default post-training quantisation (min-max ranges, fast bias
   correction) of the OpenVINO graph the ``openvino`` backend runs, on real road frames of
   several cameras (``--calibration``, repeatable: folders of JPEGs, taken in turn so that every
   folder is represented; by default :data:`DEFAULT_CALIBRATION`: a TuSimple clip, a CULane-camera
   night drive, CULane-style urban frames and the Udacity camera), preprocessed exactly as the
   Detector does. A calibration frame that is a validation frame (also a re-encoded copy: see
   :func:`same_picture`) is left out, so the guard never judges on frames the ranges were fitted to.
2. Guard, on the validation frames of every camera of a training config (``--config``, default
   config/train/enet_sad_multicam.yaml: its ``data.val``, read by
   :func:`lanesad_ros.training.tune.validation_frames`; a camera is a metric there, ``tusimple``
   or ``culane``): the same Detector runs once on fp32 OpenVINO and once on the INT8 model. A
   camera passes when INT8 loses at most :data:`MAX_ACCURACY_DROP` of official TuSimple accuracy
   (TuSimple frames) or :data:`MAX_F1_DROP` of CULane F1 (CULane frames: IoU 0.5, 30 px lines)
   against fp32, and the median horizontal move of its lane points against fp32 (same lane
   index, same rows) is below :data:`MAX_MEDIAN_SHIFT_PX` source pixels. The model passes only
   when every camera passes: one camera's figures cannot hide another's loss (issue 18: a model
   guarded on TuSimple alone, -0.0015 accuracy, lost 0.037 F1 on night CULane frames).
3. The model (``model.xml``/``.bin``) and the guard record (``guard.json``: each camera's figures
   and verdict under ``cameras``, the frames, the versions, ``passed``,
   ``guard_version`` = :data:`lanesad_ros.backends.cache.GUARD_VERSION`) are written together
   into the cache folder of these weights (:func:`lanesad_ros.backends.cache.int8_dir`).
   ``backend: auto`` considers ``openvino-int8`` only when ``passed`` is true and the record
   comes from this guard (:func:`lanesad_ros.backends.cache.read_guard`); it is then chosen only
   when clearly faster than fp32 (:mod:`lanesad_ros.backends.selection`).

Exit status: 0 passed, 1 the guard failed (the model is kept, marked failed, never offered),
2 bad arguments or inputs, or ``nncf`` / ``openvino`` missing (one line: ``quantize: error:
...``). ``make setup`` installs both; the Detector itself only needs ``openvino``.
Paths inside the config are relative to the working directory (run from the repository root).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from lanesad_ros.backends import cache
from lanesad_ros.backends.openvino_backend import OpenVinoBackend
from lanesad_ros.data.frames import DataError
from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.fileio import write_text_atomic
from lanesad_ros.lanes import lane_x_at_rows
from lanesad_ros.metrics.culane import CULaneScorer, prf
from lanesad_ros.metrics.tusimple import TuSimpleScorer
from lanesad_ros.training.config import ConfigError, load_config
from lanesad_ros.training.tune import CAMERAS, ValFrame, tusimple_f1, validation_frames
from lanesad_ros.training.validation import metric_for

MAX_ACCURACY_DROP = 0.005
# CULane F1 = 2 TP / (detected + labelled lanes). The validation clip of the many-camera recipe
# holds 225 labelled lanes and the shipped weights detect about 180 lanes there, so one lane
# matched at fp32 and missed at INT8 costs about 2 / 405 = 0.005 F1: 0.01 allows about two
# lanes of the clip. The night loss of issue 18 (0.407 -> 0.370) is about seven lanes.
MAX_F1_DROP = 0.01
MAX_MEDIAN_SHIFT_PX = 5.0
# The layers that write the outputs stay fp32: the lane map's last upsampling (its logits are
# compared across classes per pixel) and the small existence head.
KEEP_FP32 = (r".*/classifier/.*", r".*/exist/.*")
REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_CONFIG = REPO / "config" / "train" / "enet_sad_multicam.yaml"
# Four cameras, none of them labelled: a TuSimple clip (1280x720), the CULane camera at night and
# in town (1640x590), the Udacity camera (1280x720). unlabeled/tusimple-frames is not among them:
# its frames are the labelled frames of tusimple-train-0313, validation frames included.
DEFAULT_CALIBRATION = (SHARED / "unlabeled" / "tusimple-clip", SHARED / "unlabeled" / "culane-night-clip",
                       SHARED / "unlabeled" / "culane-urban", SHARED / "udacity" / "test_images")
# Two frames are the same picture when their 64x36 grey thumbnails differ by less than this mean
# absolute grey level. Measured on ../shared/data: a JPEG re-encoding of a frame <= 0.02; the
# nearest distinct frames (a stopped car 3 s apart, CULane) 0.51; 1/20 s apart (TuSimple clip) >= 2.2.
SAME_PICTURE_GREY = 0.25
THUMBNAIL = (64, 36)


class QuantizeError(ValueError):
    """Unusable inputs (calibration folders, validation frames); the message names the file."""


def thumbnail(image: np.ndarray) -> np.ndarray:
    """(36, 64) float32 grey thumbnail of a BGR image (area averaging), for :func:`same_picture`."""
    return cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), THUMBNAIL, interpolation=cv2.INTER_AREA).astype(
        np.float32)


def same_picture(thumb: np.ndarray, others: np.ndarray) -> bool:
    """Whether ``thumb`` (36, 64) is one of ``others`` (N, 36, 64), re-encoded copies included:
    mean absolute grey difference below :data:`SAME_PICTURE_GREY`."""
    return len(others) > 0 and float(np.abs(others - thumb).mean(axis=(1, 2)).min()) < SAME_PICTURE_GREY


def calibration_batches(detector: Detector, folders: Sequence[Path], count: int,
                        exclude: np.ndarray | None = None) -> tuple[list[np.ndarray], str]:
    """Up to ``count`` (1, 3, H, W) network inputs from the JPEGs of ``folders``, and a description.

    Folders are taken in turn (first frame of each, then the second, ..., names sorted), so a
    small ``count`` still spans every camera. Frames that are the same picture as one of
    ``exclude`` (grey thumbnails, :func:`thumbnail`) are left out. Raises QuantizeError for a
    folder without JPEGs, an unreadable frame, or no frame left.
    """
    listed = []
    for folder in folders:
        paths = sorted(Path(folder).glob("*.jpg"))
        if not paths:
            raise QuantizeError(f"no calibration frames (*.jpg) in {folder}")
        listed.append(paths)
    exclude = np.zeros((0, THUMBNAIL[1], THUMBNAIL[0]), np.float32) if exclude is None else exclude
    batches, used, left_out = [], [0] * len(listed), []
    for rank in range(max(len(paths) for paths in listed)):
        for i, paths in enumerate(listed):
            if rank >= len(paths) or len(batches) >= count:
                continue
            image = cv2.imread(str(paths[rank]))
            if image is None:
                raise QuantizeError(f"calibration frame {paths[rank]} is not a readable image")
            if same_picture(thumbnail(image), exclude):
                left_out.append(f"{paths[rank].parent.name}/{paths[rank].name}")
                continue
            batches.append(detector.preprocessor(image)[None])
            used[i] += 1
    if not batches:
        raise QuantizeError(f"no calibration frames left in {', '.join(map(str, folders))}: all are validation frames")
    parts = ", ".join(f"{n} of {folder}" for n, folder in zip(used, folders, strict=True))
    out = f"{len(batches)} frames: {parts}"
    if left_out:
        more = " ..." if len(left_out) > 5 else ""
        out += f"; {len(left_out)} left out as validation frames ({', '.join(left_out[:5])}{more})"
    return batches, out


def lane_shifts(reference, other, rows: np.ndarray) -> list[float]:
    """|x| differences (source px) between lanes of the same index in two LaneDetections, on ``rows``
    where both lanes have a point."""
    ours = {lane.index: lane for lane in other.lanes}
    shifts = []
    for lane in reference.lanes:
        twin = ours.get(lane.index)
        if twin is None:
            continue
        a, b = lane_x_at_rows(lane.image_points, rows), lane_x_at_rows(twin.image_points, rows)
        both = (a >= 0) & (b >= 0)
        shifts.extend(np.abs(a[both] - b[both]).tolist())
    return shifts


def shift_rows(frame) -> np.ndarray:
    """Rows (source px) the lane shift is measured on: a TuSimple frame's ``h_samples``, else every
    10th row (CULane labels are sampled every 10 rows)."""
    if frame.h_samples is not None:
        return np.asarray(frame.h_samples, dtype=np.float32)
    return np.arange(0, frame.height, 10, dtype=np.float32)


def _camera_figures(metric: str, scorers: dict, shifts: list[float], changed: int, frames: int) -> dict:
    """One camera's record: fp32 and INT8 scores, the allowed drop, the lane shift, ``passed``, ``verdict``."""
    median_shift = statistics.median(shifts) if shifts else 0.0
    out = {"frames": frames, "median_shift_px": median_shift,
           "p90_shift_px": float(np.percentile(shifts, 90)) if shifts else 0.0, "shift_points": len(shifts),
           "frames_with_other_lanes": changed}
    if metric == "tusimple":
        for name, scorer in scorers.items():
            r = scorer.result()
            out |= {f"accuracy_{name}": r["accuracy"], f"fp_{name}": r["fp"], f"fn_{name}": r["fn"],
                    f"f1_{name}": tusimple_f1(r["fp"], r["fn"])}
        key, allowed, label = "accuracy", MAX_ACCURACY_DROP, "TuSimple accuracy"
    else:
        for name, scorer in scorers.items():
            r = prf(*(sum(rec[k] for rec in scorer.records) for k in ("tp", "fp", "fn")))
            out |= {f"{k}_{name}": r[k] for k in ("tp", "fp", "fn", "precision", "recall")}
            out[f"f1_{name}"] = r["f1"] or 0.0  # undefined (no lane detected or labelled): 0
        key, allowed, label = "f1", MAX_F1_DROP, "CULane F1"
    delta = out[f"{key}_int8"] - out[f"{key}_fp32"]
    out[f"{key}_delta"] = delta
    passed = -delta <= allowed and median_shift < MAX_MEDIAN_SHIFT_PX
    out["passed"] = bool(passed)
    out["verdict"] = (f"{metric} ({frames} frames): {label} fp32 {out[f'{key}_fp32']:.4f}, int8 "
                      f"{out[f'{key}_int8']:.4f} (delta {delta:+.4f}, allowed -{allowed}); median lane shift "
                      f"{median_shift:.2f} px (allowed < {MAX_MEDIAN_SHIFT_PX}); {'passed' if passed else 'FAILED'}")
    return out


def run_guard(fp32: Detector, int8: Detector, frames: Sequence[ValFrame]) -> dict:
    """Both detectors on every validation frame, judged per camera (the module docstring, step 2).

    Returns ``passed`` (every camera passed), ``verdict`` (one line per camera) and ``cameras``:
    per camera (``tusimple`` | ``culane``) its figures, ``passed`` and ``verdict``. Raises
    QuantizeError for no frames, DataError for an unreadable frame.
    """
    if not frames:
        raise QuantizeError("no TuSimple or CULane validation frames to guard on")
    scorers = {m: {"fp32": TuSimpleScorer() if m == "tusimple" else CULaneScorer(),
                   "int8": TuSimpleScorer() if m == "tusimple" else CULaneScorer()} for m in CAMERAS}
    shifts: dict[str, list[float]] = {m: [] for m in CAMERAS}
    changed = dict.fromkeys(CAMERAS, 0)
    counts = dict.fromkeys(CAMERAS, 0)
    for vf in frames:
        image = vf.frame.load_image()
        size = (image.shape[1], image.shape[0])
        results = {"fp32": fp32.detect(image), "int8": int8.detect(image)}
        for name, detections in results.items():
            if vf.metric == "tusimple":
                scorers[vf.metric][name].add(detections.lanes, vf.frame)
            else:
                scorers[vf.metric][name].add(detections.lanes, vf.frame.lanes, image_size=size)
        shifts[vf.metric] += lane_shifts(results["fp32"], results["int8"], shift_rows(vf.frame))
        changed[vf.metric] += {la.index for la in results["fp32"].lanes} != {la.index for la in results["int8"].lanes}
        counts[vf.metric] += 1
    cameras = {m: _camera_figures(m, scorers[m], shifts[m], changed[m], counts[m]) for m in CAMERAS if counts[m]}
    passed = all(c["passed"] for c in cameras.values())
    verdict = " | ".join(c["verdict"] for c in cameras.values())
    return {"passed": passed, "cameras": cameras,
            "verdict": f"{verdict} => {'passed' if passed else 'FAILED'} (every camera must pass)"}


def quantize_graph(graph_path: Path, input_shape: tuple[int, ...], batches: list[np.ndarray], out_xml: Path,
                   keep_fp32: tuple[str, ...] = KEEP_FP32, mixed: bool = True, fast_bias_correction: bool = True):
    """NNCF post-training quantisation of an ONNX/IR graph at a static input shape -> IR at ``out_xml``.

    ``keep_fp32``: regular expressions of operation names left unquantised; ``mixed``: NNCF's
    MIXED preset (symmetric weights, asymmetric activations: PReLU outputs are not one-signed).
    """
    # Imported here: heavy to import (seconds), and only this step needs it.
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(graph_path))
    model.reshape({"image": list(input_shape)})
    preset = nncf.QuantizationPreset.MIXED if mixed else nncf.QuantizationPreset.PERFORMANCE
    ignored = nncf.IgnoredScope(patterns=list(keep_fp32), validate=False) if keep_fp32 else None
    quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches), preset=preset,
                              ignored_scope=ignored, fast_bias_correction=fast_bias_correction)
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)


def guard_frames(config: Path) -> tuple[list[ValFrame], str]:
    """The TuSimple- and CULane-scored ``data.val`` frames of a training config, and a description
    (config, entries, frames per camera). Raises ConfigError / QuantizeError when there are none."""
    cfg = load_config(config)
    frames = validation_frames(cfg)
    if not frames:
        raise QuantizeError(f"{config}: no TuSimple- or CULane-labelled entry in data.val to guard on")
    names = [e["name"] or e["type"] for e in cfg["data"]["val"] if metric_for(e, cfg) in CAMERAS]
    per_camera = ", ".join(f"{sum(f.metric == m for f in frames)} {m}" for m in CAMERAS
                           if any(f.metric == m for f in frames))
    return frames, f"{len(frames)} frames ({per_camera}) of data.val of {config}: {', '.join(names)}"


def quantize_weights(weights: Path | None, calibration: Sequence[Path], frames: int, config: Path | None,
                     threads: int | None, log=print) -> dict:
    """Quantise, guard and store; returns the guard record (``folder`` added). See the module docstring.

    ``calibration``: folders of JPEGs; ``frames``: at most this many of them; ``config``: the
    training config whose validation frames guard the model (and are kept out of calibration).
    ``config=None``: no guard can run; the model is stored marked not passed. Raises
    QuantizeError, ConfigError, DataError or DetectorError for unusable inputs.
    """
    fp32 = Detector.from_weights(weights, device="cpu", backend="openvino", threads=threads)
    folder = cache.int8_dir(fp32.artefact_base())
    val, described = guard_frames(config) if config is not None else ([], "none")
    exclude = np.stack([thumbnail(f.frame.load_image()) for f in val]) if val else None
    batches, calibrated = calibration_batches(fp32, calibration, frames, exclude)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        start = time.perf_counter()
        quantize_graph(fp32.onnx_path(pooling_indices=False), fp32.input_shape, batches, tmp / "model.xml")
        log(f"quantised in {time.perf_counter() - start:.0f} s; calibration: {calibrated}")
        int8 = Detector.from_weights(weights, device="cpu", backend="openvino", threads=threads)
        if int8.source_hash() != fp32.source_hash():  # both must read the same weights and metadata
            raise QuantizeError(f"{fp32.weights_path} (or its metadata) changed while quantising: run again")
        int8.use_backend(OpenVinoBackend(tmp / "model.xml", threads, name="openvino-int8"), "quantisation guard")
        if val:
            start = time.perf_counter()
            record = run_guard(fp32, int8, val)
            log(f"guarded on {len(val)} validation frames in {time.perf_counter() - start:.0f} s")
        else:
            record = {"passed": False, "verdict": "no validation frames given: not guarded, never offered"}
        record.update({"guard_version": cache.GUARD_VERSION, "validation": described, "calibration": calibrated,
                       "weights": str(fp32.weights_path), "source": fp32.source_hash(),
                       "input_size": list(fp32.preprocessor.input_size), "created_at": cache.now_iso(),
                       "versions": {n: cache.package_version(n) for n in ("openvino", "nncf", "torch")}})
        write_text_atomic(tmp / "guard.json", json.dumps(record, indent=1, sort_keys=True) + "\n")
        old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record["folder"] = str(folder)
    return record


def missing_tools() -> str:
    """"" when the packages quantisation needs are installed, else one line saying what to install."""
    missing = [name for name in ("nncf", "openvino") if importlib.util.find_spec(name) is None]
    if not missing:
        return ""
    return (f"needs {' and '.join(missing)}, not installed here: pip install {' '.join(missing)} "
            f"(make setup installs {'them' if len(missing) > 1 else 'it'})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="quantize",
        description="OpenVINO INT8 quantisation with an accuracy guard on the validation frames of every camera.")
    parser.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="training config whose data.val frames guard the model, per camera (default: "
                             "config/train/enet_sad_multicam.yaml; run from the repository root)")
    parser.add_argument("--calibration", type=Path, action="append",
                        help="folder of real frames (*.jpg), repeatable (default: "
                             f"{', '.join(f'../shared/data/{p.relative_to(SHARED)}' for p in DEFAULT_CALIBRATION)})")
    parser.add_argument("--frames", type=int, default=150, help="calibration frames to use at most (default 150)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"{parser.prog}: error: {missing}", file=sys.stderr)
        return 2
    if args.frames < 1:
        parser.error("--frames must be >= 1")
    calibration = args.calibration or list(DEFAULT_CALIBRATION)
    for path in [*calibration, args.config]:
        if not path.exists():
            parser.error(f"{path} does not exist")
    try:
        record = quantize_weights(args.weights, calibration, args.frames, args.config, args.threads)
    except (QuantizeError, ConfigError, DataError, DetectorError, OSError) as exc:
        parser.error(str(exc))
    print("\n".join(c["verdict"] for c in record["cameras"].values()))
    print(f"{'passed' if record['passed'] else 'FAILED'}: every camera must pass\n"
          f"validation: {record['validation']}\ncalibration: {record['calibration']}\nwritten: {record['folder']}")
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
