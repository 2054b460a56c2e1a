"""``SceneGenerator``: deterministic labelled road frames, a pure function of (seed, index)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lanesad_ros.data.frames import TUSIMPLE_H_SAMPLES, DataError, LabelledFrame, assign_slots
from lanesad_ros.data.synthetic.geometry import _geometry_lanes
from lanesad_ros.data.synthetic.profile import SceneProfile, scene_profile
from lanesad_ros.data.synthetic.render import Renderer
from lanesad_ros.data.synthetic.sampling import SceneSampler
from lanesad_ros.data.tusimple import load_label_dicts, write_tusimple_labels
from lanesad_ros.fileio import atomic_path


class SceneGenerator(SceneSampler, Renderer):
    """Deterministic labelled road frames: ``frame(i)`` is the same for the same (seed, i).

    ``geometry``: a TuSimple label file, a list of files, or a list of label dicts; each
    frame then takes its lane positions from one real label set. ``length`` is what
    ``len()`` reports, so a generator can stand in for a dataset (``gen[i] == gen.frame(i)``).
    ``profile``: ``highway`` (the default, TuSimple-like), ``varied`` or ``city``, or a
    ``SceneProfile``; ``profile_options`` override its per-ingredient probabilities
    (``lanesad_ros.data.synthetic.profile``). Frames with lens distortion or roll carry their
    lanes as image polylines (``h_samples`` None); negatives (no markings) have no lanes.
    """

    def __init__(self, seed: int = 0, width: int = 1280, height: int = 720, geometry=None,
                 length: int = 10000, jitter: bool = True, profile: str | SceneProfile = "highway",
                 profile_options: dict | None = None):
        if width < 64 or height < 64:
            raise ValueError(f"image size too small: {width}x{height}")
        self.seed = int(seed)
        self.width = int(width)
        self.height = int(height)
        self.length = int(length)
        self.jitter = jitter
        self.profile = scene_profile(profile, profile_options)
        self.h_samples = np.round(TUSIMPLE_H_SAMPLES * (self.height / 720.0)).astype(np.int32)
        self.geometry = None
        if geometry is not None:
            labels = load_label_dicts(geometry)
            self.geometry = [g for g in (_geometry_lanes(lbl) for lbl in labels) if g]
            if not self.geometry:
                raise DataError(f"no usable lane geometry in {geometry!r}")
        self._noise = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> LabelledFrame:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.frame(index)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_noise"] = None  # rebuilt lazily in each DataLoader worker
        return state

    def frame(self, index: int) -> LabelledFrame:
        """Render frame ``index``: image + TuSimple-style labels of exactly what was drawn."""
        rng = np.random.default_rng([self.seed, int(index)])
        scene = self._scene(rng)
        image, hood = self._render(scene, rng)
        lanes, kinds = [], []
        for lane in [] if scene.meta.get("negative") else scene.lanes:
            pts = self._label_points(scene, lane, hood)
            if scene.lens is not None and len(pts):  # the labels move with the pixels
                pts = scene.lens.to_image(pts)
                pts = pts[(pts[:, 0] >= 0) & (pts[:, 0] <= self.width - 1)
                          & (pts[:, 1] >= 0) & (pts[:, 1] <= self.height - 1)]
            if len(pts) >= 2:
                lanes.append(pts)
                kinds.append(f"{lane.colour}-{lane.kind}")
        meta = dict(scene.meta, index=int(index), seed=self.seed, lane_kinds=kinds)
        h_samples = self.h_samples.copy() if scene.lens is None else None
        return LabelledFrame(image_path=None, image=image, lanes=lanes,
                             slots=assign_slots(lanes, self.width), h_samples=h_samples,
                             width=self.width, height=self.height, meta=meta)

    def write_tusimple(self, out_dir: str | Path, n: int, start: int = 0, quality: int = 95,
                       labels_name: str = "labels.json") -> Path:
        """Write frames start..start+n-1 as ``clips/synthetic/NNNNNN/20.jpg`` + one label json."""
        out_dir = Path(out_dir)
        frames = []
        for i in range(start, start + n):
            frame = self.frame(i)
            rel = Path("clips") / "synthetic" / f"{i:06d}" / "20.jpg"
            path = out_dir / rel
            ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            if not ok:
                raise DataError(f"cannot encode {path}")
            with atomic_path(path) as tmp:
                tmp.write_bytes(buf.tobytes())
            frame.image_path = path
            frame.meta["raw_file"] = rel.as_posix()
            frames.append(frame)
        return write_tusimple_labels(frames, out_dir / labels_name)
