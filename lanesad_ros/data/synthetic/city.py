"""City streets: pavements, buildings, kerbs, intersections, stop lines, zebra crossings, painted
arrows, and parked and crossing cars. None of these is a lane: they are painted but never
labelled, so the network learns that kerbs, stop lines, crossings and cars are background.

Everything is placed in ground coordinates (metres right of the camera, metres ahead) and
projected through the scene's pinhole model (``_Scene.project``); a point ``hgt`` metres above
the ground sits ``hgt * ppm(y)`` pixels above its foot.
"""
from __future__ import annotations

import cv2
import numpy as np

from lanesad_ros.data.synthetic.geometry import _SHIFT, _fx, _Scene

_PAINT = np.array([225, 230, 232], np.float32)
_CAR_COLOURS = [(30, 30, 30), (220, 220, 225), (160, 160, 165), (40, 40, 140), (120, 60, 30),
                (60, 60, 60), (200, 200, 200), (30, 50, 90), (150, 110, 60)]


def _raise(sc: _Scene, y, hgt):
    """Rows ``hgt`` metres above the ground rows ``y``."""
    return y - hgt * sc.ppm(y)


def _ground_poly(sc: _Scene, lat, z) -> np.ndarray:
    x, y = sc.project(lat, z)
    return np.stack([x, y], 1)


