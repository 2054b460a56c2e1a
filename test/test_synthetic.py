"""The synthetic scene generator: deterministic, labels on the drawn markings, real geometry."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import shared_path
from lanesad_ros.data import SceneGenerator, read_tusimple_labels
from lanesad_ros.data.frames import TUSIMPLE_H_SAMPLES, DataError
from lanesad_ros.data.synthetic.lens import Lens
from lanesad_ros.data.synthetic.profile import scene_profile
from lanesad_ros.data.synthetic.render import Renderer
from lanesad_ros.training.config import ConfigError, load_config
from lanesad_ros.training.data import load_frames


def _label(lanes_xs):
    return {"lanes": lanes_xs, "h_samples": TUSIMPLE_H_SAMPLES.tolist(), "raw_file": "x.jpg"}


def _straight_label():
    """Four straight lanes converging at (640, 250), TuSimple style."""
    hs = TUSIMPLE_H_SAMPLES.astype(float)
    lanes = []
    for slope in (-2.6, -1.1, 1.1, 2.6):
        xs = 640 + slope * (hs - 250)
        xs = np.where((hs >= 270) & (xs >= 0) & (xs < 1280), np.round(xs), -2)
        lanes.append(xs.astype(int).tolist())
    return _label(lanes)


def test_deterministic_per_seed_and_index():
    a, b = SceneGenerator(seed=3), SceneGenerator(seed=3)
    fa, fb = a.frame(5), b.frame(5)
    assert np.array_equal(fa.image, fb.image)
    assert len(fa.lanes) == len(fb.lanes)
    for la, lb in zip(fa.lanes, fb.lanes, strict=True):
        assert np.array_equal(la, lb)
    assert not np.array_equal(a.frame(6).image, fa.image)
    assert not np.array_equal(SceneGenerator(seed=4).frame(5).image, fa.image)


def test_frame_format():
    gen = SceneGenerator(seed=0, length=7)
    assert len(gen) == 7
    with pytest.raises(IndexError):
        gen[7]
    for i in range(4):
        f = gen.frame(i)
        assert f.image.shape == (720, 1280, 3) and f.image.dtype == np.uint8
        assert np.array_equal(f.h_samples, TUSIMPLE_H_SAMPLES)
        assert 1 <= len(f.lanes) <= 6
        bottoms = []
        for lane in f.lanes:
            assert lane.dtype == np.float32 and lane.shape[1] == 2
            assert np.all(np.isin(lane[:, 1], TUSIMPLE_H_SAMPLES))
            assert np.all((lane[:, 0] >= 0) & (lane[:, 0] <= 1279))
            bottoms.append(float(lane[np.argmax(lane[:, 1]), 0]))
        # listed left to right: the mean x over shared rows increases
        xs = f.lane_xs()
        for a, b in zip(xs[:-1], xs[1:], strict=True):
            both = (a >= 0) & (b >= 0)
            if both.any():
                assert np.mean(b[both] - a[both]) > 0


def test_other_image_size_scales_h_samples():
    f = SceneGenerator(seed=0, width=640, height=360).frame(0)
    assert f.image.shape == (360, 640, 3)
    assert f.h_samples[0] == 80 and f.h_samples[-1] == 355


def test_labels_land_on_bright_marking_pixels():
    """Solid markings: the labelled centre is brighter than the road a little to each side."""
    gen = SceneGenerator(seed=11, geometry=[_straight_label()])
    checked = 0
    for i in range(12):
        f = gen.frame(i)
        if f.meta["night"]:
            continue
        grey = cv2.cvtColor(f.image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        for lane, kind in zip(f.lanes, f.meta["lane_kinds"], strict=True):
            if not kind.endswith("solid"):
                continue
            pts = lane[lane[:, 1] >= 500]  # near rows: markings several pixels wide
            if len(pts) < 5:
                continue
            x, y = pts[:, 0].round().astype(int), pts[:, 1].astype(int)
            on = grey[y, x]
            off = np.maximum(np.clip(x - 40, 0, 1279), 0)
            side = np.minimum(grey[y, off], grey[y, np.clip(x + 40, 0, 1279)])
            # occluders (vehicles, shadows) may hide a few points; most must be brighter
            assert np.mean(on > side) > 0.6, (i, kind)
            checked += 1
    assert checked >= 3


def test_geometry_mode_uses_real_lane_positions(tmp_path):
    label = _straight_label()
    path = tmp_path / "geo.json"
    path.write_text(json.dumps(label) + "\n")
    # Without jitter the frame's labels are the real label's points (up to horizon remap off).
    gen = SceneGenerator(seed=0, geometry=str(path), jitter=False)
    f = gen.frame(0)
    assert f.meta["mode"] == "geometry" and f.meta["geometry_index"] == 0
    real = [np.asarray(xs, float) for xs in label["lanes"]]
    got = f.lane_xs()
    assert len(got) == 4
    for r, g in zip(real, got, strict=True):
        both = (r >= 0) & (g >= 0)
        assert both.sum() >= 20
        assert np.max(np.abs(r[both] - g[both])) <= 1.0
    # With jitter: still 4 lanes, same order, close to the real positions.
    fj = SceneGenerator(seed=0, geometry=[label]).frame(1)
    assert len(fj.lanes) == 4


def test_geometry_from_shared_tusimple_labels():
    files = sorted(shared_path("tusimple-geometry").glob("label_data_*.json"))
    gen = SceneGenerator(seed=2, geometry=[str(files[1])])
    f = gen.frame(0)
    assert f.meta["mode"] == "geometry"
    assert 2 <= len(f.lanes) <= 5


def test_bad_geometry_raises_naming_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"lanes": [[1, 2]], "h_samples": [1, 2]}\nnot json\n')
    with pytest.raises(DataError, match="bad.json:2"):
        SceneGenerator(geometry=str(bad))
    with pytest.raises(DataError, match="missing.json"):
        SceneGenerator(geometry=str(tmp_path / "missing.json"))


def test_write_tusimple_round_trip(tmp_path):
    gen = SceneGenerator(seed=5)
    labels = gen.write_tusimple(tmp_path, 3)
    frames = read_tusimple_labels(labels)
    assert len(frames) == 3
    for i, f in enumerate(frames):
        assert f.image_path == tmp_path / "clips" / "synthetic" / f"{i:06d}" / "20.jpg"
        img = f.load_image()
        assert img.shape == (720, 1280, 3)
        ref = gen.frame(i)
        assert len(f.lanes) == len(ref.lanes)
        for a, b in zip(f.lane_xs(), ref.lane_xs(), strict=True):
            assert np.allclose(a, np.where(b >= 0, np.round(b), -2))
        assert f.slots == ref.slots


def test_generator_pickles_for_dataloader_workers():
    import pickle
    gen = SceneGenerator(seed=9, width=320, height=180)
    ref = gen.frame(2)
    clone = pickle.loads(pickle.dumps(gen))
    assert clone._noise is None  # noise bank is rebuilt in the worker, not shipped
    assert np.array_equal(clone.frame(2).image, ref.image)


# --- varied cameras and city streets (issue 18): profiles and their ingredients

_OFF = dict(camera=0.0, roll=0.0, distortion=0.0, hood_culane=0.0, city=0.0, dusk=0.0, rain=0.0,
            night=0.12, hood=0.15)  # the new ingredients off, night and hood as often as on highways
_PLAIN = dict(_OFF, hood=0.0, night=0.0)  # no ingredient but the one a test switches on


def _same_frames(fa, fb):
    assert np.array_equal(fa.image, fb.image)
    assert len(fa.lanes) == len(fb.lanes) and fa.slots == fb.slots
    for la, lb in zip(fa.lanes, fb.lanes, strict=True):
        assert np.array_equal(la, lb)


def test_default_profile_is_highway_and_switched_off_ingredients_draw_nothing():
    """Existing recipes render what they did: the default is highway, and a varied profile with
    every new ingredient off renders the very same frames (an off ingredient draws no random)."""
    assert SceneGenerator().profile == scene_profile("highway")
    for kw in (dict(seed=3, width=640, height=360), dict(seed=1, geometry=[_straight_label()])):
        old = SceneGenerator(**kw)
        off = SceneGenerator(**kw, profile="varied", profile_options=_OFF)
        for i in range(4):
            _same_frames(old.frame(i), off.frame(i))


@pytest.mark.parametrize("size", [(640, 360), (820, 295)])
def test_varied_frames_deterministic_labels_in_image(size):
    w, h = size
    a, b = (SceneGenerator(seed=7, width=w, height=h, profile="varied") for _ in range(2))
    seen = set()
    for i in range(24):
        f = a.frame(i)
        _same_frames(f, b.frame(i))
        assert f.image.shape == (h, w, 3)
        for lane in f.lanes:
            assert len(lane) >= 2
            assert np.all((lane[:, 0] >= 0) & (lane[:, 0] <= w - 1) & (lane[:, 1] >= 0) & (lane[:, 1] <= h - 1))
        seen |= {k for k in ("city", "negative", "rain", "dusk", "night", "hood") if f.meta.get(k)}
        seen |= {"lens"} if f.meta.get("distortion_k") or f.meta.get("roll_deg") else set()
        assert 50 <= f.meta["fov_deg"] <= 120
    assert seen >= {"city", "rain", "hood", "lens"}


def test_profile_options_checked():
    with pytest.raises(ValueError, match="unknown synthetic profile option 'rainn'"):
        SceneGenerator(profile="varied", profile_options={"rainn": 0.5})
    with pytest.raises(ValueError, match="probability"):
        scene_profile("varied", {"city": 1.5})
    with pytest.raises(ValueError, match="unknown synthetic scene profile 'town'"):
        SceneGenerator(profile="town")


def test_profile_in_training_config(tmp_path):
    cfg = tmp_path / "c.yaml"
    entry = "- {type: synthetic, width: 640, height: 360, profile: city, profile_options: {%s}}"
    cfg.write_text("data:\n  train:\n    " + entry % "negative: 1.0" + "\n")
    loaded = load_config(cfg)
    gen = load_frames(loaded["data"]["train"][0], "train").generator
    assert gen.profile.name == "city" and gen.profile.negative == 1.0
    cfg.write_text("data:\n  train:\n    " + entry % "kerbs: 1.0" + "\n")
    with pytest.raises(ConfigError, match=r"data.train\[0\].profile_options.*'kerbs'"):
        load_config(cfg)


def test_lens_maps_labels_with_the_pixels():
    """A dot drawn in the rendered frame lands, after warp(), where to_image() puts its label."""
    for k, roll in ((0.3, 0.05), (0.1, -0.04), (0.0, 0.03)):
        lens = Lens(640, 360, k, roll)
        pts = np.array([[150.0, 250.0], [320.0, 180.0], [520.0, 90.0], [430.0, 300.0]], np.float32)
        assert np.allclose(lens.to_ideal(lens.to_image(pts)), pts, atol=1e-3)
        for p in pts:
            blank = np.zeros((360, 640, 3), np.uint8)
            cv2.circle(blank, (int(p[0]), int(p[1])), 3, (255, 255, 255), -1)
            out = cv2.cvtColor(lens.warp(blank), cv2.COLOR_BGR2GRAY).astype(np.float32)
            ys, xs = np.nonzero(out > 0.5 * out.max())
            centre = np.array([xs.mean(), ys.mean()])
            expected = lens.to_image(np.array([[int(p[0]), int(p[1])]], np.float32))[0]
            assert np.linalg.norm(centre - expected) < 1.5, (k, roll, p, centre, expected)


def test_barrel_distortion_compresses_the_periphery():
    lens = Lens(640, 360, 0.3, 0.0)
    centre = np.array([319.5, 179.5], np.float32)
    ideal = centre + np.array([[20.0, 10.0], [300.0, 150.0]], np.float32)  # one ray, near and far
    out = lens.to_image(ideal)
    gain = np.linalg.norm(out - centre, axis=1) / np.linalg.norm(ideal - centre, axis=1)
    assert gain[1] < 0.85 * gain[0]
    (ax, ay), (bx, by) = out[1] - centre, ideal[1] - centre
    assert abs(ax * by - ay * bx) < 1e-2 * np.hypot(ax, ay) * np.hypot(bx, by)  # radial


def test_generator_warps_image_and_labels_with_one_lens(monkeypatch):
    """A distorted, rolled frame is the pinhole frame warped by the frame's lens, and its labels
    are the pinhole labels mapped by that same lens (kept where they fall in the image)."""
    opts = dict(_PLAIN, camera=1.0, distortion=1.0, roll=1.0, fov_deg=[90, 120], city=0.5)
    monkeypatch.setattr(Renderer, "_camera", lambda self, img, rng, noise: img)  # no noise / JPEG
    lenses = []
    monkeypatch.setattr(Lens, "warp", lambda self, img: (lenses.append(self), img)[1])
    monkeypatch.setattr(Lens, "to_image", lambda self, pts: np.asarray(pts, np.float32).reshape(-1, 2))
    gen = SceneGenerator(seed=5, width=640, height=360, profile="varied", profile_options=opts)
    pinhole = [gen.frame(i) for i in range(6)]
    monkeypatch.undo()
    monkeypatch.setattr(Renderer, "_camera", lambda self, img, rng, noise: img)
    for i, ref in enumerate(pinhole):
        f = gen.frame(i)
        lens = lenses[i]
        assert f.meta["distortion_k"] == lens.k > 0
        assert np.radians(f.meta["roll_deg"]) == pytest.approx(lens.roll) and lens.roll != 0
        assert np.array_equal(f.image, lens.warp(ref.image))
        assert not np.array_equal(f.image, ref.image)
        assert f.h_samples is None
        expected = []
        for ideal in ref.lanes:
            moved = lens.to_image(ideal)
            inside = (moved[:, 0] >= 0) & (moved[:, 0] <= 639) & (moved[:, 1] >= 0) & (moved[:, 1] <= 359)
            if inside.sum() >= 2:
                expected.append(moved[inside])
        assert len(f.lanes) == len(expected)
        for lane, exp in zip(f.lanes, expected, strict=True):
            assert np.array_equal(lane, exp)


def test_negatives_have_no_lanes_and_no_markings():
    opts = dict(_PLAIN, city=1.0, negative=1.0, intersection=0.0, zebra=0.0, parked_cars=0.0)
    gen = SceneGenerator(seed=2, width=640, height=360, profile="city", profile_options=opts)
    marked = SceneGenerator(seed=2, width=640, height=360, profile="city", profile_options=dict(opts, negative=0.0))
    for i in range(6):
        f = gen.frame(i)
        assert f.meta["negative"] and f.lanes == [] and f.slots == []
        assert len(marked.frame(i).lanes) >= 1


def test_arrows_cars_and_crossings_change_pixels_not_labels():
    """Painted arrows, zebra crossings, parked and crossing cars are drawn (the image changes)
    but never labelled: the same scene with them switched off has the very same lanes."""
    base = dict(_PLAIN, city=1.0, negative=0.0, intersection=1.0)
    on = SceneGenerator(seed=3, width=640, height=360, profile="city",
                        profile_options=dict(base, arrows=1.0, parked_cars=1.0, crossing_cars=1.0, zebra=1.0))
    off = SceneGenerator(seed=3, width=640, height=360, profile="city",
                         profile_options=dict(base, arrows=0.0, parked_cars=0.0, crossing_cars=0.0, zebra=1.0))
    for i in range(4):
        fa, fb = on.frame(i), off.frame(i)
        assert fa.meta["arrows"] and fa.meta["parked_cars"] and fa.meta["crossing_cars"]
        assert not (fb.meta["arrows"] or fb.meta["parked_cars"] or fb.meta["crossing_cars"])
        assert not np.array_equal(fa.image, fb.image)
        assert len(fa.lanes) == len(fb.lanes) >= 1 and fa.slots == fb.slots
        for la, lb in zip(fa.lanes, fb.lanes, strict=True):
            assert np.array_equal(la, lb)


def test_stop_lines_and_crossings_are_painted_not_labelled():
    """At an intersection the lanes end at the stop line: the stop line is bright paint on the
    road, and no label point lies on it or on the zebra crossing and crossing road beyond it."""
    opts = dict(_PLAIN, city=1.0, negative=0.0, intersection=1.0, zebra=1.0, parked_cars=0.0, crossing_cars=0.0)
    gen = SceneGenerator(seed=4, width=640, height=360, profile="city", profile_options=opts)
    brighter = 0
    for i in range(8):
        scene = gen._scene(np.random.default_rng([gen.seed, i]))  # frame(i) draws this scene first
        f = gen.frame(i)
        z_stop = f.meta["z_stop"]
        assert z_stop == scene.meta["z_stop"]
        y_stop = float(scene.row_at(z_stop))
        for lane in f.lanes:
            assert lane[:, 1].min() >= y_stop - 1e-3
        grey = cv2.cvtColor(f.image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        kl, kr = f.meta["kerb"]
        lats = np.linspace(kl + 1.0, kr - 1.0, 9)
        on = [grey[int(y), int(x)] for x, y in zip(*scene.project(lats, np.full(9, z_stop + 0.15)), strict=True)
              if 0 <= x < 640 and 0 <= y < 360]
        before = [grey[int(y), int(x)] for x, y in zip(*scene.project(lats, np.full(9, z_stop - 1.0)), strict=True)
                  if 0 <= x < 640 and 0 <= y < 360]
        brighter += np.median(on) > np.median(before) + 10
    assert brighter >= 6


def test_culane_hood_covers_bottom_and_lanes_run_across_it():
    gen = SceneGenerator(seed=8, width=820, height=295, profile="varied",
                         profile_options=dict(_PLAIN, hood=1.0, hood_culane=1.0))
    bottom = int(gen.h_samples.max())
    for i in range(6):
        f = gen.frame(i)
        assert f.meta["hood"] == "culane"
        # the bonnet: the bottom rows are one flat paint, not road with markings
        assert cv2.cvtColor(f.image[-8:], cv2.COLOR_BGR2GRAY).std() < 25
        assert any(lane[:, 1].max() == bottom for lane in f.lanes)


def test_field_of_view_sets_the_focal_length():
    for fov in (50.0, 120.0):
        gen = SceneGenerator(seed=0, width=640, height=360, profile="varied",
                             profile_options=dict(_PLAIN, camera=1.0, fov_deg=[fov, fov], pitch_deg=[0, 0]))
        scene = gen._scene(np.random.default_rng([0, 1]))
        assert scene.focal == pytest.approx(320 / np.tan(np.radians(fov / 2)), rel=1e-6)
        assert scene.horizon == pytest.approx(180.0)
        assert 1.2 <= 1.0 / scene.ppm_slope <= 2.5
        assert gen.frame(1).meta["fov_deg"] == pytest.approx(fov)


def test_dusk_night_and_rain_change_the_light():
    def mean_level(**opts):
        gen = SceneGenerator(seed=6, width=320, height=180, profile="varied", profile_options=dict(_PLAIN, **opts))
        frames = [gen.frame(i) for i in range(6)]
        return float(np.mean([f.image.mean() for f in frames])), frames

    day, _ = mean_level()
    dusk, frames = mean_level(dusk=1.0)
    assert all(f.meta["dusk"] for f in frames) and dusk < day - 15
    night, frames = mean_level(night=1.0)
    assert all(f.meta["night"] for f in frames) and night < dusk
    _, frames = mean_level(rain=1.0)
    assert all(f.meta["rain"] for f in frames)
