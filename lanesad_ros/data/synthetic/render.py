"""Rendering one synthetic frame: sky, ground, roadside (barriers, guardrails, trees), asphalt or concrete
texture, then the scenery painters, lighting (night, glare), the car hood and camera effects
(blur, noise, JPEG artefacts).
"""
from __future__ import annotations

import cv2
import numpy as np

from lanesad_ros.data.synthetic.city import CityPainter
from lanesad_ros.data.synthetic.geometry import _SHIFT, _chance, _fx, _lowres_noise, _Scene
from lanesad_ros.data.synthetic.scenery import SceneryPainter
from lanesad_ros.data.synthetic.weather import WeatherPainter


def _tree(img, rng, x, y, height, colour, dim):
    """A tree standing at (x, y): a trunk and a leafy crown of many small shaded blobs."""
    if height < 2:
        return
    crown_r = height * rng.uniform(0.25, 0.4)
    cy = y - height + crown_r
    cv2.line(img, (int(x), int(y)), (int(x), int(cy)), (25 * dim, 35 * dim, 45 * dim),
             max(1, int(height * 0.04)), cv2.LINE_AA)
    for _ in range(int(rng.integers(10, 25))):
        ang = rng.uniform(0, 2 * np.pi)
        rad = crown_r * np.sqrt(rng.uniform(0, 1))
        bx, by = x + rad * np.cos(ang) * 1.2, cy + rad * np.sin(ang) * 0.9
        br = crown_r * rng.uniform(0.25, 0.5)
        shade = np.clip(colour * rng.uniform(0.55, 1.35), 0, 255)
        cv2.ellipse(img, (int(bx), int(by)), (max(1, int(br)), max(1, int(br * 0.85))), 0, 0, 360,
                    shade.tolist(), -1, cv2.LINE_AA)