class CityPainter:
    """Mixin of SceneGenerator: the city street ingredients (``sc.meta['city']`` scenes)."""

    def _city_layout(self, sc: _Scene, rng) -> None:
        """Road edges (kerbs), intersection, zebra, arrows and parked cars of a city frame."""
        prof = self.profile
        lats = sc.meta["laterals"]
        m = sc.meta
        m["kerb"] = (lats[0] - rng.uniform(0.3, 3.0), lats[-1] + rng.uniform(0.3, 3.0))
        m["intersection"] = bool(rng.random() < prof.intersection)
        m["zebra"] = bool(rng.random() < prof.zebra)
        m["arrows"] = bool(not m["negative"] and rng.random() < prof.arrows)
        m["parked_cars"] = bool(rng.random() < prof.parked_cars)
        if m["intersection"]:
            m["z_stop"] = float(rng.uniform(7, 35))
            m["z_cross"] = m["z_stop"] + (rng.uniform(3.5, 5.5) if m["zebra"] else rng.uniform(0.5, 2.0))
            m["cross_width"] = float(rng.uniform(8, 20))
            m["crossing_cars"] = bool(rng.random() < prof.crossing_cars)
        elif m["zebra"]:  # a zebra crossing mid-block: the lane markings end before it
            m["z_zebra"] = float(rng.uniform(6, 30))

    def _city_edges(self, sc: _Scene):
        kl, kr = sc.meta["kerb"]
        return sc.project(kl, sc.dist_at(sc.rows))[0], sc.project(kr, sc.dist_at(sc.rows))[0]

    def _pavement(self, img, sc, rng, dark):
        """Pavement beyond the kerbs: grey paving instead of grass."""
        yh = int(sc.horizon) + 1
        g = rng.uniform(100, 175)
        img[yh:] = (np.array([g, g * rng.uniform(0.97, 1.03), g * rng.uniform(0.95, 1.05)]) * dark).astype(np.uint8)

    def _buildings(self, img, sc: _Scene, rng, dark):
        """Facades along both sides, far to near, leaving the crossing road open."""
        kl, kr = sc.meta["kerb"]
        gap = (sc.meta.get("z_cross", 1e9) - 2.0, sc.meta.get("z_cross", 1e9) + sc.meta.get("cross_width", 0) + 2.0)
        for sgn, kerb in ((-1, kl), (1, kr)):
            face = kerb + sgn * rng.uniform(2.0, 5.0)
            z = rng.uniform(2.0, 6.0)
            blocks = []
            while z < 160:
                length = rng.uniform(8, 30)
                za, zb = z, z + length
                if not (zb < gap[0] or za > gap[1]):
                    za, zb = max(za, gap[1]), max(zb, gap[1])
                if zb > za:
                    blocks.append((za, zb, rng.uniform(5, 25)))
                z = zb + rng.uniform(0.0, 4.0)
            for za, zb, hgt in blocks[::-1]:
                zs = np.array([za, zb], np.float32)
                x, y = sc.project(np.full(2, face, np.float32), zs)
                top = _raise(sc, y, hgt)
                quad = np.array([[x[0], y[0]], [x[1], y[1]], [x[1], top[1]], [x[0], top[0]]])
                col = np.clip(rng.uniform(70, 200) * np.array(rng.uniform(0.8, 1.1, 3)), 0, 255) * dark
                cv2.fillPoly(img, [_fx(quad)], col.tolist(), cv2.LINE_AA, _SHIFT)
                # storeys: dark window bands along the facade
                for level in np.arange(rng.uniform(1.5, 3.0), hgt - 1.0, rng.uniform(2.8, 3.5)):
                    lo, hi = _raise(sc, y, level), _raise(sc, y, level + 1.2)
                    band = np.array([[x[0], lo[0]], [x[1], lo[1]], [x[1], hi[1]], [x[0], hi[0]]])
                    cv2.fillPoly(img, [_fx(band)], (col * rng.uniform(0.35, 0.6)).tolist(), cv2.LINE_AA, _SHIFT)

    def _kerbs(self, img, sc: _Scene, rng, dark):
        """Kerb faces along both edges, curving round the corners of an intersection."""
        kl, kr = sc.meta["kerb"]
        z_far = float(sc.dist_at(sc.horizon + 2))
        c = np.clip(rng.uniform(150, 215) * dark, 0, 255)
        hgt = rng.uniform(0.12, 0.2)
        runs = []
        if sc.meta["intersection"]:
            z1, z2 = sc.meta["z_cross"], sc.meta["z_cross"] + sc.meta["cross_width"]
            r = rng.uniform(2.0, 6.0)
            t = np.linspace(0, np.pi / 2, 8)
            for sgn, kerb in ((-1, kl), (1, kr)):
                near_z = np.concatenate([np.linspace(0.5, z1 - r, 24), z1 - r + r * np.sin(t), [z1, z1]])
                near_l = np.concatenate([np.full(24, kerb), kerb + sgn * r * (1 - np.cos(t)),
                                         [kerb + sgn * r, kerb + sgn * 60]])
                far_z = np.concatenate([[z2, z2], z2 + r - r * np.cos(t), np.linspace(z2 + r, z_far, 24)])
                far_l = np.concatenate([[kerb + sgn * 60, kerb + sgn * r], kerb + sgn * r * (1 - np.sin(t)),
                                        np.full(24, kerb)])
                runs += [(near_l, near_z), (far_l, far_z)]
        else:
            for kerb in (kl, kr):
                runs.append((np.full(40, kerb), np.geomspace(0.5, z_far, 40)))
        for lat, z in runs:
            pts = _ground_poly(sc, lat, z)
            top = pts.copy()
            top[:, 1] = _raise(sc, pts[:, 1], hgt)
            cv2.fillPoly(img, [_fx(np.concatenate([pts, top[::-1]]))], (c, c, c), cv2.LINE_AA, _SHIFT)
            cv2.polylines(img, [_fx(pts)], False, (c * 0.4,) * 3, 1, cv2.LINE_AA, _SHIFT)

    def _crossing_road(self, img, sc: _Scene, road_base):
        z1, z2 = sc.meta["z_cross"], sc.meta["z_cross"] + sc.meta["cross_width"]
        zs = np.array([z1, z2, z2, z1], np.float32)
        lats = np.array([-80, -80, 80, 80], np.float32)
        cv2.fillPoly(img, [_fx(_ground_poly(sc, lats, zs))], road_base.tolist(), cv2.LINE_AA, _SHIFT)

    def _road_paint(self, img, sc: _Scene, rng, road_base):
        """Stop line, zebra crossing and arrows: white paint that is not a lane."""
        kl, kr = sc.meta["kerb"]
        paint = (road_base + (_PAINT - road_base) * rng.uniform(0.6, 1.0)).tolist()
        polys = []

        def quad(l0, l1, z0, z1):
            polys.append(_fx(_ground_poly(sc, np.array([l0, l1, l1, l0], np.float32),
                                          np.array([z0, z0, z1, z1], np.float32))))

        m = sc.meta
        if m["intersection"]:
            z_stop = m["z_stop"]
            left = kl + 0.3 if rng.random() < 0.4 else float(np.clip(0.0 - rng.uniform(1.0, 2.5), kl + 0.3, kr - 1))
            quad(left, kr - 0.3, z_stop, z_stop + rng.uniform(0.3, 0.6))
            if m["zebra"]:
                z0 = z_stop + 0.8
                self._zebra(quad, kl, kr, z0, z0 + rng.uniform(2.5, 4.0), rng)
                zf = m["z_cross"] + m["cross_width"] + 0.5
                self._zebra(quad, kl, kr, zf, zf + rng.uniform(2.5, 4.0), rng)
        elif m["zebra"]:
            z0 = m["z_zebra"]
            self._zebra(quad, kl, kr, z0, z0 + rng.uniform(2.5, 4.0), rng)
        if m["arrows"]:
            lats = m["laterals"]
            z_end = min(m.get("z_stop", 40.0), m.get("z_zebra", 40.0)) - 2.0
            for a, b in zip(lats[:-1], lats[1:], strict=True):
                if rng.random() < 0.7 and z_end > 9.0:
                    self._arrow(polys, sc, 0.5 * (a + b), rng.uniform(max(4.0, z_end - 14.0), z_end - 4.0), rng)
        if polys:
            cv2.fillPoly(img, polys, paint, cv2.LINE_AA, _SHIFT)

    @staticmethod
    def _zebra(quad, kl, kr, z0, z1, rng):
        width, gap = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.7)
        for lat in np.arange(kl + 0.5, kr - 0.5, width + gap):
            quad(lat, lat + width, z0, z1)

    @staticmethod
    def _arrow(polys, sc, lat, z0, rng):
        """Straight, left or right turn arrow in a lane, pointing ahead (ground outline)."""
        kind = int(rng.integers(3))
        sw, hw, shaft, head = 0.08, 0.35, rng.uniform(2.5, 4.0), rng.uniform(1.0, 1.5)
        if kind == 0:
            outline = [(-sw, 0), (sw, 0), (sw, shaft), (hw, shaft), (0, shaft + head), (-hw, shaft), (-sw, shaft)]
        else:
            s = -1 if kind == 1 else 1  # a right-turn arrow, mirrored for a left turn
            outline = [(-sw, 0), (sw, 0), (sw, shaft), (0.5, shaft), (0.5, shaft - 0.4), (0.9, shaft + 0.15),
                       (0.5, shaft + 0.7), (0.5, shaft + 0.3), (-sw, shaft + 0.3)]
            outline = [(u * s, v) for u, v in outline]
        u = np.array([p[0] for p in outline], np.float32) + lat
        v = np.array([p[1] for p in outline], np.float32) + z0
        polys.append(_fx(_ground_poly(sc, u, v)))

    def _city_cars(self, img, shadow, sc: _Scene, rng, night):
        """Cars parked along the kerbs (rear view) and crossing the intersection (side view)."""
        kl, kr = sc.meta["kerb"]
        cars = []
        if sc.meta["parked_cars"]:
            for sgn, kerb in ((-1, kl), (1, kr)):
                if rng.random() < 0.3:
                    continue
                z = rng.uniform(4, 12)
                while z < 80:
                    if not (sc.meta["intersection"] and sc.meta["z_cross"] - 3 < z < sc.meta["z_cross"]
                            + sc.meta["cross_width"] + 3):
                        cars.append(("rear", kerb - sgn * rng.uniform(0.9, 1.3), z))
                    z += rng.uniform(5.0, 12.0)
        if sc.meta.get("crossing_cars"):
            z1, cw = sc.meta["z_cross"], sc.meta["cross_width"]
            for _ in range(int(rng.integers(1, 4))):
                cars.append(("side", rng.uniform(-20, 15), z1 + rng.uniform(0.25, 0.75) * cw))
        for kind, lat, z in sorted(cars, key=lambda c: -c[2]):
            col = np.array(_CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))], np.float32) * rng.uniform(0.8, 1.1)
            col = np.clip(col * (0.25 if night else 1.0), 0, 255)
            if kind == "rear":
                self._car_rear(img, shadow, sc, lat, z, col, night, rng)
            else:
                self._car_side(img, shadow, sc, lat, z, col, night, rng)

    def _car_rear(self, img, shadow, sc, lat, z, col, night, rng):
        x, y = (float(v) for v in sc.project(lat, z))
        p = float(sc.ppm(y))
        w, h = rng.uniform(1.7, 1.9) * p, rng.uniform(1.35, 1.7) * p
        x0, x1, y0 = x - w / 2, x + w / 2, y - h
        cv2.ellipse(shadow, (int(x), int(y)), (int(w * 0.6), max(2, int(0.1 * h))), 0, 0, 360, 255, -1)
        cv2.rectangle(img, (int(x0), int(y0 + 0.45 * h)), (int(x1), int(y - 0.12 * h)), col.tolist(), -1)
        cab = np.array([[x0 + 0.1 * w, y0 + 0.45 * h], [x0 + 0.2 * w, y0], [x1 - 0.2 * w, y0],
                        [x1 - 0.1 * w, y0 + 0.45 * h]])
        cv2.fillPoly(img, [_fx(cab)], col.tolist(), cv2.LINE_AA, _SHIFT)
        win = np.array([[x0 + 0.17 * w, y0 + 0.42 * h], [x0 + 0.25 * w, y0 + 0.08 * h],
                        [x1 - 0.25 * w, y0 + 0.08 * h], [x1 - 0.17 * w, y0 + 0.42 * h]])
        cv2.fillPoly(img, [_fx(win)], (35, 35, 35), cv2.LINE_AA, _SHIFT)
        cv2.rectangle(img, (int(x0), int(y - 0.14 * h)), (int(x1), int(y)), (12, 12, 12), -1)
        lc = (30, 30, 230) if night else (40, 40, 170)
        ly = y0 + 0.55 * h
        for lx in (x0 + 0.04 * w, x1 - 0.16 * w):
            cv2.rectangle(img, (int(lx), int(ly)), (int(lx + 0.12 * w), int(ly + 0.08 * h)), lc, -1)
            sc.meta.setdefault("lights", []).append((lx + 0.06 * w, ly, 0.07 * w))

    def _car_side(self, img, shadow, sc, lat, z, col, night, rng):
        length, hgt = rng.uniform(4.0, 4.8), rng.uniform(1.35, 1.6)
        xa, y = (float(v) for v in sc.project(lat, z))
        xb = float(sc.project(lat + length, z)[0])
        p = float(sc.ppm(y))
        h = hgt * p
        cv2.ellipse(shadow, (int((xa + xb) / 2), int(y)), (int((xb - xa) * 0.55), max(2, int(0.08 * h))), 0, 0, 360,
                    255, -1)
        cv2.rectangle(img, (int(xa), int(y - 0.55 * h)), (int(xb), int(y - 0.15 * h)), col.tolist(), -1)
        L = xb - xa
        cab = np.array([[xa + 0.2 * L, y - 0.55 * h], [xa + 0.32 * L, y - h], [xa + 0.75 * L, y - h],
                        [xa + 0.88 * L, y - 0.55 * h]])
        cv2.fillPoly(img, [_fx(cab)], col.tolist(), cv2.LINE_AA, _SHIFT)
        win = cab + np.array([[0.04 * L, -0.03 * h], [0.03 * L, 0.08 * h], [-0.03 * L, 0.08 * h],
                              [-0.04 * L, -0.03 * h]])
        cv2.fillPoly(img, [_fx(win)], (40, 40, 40), cv2.LINE_AA, _SHIFT)
        for wx in (xa + 0.2 * L, xa + 0.8 * L):
            cv2.circle(img, (int(wx), int(y - 0.15 * h)), max(1, int(0.17 * h)), (15, 15, 15), -1, cv2.LINE_AA)
        if night:
            sc.meta.setdefault("lights", []).append((xb, y - 0.45 * h, 0.05 * L))
