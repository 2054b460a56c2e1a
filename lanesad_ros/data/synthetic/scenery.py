"""Painting what stands on the road: lane markings (solid, dashed, worn, Botts' dots), vehicles with their
shadows, and bridge / tree shadows.
"""
from __future__ import annotations

import cv2
import numpy as np

from lanesad_ros.data.synthetic.geometry import _SCALE, _SHIFT, _fx, _Lane, _Scene

_WHITE = np.array([235, 238, 240], np.float32)


_YELLOW = np.array([40, 185, 225], np.float32)  # BGR


class SceneryPainter:
    """Mixin of SceneGenerator: markings, vehicles and shadows on the rendered road."""

    # --- markings
    def _marking_segments(self, sc: _Scene, lane: _Lane):
        """(y_start, y_end) row intervals where paint is present."""
        if lane.kind == "solid":
            return [(lane.y_top, lane.y_bot)]
        length, period, phase = lane.dash
        z_far = float(sc.dist_at(lane.y_top))
        z_near = float(sc.dist_at(lane.y_bot))
        segs = []
        k0 = int(np.floor((z_near - phase) / period)) - 1
        for k in range(k0, k0 + int((z_far - z_near) / period) + 3):
            za = phase + k * period
            zb = za + length
            if zb < z_near or za > z_far:
                continue
            ya = float(sc.row_at(min(zb, z_far)))
            yb = float(sc.row_at(max(za, z_near)))
            ya, yb = max(ya, lane.y_top), min(yb, lane.y_bot)
            if yb > ya:
                segs.append((ya, yb))
        return segs

    def _markings(self, img, sc: _Scene, rng, road_base):
        rows = sc.rows
        polys_by_colour: dict[tuple, list] = {}
        for lane in sc.lanes:
            paint = _YELLOW if lane.colour == "yellow" else _WHITE * rng.uniform(0.9, 1.0)
            colour = tuple((road_base + (paint - road_base) * lane.alpha).tolist())
            if lane.kind in ("dots", "dashdots"):
                self._dots(img, sc, lane, rng, road_base)
                if lane.kind == "dots":
                    continue
            for ya, yb in self._marking_segments(sc, lane):
                n = max(2, int(yb - ya) // 2 + 2)
                ys = np.linspace(ya, yb, n, dtype=np.float32)
                xs = np.interp(ys, rows, lane.xf)
                half = np.maximum(0.5 * lane.width_m * sc.ppm(ys), 0.45)
                poly = np.concatenate([np.stack([xs - half, ys], 1), np.stack([xs + half, ys], 1)[::-1]])
                polys_by_colour.setdefault(colour, []).append(_fx(poly))
        for colour, polys in polys_by_colour.items():
            cv2.fillPoly(img, polys, colour, cv2.LINE_AA, _SHIFT)

    def _dots(self, img, sc, lane, rng, road_base):
        """Botts' dots: small round raised markers every ~1.2 m (or between dashes)."""
        spacing = rng.uniform(1.2, 3.0)
        z_far = float(sc.dist_at(lane.y_top))
        z_near = float(sc.dist_at(lane.y_bot))
        c = np.clip(road_base + (np.array([225, 230, 230]) - road_base) * max(lane.alpha, 0.6), 0, 255)
        for z in np.arange(z_near + rng.uniform(0, spacing), min(z_far, 70), spacing):
            y = float(sc.row_at(z))
            x = float(np.interp(y, sc.rows, lane.xf))
            p = float(sc.ppm(y))
            rx = 0.05 * p
            ry = max(rx * (y - sc.horizon) / sc.focal * 1.6, 0.5)
            if rx < 0.5:
                continue
            cv2.ellipse(img, (int(x * _SCALE), int(y * _SCALE)), (int(rx * _SCALE), int(ry * _SCALE)), 0, 0, 360,
                        c.tolist(), -1, cv2.LINE_AA, _SHIFT)

    # --- objects and shadows
    def _vehicles(self, img, shadow, sc: _Scene, rng, night):
        H = self.height
        n = int(rng.choice([0, 1, 2, 3, 4, 6, 9], p=[0.12, 0.13, 0.2, 0.2, 0.15, 0.12, 0.08]))
        if len(sc.lanes) < 2 or n == 0:
            return
        cars = []
        for _ in range(n):
            z = rng.uniform(10, 60) if rng.random() < 0.6 else rng.uniform(30, 130)
            j = int(rng.integers(0, len(sc.lanes) - 1))
            cars.append((z, j))
        for z, j in sorted(cars, reverse=True):  # far to near
            y = float(sc.row_at(z))
            if y > H - 5:
                continue
            p = float(sc.ppm(y))
            xa = np.interp(y, sc.rows, sc.lanes[j].xf)
            xb = np.interp(y, sc.rows, sc.lanes[j + 1].xf)
            cx = 0.5 * (xa + xb) + rng.normal(0, 0.25) * p
            truck = rng.random() < 0.2
            w = (rng.uniform(2.3, 2.6) if truck else rng.uniform(1.7, 2.0)) * p
            h = (rng.uniform(3.0, 4.0) if truck else rng.uniform(1.3, 1.8)) * p
            x0, x1 = cx - w / 2, cx + w / 2
            y1, y0 = y, y - h
            # shadow on the road under and behind the vehicle
            cv2.ellipse(shadow, (int(cx), int(y)), (int(w * 0.6), max(2, int(0.12 * h))), 0, 0, 360, 255, -1)
            palette = [(30, 30, 30), (220, 220, 225), (160, 160, 165), (40, 40, 140), (120, 60, 30),
                       (60, 60, 60), (200, 200, 200), (30, 50, 90)]
            colour = palette[int(rng.integers(len(palette)))] if not truck or rng.random() < 0.3 else (215, 215, 220)
            body = np.array(colour, np.float32) * rng.uniform(0.8, 1.1)
            if night:
                body *= 0.25
            body = np.clip(body, 0, 255)
            if truck:
                cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1 - 0.15 * h)), body.tolist(), -1, cv2.LINE_AA)
                cv2.line(img, (int(cx), int(y0)), (int(cx), int(y1 - 0.15 * h)), (body * 0.7).tolist(), 1)
                cv2.rectangle(img, (int(x0 + 0.1 * w), int(y1 - 0.15 * h)),
                              (int(x1 - 0.1 * w), int(y1)), (15, 15, 15), -1)
            else:
                # lower body, cabin narrower on top, dark rear window
                cv2.rectangle(img, (int(x0), int(y0 + 0.45 * h)),
                              (int(x1), int(y1 - 0.12 * h)), body.tolist(), -1, cv2.LINE_AA)
                cab = np.array([[x0 + 0.1 * w, y0 + 0.45 * h], [x0 + 0.2 * w, y0], [x1 - 0.2 * w, y0],
                                [x1 - 0.1 * w, y0 + 0.45 * h]])
                cv2.fillPoly(img, [_fx(cab)], body.tolist(), cv2.LINE_AA, _SHIFT)
                win = np.array([[x0 + 0.17 * w, y0 + 0.42 * h], [x0 + 0.25 * w, y0 + 0.08 * h],
                                [x1 - 0.25 * w, y0 + 0.08 * h], [x1 - 0.17 * w, y0 + 0.42 * h]])
                cv2.fillPoly(img, [_fx(win)], (rng.uniform(20, 60),) * 3, cv2.LINE_AA, _SHIFT)
                # tyres and bumper
                tw = 0.18 * w
                cv2.rectangle(img, (int(x0 + 0.02 * w), int(y1 - 0.14 * h)),
                              (int(x0 + 0.02 * w + tw), int(y1)), (12, 12, 12), -1)
                cv2.rectangle(img, (int(x1 - 0.02 * w - tw), int(y1 - 0.14 * h)),
                              (int(x1 - 0.02 * w), int(y1)), (12, 12, 12), -1)
                cv2.rectangle(img, (int(x0), int(y1 - 0.25 * h)),
                              (int(x1), int(y1 - 0.14 * h)), (body * 0.6).tolist(), -1)
                plate = (int(cx - 0.12 * w), int(y1 - 0.36 * h)), (int(cx + 0.12 * w), int(y1 - 0.26 * h))
                cv2.rectangle(img, plate[0], plate[1], (200, 200, 200) if not night else (60, 60, 60), -1)
            # tail lights
            lc = (30, 30, 230) if night else (40, 40, 170)
            ly = y0 + (0.55 if not truck else 0.75) * h
            for lx in (x0 + 0.04 * w, x1 - 0.16 * w):
                cv2.rectangle(img, (int(lx), int(ly)), (int(lx + 0.12 * w), int(ly + 0.08 * h)), lc, -1)
            if night:
                sc.meta.setdefault("lights", []).extend([(x0 + 0.1 * w, ly, 0.07 * w), (x1 - 0.1 * w, ly, 0.07 * w)])

    def _shadows(self, img, shadow, sc: _Scene, rng, left, right):
        """Tree blobs and bridge bands cast across the road (drawn into the shadow mask)."""
        H = self.height
        rows = sc.rows
        if rng.random() < 0.3:  # bridge / overpass shadow band
            za = rng.uniform(5, 60)
            zb = za + rng.uniform(4, 20)
            ya, yb = float(sc.row_at(zb)), min(float(sc.row_at(za)), H + 10)
            ys = np.linspace(ya, yb, 12)
            poly = np.concatenate([np.stack([np.interp(ys, rows, left) - 200, ys], 1),
                                   np.stack([np.interp(ys, rows, right) + 200, ys], 1)[::-1]])
            cv2.fillPoly(shadow, [_fx(poly)], 255, cv2.LINE_AA, _SHIFT)
        if rng.random() < 0.35:  # tree shadows: clusters of flattened blobs
            side = left if rng.random() < 0.5 else right
            for _ in range(rng.integers(3, 25)):
                z = rng.uniform(5, 50)
                y = float(sc.row_at(z))
                p = float(sc.ppm(y))
                x = float(np.interp(y, rows, side)) + rng.uniform(-5, 5) * p
                rx = rng.uniform(0.5, 2.0) * p
                ry = rx * max((y - sc.horizon) / sc.focal, 0.02) * rng.uniform(1.0, 2.5)
                cv2.ellipse(shadow, (int(x), int(y)), (max(1, int(rx)), max(1, int(ry))), rng.uniform(-10, 10),
                            0, 360, 255, -1, cv2.LINE_AA)
