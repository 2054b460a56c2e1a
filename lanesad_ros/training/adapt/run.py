"""``lanesad-train adapt``: self-training on a user's own unlabelled drives (no labels needed).

Method (a mean-teacher-free, filtered self-training in the spirit of SAD's "learn from the
model's own signals"):

1. **Teacher** = the base weights on the *clean* frames. Its lanes become pseudo-labels
   only when they pass the checks of :mod:`lanesad_ros.training.adapt.checks`: confident,
   smooth (the lane hyperbola of ``lanefit`` fits them: no S-curve, loop or curl) above the
   car's hood, through the drive's vanishing point, converging with the frame's other lanes,
   in slot order with a plausible spacing (the decoder's rules of ``convergence`` and
   ``slots``), and, on sequences, present in a neighbouring frame. The label is the fitted curve, never the raw rows,
   continued straight across the hood to the image bottom (as TuSimple and CULane label).
   Everything the teacher was unsure about (lane probability above 0.15 but no accepted
   label) is ignored by the loss.
2. **Student** = a copy of the base trained on those labels with strong photometric and
   geometric augmentation (brightness, contrast, gamma, night exposure, white balance,
   saturation, hue, blur, noise, JPEG, shadows, glare, zoom, shift, rotation, a little
   pitch, flip with slot swap; ``lanesad_ros.data.augment``), so it must find
   the lanes the teacher saw on easy frames also on harder versions of them. SAD (self
   attention distillation, Hou et al. 2019, Sec. 3) is on throughout. BatchNorm layers keep
   the base's statistics (``norm_eval``): batches of augmented frames would move them away
   from what clean frames look like.
3. **Against forgetting**: a quarter of every batch are the project's synthetic scenes
   (``SceneGenerator``, parametric geometry, fully labelled), and an L2-SP penalty
   (Li et al., ICML 2018, "Explicit inductive bias for transfer learning") pulls the
   weights towards the base: ``alpha / 2 * sum ||w - w_base||^2``.
4. **Teacher refresh**: after each of ``rounds - 1`` rounds the best student so far
   becomes the teacher and the frames are labelled again.
5. **Early stopping** on the unlabelled criterion ``stable_sane_lanes_per_frame``
   (:mod:`lanesad_ros.training.adapt.criteria`: lanes per frame that are geometrically sane *and*
   found again under two fixed lighting/compression perturbations), evaluated every
   ``eval_every`` iterations; the best state is what is written. A state replaces the base
   only when it adds at least ``min_gain`` to the base's criterion and that gain holds over the
   frames (``gain_confidence`` of paired bootstrap resamples, ``criteria.gain_holds``; later
   states need only beat the best); if none does, the base weights are written unchanged and
   the report says so.
   Patience counts evaluations without a new best value, accepted or not.

Runs on CPU (one thread by default: on a small shared CPU more threads are slower) and on
CUDA when present. The output is an ordinary weights file (safetensors + JSON metadata)
that the node, the evaluator and ``adapt`` itself load like any other; its metadata says
what it was adapted from, on which sources, with which settings, and the criteria before
and after. Nothing is written to ``--out`` unless adaptation finished.
"""
from __future__ import annotations

import argparse
import copy
import datetime as _dt
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from lanesad_ros.backends.cache import file_hash
from lanesad_ros.data.augment import AugmentConfig, augment
from lanesad_ros.data.dataset import LaneSegDataset
from lanesad_ros.data.synthetic import SceneGenerator
from lanesad_ros.detector import Detector, DetectorError
from lanesad_ros.model.weights import WeightsError, load_weights, metadata_preprocessor, save_weights
from lanesad_ros.training.adapt.checks import (
    Camera,
    FrameLabels,
    LaneRules,
    estimate_camera,
    pseudo_labels,
)
from lanesad_ros.training.adapt.criteria import (
    CRITERION,
    PER_FRAME,
    gain_holds,
    merge_criteria,
    perturbed_views,
    unlabelled_criteria,
)
from lanesad_ros.training.adapt.frames import looks_like_sequence, small_grey
from lanesad_ros.training.adapt.report import GroundTruthScores, camera_line, no_clear_gain, write_report
from lanesad_ros.training.adapt.settings import STRONG_AUGMENT, AdaptSettings
from lanesad_ros.training.adapt.sources import Source, SourceError, open_sources
from lanesad_ros.training.adapt.student import adapt_loss, l2sp_penalty, label_mask, teacher_pass
from lanesad_ros.training.soup import soup_states
from lanesad_ros.weights import default_weights_path

