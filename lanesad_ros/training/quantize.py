"""OpenVINO INT8 post-training quantisation (NNCF) of a weights file, with an accuracy guard.

    python -m lanesad_ros.training.quantize [--weights W] [--calibration DIR] [--labels labels.json]
                                            [--split tusimple_val.txt] [--frames N] [--threads N]

A command above the Detector (it calibrates and guards with it), beside the other commands that
turn trained weights into artefacts (:mod:`lanesad_ros.training.export`); the backends only
read what it leaves in the cache.

1. Calibration: NNCF's default post-training quantisation (min-max ranges, fast bias
   correction) of the OpenVINO graph the ``openvino`` backend runs, on real road frames
   (``--calibration``: a folder of JPEGs, by default ../shared/data/unlabeled/tusimple-frames),
   preprocessed exactly as the Detector does.
2. Guard, on real labelled frames (``--labels`` in TuSimple format; with ``--split``, only the
   frames whose ``raw_file`` lies in a listed clip folder, i.e. held-out validation clips): the
   same Detector runs once on fp32 OpenVINO and once on the INT8 model. The INT8 model passes
   when its official TuSimple accuracy is within :data:`MAX_ACCURACY_DROP` of fp32 and the
   median horizontal move of its lane points against fp32 (same lane index, same rows) is
   below :data:`MAX_MEDIAN_SHIFT_PX` source pixels.
3. The model (``model.xml``/``.bin``) and the guard record (``guard.json``: both accuracies,
   the shift, the frames, the versions, ``passed``) are written together into the cache folder
   of these weights (:func:`lanesad_ros.backends.cache.int8_dir`). ``backend: auto`` considers
   ``openvino-int8`` only when ``passed`` is true; it is then chosen only when clearly faster
   than fp32 (:mod:`lanesad_ros.backends.selection`).

Exit status: 0 passed, 1 the guard failed (the model is kept, marked failed, never offered),
2 bad arguments or inputs, or ``nncf`` / ``openvino`` missing (one line: ``quantize: error:
...``). ``make setup`` installs both; the Detector itself only needs ``openvino``.
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
from pathlib import Path

import cv2
import numpy as np

from lanesad_ros.backends import cache
from lanesad_ros.backends.openvino_backend import OpenVinoBackend
from lanesad_ros.data.tusimple import load_label_dicts
from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.fileio import write_text_atomic
from lanesad_ros.lanes import lane_x_at_rows
from lanesad_ros.metrics.tusimple import TuSimpleScorer

MAX_ACCURACY_DROP = 0.005
MAX_MEDIAN_SHIFT_PX = 5.0
# The layers that write the outputs stay fp32: the lane map's last upsampling (its logits are
# compared across classes per pixel) and the small existence head.
KEEP_FP32 = (r".*/classifier/.*", r".*/exist/.*")
REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_CALIBRATION = SHARED / "unlabeled" / "tusimple-frames"
DEFAULT_LABELS = SHARED / "tusimple-train" / "labels.json"
DEFAULT_SPLIT = REPO / "config" / "train" / "splits" / "tusimple_val.txt"


class QuantizeError(ValueError):
    """Unusable inputs (frames, labels, split); the message names the file."""


def calibration_batches(detector: Detector, folder: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` JPEGs of ``folder`` (sorted by name) as (1, 3, H, W) network inputs."""
    paths = sorted(folder.glob("*.jpg"))[:count]
    if not paths:
        raise QuantizeError(f"no calibration frames (*.jpg) in {folder}")
    batches = []
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:
            raise QuantizeError(f"calibration frame {path} is not a readable image")
        batches.append(detector.preprocessor(image)[None])
    return batches


def validation_frames(labels_path: Path, split: Path | None) -> tuple[list[dict], str]:
    """(label dicts whose image exists, description). With ``split``: only frames in its clip folders."""
    labels = load_label_dicts(labels_path)
    root = labels_path.parent
    description = f"all of {labels_path}"
    if split is not None:
        clips = [line.strip().rstrip("/") + "/" for line in split.read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.startswith("#")]
        labels = [label for label in labels if any(label["raw_file"].startswith(clip) for clip in clips)]
        description = f"{labels_path} frames in the {len(clips)} clips of {split}"
    labels = [label for label in labels if (root / label["raw_file"]).is_file()]
    if not labels:
        raise QuantizeError(f"no labelled frames with images found ({description})")
    for label in labels:
        label["_image"] = root / label["raw_file"]
    return labels, f"{len(labels)} frames: {description}"


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


