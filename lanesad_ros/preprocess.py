"""Source image -> network input, and network coordinates -> source pixels.

Training, the Detector and evaluation all go through this one class, so a weights file's
metadata (input size, crop, normalisation) means the same thing everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# ImageNet statistics, RGB order, on a 0..1 scale: the usual default for these backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessor:
    """Crop the sky (top ``crop_top`` fraction of the rows), resize, RGB, normalise, CHW.

    ``input_size`` is (height, width) of the network input.
    """

    input_size: tuple[int, int]
    crop_top: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not 0.0 <= self.crop_top < 1.0:
            raise ValueError(f"crop_top must be in [0, 1), got {self.crop_top}")
        h, w = self.input_size
        if h <= 0 or w <= 0:
            raise ValueError(f"input_size must be positive (height, width), got {self.input_size}")

    @classmethod
    def from_metadata(cls, metadata: dict) -> Preprocessor:
        """The Preprocessor a weights file's metadata describes (``input_size``, ``crop_top``,
        ``mean``, ``std``); ValueError/TypeError/KeyError on bad fields."""
        mean = tuple(float(v) for v in metadata.get("mean", IMAGENET_MEAN))
        std = tuple(float(v) for v in metadata.get("std", IMAGENET_STD))
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {mean} and {std}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std values must be positive, got {std}")
        height, width = (int(v) for v in metadata["input_size"])
        return cls(input_size=(height, width), crop_top=float(metadata.get("crop_top", 0.0)), mean=mean, std=std)

    def crop_rows(self, source_height: int) -> int:
        """Number of rows removed from the top of a source image of this height."""
        return int(round(self.crop_top * source_height))

    def resize(self, bgr: np.ndarray) -> np.ndarray:
        """Crop and resize a BGR uint8 image to the network's input size (still uint8, HWC)."""
        if bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 BGR image, got shape {bgr.shape}")
        top = self.crop_rows(bgr.shape[0])
        h, w = self.input_size
        return cv2.resize(bgr[top:], (w, h), interpolation=cv2.INTER_LINEAR)

    def normalise(self, resized_bgr: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 BGR HWC at input size -> float32 RGB CHW, normalised. Writes into ``out`` if given."""
        blob = cv2.dnn.blobFromImage(resized_bgr, scalefactor=1.0 / 255.0, swapRB=True)[0]
        blob -= np.asarray(self.mean, dtype=np.float32)[:, None, None]
        blob /= np.asarray(self.std, dtype=np.float32)[:, None, None]
        if out is not None:
            out[...] = blob
            return out
        return blob

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 source image -> float32 (3, H, W) network input."""
        return self.normalise(self.resize(bgr))

    def to_source(self, u: np.ndarray, v: np.ndarray, source_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Network-input pixel coordinates (u column, v row) -> source pixels (x, y).

        ``source_size`` is (width, height). Pixel centres map onto pixel centres, as
        cv2.resize samples them.
        """
        src_w, src_h = source_size
        top = self.crop_rows(src_h)
        h, w = self.input_size
        sx = src_w / w
        sy = (src_h - top) / h
        x = (np.asarray(u, dtype=np.float32) + 0.5) * sx - 0.5
        y = (np.asarray(v, dtype=np.float32) + 0.5) * sy - 0.5 + top
        return x, y

    def to_input(self, x: np.ndarray, y: np.ndarray, source_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Source pixels (x, y) -> network-input coordinates (u, v); inverse of to_source."""
        src_w, src_h = source_size
        top = self.crop_rows(src_h)
        h, w = self.input_size
        u = (np.asarray(x, dtype=np.float32) + 0.5) * (w / src_w) - 0.5
        v = (np.asarray(y, dtype=np.float32) - top + 0.5) * (h / (src_h - top)) - 0.5
        return u, v
