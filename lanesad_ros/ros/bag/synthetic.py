"""The project's synthetic road scenes (``data.synthetic.SceneGenerator``) -> bag with images and exact ground truth."""
from __future__ import annotations

from pathlib import Path

from lanesad_ros.data.synthetic import SceneGenerator
from lanesad_ros.ros.bag.typestore import NOMINAL_RATE_HZ
from lanesad_ros.ros.bag.writer import nominal_timing, write_frames


def synthetic(out: str | Path, frames: int, seed: int = 0, geometry: str | Path | None = None,
              width: int = 1280, height: int = 720, rate_hz: float = NOMINAL_RATE_HZ, **kwargs) -> int:
    """The project's synthetic road scenes -> bag with images and exact ground truth, at a nominal
    ``rate_hz`` (scenes have no frame times; the bag says so)."""
    gen = SceneGenerator(seed=seed, width=width, height=height, geometry=geometry)

    def scenes():
        for i in range(frames):
            f = gen.frame(i)
            yield f.image, f

    return write_frames(out, scenes(), rate_hz=rate_hz, total=frames, desc="synthetic",
                        timing=nominal_timing(rate_hz, "synthetic scenes have no frame times"), **kwargs)
