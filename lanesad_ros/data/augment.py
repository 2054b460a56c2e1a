"""Label-consistent augmentation of a source image and its lane points.

Geometry (scale, shift, small rotation, horizontal flip, and a vertical shift that moves the
horizon as another camera pitch would) is applied to the image and the lane points with the
same affine map, before the Preprocessor crops and resizes, so the labels stay on the
markings. Photometric changes model what a real camera adds: exposure (brightness,
contrast, gamma; dusk and night as a strong darkening with sensor noise), white balance
(colour temperature), saturation and hue, defocus blur, noise, JPEG artefacts, cast shadows
and glare. None of them moves a label. A flip mirrors x and swaps the ego-relative slots
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
    ``flip_prob``: horizontal flip with slot swap; ``pitch``: +- fraction of the image height
    the whole picture moves vertically (the horizon of a camera pitched differently);
    ``gamma``: gamma drawn log-uniformly in [1/(1+gamma), 1+gamma]; ``night_prob``: a dusk or
    night exposure (brightness x 0.25..0.6, then noise); ``temperature``: +- relative gain of
    red against blue (white balance); ``jpeg_prob``/``jpeg_quality``: re-encode as JPEG at a
    quality drawn from [jpeg_quality, 95]; ``shadow_prob``: a soft-edged quadrilateral shadow
    (x 0.35..0.75) across the road; ``glare_prob``: a bright radial blob (sun or headlights).
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
    pitch: float = 0.0
    gamma: float = 0.0
    night_prob: float = 0.0
    temperature: float = 0.0
    jpeg_prob: float = 0.0
    jpeg_quality: float = 30.0
    shadow_prob: float = 0.0
    glare_prob: float = 0.0

    @classmethod
    def from_dict(cls, values: dict | None) -> AugmentConfig:
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
    if config.pitch > 0:
        ty += rng.uniform(-config.pitch, config.pitch) * h
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
    image = _camera_effects(image, config, rng)
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


def _camera_effects(image: np.ndarray, c: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Gamma, night exposure, white balance, shadow, glare and JPEG artefacts (BGR uint8)."""
    h, w = image.shape[:2]
    if c.gamma > 0:
        gamma = float(np.exp(rng.uniform(-np.log1p(c.gamma), np.log1p(c.gamma))))
        lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
        image = cv2.LUT(image, lut)
    if c.temperature > 0:
        t = rng.uniform(-c.temperature, c.temperature)
        gains = np.array([1.0 - t, 1.0, 1.0 + t], np.float32)  # B, G, R
        image = np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)
    if c.shadow_prob > 0 and rng.random() < c.shadow_prob:
        # a quadrilateral from the top of the road area to the bottom edge, soft-edged
        xs = np.sort(rng.uniform(-0.2, 1.2, 4)) * w
        top, bottom = rng.uniform(0.35, 0.8) * h, h
        quad = np.array([[xs[0], bottom], [xs[1], top], [xs[2], top], [xs[3], bottom]], np.int32)
        mask = np.zeros((h, w), np.float32)
        cv2.fillConvexPoly(mask, quad, 1.0)
        mask = cv2.GaussianBlur(mask, (0, 0), max(2.0, 0.01 * w))
        dark = rng.uniform(0.35, 0.75)
        image = (image.astype(np.float32) * (1.0 - (1.0 - dark) * mask[..., None])).astype(np.uint8)
    if c.glare_prob > 0 and rng.random() < c.glare_prob:
        cx, cy = rng.uniform(0, w), rng.uniform(0, 0.7 * h)
        radius = rng.uniform(0.08, 0.35) * w
        yy, xx = np.ogrid[:h, :w]
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * radius**2)).astype(np.float32)
        gain = rng.uniform(80, 220)
        image = np.clip(image.astype(np.float32) + gain * blob[..., None], 0, 255).astype(np.uint8)
    if c.night_prob > 0 and rng.random() < c.night_prob:
        scale = rng.uniform(0.25, 0.6)
        noise = np.random.default_rng(int(rng.integers(2**31))).normal(0, 4.0, image.shape)
        image = np.clip(image.astype(np.float32) * scale + noise, 0, 255).astype(np.uint8)
    if c.jpeg_prob > 0 and rng.random() < c.jpeg_prob:
        quality = int(rng.uniform(min(c.jpeg_quality, 95), 95))
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return image
