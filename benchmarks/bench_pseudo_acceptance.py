"""Pseudo-label acceptance of ``lanesad-train adapt`` on real unlabelled drives (teacher + checks, no training).

    nice -n 10 .venv/bin/python benchmarks/bench_pseudo_acceptance.py [SOURCE ...] [--compare OLD_checks.py]

Per source, as ``Adapter.label`` does it: the teacher (the weights on the clean frames,
``student.teacher_pass``), the camera estimated from the drive (hood, vanishing point), the
checks of ``training/adapt/checks.py`` and, on sequences, the temporal filter. Reported: frames,
frames with at least one accepted lane, teacher lanes, accepted lanes and the rejections by
reason; and the share of the deployed decoding's lanes (``Detector``, clean frames) that pass
the checks as ``criteria.py`` applies them (hood not cut), the "sane" part of the early-stopping
criterion. A source with ground truth (CULane ``.lines.txt`` or TuSimple labels beside the
images, a ``/lanes_gt`` topic) also gets the CULane precision / recall / F1 against it of the
teacher's lanes and of the accepted pseudo-labels (``labels vs truth``): how right the labels
adaptation learns from are, and how much of the road they cover. ``--compare`` runs another
version of checks.py (e.g. the previous one, copied out of git with
``git show REV:lanesad_ros/training/adapt/checks.py > /tmp/checks_old.py``) on the same teacher
and detector outputs, so the two columns differ only by the checks (and, for a checks.py from
before ``adapt/frames.py``, by its own judgement of which sources are sequences).

Default sources: the real clips of ../shared/data/unlabeled (culane-night-clip, tusimple-clip,
culane-urban). CPU, one torch thread: about 3 s per frame on a quiet 2-core machine.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import torch

from lanesad_ros.detector import Detector
from lanesad_ros.fileio import write_text_atomic
from lanesad_ros.metrics.culane import CULaneScorer
from lanesad_ros.model.weights import load_weights
from lanesad_ros.training.adapt import checks as current_checks
from lanesad_ros.training.adapt.frames import looks_like_sequence, small_grey
from lanesad_ros.training.adapt.sources import open_source
from lanesad_ros.training.adapt.student import teacher_pass
from lanesad_ros.weights import default_weights_path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LANESAD_SHARED_DATA", REPO.parent / "shared" / "data"))
CLIPS = ("culane-night-clip", "tusimple-clip", "culane-urban")


def load_checks_module(path: str):
    """A checks.py from a file (it may import lanesad_ros)."""
    spec = importlib.util.spec_from_file_location("checks_compared", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"bench_pseudo_acceptance.py: error: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def model_outputs(source, model, meta, detector) -> dict:
    """Teacher lanes and existence, small grey copies and the deployed lanes of every frame."""
    out = {"teacher": [], "exist": [], "greys": [], "deployed": []}
    for frame in source.frames:
        image = frame.image()
        lanes, exist, _ = teacher_pass(model, meta, [image], torch.device("cpu"))[0]
        out["teacher"].append(lanes)
        out["exist"].append(exist)
        out["greys"].append(small_grey(image))
        out["deployed"].append(detector.detect(image).lanes)
    return out


def acceptance(checks, source, outputs) -> dict:
    """The pseudo-label and criteria counts of one source under one checks module."""
    rules = checks.LaneRules()
    camera = checks.estimate_camera(outputs["teacher"], outputs["greys"], source.size, rules)
    # a checks.py from before adapt/frames.py judges sequences itself
    judge = getattr(checks, "looks_like_sequence", looks_like_sequence)
    sequence = source.sequence and judge(outputs["greys"])
    labels = checks.pseudo_labels(outputs["teacher"], outputs["exist"], camera, rules, sequence)
    rejected: dict[str, int] = {}
    for frame in labels:
        for lane in frame.rejected:
            rejected[lane.reason] = rejected.get(lane.reason, 0) + 1
    sane = [checks.check_lanes(lanes, camera, rules, cut_hood=False) for lanes in outputs["deployed"]]
    truth = {}
    if source.has_ground_truth:
        teacher, accepted = CULaneScorer(), CULaneScorer()
        for frame, lanes, frame_labels in zip(source.frames, outputs["teacher"], labels, strict=True):
            if frame.ground_truth is not None:
                teacher.add([lane.image_points for lane in lanes], frame.ground_truth)
                accepted.add([c.label for c in frame_labels.accepted], frame.ground_truth)
        truth = {"teacher_vs_truth": teacher.result(), "labels_vs_truth": accepted.result()}
    return {
        "frames": len(labels),
        "frames_with_labels": sum(bool(f.accepted) for f in labels),
        "teacher_lanes": sum(len(lanes) for lanes in outputs["teacher"]),
        "accepted": sum(len(f.accepted) for f in labels),
        "rejected": dict(sorted(rejected.items(), key=lambda kv: -kv[1])),
        "deployed_lanes": sum(len(lanes) for lanes in outputs["deployed"]),
        "deployed_sane": int(sum(c.ok for frame in sane for c in frame)),
        "sequence": bool(sequence),
        "vanishing_point": None if camera.vp is None else [round(v, 1) for v in camera.vp],
        **truth,
    }


def _prf(r: dict | None) -> str:
    return "-" if r is None else f"{r['precision'] or 0:.2f} / {r['recall'] or 0:.2f} / {r['f1'] or 0:.2f}"


def _row(name: str, tag: str, r: dict) -> str:
    top = ", ".join(f"{k} {v}" for k, v in list(r["rejected"].items())[:4])
    return (f"| {name} | {tag} | {r['frames']} | {r['frames_with_labels']} | {r['teacher_lanes']} | {r['accepted']} "
            f"| {r['deployed_sane']}/{r['deployed_lanes']} | {_prf(r.get('teacher_vs_truth'))} "
            f"| {_prf(r.get('labels_vs_truth'))} | {top} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="*", help="adapt SOURCEs (default: the real clips of ../shared/data/unlabeled)")
    ap.add_argument("--weights", default=None, help="teacher weights (default: the shipped weights)")
    ap.add_argument("--compare", default=None, metavar="CHECKS_PY", help="another checks.py to run on the same outputs")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    paths = args.sources or [str(SHARED_DATA / "unlabeled" / c) for c in CLIPS]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise SystemExit(f"bench_pseudo_acceptance.py: error: no such source: {', '.join(missing)} "
                         "(set LANESAD_SHARED_DATA to the shared data)")
    variants = {"current": current_checks}
    if args.compare:
        variants = {"compared": load_checks_module(args.compare), **variants}
    torch.set_num_threads(1)
    weights = Path(args.weights) if args.weights else default_weights_path()
    model, meta = load_weights(weights)
    detector = Detector.from_weights(weights, device="cpu", backend="torch")
    results: dict = {}
    print("| source | checks | frames | with labels | teacher lanes | accepted | deployed sane "
          "| teacher vs truth P / R / F1 | labels vs truth P / R / F1 | rejected (top) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for source in (open_source(p) for p in paths):  # each on its own (adapt pools one camera only)
        outputs = model_outputs(source, model, meta, detector)
        name = Path(source.path).name
        results[name] = {tag: acceptance(mod, source, outputs) for tag, mod in variants.items()}
        for tag, r in results[name].items():
            print(_row(name, tag, r), flush=True)
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
