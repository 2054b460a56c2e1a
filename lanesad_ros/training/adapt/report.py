"""The ``--report DIR`` of ``lanesad-train adapt``: what adaptation changed, frame by frame.

Writes (each file atomically):

- ``contact_sheet.png``: up to ``SHEET_FRAMES`` source frames spread over the drive, each
  as three tiles: the teacher's pseudo-labels (accepted lanes in slot colours, rejected
  ones in red, the estimated hood line in cyan, the vanishing point as a cross), the base
  weights' lanes (before) and the adapted weights' lanes (after);
- ``criteria.json`` and ``report.md``: the unlabelled criteria before and after (see
  :mod:`lanesad_ros.training.adapt.criteria`), the pseudo-label statistics, the evaluations
  behind early stopping and, when the sources have ground truth (``/lanes_gt`` in a bag,
  a TuSimple or CULane label file in a folder), TuSimple accuracy / FP / FN and CULane
  F1 before and after (``lanesad_ros.metrics``, the official definitions).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from lanesad_ros.fileio import write_bytes_atomic, write_text_atomic
from lanesad_ros.lanes import Lane
from lanesad_ros.metrics.culane import CULaneScorer
from lanesad_ros.metrics.tusimple import TuSimpleScorer
from lanesad_ros.overlay import SLOT_COLORS, draw_lanes
from lanesad_ros.training.adapt.criteria import CRITERION

SHEET_FRAMES = 24
TILE_WIDTH = 480


class GroundTruthScores:
    """TuSimple and CULane scores of the before / after lanes on the frames that have ground truth."""

    def __init__(self) -> None:
        self.scorers = {"before": {}, "after": {}}

    @classmethod
    def of(cls, sources, before_lanes, after_lanes) -> GroundTruthScores | None:
        """Scores of every frame with ground truth, or None when no source has any."""
        scores = cls()
        found = False
        for src, before, after in zip(sources, before_lanes, after_lanes, strict=True):
            for frame, b, a in zip(src.frames, before, after, strict=True):
                if frame.ground_truth is None:
                    continue
                found = True
                scores.add(frame.ground_truth, b, a, src.size, f"{src.path}:{frame.name}")
        return scores if found else None

    def add(self, gt, before: list[Lane], after: list[Lane], size: tuple[int, int], frame_id: str) -> None:
        for key, lanes in (("before", before), ("after", after)):
            scorers = self.scorers[key]
            if gt.h_samples is not None:
                scorers.setdefault("tusimple", TuSimpleScorer()).add(lanes, gt, frame_id=frame_id)
            scorers.setdefault("culane", CULaneScorer()).add(lanes, gt.lanes, image_size=size, frame_id=frame_id)

    def result(self) -> dict:
        return {key: {kind: scorer.result() for kind, scorer in scorers.items()}
                for key, scorers in self.scorers.items()}


def _tile(image: np.ndarray, lanes: list[Lane], title: str) -> np.ndarray:
    drawn = draw_lanes(image, lanes, show_confidence=False, text=title)
    scale = TILE_WIDTH / drawn.shape[1]
    return cv2.resize(drawn, (TILE_WIDTH, int(round(drawn.shape[0] * scale))), interpolation=cv2.INTER_AREA)


def _label_tile(image: np.ndarray, labels, camera) -> np.ndarray:
    out = image.copy()
    w, h = camera.size
    width = max(2, int(round(3 * w / 1280)))
    hood = np.stack([np.arange(w), camera.hood_y], axis=1)
    hood = hood[hood[:, 1] < h]
    if len(hood):
        cv2.polylines(out, [np.rint(hood).astype(np.int32).reshape(-1, 1, 2)], False, (255, 255, 0), width)
    if camera.vp is not None:
        cv2.drawMarker(out, (int(camera.vp[0]), int(camera.vp[1])), (255, 255, 0), cv2.MARKER_CROSS, 8 * width, width)
    for c in labels.lanes:
        if c.ok:
            pts, colour = c.label, SLOT_COLORS.get(c.slot, (200, 200, 200))
        else:
            pts, colour = c.raw, (0, 0, 255)
        if len(pts) >= 2:
            cv2.polylines(out, [np.rint(pts).astype(np.int32).reshape(-1, 1, 2)], False, colour, width, cv2.LINE_AA)
    return _tile(out, [], "pseudo-labels (red: rejected)")


def contact_sheet(sources, labels, cameras, before_lanes, after_lanes) -> np.ndarray:
    """Rows of (pseudo-labels | before | after) tiles for up to SHEET_FRAMES frames."""
    index = [(k, i) for k, src in enumerate(sources) for i in range(len(src.frames))]
    pick = np.unique(np.round(np.linspace(0, len(index) - 1, min(SHEET_FRAMES, len(index)))).astype(int))
    rows = []
    for p in pick:
        k, i = index[p]
        image = sources[k].frames[i].image()
        name = f"{Path(sources[k].path).name}/{sources[k].frames[i].name}"
        rows.append(np.hstack([_label_tile(image, labels[k][i], cameras[k]),
                               _tile(image, before_lanes[k][i], f"before  {name}"),
                               _tile(image, after_lanes[k][i], "after")]))
    return np.vstack(rows)


def _md_table(before: dict, after: dict) -> list[str]:
    keys = [k for k in (CRITERION, "lanes_per_frame", "sane_fraction", "view_agreement", "temporal_stability")
            if k in before]
    lines = ["| criterion | before | after |", "| --- | --- | --- |"]
    lines += [f"| {k}{' (early stopping)' if k == CRITERION else ''} | {before[k]:.3f} | {after[k]:.3f} |"
              for k in keys]
    return lines


def write_report(out: Path, sources, summary: dict, meta: dict, labels, cameras) -> None:
    """Write contact_sheet.png, criteria.json and report.md into ``out``. ``labels``: the last
    round's FrameLabels per source; ``cameras``: the Camera of each source."""
    out = Path(out)
    adaptation = meta["adaptation"]
    sheet = contact_sheet(sources, labels, cameras, summary["before_lanes"], summary["after_lanes"])
    ok, buf = cv2.imencode(".png", sheet)
    if ok:
        write_bytes_atomic(out / "contact_sheet.png", buf.tobytes())
    data = {k: adaptation[k] for k in ("criterion", "criteria_before", "criteria_after", "evaluations",
                                       "pseudo_labels", "best_iteration", "iterations_run", "kept_base", "seconds",
                                       "sources", "cameras", "settings")}
    data["ground_truth"] = summary.get("ground_truth")
    write_text_atomic(out / "criteria.json", json.dumps(data, indent=2, default=_json_default) + "\n")
    before, after = adaptation["criteria_before"], adaptation["criteria_after"]
    lines = ["# Adaptation report", "",
             f"Base weights `{adaptation['base_weights']}`; {adaptation['frames']} frames from "
             + ", ".join(f"`{s['path']}` ({s['kind']}, {s['frames']} frames)" for s in adaptation["sources"]) + ".",
             f"{adaptation['iterations_run']} iterations run; " + _outcome(adaptation)
             + f"; {adaptation['seconds']:.0f} s.", ""]
    lines += [f"- camera of `{source['path']}`: " + camera_line(camera)
              for source, camera in zip(adaptation["sources"], adaptation["cameras"], strict=True)]
    lines += ["", "## Unlabelled criteria (the deployed decoding on the frames; docs/adapting.md)", ""]
    lines += _md_table(before, after)
    lines += [""] + [f"Detected lanes failing the checks, by reason ({when}): "
                     + json.dumps(criteria.get("rejected_by_reason", {})) for when, criteria in (("before", before),
                                                                                               ("after", after))]
    lines += ["", "## Pseudo-labels (the teacher's lanes on the frames)", ""]
    for r, stats in enumerate(adaptation["pseudo_labels"]):
        lines.append(f"- round {r + 1}: {stats['accepted']} lanes accepted on {stats['frames_with_labels']} of "
                     f"{stats['frames']} frames; rejected {json.dumps(stats['rejected'])}")
    gt = summary.get("ground_truth")
    if gt:
        lines += ["", "## Ground truth", "", "| metric | before | after |", "| --- | --- | --- |"]
        for kind, keys in (("tusimple", ("accuracy", "fp", "fn")), ("culane", ("f1", "precision", "recall"))):
            if kind in gt["before"]:
                lines += [f"| {kind} {k} | {gt['before'][kind][k]:.4f} | {gt['after'][kind][k]:.4f} |" for k in keys]
                lines.append(f"| {kind} frames | {gt['before'][kind]['frames']} | {gt['after'][kind]['frames']} |")
    lines += ["", "![pseudo-labels, before, after](contact_sheet.png)", ""]
    write_text_atomic(out / "report.md", "\n".join(lines))