_NO_FLIP = AugmentConfig(**{**asdict(STRONG_AUGMENT), "flip_prob": 0.0})


class AdaptError(ValueError):
    """A problem that stops adaptation before anything is written (bad source, weights, settings)."""


# --------------------------------------------------------------------------- the run

@dataclass
class _Item:
    source: int
    frame: int


class Adapter:
    """One adaptation run: ``run()`` -> (best state_dict, summary dict)."""

    def __init__(self, sources: list[Source], base_path: Path, settings: AdaptSettings, log=print):
        self.sources = sources
        self.base_path = base_path
        self.s = settings
        self.log = log
        if settings.threads:
            torch.set_num_threads(settings.threads)
        name = settings.device
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise AdaptError("--device cuda but CUDA is not available")
        self.device = torch.device(name)
        try:
            self.model, self.meta = load_weights(base_path)
        except WeightsError as exc:
            raise AdaptError(str(exc)) from None
        self.model.to(self.device)
        self.pre = metadata_preprocessor(self.meta)
        # The base, kept once: L2-SP anchor (its parameters), teacher while no state is accepted, blend.
        self.base_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.anchor = {k: self.base_state[k] for k, _ in self.model.named_parameters()}
        self.rules = LaneRules()
        torch.manual_seed(settings.seed)
        self.synthetic = LaneSegDataset(SceneGenerator(seed=10_000 + settings.seed, width=640, height=360),
                                        self.pre, num_lanes=int(self.meta["num_lanes"]), augment=AugmentConfig())
        self.cameras: list[Camera] = []
        self.sequence: list[bool] = []  # per source: frames in time order (temporal checks apply)
        self.labels: list[list[FrameLabels]] = []
        self.uncertain: list[list[np.ndarray]] = []
        self.eval_index = [self._eval_subset(len(src.frames)) for src in sources]

    def _eval_subset(self, n: int) -> list[int]:
        if n <= self.s.eval_frames:
            return list(range(n))
        return sorted(set(np.round(np.linspace(0, n - 1, self.s.eval_frames)).astype(int).tolist()))

    # -- teacher
    def label(self, first: bool) -> dict:
        """Teacher pass over every frame; on the first pass also estimate each camera."""
        stats = {"frames": 0, "frames_with_labels": 0, "accepted": 0, "rejected": {}}
        self.labels, self.uncertain = [], []
        for k, src in enumerate(self.sources):
            results, greys = [], []
            for frame in tqdm(src.frames, desc=f"teacher {Path(src.path).name}", leave=False, disable=None):
                image = frame.image()
                if first:
                    greys.append(small_grey(image))
                results.append(teacher_pass(self.model, self.meta, [image], self.device)[0])
            lanes = [r[0] for r in results]
            if first:
                self.cameras.append(estimate_camera(lanes, greys, src.size, self.rules))
                self.sequence.append(src.sequence and looks_like_sequence(greys))
            labels = pseudo_labels(lanes, [r[1] for r in results], self.cameras[k], self.rules, self.sequence[k])
            self.labels.append(labels)
            self.uncertain.append([r[2] for r in results])
            for fl in labels:
                stats["frames"] += 1
                stats["frames_with_labels"] += bool(fl.accepted)
                stats["accepted"] += len(fl.accepted)
                for c in fl.rejected:
                    stats["rejected"][c.reason] = stats["rejected"].get(c.reason, 0) + 1
        self.items = [_Item(k, i) for k, labels in enumerate(self.labels) for i, fl in enumerate(labels) if fl.accepted]
        return stats

    # -- criteria
    def criteria(self, keep_lanes: bool = False) -> tuple[dict, list]:
        """Unlabelled criteria (merged over sources) with the deployed decoding; optionally the
        clean-frame lanes of every frame (for the report)."""
        detector = Detector.from_model(self.model, self.meta, device="auto", backend="torch")
        per_source, all_lanes = [], []
        for k, src in enumerate(self.sources):
            detections, views = [], []
            index = range(len(src.frames)) if keep_lanes else self.eval_index[k]
            for i in index:
                image = src.frames[i].image()
                results = detector.detect_batch([image] + perturbed_views(image, i))
                detections.append(results[0].lanes)
                views.append([r.lanes for r in results[1:]])
            subset = [detections[j] for j in (self.eval_index[k] if keep_lanes else range(len(detections)))]
            subviews = [views[j] for j in (self.eval_index[k] if keep_lanes else range(len(views)))]
            per_source.append(unlabelled_criteria(subset, subviews, self.cameras[k], self.rules, self.sequence[k]))
            all_lanes.append(detections if keep_lanes else None)
        merged = merge_criteria(per_source)
        merged["per_source"] = per_source
        return merged, all_lanes

    # -- samples
    def _real_sample(self, item: _Item, rng: np.random.Generator):
        src, camera = self.sources[item.source], self.cameras[item.source]
        labels = self.labels[item.source][item.frame]
        mask, exist, weight = label_mask(labels, self.uncertain[item.source][item.frame], camera, self.meta)
        image = src.frames[item.frame].image()
        if rng.random() < STRONG_AUGMENT.flip_prob:
            # Mirror here (not in augment()) so the existence target can follow the slot swap.
            num = len(exist)
            lut = np.arange(256, dtype=np.uint8)
            lut[1:num + 1] = np.arange(num, 0, -1)
            image, mask = np.ascontiguousarray(image[:, ::-1]), lut[mask[:, ::-1]]
            exist, weight = exist[::-1].copy(), weight[::-1].copy()
        image, _, _, mask = augment(image, [], [], _NO_FLIP, rng, mask=mask, num_slots=len(exist))
        h, w = self.pre.input_size
        top = self.pre.crop_rows(mask.shape[0])
        seg = cv2.resize(mask[top:], (w, h), interpolation=cv2.INTER_NEAREST)
        return self.pre(image), seg, exist, weight

    def batch(self, iteration: int):
        """(images, seg, exist, exist_weight) tensors: real pseudo-labelled + synthetic samples."""
        n_syn = int(round(self.s.batch_size * self.s.synthetic_share))
        n_real = self.s.batch_size - n_syn
        images, segs, exists, weights = [], [], [], []
        for j in range(n_real):
            rng = np.random.default_rng([self.s.seed, iteration, j])
            item = self.items[int(rng.integers(len(self.items)))]
            image, seg, exist, weight = self._real_sample(item, rng)
            images.append(image), segs.append(seg), exists.append(exist), weights.append(weight)
        for j in range(n_syn):
            rng = np.random.default_rng([self.s.seed, iteration, n_real + j])
            self.synthetic.set_epoch(int(rng.integers(2**31 - 1)))
            image, seg, exist = self.synthetic.sample(int(rng.integers(len(self.synthetic))))
            images.append(image), segs.append(seg), exists.append(exist), weights.append(np.ones_like(exist))
        to = lambda a, dtype: torch.from_numpy(np.stack(a)).to(self.device, dtype)  # noqa: E731
        return to(images, torch.float32), to(segs, torch.int64), to(exists, torch.float32), to(weights, torch.float32)

    def train_mode(self) -> None:
        """Training mode for the student; BatchNorm layers stay in eval mode with ``norm_eval``."""
        self.model.train()
        if self.s.norm_eval:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def step(self, optimizer, iteration: int) -> dict:
        self.train_mode()
        images, seg, exist, weight = self.batch(iteration)
        use_sad = self.s.distill_weight > 0
        outputs = self.model(images, with_attention=use_sad) if use_sad else self.model(images)
        loss, parts = adapt_loss(outputs, seg, exist, weight, self.s, use_sad)
        penalty = l2sp_penalty(self.model, self.anchor)
        total = loss + 0.5 * self.s.l2sp_alpha * penalty
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        parts.update(loss=float(total.detach()), l2sp=float(penalty.detach()))
        if not np.isfinite(parts["loss"]):
            raise FloatingPointError(f"adaptation loss is {parts['loss']} at iteration {iteration}")
        return parts

    def run(self) -> dict:
        t0 = time.perf_counter()
        s = self.s
        first = self.label(first=True)
        self.log(f"teacher: {first['accepted']} lanes accepted on {first['frames_with_labels']} of "
                 f"{first['frames']} frames; rejected: {first['rejected']}")
        for src, cam, sequence in zip(self.sources, self.cameras, self.sequence, strict=True):
            self.log(f"camera of {src.path}: {camera_line({**cam.describe(), 'sequence': sequence})}")
        before, before_lanes = self.criteria(keep_lanes=True)
        self.log(f"before: {_fmt(before)}")
        summary = {"pseudo_labels": [first], "criteria_before": before, "evaluations": []}
        best_value, best_state, best_it = before[CRITERION], None, 0
        base_frames = before[PER_FRAME]
        seen = before[CRITERION]  # best value evaluated so far, accepted or not (for patience)
        if not self.items:
            self.log("no frame has a trusted pseudo-label: nothing to adapt on; the base weights are kept")
        else:
            optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr)
            per_round = int(np.ceil(s.iterations / max(s.rounds, 1)))
            bar = tqdm(total=s.iterations, desc="adapt", dynamic_ncols=True, disable=None)
            stale, it, stop = 0, 0, False
            for round_index in range(max(s.rounds, 1)):
                if round_index > 0:
                    # The best accepted state teaches the next round; while none is, the base does.
                    self.model.load_state_dict(best_state if best_state is not None else self.base_state)
                    stats = self.label(first=False)
                    summary["pseudo_labels"].append(stats)
                    self.log(f"teacher refresh {round_index}: {stats['accepted']} lanes accepted on "
                             f"{stats['frames_with_labels']} frames")
                    if not self.items:
                        break
                for _ in range(min(per_round, s.iterations - it)):
                    parts = self.step(optimizer, it)
                    it += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{parts['loss']:.3f}")
                    if it % s.eval_every == 0 or it == s.iterations or it == (round_index + 1) * per_round:
                        crit, _ = self.criteria()
                        value = crit[CRITERION]
                        # Leaving the base (best_value is the base's until then) takes a clear gain,
                        # one that holds over the frames; later states only need to beat the best.
                        holds = gain_holds(crit[PER_FRAME], base_frames)
                        summary["evaluations"].append({"iteration": it, "gain_holds": holds,
                                                       **_strip(crit)})
                        clear = value >= best_value + s.min_gain - 1e-9
                        improved = (clear and holds >= s.gain_confidence if best_state is None
                                    else value > best_value + 1e-9)
                        verdict = "new best" if improved else f"best so far {best_value:.3f}"
                        if best_state is None and clear and not improved:
                            verdict += (f"; its gain held in {holds:.0%} of bootstrap resamples of the frames, "
                                        f"under {s.gain_confidence:.0%}")
                        self.log(f"it {it}: {CRITERION} {value:.3f} ({verdict}) loss "
                                 f"{parts['loss']:.3f} seg {parts['seg']:.3f} l2sp {parts['l2sp']:.4f}")
                        if improved:
                            best_value, best_it = value, it
                            best_state = copy.deepcopy(self.model.state_dict())
                        if value > seen + 1e-9:
                            seen, stale = value, 0
                        else:
                            stale += 1
                            if stale >= s.patience:
                                stop = True
                                break
                if stop:
                    self.log(f"early stop at iteration {it}: no new best {CRITERION} for {s.patience} evaluations")
                    break
            bar.close()
            summary["iterations_run"] = it
        if best_state is None:
            best_state = {k: v.clone() for k, v in self.base_state.items()}
            summary["kept_base"] = True
            if summary.get("iterations_run"):  # trained: say why no state was taken (else the log said why not)
                self.log(f"{no_clear_gain(s.min_gain, s.gain_confidence)}: the base weights are kept")
        elif s.blend < 1.0:
            best_state = blend_states(self.base_state, best_state, s.blend)
            self.log(f"blended: {1 - s.blend:.2f} x base + {s.blend:.2f} x adapted (WiSE-FT)")
        self.model.load_state_dict(best_state)
        after, after_lanes = self.criteria(keep_lanes=True)
        self.log(f"after (iteration {best_it}): {_fmt(after)}")
        summary.update(criteria_after=after, best_iteration=best_it, seconds=time.perf_counter() - t0,
                       before_lanes=before_lanes, after_lanes=after_lanes)
        return summary


