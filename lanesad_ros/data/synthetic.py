"""The project's own road-scene renderer: labelled highway frames from numpy + OpenCV.

Its job is training data that transfers to real forward-camera frames (TuSimple, Udacity),
so it renders the things a lane detector must learn to see through: asphalt and concrete
with texture, seams and patches, white/yellow solid/dashed/worn markings and Botts' dots,
barriers, guardrails, trees, vehicles with shadows, bridge and tree shadows, night, glare,
blur, noise and JPEG artefacts, different horizons and a car hood.

Lane geometry comes either from real TuSimple label sets (``geometry``), jittered a little,
or from a parametric perspective road model. Labels are TuSimple style (h_samples 160..710
step 10 at 720 rows, x = -2 where absent, lanes left to right) and give the centre of each
marking exactly as drawn; the marking is drawn between the first and last labelled rows
(continuing to the image bottom when the label reaches the last sample row). Dashed lanes
are labelled through their gaps, and lanes are labelled behind vehicles, as in TuSimple.
A frame is a pure function of (seed, index).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from lanesad_ros.data.frames import TUSIMPLE_H_SAMPLES, DataError, LabelledFrame, assign_slots
from lanesad_ros.data.tusimple import load_label_dicts, write_tusimple_labels
from lanesad_ros.fileio import atomic_path

_SHIFT = 3  # fixed-point bits for sub-pixel cv2 drawing
_SCALE = 1 << _SHIFT
_WHITE = np.array([235, 238, 240], np.float32)
_YELLOW = np.array([40, 185, 225], np.float32)  # BGR


@dataclass
class _Lane:
    """One lane boundary: its curve on every road row and what kind of marking it is."""

    xf: np.ndarray            # x for every row of Scene.rows (extended beyond the label)
    y_top: float              # first drawn row
    y_bot: float              # last drawn row
    kind: str = "dashed"      # solid | dashed | dots | dashdots
    colour: str = "white"
    width_m: float = 0.12
    alpha: float = 1.0        # paint strength (worn markings are weaker)
    dash: tuple[float, float, float] = (3.0, 12.0, 0.0)  # length, period, phase (metres)


@dataclass
class _Scene:
    horizon: float
    xvp: float
    ppm_slope: float          # pixels per metre per row below the horizon
    focal: float
    rows: np.ndarray          # float rows from just below the horizon to the bottom
    lanes: list[_Lane]
    meta: dict = field(default_factory=dict)

    def ppm(self, y):
        """Pixels per metre (laterally) on the ground at row y."""
        return self.ppm_slope * np.maximum(np.asarray(y, np.float32) - self.horizon, 0.5)

    def row_at(self, z):
        """Image row of the ground at distance z metres."""
        return self.horizon + self.focal / (self.ppm_slope * np.asarray(z, np.float32))

    def dist_at(self, y):
        """Ground distance (metres) seen at row y."""
        return self.focal / (self.ppm_slope * np.maximum(np.asarray(y, np.float32) - self.horizon, 0.5))

    def x_of(self, lane_xf: np.ndarray, y):
        return np.interp(y, self.rows, lane_xf)


def _fx(v) -> np.ndarray:
    return np.round(np.asarray(v, np.float64) * _SCALE).astype(np.int32)


def _lowres_noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Smooth noise (zero mean, ~unit amplitude): a small random grid upscaled bicubically."""
    grid = rng.standard_normal(cells).astype(np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


class SceneGenerator:
    """Deterministic labelled road frames: ``frame(i)`` is the same for the same (seed, i).

    ``geometry``: a TuSimple label file, a list of files, or a list of label dicts; each
    frame then takes its lane positions from one real label set. ``length`` is what
    ``len()`` reports, so a generator can stand in for a dataset (``gen[i] == gen.frame(i)``).
    """

    def __init__(self, seed: int = 0, width: int = 1280, height: int = 720, geometry=None,
                 length: int = 10000, jitter: bool = True):
        if width < 64 or height < 64:
            raise ValueError(f"image size too small: {width}x{height}")
        self.seed = int(seed)
        self.width = int(width)
        self.height = int(height)
        self.length = int(length)
        self.jitter = jitter
        self.h_samples = np.round(TUSIMPLE_H_SAMPLES * (self.height / 720.0)).astype(np.int32)
        self.geometry = None
        if geometry is not None:
            labels = load_label_dicts(geometry)
            self.geometry = [g for g in (_geometry_lanes(lbl) for lbl in labels) if g]
            if not self.geometry:
                raise DataError(f"no usable lane geometry in {geometry!r}")
        self._noise = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> LabelledFrame:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.frame(index)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_noise"] = None  # rebuilt lazily in each DataLoader worker
        return state

    # ------------------------------------------------------------------ public API
    def frame(self, index: int) -> LabelledFrame:
        """Render frame ``index``: image + TuSimple-style labels of exactly what was drawn."""
        rng = np.random.default_rng([self.seed, int(index)])
        scene = self._scene(rng)
        image, hood = self._render(scene, rng)
        lanes, kinds = [], []
        for lane in scene.lanes:
            pts = self._label_points(scene, lane, hood)
            if len(pts) >= 2:
                lanes.append(pts)
                kinds.append(f"{lane.colour}-{lane.kind}")
        meta = dict(scene.meta, index=int(index), seed=self.seed, lane_kinds=kinds)
        return LabelledFrame(image_path=None, image=image, lanes=lanes,
                             slots=assign_slots(lanes, self.width), h_samples=self.h_samples.copy(),
                             width=self.width, height=self.height, meta=meta)

    def write_tusimple(self, out_dir: str | Path, n: int, start: int = 0, quality: int = 95,
                       labels_name: str = "labels.json") -> Path:
        """Write frames start..start+n-1 as ``clips/synthetic/NNNNNN/20.jpg`` + one label json."""
        out_dir = Path(out_dir)
        frames = []
        for i in range(start, start + n):
            frame = self.frame(i)
            rel = Path("clips") / "synthetic" / f"{i:06d}" / "20.jpg"
            path = out_dir / rel
            ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            if not ok:
                raise DataError(f"cannot encode {path}")
            with atomic_path(path) as tmp:
                tmp.write_bytes(buf.tobytes())
            frame.image_path = path
            frame.meta["raw_file"] = rel.as_posix()
            frames.append(frame)
        return write_tusimple_labels(frames, out_dir / labels_name)

    # ------------------------------------------------------------------ labels
    def _label_points(self, scene: _Scene, lane: _Lane, hood) -> np.ndarray:
        hs = self.h_samples.astype(np.float32)
        inside = (hs >= lane.y_top - 1e-3) & (hs <= lane.y_bot + 1e-3)
        xs = scene.x_of(lane.xf, hs)
        ok = inside & (xs >= 0) & (xs <= self.width - 1)
        if hood is not None:
            ok &= hs < hood(xs) - 2
        return np.stack([xs[ok], hs[ok]], axis=1)[::-1].astype(np.float32)  # bottom -> top

    # ------------------------------------------------------------------ scene layout
    def _scene(self, rng: np.random.Generator) -> _Scene:
        W, H = self.width, self.height
        # Horizon: mostly TuSimple-like, sometimes lower (Udacity-like camera).
        if rng.random() < 0.62:
            horizon = H * rng.uniform(0.33, 0.43)
        else:
            horizon = H * rng.uniform(0.43, 0.64)
        focal = W * rng.uniform(0.7, 1.0)
        if self.geometry is not None:
            scene = self._geometry_scene(rng, horizon, focal)
        else:
            scene = self._parametric_scene(rng, horizon, focal)
        self._style_lanes(scene, rng)
        return scene

    def _rows(self, horizon: float) -> np.ndarray:
        return np.arange(np.floor(horizon) + 1.0, self.height + 1.0, 1.0, dtype=np.float32)

    def _parametric_scene(self, rng, horizon, focal) -> _Scene:
        W, H = self.width, self.height
        lane_w = rng.uniform(3.3, 3.9)
        ppm_slope = rng.uniform(0.5, 0.8)  # 1 / camera height: TuSimple-like lane spacing
        xvp = W / 2 + rng.normal(0, W * 0.04)
        curv = 0.0 if rng.random() < 0.35 else rng.uniform(-1, 1) * rng.choice([1 / 250, 1 / 600, 1 / 1500])
        offset = rng.uniform(-0.45, 0.45) * lane_w
        n_left = rng.choice([0, 1, 1, 2, 2])
        n_right = rng.choice([0, 1, 1, 2, 2])
        rows = self._rows(horizon)
        z = focal / (ppm_slope * np.maximum(rows - horizon, 0.5))
        z_cap = rng.uniform(60, 140)
        zc = np.minimum(z, z_cap)
        scene = _Scene(horizon, xvp, ppm_slope, focal, rows, [], {"mode": "parametric"})
        z_top = rng.uniform(45, 110)
        y_top = float(scene.row_at(z_top))
        for k in range(-n_left - 1, n_right + 1):
            lateral = (k + 0.5) * lane_w - offset
            xf = xvp + lateral * ppm_slope * (rows - horizon) + 0.5 * curv * focal * zc
            xf[z > z_cap] = (xvp + lateral * ppm_slope * (scene.row_at(z_cap) - horizon)
                             + 0.5 * curv * focal * z_cap)
            scene.lanes.append(_Lane(xf=xf.astype(np.float32), y_top=y_top, y_bot=float(H - 1)))
        scene.meta.update(curvature=float(curv), lane_width_m=float(lane_w))
        return scene

    def _geometry_scene(self, rng, horizon_new, focal) -> _Scene:
        W, H = self.width, self.height
        idx = int(rng.integers(len(self.geometry)))
        geo = self.geometry[idx]
        sx, sy_img = W / 1280.0, H / 720.0
        lanes = [(ys * sy_img, xs * sx) for ys, xs in geo["lanes"]]
        yh, xvp, s = geo["horizon"] * sy_img, geo["xvp"] * sx, geo["spacing"] * sx / sy_img
        flip = self.jitter and rng.random() < 0.5
        if flip:
            lanes = [(ys, W - 1 - xs) for ys, xs in lanes[::-1]]
            xvp = W - 1 - xvp
        if self.jitter:
            scale = rng.uniform(0.88, 1.12)
            shift = rng.normal(0, 0.03 * W)
        else:
            scale, shift, horizon_new = 1.0, 0.0, yh
        # Vertical remap y' = yh' + (y - yh) * k keeps the bottom row at the bottom and moves
        # the horizon: the same road seen by a camera pitched differently.
        k = (H - horizon_new) / (H - yh)
        rows = self._rows(horizon_new)
        ppm_slope = s * scale / (3.7 * k)  # lane spacing s px per row -> 3.7 m lanes
        scene = _Scene(horizon_new, xvp + shift, ppm_slope, focal, rows, [],
                       {"mode": "geometry", "geometry_index": idx, "flipped": bool(flip)})
        for ys, xs in lanes:
            ys2 = horizon_new + (ys - yh) * k
            xs2 = xvp + shift + (xs - xvp) * scale
            xf = _extend_curve(ys2, xs2, rows)
            y_bot = float(H - 1) if ys2[-1] >= H * (700 / 720) else float(ys2[-1])
            scene.lanes.append(_Lane(xf=xf, y_top=float(ys2[0]), y_bot=y_bot))
        return scene

    def _style_lanes(self, scene: _Scene, rng) -> None:
        n = len(scene.lanes)
        worn_scene = rng.random() < 0.3
        yellow_left = rng.random() < 0.3
        for i, lane in enumerate(scene.lanes):
            outer = i == 0 or i == n - 1
            r = rng.random()
            if outer and n > 2:
                lane.kind = "solid" if r < 0.6 else ("dashed" if r < 0.9 else "dots")
            else:
                lane.kind = ("dashed" if r < 0.72 else "solid" if r < 0.82 else "dots" if r < 0.92
                             else "dashdots")
            if i == 0 and yellow_left and lane.kind == "solid":
                lane.colour = "yellow"
            elif rng.random() < 0.04:
                lane.colour = "yellow"
            lane.width_m = rng.uniform(0.10, 0.17)
            lane.alpha = rng.uniform(0.35, 0.75) if (worn_scene or rng.random() < 0.12) else rng.uniform(0.75, 1.0)
            length = rng.uniform(2.5, 4.5)
            lane.dash = (length, length + rng.uniform(6.0, 11.0), rng.uniform(0, 20))

    # ------------------------------------------------------------------ rendering
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
        night = rng.random() < 0.12
        sc.meta["night"] = bool(night)
        img = np.empty((H, W, 3), np.uint8)
        yh = int(sc.horizon)
        self._sky(img, sc, rng, night)
        left_edge, right_edge = self._edges(sc, rng)
        self._ground(img, sc, rng, night)
        self._roadside(img, sc, rng, left_edge, right_edge, night)
        gain = np.ones((H, W), np.float32)
        road_base = self._road(img, gain, sc, rng, left_edge, right_edge)
        self._markings(img, sc, rng, road_base)
        shadow = np.zeros((H, W), np.uint8)
        self._vehicles(img, shadow, sc, rng, night)
        self._shadows(img, shadow, sc, rng, left_edge, right_edge)
        # Road texture and shadows act multiplicatively on everything below the horizon.
        noise = self._noise_bank()
        tex_amp = rng.uniform(0.03, 0.09)
        low = _lowres_noise(rng, (H - yh, W), (6, 10)) * rng.uniform(0.03, 0.10)
        gain[yh:] *= 1.0 + low + tex_amp * self._crop(noise["fine"], rng)[yh:]
        if shadow.any():
            soft = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(1.0, 4.0))
            gain *= 1.0 - soft.astype(np.float32) * (rng.uniform(0.45, 0.7) / 255.0)
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
            for a, b in zip(sc.lanes[:-1], sc.lanes[1:]):
                mid = 0.5 * (a.xf + b.xf)
                for off in (-0.9, 0.9):
                    c = mid + off * ppm
                    half = 0.35 * ppm
                    polys.append(_fx(np.concatenate([np.stack([c - half, rows], 1), np.stack([c + half, rows], 1)[::-1]])))
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
                cv2.rectangle(img, (int(x0 + 0.1 * w), int(y1 - 0.15 * h)), (int(x1 - 0.1 * w), int(y1)), (15, 15, 15), -1)
            else:
                # lower body, cabin narrower on top, dark rear window
                cv2.rectangle(img, (int(x0), int(y0 + 0.45 * h)), (int(x1), int(y1 - 0.12 * h)), body.tolist(), -1, cv2.LINE_AA)
                cab = np.array([[x0 + 0.1 * w, y0 + 0.45 * h], [x0 + 0.2 * w, y0], [x1 - 0.2 * w, y0],
                                [x1 - 0.1 * w, y0 + 0.45 * h]])
                cv2.fillPoly(img, [_fx(cab)], body.tolist(), cv2.LINE_AA, _SHIFT)
                win = np.array([[x0 + 0.17 * w, y0 + 0.42 * h], [x0 + 0.25 * w, y0 + 0.08 * h],
                                [x1 - 0.25 * w, y0 + 0.08 * h], [x1 - 0.17 * w, y0 + 0.42 * h]])
                cv2.fillPoly(img, [_fx(win)], (rng.uniform(20, 60),) * 3, cv2.LINE_AA, _SHIFT)
                # tyres and bumper
                tw = 0.18 * w
                cv2.rectangle(img, (int(x0 + 0.02 * w), int(y1 - 0.14 * h)), (int(x0 + 0.02 * w + tw), int(y1)), (12, 12, 12), -1)
                cv2.rectangle(img, (int(x1 - 0.02 * w - tw), int(y1 - 0.14 * h)), (int(x1 - 0.02 * w), int(y1)), (12, 12, 12), -1)
                cv2.rectangle(img, (int(x0), int(y1 - 0.25 * h)), (int(x1), int(y1 - 0.14 * h)), (body * 0.6).tolist(), -1)
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

    def _hood(self, img, sc, rng, night):
        """Sometimes a car bonnet at the bottom (Udacity-like); returns its top row as f(x)."""
        if rng.random() > 0.15:
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