def run_guard(fp32: Detector, int8: Detector, labels: list[dict]) -> dict:
    """TuSimple accuracy of both detectors on ``labels`` and the median lane move of int8 against fp32."""
    scores = {"fp32": TuSimpleScorer(), "int8": TuSimpleScorer()}
    shifts, lane_count_changes = [], 0
    for label in labels:
        image = cv2.imread(str(label["_image"]))
        if image is None:
            raise QuantizeError(f"validation frame {label['_image']} is not a readable image")
        a, b = fp32.detect(image), int8.detect(image)
        scores["fp32"].add(a, label, frame_id=label["raw_file"])
        scores["int8"].add(b, label, frame_id=label["raw_file"])
        rows = np.asarray(label["h_samples"], dtype=np.float32)
        shifts += lane_shifts(a, b, rows)
        lane_count_changes += {lane.index for lane in a.lanes} != {lane.index for lane in b.lanes}
    acc32, acc8 = scores["fp32"].result()["accuracy"], scores["int8"].result()["accuracy"]
    median_shift = statistics.median(shifts) if shifts else 0.0
    passed = acc32 - acc8 <= MAX_ACCURACY_DROP and median_shift < MAX_MEDIAN_SHIFT_PX
    verdict = (f"TuSimple accuracy fp32 {acc32:.4f}, int8 {acc8:.4f} (delta {acc8 - acc32:+.4f}, allowed "
               f"-{MAX_ACCURACY_DROP}); median lane shift {median_shift:.2f} px (allowed < {MAX_MEDIAN_SHIFT_PX}); "
               f"{'passed' if passed else 'FAILED'}")
    return {"passed": bool(passed), "verdict": verdict, "accuracy_fp32": acc32, "accuracy_int8": acc8,
            "accuracy_delta": acc8 - acc32, "median_shift_px": median_shift,
            "p90_shift_px": float(np.percentile(shifts, 90)) if shifts else 0.0, "shift_points": len(shifts),
            "frames_with_other_lanes": int(lane_count_changes), "fp": scores["int8"].result()["fp"],
            "fn": scores["int8"].result()["fn"]}


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


def quantize_weights(weights: Path | None, calibration: Path, frames: int, labels: Path | None, split: Path | None,
                     threads: int | None, log=print) -> dict:
    """Quantise, guard and store; returns the guard record (``folder`` added). See the module docstring.
    ``labels=None``: no guard can run; the model is stored marked not passed."""
    fp32 = Detector.from_weights(weights, device="cpu", backend="openvino", threads=threads)
    folder = cache.int8_dir(fp32.artefact_base())
    batches = calibration_batches(fp32, calibration, frames)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        start = time.perf_counter()
        quantize_graph(fp32.onnx_path(pooling_indices=False), fp32.input_shape, batches, tmp / "model.xml")
        log(f"quantised with {len(batches)} calibration frames of {calibration} in {time.perf_counter() - start:.0f} s")
        int8 = Detector.from_weights(weights, device="cpu", backend="openvino", threads=threads)
        int8.use_backend(OpenVinoBackend(tmp / "model.xml", threads, name="openvino-int8"), "quantisation guard")
        if labels is not None:
            val, described = validation_frames(labels, split)
            record = run_guard(fp32, int8, val)
        else:
            described = "none"
            record = {"passed": False, "verdict": "no labelled frames given: not guarded, never offered"}
        record.update({"validation": described, "calibration": f"{len(batches)} frames of {calibration}",
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
    parser = argparse.ArgumentParser(prog="quantize", description="OpenVINO INT8 quantisation with an accuracy guard.")
    parser.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    parser.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION, help="folder of real frames (*.jpg)")
    parser.add_argument("--frames", type=int, default=150, help="calibration frames to use (default 150)")
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS, help="TuSimple label file for the guard")
    parser.add_argument("--split", type=Path, default=DEFAULT_SPLIT if DEFAULT_SPLIT.is_file() else None,
                        help="validation clip list (default: config/train/splits/tusimple_val.txt when present; "
                             "without it every labelled frame is used)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"{parser.prog}: error: {missing}", file=sys.stderr)
        return 2
    if args.frames < 1:
        parser.error("--frames must be >= 1")
    for name in ("calibration", "labels", "split"):
        path = getattr(args, name)
        if path is not None and not path.exists():
            parser.error(f"--{name} {path} does not exist")
    try:
        record = quantize_weights(args.weights, args.calibration, args.frames, args.labels, args.split, args.threads)
    except (QuantizeError, DetectorError, OSError) as exc:
        parser.error(str(exc))
    print(f"{record['verdict']}\nvalidation: {record['validation']}\nwritten: {record['folder']}")
    return 0 if record["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
