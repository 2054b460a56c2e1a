"""Self-training: pseudo-labels (TuSimple json lines) of unlabelled images from a trained model."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lanesad_ros.data.frames import TUSIMPLE_H_SAMPLES, read_image
from lanesad_ros.data.tusimple import write_tusimple_labels
from lanesad_ros.detector import Detector


def pseudo_label(weights: str | Path, images: Sequence[str | Path], root: str | Path, out: str | Path,
                 min_confidence: float = 0.5, min_points: int = 8) -> Path:
    """Label unlabelled images with a trained model: TuSimple json lines for a later run.

    Each kept lane (existence >= ``min_confidence``, at least ``min_points`` rows) is sampled
    at TuSimple's h_samples scaled to the image height; ``raw_file`` is relative to ``root``
    so a ``type: tusimple`` data entry with that root reads the file back.
    """
    detector = Detector.from_weights(weights, device="cpu", backend="torch")
    root = Path(root)
    labels = []
    for image_path in map(Path, images):
        bgr = read_image(image_path)
        h_samples = np.round(TUSIMPLE_H_SAMPLES * (bgr.shape[0] / 720.0)).astype(int)
        lanes = []
        for lane in detector.detect(bgr).lanes:
            xs = lane.x_at_rows(h_samples.astype(np.float32))
            if lane.confidence >= min_confidence and int((xs >= 0).sum()) >= min_points:
                lanes.append(np.where(xs >= 0, np.round(xs), -2).astype(int).tolist())
        labels.append({"lanes": lanes, "h_samples": h_samples.tolist(),
                       "raw_file": os.path.relpath(image_path, root)})
    return write_tusimple_labels(labels, out)