def no_clear_gain(min_gain: float, gain_confidence: float) -> str:
    """Why the base was kept after training (the log's line and the report's)."""
    return (f"no state was {min_gain} {CRITERION} ahead of the base with a gain that held in "
            f"{gain_confidence:.0%} of bootstrap resamples of the frames")


def _outcome(adaptation: dict) -> str:
    """What was written: the base unchanged, or the best state (blended with the base)."""
    settings = adaptation["settings"]
    if adaptation["kept_base"] and not adaptation["iterations_run"]:
        return "no frame had a trusted pseudo-label, nothing was trained: **the base weights were kept**"
    if adaptation["kept_base"]:
        return f"{no_clear_gain(settings['min_gain'], settings['gain_confidence'])}: **the base weights were kept**"
    blend = settings["blend"]
    return (f"best state at iteration {adaptation['best_iteration']}, written as "
            + (f"{1 - blend:.2f} x base + {blend:.2f} x that state (WiSE-FT; the 'after' column)" if blend < 1.0
               else "it is"))


def camera_line(camera: dict) -> str:
    """One readable line of a source's estimated camera (``Camera.describe`` + ``sequence``)."""
    vp, hood = camera.get("vanishing_point"), camera.get("hood_top_row")
    parts = [f"{camera['size'][0]}x{camera['size'][1]}",
             "vanishing point " + ("not found" if vp is None else f"({vp[0]:.0f}, {vp[1]:.0f})"),
             "no hood" if hood is None else f"hood from row {hood['median']:.0f} (median; highest {hood['min']:.0f})",
             "a sequence (lanes checked against neighbouring frames)" if camera.get("sequence")
             else "not a sequence (no temporal check)"]
    return ", ".join(parts)


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
