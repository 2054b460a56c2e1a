"""Label-consistent augmentation of a source image and its lane points.

Geometry (scale, shift, small rotation, horizontal flip) is applied to the image and the
lane points with the same affine map, before the Preprocessor crops and resizes, so the
labels stay on the markings. A flip mirrors x and swaps the ego-relative slots
(LEFT_LEFT <-> RIGHT_RIGHT, LEFT <-> RIGHT). Everything is drawn from the numpy Generator
passed in, so a (seed, index) gives the same result every time.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lanesad_ros.lanes import LaneSlot


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; zero switches one off.

    ``scale``: +- fraction of zoom about the image centre; ``translate``: +- fraction of the
    image size; ``rotate_deg``: +- degrees; ``brightness``/``contrast``/``saturation``: +-
    fractions; ``hue``: +- fraction of the hue circle; ``blur_prob``/``blur_sigma``: Gaussian
    blur; ``noise_prob``/``noise_std``: additive Gaussian noise (grey levels);
    ``flip_prob``: horizontal flip with slot swap.
    """

    scale: float = 0.1
    translate: float = 0.04
    rotate_deg: float = 3.0
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.03
    blur_prob: float = 0.2
    blur_sigma: float = 1.5
    noise_prob: float = 0.2
    noise_std: float = 6.0
    flip_prob: float = 0.5

    @classmethod
    def from_dict(cls, values: dict | None) -> "AugmentConfig":
        """Build from a config mapping; unknown keys are an error naming the key."""
        values = dict(values or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown augmentation option(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in values.items()})


def flip_slot(slot: int, num_slots: int = 4) -> int:
    """Slot seen in the mirrored image (UNKNOWN stays UNKNOWN)."""
    if slot == LaneSlot.UNKNOWN or not 0 <= slot < num_slots:
        return int(slot)
    return num_slots - 1 - int(slot)


def augment(image: np.ndarray, lanes: list[np.ndarray], slots: list[int], config: AugmentConfig,
            rng: np.random.Generator, mask: np.ndarray | None = None, num_slots: int = 4):
    """Randomly transform ``image`` (BGR uint8), its lanes ((N,2) x,y) and slots together.

    ``mask`` is an optional class mask (0 = background, k = slot k-1 + 1) warped with
    nearest-neighbour sampling and relabelled on a flip. Returns (image, lanes, slots, mask).
    """
    h, w = image.shape[:2]
    lanes = [np.asarray(l, dtype=np.float32).reshape(-1, 2) for l in lanes]
    slots = list(slots)
    flip = config.flip_prob > 0 and rng.random() < config.flip_prob
    s = 1.0 + rng.uniform(-config.scale, config.scale)
    angle = rng.uniform(-config.rotate_deg, config.rotate_deg)
    tx = rng.uniform(-config.translate, config.translate) * w
    ty = rng.uniform(-config.translate, config.translate) * h
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, s)
    m[0, 2] += tx
    m[1, 2] += ty
    if flip:  # x -> w - 1 - x after the affine map
        m = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
    identity = np.allclose(m, [[1, 0, 0], [0, 1, 0]])
    if not identity:
        image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        if mask is not None:
            mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=0)
        lanes = [l @ m[:, :2].T.astype(np.float32) + m[:, 2].astype(np.float32) for l in lanes]
    if flip:
        lanes = lanes[::-1]  # mirrored, so left-to-right order reverses
        slots = [flip_slot(s, num_slots) for s in slots[::-1]]
        if mask is not None:
            lut = np.arange(256, dtype=np.uint8)
            lut[1:num_slots + 1] = [flip_slot(k, num_slots) + 1 for k in range(num_slots)]
            mask = lut[mask]
    image = _photometric(image, config, rng)
    return image, lanes, slots, mask


def _photometric(image: np.ndarray, c: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation, hue, blur and noise on a BGR uint8 image."""
    b = 1.0 + rng.uniform(-c.brightness, c.brightness)
    k = 1.0 + rng.uniform(-c.contrast, c.contrast)
    sat = 1.0 + rng.uniform(-c.saturation, c.saturation)
    hue = rng.uniform(-c.hue, c.hue)
    blur = c.blur_prob > 0 and rng.random() < c.blur_prob
    sigma = rng.uniform(0.3, max(c.blur_sigma, 0.3))
    noisy = c.noise_prob > 0 and rng.random() < c.noise_prob
    noise_seed = int(rng.integers(2**31))
    if k != 1.0 or b != 1.0:
        mean = float(image.mean())
        lut = np.clip(((np.arange(256, dtype=np.float32) - mean) * k + mean) * b, 0, 255).astype(np.uint8)
        image = cv2.LUT(image, lut)
    if sat != 1.0 or hue != 0.0:
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        hch, sch, vch = cv2.split(hsv)
        if hue != 0.0:
            hch = ((hch.astype(np.int16) + int(round(hue * 180))) % 180).astype(np.uint8)
        if sat != 1.0:
            sch = cv2.convertScaleAbs(sch, alpha=sat)
        image = cv2.cvtColor(cv2.merge([hch, sch, vch]), cv2.COLOR_HSV2BGR)
    if blur:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    if noisy and c.noise_std > 0:
        noise = np.random.default_rng(noise_seed).normal(0, c.noise_std, image.shape).astype(np.float32)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return image
