"""The project's synthetic road scenes (``data.synthetic.SceneGenerator``) -> bag with images and exact ground truth."""
from __future__ import annotations

from pathlib import Path

from lanesad_ros.data.synthetic import SceneGenerator
from lanesad_ros.ros.bag.writer import write_frames


def synthetic(out: str | Path, frames: int, seed: int = 0, geometry: str | Path | None = None,
              width: int = 1280, height: int = 720, **kwargs) -> int:
    """The project's synthetic road scenes -> bag with images and exact ground truth."""
    gen = SceneGenerator(seed=seed, width=width, height=height, geometry=geometry)

    def scenes():
        for i in range(frames):
            f = gen.frame(i)
            yield f.image, f

    return write_frames(out, scenes(), total=frames, desc="synthetic", **kwargs)
