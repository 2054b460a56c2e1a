"""The synthetic scene generator: deterministic, labels on the drawn markings, real geometry."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import shared_path
from lanesad_ros.data import SceneGenerator, read_tusimple_labels
from lanesad_ros.data.frames import TUSIMPLE_H_SAMPLES, DataError


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