def blend_states(base: dict, adapted: dict, weight: float) -> dict:
    """(1 - weight) * base + weight * adapted for every floating tensor (weights and BatchNorm
    statistics); integer buffers come from ``adapted``. Weight-space ensembling (WiSE-FT,
    Wortsman et al., CVPR 2022): trades some of the adaptation for less forgetting."""
    return soup_states([adapted, base], [weight, 1.0 - weight])  # adapted first: its integer buffers


def _strip(criteria: dict) -> dict:
    """Criteria without their per-source and per-frame parts (for the metadata and the log)."""
    return {k: v for k, v in criteria.items() if k not in ("per_source", PER_FRAME)}


def _fmt(c: dict) -> str:
    keys = (CRITERION, "lanes_per_frame", "sane_fraction", "view_agreement", "temporal_stability")
    return ", ".join(f"{k} {c[k]:.3f}" for k in keys if k in c)


def adapted_metadata(base_meta: dict, base_path: Path, sources: list[Source], settings: AdaptSettings,
                     summary: dict, cameras: list[Camera], sequence: list[bool]) -> dict:
    """Metadata of the adapted weights: the base's preprocessing and postprocess, plus what
    adaptation did. The base's measured metrics move under ``adaptation.base_metrics`` (they
    were measured on the base, not on this file)."""
    meta = {k: v for k, v in base_meta.items() if k != "metrics"}
    meta["adaptation"] = {
        "method": "filtered self-training (lanesad-train adapt): base = teacher on clean frames, pseudo-labels "
                  "kept when confident, smooth above the hood (continued straight across it), through the vanishing "
                  "point, ordered and temporally "
                  "consistent; student with strong augmentation, SAD on, synthetic share and L2-SP against "
                  f"forgetting; early stopping on {CRITERION}",
        "base_weights": str(base_path),
        "base_sha256": file_hash(base_path),
        "base_metrics": base_meta.get("metrics"),
        "sources": [s.describe() for s in sources],
        "frames": sum(len(s.frames) for s in sources),
        "settings": {**asdict(settings), "augment": asdict(STRONG_AUGMENT), "rules": asdict(LaneRules())},
        "cameras": [{**c.describe(), "sequence": seq} for c, seq in zip(cameras, sequence, strict=True)],
        "pseudo_labels": summary["pseudo_labels"],
        "criterion": CRITERION,
        "criteria_before": _strip(summary["criteria_before"]),
        "criteria_after": _strip(summary["criteria_after"]),
        "evaluations": summary["evaluations"],
        "best_iteration": summary["best_iteration"],
        "iterations_run": summary.get("iterations_run", 0),
        "kept_base": bool(summary.get("kept_base", False)),
        "seconds": round(summary["seconds"], 1),
        "adapted_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if summary.get("ground_truth"):
        meta["adaptation"]["ground_truth_metrics"] = summary["ground_truth"]
    return meta


def adapt(source_paths: list[str], out: str | Path, weights: str | Path | None = None, topic: str | None = None,
          settings: AdaptSettings | None = None, report: str | Path | None = None, log=print,
          several_cameras: bool = False) -> dict:
    """Adapt ``weights`` (default: the shipped weights) to the camera of ``source_paths``; write
    ``out`` (.safetensors + .json) and, with ``report``, a report folder. Returns the summary.
    With ``several_cameras`` the sources may have different frame sizes (cameras); each
    source's hood, vanishing point and lane top are estimated on its own frames in any case,
    and the student learns from all of them at once (how the shipped round-4 weights were
    adapted to four unlabelled drives of three cameras).

    Raises AdaptError (or SourceError) before anything is written when an input is unusable.
    """
    settings = settings or AdaptSettings()
    out = Path(out)
    if out.suffix != ".safetensors":
        raise AdaptError(f"{out}: --out must end in .safetensors")
    if settings.iterations < 1 or settings.batch_size < 1 or not 0.0 <= settings.synthetic_share < 1.0:
        raise AdaptError("--iterations and the batch size must be >= 1, the synthetic share in [0, 1)")
    if not 0.0 <= settings.blend <= 1.0:
        raise AdaptError(f"--blend must be in [0, 1], got {settings.blend}")
    if settings.batch_size - int(round(settings.batch_size * settings.synthetic_share)) < 1:
        raise AdaptError("the batch has no room for real frames (batch size too small for the synthetic share)")
    base_path = Path(weights) if weights else default_weights_path()
    sources = open_sources(list(source_paths), topic=topic, max_frames=settings.max_frames,
                           several_cameras=several_cameras)
    adapter = Adapter(sources, base_path, settings, log=log)
    log(f"adapting {base_path.name} on {sum(len(s.frames) for s in sources)} frames from {len(sources)} source(s) "
        f"on {adapter.device}: {settings.iterations} iterations max, batch {settings.batch_size}")
    summary = adapter.run()
    gt = GroundTruthScores.of(sources, summary["before_lanes"], summary["after_lanes"])
    summary["ground_truth"] = gt.result() if gt else None
    if summary["ground_truth"]:
        log(f"ground truth before/after: {summary['ground_truth']}")
    meta = adapted_metadata(adapter.meta, base_path, sources, settings, summary, adapter.cameras, adapter.sequence)
    save_weights(adapter.model.cpu(), out, meta)
    log(f"wrote {out} and {out.with_suffix('.json')} ({summary['seconds']:.0f} s)")
    if report:
        write_report(Path(report), sources, summary, meta, adapter.labels, adapter.cameras)
        log(f"report in {report}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    d = AdaptSettings()
    p = argparse.ArgumentParser(
        allow_abbrev=False, prog="lanesad-train adapt",
        description="Adapt lane-detection weights to your own camera from unlabelled recordings "
                    "(self-training with filtered pseudo-labels; see docs/adapting.md).")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="rosbag2 (folder, .mcap, .db3), video file or image folder")
    p.add_argument("--out", required=True, help="output weights (.safetensors; a .json metadata file goes beside it)")
    p.add_argument("--weights", default=None, help="base weights (default: the shipped weights)")
    p.add_argument("--topic", default=None, help="image topic of the bags (needed when a bag has several)")
    p.add_argument("--iterations", type=int, default=d.iterations, help=f"training iterations at most ({d.iterations})")
    p.add_argument("--rounds", type=int, default=d.rounds, help=f"teacher rounds; rounds-1 refreshes ({d.rounds})")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--max-frames", type=int, default=d.max_frames, help="frames kept per source, evenly spread")
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=d.threads, help="CPU threads for torch (default 1)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--blend", type=float, default=d.blend,
                   help="keep this share of the adaptation: (1-B) x base + B x adapted weights (WiSE-FT); "
                        "lower forgets less of other cameras, 1 keeps all of it (default 0.7)")
    p.add_argument("--several-cameras", action="store_true",
                   help="allow sources of different frame sizes (cameras): one set of weights for all of them; "
                        "hood, vanishing point and lane top are estimated per source in any case")
    p.add_argument("--update-norm-stats", action="store_true",
                   help="let the augmented batches update the BatchNorm statistics (default: keep the base's)")
    p.add_argument("--report", default=None, metavar="DIR", help="write a before/after report here")
    return p


def main(argv: list[str] | None = None) -> int:
    """``lanesad-train adapt ...``; exit 2 with ``lanesad-train: error: ...`` on bad input."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # no FFmpeg lines ("moov atom not found"): ours says it
    settings = AdaptSettings(iterations=args.iterations, rounds=args.rounds, batch_size=args.batch_size,
                             max_frames=args.max_frames, device=args.device, threads=args.threads, seed=args.seed,
                             blend=args.blend, norm_eval=not args.update_norm_stats)
    log = lambda text: tqdm.write(f"[{_dt.datetime.now():%H:%M:%S}] {text}", file=sys.stderr)  # noqa: E731
    try:
        adapt(args.sources, args.out, args.weights, args.topic, settings, args.report, log=log,
              several_cameras=args.several_cameras)
    except (AdaptError, SourceError, DetectorError, WeightsError) as exc:
        print(f"lanesad-train: error: {exc}", file=sys.stderr)
        return 2
    return 0

