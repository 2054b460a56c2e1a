"""Dusk and rain for the varied profiles: a low warm sky and dim light; a wet road that mirrors
lights as vertical streaks (bright, lane-like and never a lane), rain streaks and lens glare;
and the CULane-like hood that fills the bottom 10-15 % of the frame.
"""
from __future__ import annotations

import cv2
import numpy as np

from lanesad_ros.data.synthetic.geometry import _SHIFT, _fx, _lowres_noise


class WeatherPainter:
    """Mixin of SceneGenerator: dusk, rain and the CULane-like hood."""

    def _dusk(self, img, sc, rng):
        """Dusk: the sky tinted from dark blue to orange at the horizon, everything dimmer and warmer."""
        W = self.width
        yh = int(sc.horizon) + 1
        top = np.array([rng.uniform(60, 110), rng.uniform(30, 60), rng.uniform(30, 60)])
        bottom = np.array([rng.uniform(60, 120), rng.uniform(120, 170), rng.uniform(190, 250)])
        col = np.linspace(top, bottom, 16, dtype=np.float32)[:, None, :]
        sky = cv2.resize(col, (W, yh), interpolation=cv2.INTER_LINEAR)
        img[:yh] = cv2.addWeighted(img[:yh], 0.4, np.clip(sky, 0, 255).astype(np.uint8), 0.6, 0)
        level = rng.uniform(0.4, 0.7)
        cv2.multiply(img, (0.85 * level, 0.92 * level, level, 0.0), dst=img)

    def _rain(self, img, sc, rng, dark):
        """Wet road: light sources mirrored as vertical streaks, rain streaks and a glare veil."""
        W, H = self.width, self.height
        lights = sc.meta.pop("lights", [])
        for _ in range(int(rng.integers(2, 7))):  # street lamps and distant headlights
            lights.append((rng.uniform(0, W), sc.horizon - rng.uniform(-3, 0.3 * sc.horizon), rng.uniform(2, 6)))
        glow = np.zeros((H, W), np.uint8)
        for x, y, r in lights:
            if not (0 <= x < W and 0 <= y < H):
                continue
            y_road = max(y, sc.horizon + 2.0)
            length = rng.uniform(0.2, 0.6) * (H - y_road)
            level = int(rng.uniform(120, 255) * (1.0 if dark < 1 else 0.6))
            cv2.ellipse(glow, (int(x), int(y_road + 0.5 * length)), (max(1, int(r)), max(1, int(0.5 * length))), 0,
                        0, 360, level, -1, cv2.LINE_AA)
            cv2.circle(glow, (int(x), int(y)), max(2, int(r)), 255, -1, cv2.LINE_AA)
        glow = cv2.GaussianBlur(glow, (0, 0), sigmaX=rng.uniform(1.5, 3.0), sigmaY=rng.uniform(4.0, 10.0))
        warm = cv2.merge([glow // 2, (glow * 0.8).astype(np.uint8), glow])
        cv2.add(img, warm, dst=img)
        # rain streaks: short slanted bright lines, blurred
        streaks = np.zeros((H, W), np.uint8)
        slant = rng.uniform(-0.3, 0.3)
        n = int(rng.integers(40, 200))
        xs, ys = rng.uniform(0, W, n), rng.uniform(0, H, n)
        ls = rng.uniform(0.02, 0.06, n) * H
        for x, y, ln in zip(xs, ys, ls, strict=True):
            cv2.line(streaks, (int(x), int(y)), (int(x + slant * ln), int(y + ln)), int(rng.uniform(40, 110)), 1,
                     cv2.LINE_AA)
        veil = (np.clip(_lowres_noise(rng, (H, W), (3, 5)) * 0.5 + 0.5, 0, 1) * rng.uniform(10, 60)).astype(np.uint8)
        add = cv2.add(cv2.GaussianBlur(streaks, (0, 0), 0.8), veil)
        cv2.add(img, cv2.merge([add, add, add]), dst=img)

    def _culane_hood(self, img, sc, rng, dark):
        """A CULane-like bonnet over the bottom 10-15 %: dark paint with a sky reflection band."""
        W, H = self.width, self.height
        y0 = H - rng.uniform(0.10, 0.15) * H
        bend = rng.uniform(0.02, 0.06) * H
        xs = np.linspace(0, W - 1, 33)
        top = y0 + bend * ((xs - W / 2 + rng.normal(0, 0.05 * W)) / (W / 2)) ** 2
        poly = np.concatenate([np.stack([xs, top], 1), [[W - 1, H + 5], [0, H + 5]]])
        c = np.array([rng.uniform(15, 90), rng.uniform(15, 80), rng.uniform(15, 110)]) * dark
        cv2.fillPoly(img, [_fx(poly)], c.tolist(), cv2.LINE_AA, _SHIFT)
        band = np.concatenate([np.stack([xs, top + 1], 1), np.stack([xs, top + rng.uniform(3, 10)], 1)[::-1]])
        cv2.fillPoly(img, [_fx(band)], np.clip(c + rng.uniform(30, 90) * dark, 0, 255).tolist(), cv2.LINE_AA, _SHIFT)