def _extend_curve(ys: np.ndarray, xs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x on every row: interpolated inside the labelled span, extrapolated linearly outside."""
    xf = np.interp(rows, ys, xs).astype(np.float32)
    if len(ys) >= 2:
        n = min(4, len(ys))
        top_slope = (xs[n - 1] - xs[0]) / max(ys[n - 1] - ys[0], 1e-3)
        bot_slope = (xs[-1] - xs[-n]) / max(ys[-1] - ys[-n], 1e-3)
        above, below = rows < ys[0], rows > ys[-1]
        xf[above] = xs[0] + top_slope * (rows[above] - ys[0])
        xf[below] = xs[-1] + bot_slope * (rows[below] - ys[-1])
    return xf


def _geometry_lanes(label: dict) -> dict | None:
    """Real label -> lanes as (ys ascending, xs), plus estimated horizon, vanishing x, spacing."""
    hs = np.asarray(label["h_samples"], np.float32)
    lanes = []
    for xs in label["lanes"]:
        xs = np.asarray(xs, np.float32)
        if xs.shape != hs.shape:
            continue
        ok = xs >= 0
        if ok.sum() >= 3:
            lanes.append((hs[ok], xs[ok]))
    if not lanes:
        return None
    top = min(float(ys[0]) for ys, _ in lanes)
    fits = []
    for ys, xs in lanes:
        lower = ys >= ys[0] + 0.3 * (ys[-1] - ys[0])
        if lower.sum() >= 2:
            b, a = np.polyfit(ys[lower], xs[lower], 1)  # x = a + b*y
            fits.append((a, b))
    cands = []
    for i in range(len(fits)):
        for j in range(i + 1, len(fits)):
            (a1, b1), (a2, b2) = fits[i], fits[j]
            if abs(b1 - b2) > 0.2:
                cands.append((a2 - a1) / (b1 - b2))
    horizon = float(np.median(cands)) if cands else top - 15.0
    horizon = float(np.clip(horizon, top - 80.0, top - 3.0))
    xvp = float(np.median([a + b * horizon for a, b in fits])) if fits else 640.0
    spacings = []
    order = sorted(lanes, key=lambda l: float(np.interp(710, l[0], l[1])))
    for (ya, xa), (yb, xb) in zip(order[:-1], order[1:]):
        common = np.intersect1d(ya, yb)
        common = common[common > horizon + 40]
        if len(common):
            d = np.interp(common, yb, xb) - np.interp(common, ya, xa)
            spacings.append(float(np.median(d / (common - horizon))))
    spacing = float(np.clip(np.median(spacings), 1.2, 4.5)) if spacings else 2.4
    order = sorted(lanes, key=lambda l: float(_bottom_x(l)))
    return {"lanes": order, "horizon": horizon, "xvp": xvp, "spacing": spacing}


def _bottom_x(lane) -> float:
    ys, xs = lane
    if len(ys) < 2:
        return float(xs[-1])
    n = min(4, len(ys))
    slope = (xs[-1] - xs[-n]) / max(ys[-1] - ys[-n], 1e-3)
    return float(xs[-1] + slope * (720 - ys[-1]))


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
