"""Scene sampling: horizon, focal length, lane positions (parametric or from real label geometry)
and marking styles for one frame, and the TuSimple label points of each lane.
"""
from __future__ import annotations

import numpy as np

from lanesad_ros.data.synthetic.geometry import _chance, _extend_curve, _Lane, _Scene
from lanesad_ros.data.synthetic.lens import Lens


class SceneSampler:
    """Mixin of SceneGenerator: draws a ``_Scene`` from the frame's RNG and labels its lanes."""

    def _label_points(self, scene: _Scene, lane: _Lane, hood) -> np.ndarray:
        hs = self.h_samples.astype(np.float32)
        inside = (hs >= lane.y_top - 1e-3) & (hs <= lane.y_bot + 1e-3)
        xs = scene.x_of(lane.xf, hs)
        ok = inside & (xs >= 0) & (xs <= self.width - 1)
        if hood is not None:
            ok &= hs < hood(xs) - 2
        return np.stack([xs[ok], hs[ok]], axis=1)[::-1].astype(np.float32)  # bottom -> top

    def _scene(self, rng: np.random.Generator) -> _Scene:
        W, H = self.width, self.height
        prof = self.profile
        camera = _chance(rng, prof.camera)
        city = _chance(rng, prof.city)
        cam_h = None
        if camera:  # a pinhole camera of some FOV, height and pitch (REP 103: pitch down > 0)
            fov = rng.uniform(*prof.fov_deg)
            focal = (W / 2) / np.tan(np.radians(fov / 2))
            cam_h = rng.uniform(*prof.height_m)
            pitch = rng.uniform(*prof.pitch_deg)
            horizon = float(np.clip(H / 2 - focal * np.tan(np.radians(pitch)), 0.2 * H, 0.62 * H))
        else:
            # Horizon: mostly TuSimple-like, sometimes lower (Udacity-like camera).
            if rng.random() < 0.62:
                horizon = H * rng.uniform(0.33, 0.43)
            else:
                horizon = H * rng.uniform(0.43, 0.64)
            focal = W * rng.uniform(0.7, 1.0)
        if self.geometry is not None and not camera and not city:
            scene = self._geometry_scene(rng, horizon, focal)
        else:
            scene = self._parametric_scene(rng, horizon, focal, cam_h, city)
        self._style_lanes(scene, rng)
        if prof.name != "highway":
            fov = float(np.degrees(2 * np.arctan(W / 2 / focal)))
            scene.meta.update(fov_deg=fov, camera_height_m=None if cam_h is None else float(cam_h),
                              horizon=float(horizon))
        roll = rng.uniform(-1, 1) * np.radians(prof.roll_deg) if _chance(rng, prof.roll) else 0.0
        k = 0.0
        if _chance(rng, prof.distortion):  # barrel distortion grows with the field of view
            fov = np.degrees(2 * np.arctan(W / 2 / focal))
            k = rng.uniform(0.3, 1.0) * (0.04 + 0.36 * np.clip((fov - 50) / 70, 0, 1))
        if roll or k:
            scene.lens = Lens(W, H, k, roll)
            scene.meta.update(roll_deg=float(np.degrees(roll)), distortion_k=float(k))
        return scene

    def _rows(self, horizon: float) -> np.ndarray:
        return np.arange(np.floor(horizon) + 1.0, self.height + 1.0, 1.0, dtype=np.float32)

    def _parametric_scene(self, rng, horizon, focal, cam_h=None, city=False) -> _Scene:
        W, H = self.width, self.height
        lane_w = rng.uniform(3.3, 3.9) if not city else rng.uniform(2.9, 3.6)
        # 1 / camera height: TuSimple-like lane spacing unless the camera height was drawn
        ppm_slope = rng.uniform(0.5, 0.8) if cam_h is None else 1.0 / cam_h
        xvp = W / 2 + rng.normal(0, W * 0.04)
        if city and rng.random() < 0.7:
            curv = 0.0
        else:
            curv = 0.0 if rng.random() < 0.35 else rng.uniform(-1, 1) * rng.choice([1 / 250, 1 / 600, 1 / 1500])
        offset = rng.uniform(-0.45, 0.45) * lane_w
        n_left = rng.choice([0, 1, 1, 2, 2])
        n_right = rng.choice([0, 1, 1, 2, 2])
        rows = self._rows(horizon)
        z = focal / (ppm_slope * np.maximum(rows - horizon, 0.5))
        z_cap = rng.uniform(60, 140)
        zc = np.minimum(z, z_cap)
        scene = _Scene(horizon, xvp, ppm_slope, focal, rows, [], {"mode": "parametric"}, curv=float(curv),
                       z_cap=float(z_cap))
        z_top = rng.uniform(45, 110)
        if city:
            scene.meta.update(city=True, negative=_chance(rng, self.profile.negative),
                              laterals=[(k + 0.5) * lane_w - offset for k in range(-n_left - 1, n_right + 1)])
            self._city_layout(scene, rng)
            if scene.meta["intersection"]:  # lane markings end at the stop line
                z_top = min(z_top, scene.meta["z_stop"])
            elif "z_zebra" in scene.meta:
                z_top = min(z_top, scene.meta["z_zebra"] - 1.0)
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
