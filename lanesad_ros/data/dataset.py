"""Torch dataset: labelled frames -> (network input, lane class mask, existence flags).

The image goes through the same ``Preprocessor`` the Detector uses at inference (crop the
top fraction, resize, normalise), so training and inference see identical inputs. Lanes
are drawn at network resolution as polylines of ``line_width`` pixels, lane slot k as
class k + 1 (0 = background); ``exist[k]`` is 1 when slot k has any pixel in the mask.

Default ``line_width``: 1 pixel per 100 input columns (8 px at 800 wide), i.e. about the
reference 16 px at 1640 wide (CULane) scaled to the input width; at least 2 px.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from lanesad_ros.data.augment import AugmentConfig, augment
from lanesad_ros.data.frames import DataError, LabelledFrame, assign_slots
from lanesad_ros.lanes import LaneSlot
from lanesad_ros.preprocess import Preprocessor


def default_line_width(input_width: int) -> int:
    return max(2, int(round(input_width / 100.0)))


def render_lane_mask(lanes: list[np.ndarray], classes: list[int], preprocessor: Preprocessor,
                     source_size: tuple[int, int], line_width: int) -> np.ndarray:
    """uint8 (H, W) mask at network resolution: each lane drawn with its class value."""
    h, w = preprocessor.input_size
    mask = np.zeros((h, w), np.uint8)
    for lane, cls in zip(lanes, classes, strict=True):
        if cls <= 0 or len(lane) < 2:
            continue
        u, v = preprocessor.to_input(lane[:, 0], lane[:, 1], source_size)
        pts = np.round(np.stack([u, v], axis=1) * 8).astype(np.int32)  # 3-bit sub-pixel
        cv2.polylines(mask, [pts], False, int(cls), int(line_width), cv2.LINE_8, 3)
    return mask


class LaneSegDataset(Dataset):
    """Lane segmentation samples: dict(image float32 (3,H,W), seg long (H,W), exist float32 (L,)).

    ``frames``: a sequence of LabelledFrame, or anything with ``len()`` and ``[i]`` giving
    one (e.g. a ``SceneGenerator``, whose frames are then rendered on the fly in the
    DataLoader workers), or a callable ``index -> LabelledFrame`` together with ``length``.
    ``num_lanes`` = 4 uses the frames' ego slots; another count re-assigns slots with that
    many per frame; 1 is binary lane segmentation (every lane class 1, as for BDD100K).
    Augmentation is drawn from ``np.random.default_rng([seed, epoch, index])``; call
    ``set_epoch`` to vary it between epochs.
    """

    def __init__(self, frames: Sequence[LabelledFrame] | Callable[[int], LabelledFrame],
                 preprocessor: Preprocessor, num_lanes: int = 4, augment: AugmentConfig | None = None,
                 line_width: int | None = None, length: int | None = None, seed: int = 0):
        if callable(frames) and not hasattr(frames, "__getitem__"):
            if length is None:
                raise ValueError("a callable frame source needs length=")
            self._get, self._len = frames, int(length)
        else:
            self._get = frames.__getitem__
            self._len = len(frames) if length is None else min(int(length), len(frames))
        if num_lanes < 1:
            raise ValueError(f"num_lanes must be >= 1, got {num_lanes}")
        self.preprocessor = preprocessor
        self.num_lanes = int(num_lanes)
        self.augment = augment
        self.line_width = int(line_width) if line_width else default_line_width(preprocessor.input_size[1])
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._len

    def _classes(self, frame: LabelledFrame, lanes, slots) -> list[int]:
        if self.num_lanes == 1:
            return [1] * len(lanes)
        if self.num_lanes != 4:
            slots = assign_slots(lanes, frame.width, self.num_lanes)
        return [s + 1 if s != LaneSlot.UNKNOWN and 0 <= s < self.num_lanes else 0 for s in slots]

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image float32 (3,H,W), seg uint8 (H,W), exist float32 (L,)) as numpy arrays."""
        if not 0 <= index < self._len:
            raise IndexError(index)
        frame = self._get(index)
        image = frame.load_image()
        lanes, slots = frame.lanes, frame.slots
        mask = None
        mask_path = frame.meta.get("seg_mask_path")
        if mask_path is not None:
            mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
            if mask is None:
                raise DataError(f"cannot read lane mask file: {mask_path}")
            if mask.shape != image.shape[:2]:
                raise DataError(f"lane mask {mask_path} is {mask.shape[::-1]}, image is {image.shape[1::-1]}")
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            image, lanes, slots, mask = augment(image, lanes, slots, self.augment, rng, mask=mask)
        src_size = (image.shape[1], image.shape[0])
        if mask is not None:
            h, w = self.preprocessor.input_size
            top = self.preprocessor.crop_rows(mask.shape[0])
            seg = cv2.resize(mask[top:], (w, h), interpolation=cv2.INTER_NEAREST)
            if self.num_lanes == 1:
                seg = (seg > 0).astype(np.uint8)
            else:
                seg[seg > self.num_lanes] = 0
        else:
            seg = render_lane_mask(lanes, self._classes(frame, lanes, slots), self.preprocessor, src_size,
                                   self.line_width)
        counts = np.bincount(seg.reshape(-1), minlength=self.num_lanes + 1)[1:self.num_lanes + 1]
        exist = (counts > 0).astype(np.float32)
        return self.preprocessor(image), seg, exist

    def __getitem__(self, index: int) -> dict:
        image, seg, exist = self.sample(index)
        return {"image": torch.from_numpy(image), "seg": torch.from_numpy(seg.astype(np.int64)),
                "exist": torch.from_numpy(exist)}