class Renderer(SceneryPainter, CityPainter, WeatherPainter):
    """Mixin of SceneGenerator: ``_render(scene, rng) -> (BGR image, hood)``."""

    def _noise_bank(self):
        if self._noise is None:
            rng = np.random.default_rng([self.seed, 0x5EED])
            n = rng.normal(0, 1, (self.height + 64, self.width + 64)).astype(np.float32)
            fine = cv2.GaussianBlur(n, (0, 0), 0.7)
            fine = fine / fine.std()
            grain = np.clip(n * 10, -60, 60)
            self._noise = {
                "fine": fine,
                "grain_pos": np.clip(grain, 0, 255).astype(np.uint8),
                "grain_neg": np.clip(-grain, 0, 255).astype(np.uint8),
            }
        return self._noise

    def _crop(self, arr, rng):
        oy, ox = rng.integers(0, 64, 2)
        return arr[oy:oy + self.height, ox:ox + self.width]

    def _render(self, sc: _Scene, rng):
        W, H = self.width, self.height
        prof = self.profile
        night = rng.random() < prof.night
        dusk = not night and _chance(rng, prof.dusk)
        rain = _chance(rng, prof.rain)
        sc.meta["night"] = bool(night)
        if prof.name != "highway":
            sc.meta.update(dusk=bool(dusk), rain=bool(rain))
        city = sc.meta.get("city", False)
        dark = 0.3 if night else 1.0
        img = np.empty((H, W, 3), np.uint8)
        yh = int(sc.horizon)
        self._sky(img, sc, rng, night)
        if city:
            left_edge, right_edge = self._city_edges(sc)
            self._pavement(img, sc, rng, dark)
            self._buildings(img, sc, rng, dark)
        else:
            left_edge, right_edge = self._edges(sc, rng)
            self._ground(img, sc, rng, night)
            self._roadside(img, sc, rng, left_edge, right_edge, night)
        gain = np.ones((H, W), np.float32)
        road_base = self._road(img, gain, sc, rng, left_edge, right_edge)
        if city:
            if sc.meta["intersection"]:
                self._crossing_road(img, sc, road_base)
            self._kerbs(img, sc, rng, dark)
            self._road_paint(img, sc, rng, road_base)
        if not sc.meta.get("negative"):
            self._markings(img, sc, rng, road_base)
        shadow = np.zeros((H, W), np.uint8)
        self._vehicles(img, shadow, sc, rng, night)
        if city:
            self._city_cars(img, shadow, sc, rng, night)
        self._shadows(img, shadow, sc, rng, left_edge, right_edge)
        # Road texture and shadows act multiplicatively on everything below the horizon.
        noise = self._noise_bank()
        tex_amp = rng.uniform(0.03, 0.09)
        low = _lowres_noise(rng, (H - yh, W), (6, 10)) * rng.uniform(0.03, 0.10)
        gain[yh:] *= 1.0 + low + tex_amp * self._crop(noise["fine"], rng)[yh:]
        if shadow.any():
            soft = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(1.0, 4.0))
            gain *= 1.0 - soft.astype(np.float32) * (rng.uniform(0.45, 0.7) / 255.0)
        if rain:  # a wet road is darker
            gain[yh:] *= rng.uniform(0.6, 0.85)
        if night:
            self._night_gain(gain, sc, rng)
        else:
            vign = rng.uniform(0.0, 0.25)
            if vign > 0.02:
                gx = np.linspace(-1, 1, W, dtype=np.float32)[None, :] ** 2
                gy = np.linspace(-1, 1, H, dtype=np.float32)[:, None] ** 2
                gain *= 1.0 - vign * 0.5 * (gx + gy)
        img = cv2.multiply(img, cv2.merge([gain, gain, gain]), dtype=cv2.CV_8U)
        hood = self._hood(img, sc, rng, night)
        if night:
            self._night_lights(img, sc, rng)
        elif rng.random() < 0.12:
            sc.meta["glare"] = True
            self._sun_glare(img, sc, rng)
        if rain:
            self._rain(img, sc, rng, dark)
        if dusk:
            self._dusk(img, sc, rng)
        sc.meta.pop("lights", None)
        if sc.lens is not None:
            img = sc.lens.warp(img)
        if sc.meta.get("hood") == "culane":
            self._culane_hood(img, sc, rng, dark)
        img = self._camera(img, rng, noise)
        return img, hood

    # --- background
    def _sky(self, img, sc, rng, night):
        W, H = self.width, self.height
        yh = int(sc.horizon) + 1
        if night:
            top = rng.uniform(5, 25, 3)
            bottom = top + rng.uniform(5, 30, 3)
        else:
            kind = rng.random()
            if kind < 0.45:  # overcast grey (TuSimple)
                g = rng.uniform(90, 200)
                top = np.array([g + 10, g, g - 5]) * rng.uniform(0.5, 0.9)
                bottom = np.array([g + 20, g + 15, g + 10])
            else:  # clear blue
                top = np.array([rng.uniform(150, 220), rng.uniform(90, 140), rng.uniform(20, 70)])
                bottom = np.array([rng.uniform(200, 250), rng.uniform(170, 225), rng.uniform(130, 200)])
        col = np.linspace(top, bottom, 16, dtype=np.float32)[:, None, :]
        sky = cv2.resize(col, (W, yh), interpolation=cv2.INTER_LINEAR)
        if not night and rng.random() < 0.6:
            clouds = np.clip(_lowres_noise(rng, (yh, W), (4, 8)) * 0.6 + rng.uniform(-0.3, 0.3), 0, 1)
            c = rng.uniform(140, 235)
            sky += (c - sky) * clouds[..., None] * rng.uniform(0.3, 0.8)
        img[:yh] = np.clip(sky, 0, 255).astype(np.uint8)
        # Distant hills / mountains and a tree line on the horizon.
        if rng.random() < 0.75:
            prof = _lowres_noise(rng, (1, W), (1, 6))[0]
            height = rng.uniform(0.03, 0.12) * H
            ys = sc.horizon - height * (0.6 + 0.4 * prof)
            xs = np.arange(W, dtype=np.float32)
            pts = np.concatenate([np.stack([xs, ys], 1), [[W - 1, sc.horizon + 2], [0, sc.horizon + 2]]])
            grey = rng.uniform(60, 120)
            haze = bottom * 0.5 + (np.array([grey, grey * 1.05, grey * 0.95]) + rng.uniform(-10, 10, 3)) * 0.5
            haze = haze if not night else bottom * 0.8
            cv2.fillPoly(img, [_fx(pts)], haze.tolist(), cv2.LINE_AA, _SHIFT)
        # Tree line along the horizon: a bumpy band, then many small leafy blobs on it.
        tree_col = np.array([rng.uniform(25, 60), rng.uniform(45, 90), rng.uniform(30, 65)]) * (0.3 if night else 1)
        if rng.random() < 0.7:
            prof = np.abs(_lowres_noise(rng, (1, W), (1, int(rng.integers(20, 80))))[0])
            band_h = rng.uniform(0.01, 0.05) * H
            xs = np.arange(W, dtype=np.float32)
            ys = sc.horizon + 2 - band_h * (0.3 + prof)
            pts = np.concatenate([np.stack([xs, ys], 1), [[W - 1, sc.horizon + 3], [0, sc.horizon + 3]]])
            cv2.fillPoly(img, [_fx(pts)], (tree_col * rng.uniform(0.5, 0.9)).tolist(), cv2.LINE_AA, _SHIFT)
        for _ in range(int(rng.integers(40, 200))):
            x = rng.uniform(0, W)
            r = rng.uniform(0.002, 0.012) * W
            cy = sc.horizon - rng.uniform(-0.2, 2.0) * r
            shade = np.clip(tree_col * rng.uniform(0.6, 1.4), 0, 255)
            cv2.ellipse(img, (int(x), int(cy)), (max(1, int(r)), max(1, int(r * rng.uniform(0.6, 1.1)))), 0, 0, 360,
                        shade.tolist(), -1, cv2.LINE_AA)
        if rng.random() < 0.12:  # overpass across the sky
            y0 = rng.uniform(0.25, 0.9) * sc.horizon
            th = rng.uniform(0.02, 0.06) * H
            c = (rng.uniform(30, 90) * (0.3 if night else 1),) * 3
            cv2.rectangle(img, (0, int(y0)), (W, int(y0 + th)), c, -1)
            for _ in range(rng.integers(1, 4)):
                px = rng.uniform(0, W)
                cv2.rectangle(img, (int(px), int(y0 + th)), (int(px + rng.uniform(10, 40)), int(sc.horizon + 3)), c, -1)

    def _edges(self, sc: _Scene, rng):
        ppm = sc.ppm(sc.rows)
        left = sc.lanes[0].xf - rng.uniform(0.3, 3.5) * ppm
        right = sc.lanes[-1].xf + rng.uniform(0.3, 3.5) * ppm
        return left, right

    def _ground(self, img, sc, rng, night):
        yh = int(sc.horizon) + 1
        if rng.random() < 0.5:  # dry grass / dirt
            g = rng.uniform(80, 150)
            base = np.array([g * rng.uniform(0.6, 0.8), g * rng.uniform(0.85, 1.0), g])
        else:  # green vegetation
            g = rng.uniform(50, 110)
            base = np.array([g * rng.uniform(0.6, 0.8), g, g * rng.uniform(0.75, 0.95)])
        if night:
            base *= 0.3
        img[yh:] = base.astype(np.uint8)

    def _roadside(self, img, sc, rng, left, right, night):
        """Concrete barrier / guardrail / trees along the road edges."""
        H = self.height
        rows = sc.rows
        ppm = sc.ppm(rows)
        dim = 0.3 if night else 1.0
        for side, edge in (("left", left), ("right", right)):
            sgn = -1 if side == "left" else 1
            r = rng.random()
            if r < 0.5:  # concrete barrier
                off = edge + sgn * rng.uniform(0.2, 1.5) * ppm
                hb = rng.uniform(0.8, 1.2)
                top = rows - hb * ppm
                face = np.concatenate([np.stack([off, rows], 1), np.stack([off, top], 1)[::-1]])
                c = rng.uniform(120, 200) * dim
                cv2.fillPoly(img, [_fx(face)], (c, c, c * rng.uniform(0.92, 1.05)), cv2.LINE_AA, _SHIFT)
                far = off + sgn * 0.3 * ppm
                topface = np.concatenate([np.stack([off, top], 1), np.stack([far, top - 0.05 * ppm], 1)[::-1]])
                cv2.fillPoly(img, [_fx(topface)], (c * 0.8,) * 3, cv2.LINE_AA, _SHIFT)
                cv2.polylines(img, [_fx(np.stack([off, rows], 1))], False, (c * 0.45,) * 3, 2, cv2.LINE_AA, _SHIFT)
            elif r < 0.8:  # guardrail on posts
                off = edge + sgn * rng.uniform(0.3, 2.0) * ppm
                lo, hi = rows - 0.5 * ppm, rows - 0.8 * ppm
                c = rng.uniform(110, 190) * dim
                for z in np.arange(rng.uniform(3, 6), 80, rng.uniform(2.0, 4.0)):
                    y = float(sc.row_at(z))
                    if y >= H + 50:
                        continue
                    x = float(np.interp(y, rows, off))
                    p = float(sc.ppm(y))
                    cv2.line(img, (int(x), int(y)), (int(x), int(y - 0.75 * p)), (c * 0.5,) * 3,
                             max(1, int(0.12 * p)), cv2.LINE_AA)
                band = np.concatenate([np.stack([off, lo], 1), np.stack([off, hi], 1)[::-1]])
                cv2.fillPoly(img, [_fx(band)], (c, c, c), cv2.LINE_AA, _SHIFT)
            # Trees / bushes beyond the edge, far to near
            tree_col = np.array([rng.uniform(25, 60), rng.uniform(50, 95), rng.uniform(35, 70)]) * dim
            for z in np.sort(rng.uniform(20, 140, rng.integers(0, 10)))[::-1]:
                y = float(sc.row_at(z))
                p = float(sc.ppm(y))
                x = float(np.interp(y, rows, edge)) + sgn * rng.uniform(3, 10) * p
                _tree(img, rng, x, y, rng.uniform(5, 12) * p, tree_col, dim)
            # Light poles and the odd sign board
            if rng.random() < 0.25:
                step = rng.uniform(30, 70)
                pole_c = (rng.uniform(60, 140) * dim,) * 3
                for z in np.arange(rng.uniform(12, 30), 200, step)[::-1]:
                    y = float(sc.row_at(z))
                    p = float(sc.ppm(y))
                    x = float(np.interp(y, rows, edge)) + sgn * 1.5 * p
                    top = y - rng.uniform(9, 12) * p
                    cv2.line(img, (int(x), int(y)), (int(x), int(top)), pole_c, max(1, int(0.15 * p)), cv2.LINE_AA)
                    cv2.line(img, (int(x), int(top)), (int(x - sgn * 2.5 * p), int(top + 0.3 * p)), pole_c,
                             max(1, int(0.2 * p)), cv2.LINE_AA)
            if rng.random() < 0.25:
                z = rng.uniform(30, 120)
                y = float(sc.row_at(z))
                p = float(sc.ppm(y))
                x = float(np.interp(y, rows, edge)) + sgn * 2 * p
                bw, bh = rng.uniform(2, 5) * p, rng.uniform(1.2, 3) * p
                top = y - rng.uniform(3, 6) * p
                cv2.line(img, (int(x), int(y)), (int(x), int(top)), (90 * dim,) * 3, max(1, int(0.15 * p)))
                sign_c = [(40, 120, 20), (20, 180, 230), (200, 200, 200)][int(rng.integers(3))]
                cv2.rectangle(img, (int(x - bw / 2), int(top - bh)), (int(x + bw / 2), int(top)),
                              (np.array(sign_c) * dim).tolist(), -1, cv2.LINE_AA)

    def _road(self, img, gain, sc, rng, left, right) -> np.ndarray:
        """Road surface in flat colour, with tyre tracks, seams and patches in ``gain``."""
        rows = sc.rows
        ppm = sc.ppm(rows)
        if rng.random() < 0.45:  # concrete, TuSimple-like
            g = rng.uniform(105, 175)
        else:  # asphalt
            g = rng.uniform(45, 105)
        tint = rng.uniform(-6, 6, 3)
        base = np.clip(np.array([g, g, g]) + tint, 0, 255)
        poly = np.concatenate([np.stack([left, rows], 1), np.stack([right, rows], 1)[::-1]])
        cv2.fillPoly(img, [_fx(poly)], base.tolist(), cv2.LINE_AA, _SHIFT)
        # Lighter shoulders outside the outer lanes
        if rng.random() < 0.5:
            c = np.clip(base * rng.uniform(0.85, 1.25), 0, 255).tolist()
            for a, b in ((left, sc.lanes[0].xf), (sc.lanes[-1].xf, right)):
                sh = np.concatenate([np.stack([a, rows], 1), np.stack([b, rows], 1)[::-1]])
                cv2.fillPoly(img, [_fx(sh)], c, cv2.LINE_AA, _SHIFT)
        # Tyre tracks: darker bands in the middle of each lane
        if rng.random() < 0.7:
            v = rng.uniform(0.9, 0.97)
            polys = []
            for a, b in zip(sc.lanes[:-1], sc.lanes[1:], strict=True):
                mid = 0.5 * (a.xf + b.xf)
                for off in (-0.9, 0.9):
                    c = mid + off * ppm
                    half = 0.35 * ppm
                    outline = [np.stack([c - half, rows], 1), np.stack([c + half, rows], 1)[::-1]]
                    polys.append(_fx(np.concatenate(outline)))
            cv2.fillPoly(gain, polys, v, cv2.LINE_AA, _SHIFT)
        # Longitudinal seams / tar lines near lanes
        if rng.random() < 0.6:
            for lane in sc.lanes:
                if rng.random() < 0.5:
                    off = rng.uniform(-0.6, 0.6) * ppm
                    pts = np.stack([lane.xf + off, rows], 1)
                    cv2.polylines(gain, [_fx(pts)], False, rng.uniform(0.5, 0.85),
                                  int(rng.integers(1, 4)), cv2.LINE_AA, _SHIFT)
        # Sealed cracks: dark wandering lines on the surface
        for _ in range(int(rng.integers(0, 7))):
            z = rng.uniform(4, 50) + np.cumsum(rng.uniform(0.3, 1.5, 12))
            ys = sc.row_at(z)
            lat = rng.uniform(-8, 8) + np.cumsum(rng.normal(0, 0.3, 12))
            xs = np.interp(ys, rows, 0.5 * (left + right)) + lat * sc.ppm(ys)
            cv2.polylines(gain, [_fx(np.stack([xs, ys], 1))], False, rng.uniform(0.5, 0.8),
                          int(rng.integers(1, 3)), cv2.LINE_AA, _SHIFT)
        # Transverse slab joints (concrete)
        if rng.random() < 0.4:
            step = rng.uniform(4.5, 7.0)
            for z in np.arange(rng.uniform(2, 5), 120, step):
                y = float(sc.row_at(z))
                if y > self.height:
                    continue
                xa, xb = np.interp(y, rows, left), np.interp(y, rows, right)
                cv2.line(gain, (int(xa), int(y)), (int(xb), int(y)), 0.8, 1, cv2.LINE_AA)
        # Patches: darker / lighter quads spanning part of a lane
        for _ in range(rng.integers(0, 5)):
            z0 = rng.uniform(4, 60)
            z1 = z0 + rng.uniform(3, 25)
            j = rng.integers(0, max(1, len(sc.lanes)))
            ya, yb = float(sc.row_at(z1)), float(sc.row_at(z0))
            ys = np.linspace(ya, min(yb, self.height + 20), 8)
            base_x = np.interp(ys, rows, sc.lanes[j].xf)
            p = sc.ppm(ys)
            lo = base_x + rng.uniform(-3, 1) * p
            hi = lo + rng.uniform(1, 4) * p
            quad = np.concatenate([np.stack([lo, ys], 1), np.stack([hi, ys], 1)[::-1]])
            cv2.fillPoly(gain, [_fx(quad)], rng.uniform(0.82, 1.1), cv2.LINE_AA, _SHIFT)
        return base

    def _hood(self, img, sc, rng, night):
        """Sometimes a car bonnet at the bottom: Udacity-like (returns its top row as f(x); labels
        stop above it) or CULane-like (returns None: labels continue across it, as CULane's do)."""
        if rng.random() > self.profile.hood:
            return None
        if _chance(rng, self.profile.hood_culane):
            sc.meta["hood"] = "culane"  # drawn after the lens: the bonnet is not on the road
            return None
        W, H = self.width, self.height
        y0 = H - rng.uniform(0.03, 0.08) * H
        bend = rng.uniform(0.01, 0.04) * H

        def top(x):
            return y0 + bend * ((np.asarray(x, np.float32) - W / 2) / (W / 2)) ** 2

        xs = np.linspace(0, W - 1, 33)
        poly = np.concatenate([np.stack([xs, top(xs)], 1), [[W - 1, H + 5], [0, H + 5]]])
        c = np.array([rng.uniform(20, 80), rng.uniform(20, 60), rng.uniform(30, 120)]) * (0.3 if night else 1)
        cv2.fillPoly(img, [_fx(poly)], c.tolist(), cv2.LINE_AA, _SHIFT)
        return top

    def _night_gain(self, gain, sc, rng):
        W, H = self.width, self.height
        level = rng.uniform(0.25, 0.5)
        gx = ((np.arange(W, dtype=np.float32) - W / 2) / (0.45 * W))[None, :] ** 2
        gy = ((np.arange(H, dtype=np.float32) - H) / (0.35 * (H - sc.horizon)))[:, None] ** 2
        beam = np.exp(-(gx + gy)) * rng.uniform(0.6, 1.4)
        gain *= level + beam

    def _night_lights(self, img, sc, rng):
        W = self.width
        glow = np.zeros(img.shape[:2], np.uint8)
        for x, y, r in sc.meta.pop("lights", []):
            cv2.circle(glow, (int(x), int(y)), max(2, int(r)), 255, -1, cv2.LINE_AA)
        for _ in range(rng.integers(0, 6)):  # street lights / oncoming headlights
            x = rng.uniform(0, W)
            y = sc.horizon - rng.uniform(-5, 0.4 * sc.horizon)
            cv2.circle(glow, (int(x), int(y)), int(rng.uniform(3, 12)), 255, -1, cv2.LINE_AA)
        if glow.any():
            halo = cv2.GaussianBlur(glow, (0, 0), 5)
            halo = cv2.max(glow, halo)
            warm = cv2.merge([halo // 4, halo // 3, halo])
            cv2.add(img, warm, dst=img)

    def _sun_glare(self, img, sc, rng):
        W, H = self.width, self.height
        cx, cy = rng.uniform(0.1, 0.9) * W, rng.uniform(0.0, 1.0) * sc.horizon
        yy, xx = np.ogrid[:H, :W]
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2).astype(np.float32) / (rng.uniform(0.1, 0.3) * W) ** 2
        veil = (np.exp(-d2) * rng.uniform(60, 170)).astype(np.uint8)
        cv2.add(img, cv2.merge([veil, veil, veil]), dst=img)

    def _camera(self, img, rng, noise):
        """Exposure, colour cast, contrast, blur, sensor noise and JPEG compression."""
        gamma = rng.uniform(0.7, 1.4)
        contrast = rng.uniform(0.75, 1.2)
        gains = rng.uniform(0.93, 1.07, 3) * rng.uniform(0.75, 1.25)
        x = np.arange(256, dtype=np.float32) / 255.0
        luts = []
        for g in gains:
            v = np.clip(((x ** gamma) - 0.5) * contrast + 0.5, 0, 1) * g * 255.0
            luts.append(np.clip(v, 0, 255).astype(np.uint8))
        img = cv2.LUT(img, np.stack(luts, 1)[:, None, :])
        r = rng.random()
        if r < 0.35:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.6))
        elif r < 0.45:
            k = int(rng.integers(3, 9))
            kernel = np.zeros((k, k), np.float32)
            if rng.random() < 0.5:
                kernel[:, k // 2] = 1.0 / k
            else:
                kernel[k // 2, :] = 1.0 / k
            img = cv2.filter2D(img, -1, kernel)
        amp = rng.uniform(0.0, 0.8)
        if amp > 0.1:
            pos = cv2.merge([self._crop(noise["grain_pos"], rng)] * 3)
            neg = cv2.merge([self._crop(noise["grain_neg"], rng)] * 3)
            img = cv2.addWeighted(img, 1.0, pos, amp, 0)
            img = cv2.addWeighted(img, 1.0, neg, -amp, 0)
        if rng.random() < 0.6:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 90))])
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return img
