"""Frames, TuSimple labels, augmentation and the segmentation dataset."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import shared_path
from lanesad_ros.data import (
    AugmentConfig,
    DataError,
    LabelledFrame,
    LaneSegDataset,
    SceneGenerator,
    assign_slots,
    read_tusimple_labels,
    write_tusimple_labels,
)
from lanesad_ros.data.augment import augment, flip_slot
from lanesad_ros.data.frames import TUSIMPLE_H_SAMPLES
from lanesad_ros.lanes import LaneSlot
from lanesad_ros.preprocess import Preprocessor

HS = TUSIMPLE_H_SAMPLES


def _line(x_bottom, x_top, y_bottom=710, y_top=300, n=20):
    ys = np.linspace(y_bottom, y_top, n)
    return np.stack([np.linspace(x_bottom, x_top, n), ys], 1).astype(np.float32)


# ---------------------------------------------------------------- frames / slots
def test_assign_slots_ego_relative():
    lanes = [_line(-400, 500), _line(200, 600), _line(1100, 680), _line(1700, 760), _line(2400, 800)]
    assert assign_slots(lanes, 1280) == [LaneSlot.LEFT_LEFT, LaneSlot.LEFT, LaneSlot.RIGHT,
                                         LaneSlot.RIGHT_RIGHT, LaneSlot.UNKNOWN]
    # Three lanes on the left: the farthest gets no slot; order of input is kept.
    lanes = [_line(600, 630), _line(-900, 400), _line(100, 560), _line(-300, 500)]
    assert assign_slots(lanes, 1280) == [LaneSlot.LEFT, LaneSlot.UNKNOWN, LaneSlot.LEFT_LEFT, LaneSlot.UNKNOWN]
    # A lane that ends high up is extrapolated to the common bottom row before comparing.
    short = _line(300, 560, y_bottom=400)  # heads for x < 0 at the bottom
    assert assign_slots([short, _line(400, 600)], 1280) == [LaneSlot.LEFT_LEFT, LaneSlot.LEFT]
    assert assign_slots([], 1280) == []


def test_load_image_errors_name_the_file(tmp_path):
    missing = LabelledFrame(tmp_path / "nope.jpg", None, [], [])
    with pytest.raises(DataError, match="nope.jpg"):
        missing.load_image()
    corrupt = tmp_path / "bad.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError, match="bad.jpg"):
        LabelledFrame(corrupt, None, [], []).load_image()
    with pytest.raises(DataError):
        LabelledFrame(None, None, [_line(0, 1)], [])  # lanes/slots mismatch


# ---------------------------------------------------------------- TuSimple
def _tusimple_line(lanes, raw="clips/a/1.jpg"):
    return json.dumps({"lanes": lanes, "h_samples": HS.tolist(), "raw_file": raw})


def test_read_real_tusimple_labels():
    path = shared_path("tusimple", "labels.json")
    frames = read_tusimple_labels(path)
    assert len(frames) == 3
    for f in frames:
        assert f.image_path.is_file()
        assert f.slots == [0, 1, 2, 3]
        assert np.array_equal(f.h_samples, HS)
        img = f.load_image()
        assert img.shape == (720, 1280, 3)
        for lane in f.lanes:
            assert np.all(np.diff(lane[:, 1]) < 0)  # bottom -> top
    raw = json.loads(path.read_text().splitlines()[0])
    xs0 = np.asarray(raw["lanes"][0], float)
    assert np.array_equal(frames[0].lane_xs()[0], np.where(xs0 >= 0, xs0, -2))


def test_tusimple_fixture_round_trip(tmp_path):
    lanes = [[-2] * 10 + list(range(500, 500 - 46 * 5, -5)), [-2] * 12 + list(range(700, 700 + 44 * 6, 6))]
    lanes = [l[:len(HS)] for l in lanes]
    lanes.append([-2] * len(HS))  # an empty lane is dropped and counted
    (tmp_path / "clips" / "a").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "clips" / "a" / "1.jpg"), np.zeros((720, 1280, 3), np.uint8))
    label_file = tmp_path / "label.json"
    label_file.write_text(_tusimple_line(lanes) + "\n\n")
    frames = read_tusimple_labels(label_file)
    assert len(frames) == 1 and len(frames[0].lanes) == 2
    assert frames[0].meta["empty_lanes"] == 1
    assert frames[0].load_image().shape == (720, 1280, 3)
    out = write_tusimple_labels(frames, tmp_path / "out" / "labels.json", root=tmp_path)
    again = json.loads(out.read_text())
    assert again["raw_file"] == "clips/a/1.jpg"
    assert again["lanes"] == lanes[:2]
    # dicts are written as given
    write_tusimple_labels([json.loads(_tusimple_line(lanes))], tmp_path / "d.json")
    assert json.loads((tmp_path / "d.json").read_text())["lanes"] == lanes


@pytest.mark.parametrize("bad, why", [
    ("{not json", "invalid JSON"),
    (json.dumps({"lanes": [[1, 2]], "h_samples": [1, 2, 3]}), "lane 0 has 2 values"),
    (json.dumps({"h_samples": [1, 2]}), "missing field 'lanes'"),
    (json.dumps({"lanes": [["a", 2]], "h_samples": [1, 2]}), "lists of numbers"),
    (json.dumps([1, 2]), "expected a JSON object"),
])
def test_tusimple_malformed_line_names_file_and_line(tmp_path, bad, why):
    path = tmp_path / "labels.json"
    path.write_text(_tusimple_line([[-2] * len(HS)]) + "\n" + bad + "\n")
    with pytest.raises(DataError, match=rf"labels\.json:2: .*{why}"):
        read_tusimple_labels(path)


def test_tusimple_skip_bad_counts(tmp_path):
    good = _tusimple_line([[-2] * 20 + [600] * (len(HS) - 20)], raw="clips/x.jpg")
    path = tmp_path / "labels.json"
    path.write_text("\n".join([good, "{oops", good, json.dumps({"lanes": 3, "h_samples": [1]})]) + "\n")
    frames = read_tusimple_labels(path, skip_bad=True)
    assert len(frames) == 2 and len(frames.skipped) == 2
    assert "labels.json:2" in frames.skipped[0] and "labels.json:4" in frames.skipped[1]
    # missing images only count as bad when asked to check
    checked = read_tusimple_labels(path, skip_bad=True, check_images=True)
    assert len(checked) == 0 and len(checked.skipped) == 4
    with pytest.raises(DataError, match="not found"):
        read_tusimple_labels(tmp_path / "absent.json")


# ---------------------------------------------------------------- augmentation
def _marked_image(lanes, w=1280, h=720):
    img = np.full((h, w, 3), 60, np.uint8)
    for lane in lanes:
        cv2.polylines(img, [np.round(lane).astype(np.int32)], False, (255, 255, 255), 9)
    return img


def test_flip_swaps_slots_and_mirrors_x():
    lanes = [_line(100, 560), _line(400, 620), _line(900, 660), _line(1200, 720)]
    slots = [0, 1, 2, 3]
    cfg = AugmentConfig(scale=0, translate=0, rotate_deg=0, brightness=0, contrast=0, saturation=0, hue=0,
                        blur_prob=0, noise_prob=0, flip_prob=1.0)
    img = _marked_image(lanes)
    out, out_lanes, out_slots, _ = augment(img, lanes, slots, cfg, np.random.default_rng(0))
    assert np.array_equal(out, img[:, ::-1])
    assert out_slots == [0, 1, 2, 3]  # reordered left to right, so slots read the same
    for new, old in zip(out_lanes, lanes[::-1], strict=True):
        assert np.allclose(new[:, 0], 1279 - old[:, 0])
        assert np.allclose(new[:, 1], old[:, 1])
    assert [flip_slot(s) for s in (0, 1, 2, 3, 255)] == [3, 2, 1, 0, 255]
    # a flipped frame with only the left lanes: they become the right lanes
    _, l2, s2, _ = augment(img, lanes[:2], [0, 1], cfg, np.random.default_rng(0))
    assert s2 == [LaneSlot.RIGHT, LaneSlot.RIGHT_RIGHT]
    assert l2[0][0, 0] == pytest.approx(1279 - 400)


def test_augment_keeps_labels_on_markings_and_is_deterministic():
    lanes = [_line(200, 600), _line(1100, 680)]
    img = _marked_image(lanes)
    cfg = AugmentConfig(scale=0.15, translate=0.05, rotate_deg=5, blur_prob=0, noise_prob=0)
    for seed in range(6):
        out, new_lanes, _, _ = augment(img, lanes, [1, 2], cfg, np.random.default_rng(seed))
        grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        for lane in new_lanes:
            x, y = np.round(lane[:, 0]).astype(int), np.round(lane[:, 1]).astype(int)
            keep = (x > 2) & (x < 1277) & (y > 2) & (y < 717)
            assert keep.sum() >= 5
            assert np.all(grey[y[keep], x[keep]] > grey[2, 640] + 20)
        again = augment(img, lanes, [1, 2], cfg, np.random.default_rng(seed))
        assert np.array_equal(again[0], out)
    with pytest.raises(ValueError, match="bogus"):
        AugmentConfig.from_dict({"bogus": 1})
    assert AugmentConfig.from_dict({"flip_prob": 0}).flip_prob == 0.0


# ---------------------------------------------------------------- dataset
def test_dataset_renders_slots_as_classes():
    pp = Preprocessor(input_size=(72, 200), crop_top=0.3)
    lanes = [_line(200, 600), _line(500, 630), _line(900, 660)]
    frame = LabelledFrame(None, _marked_image(lanes), lanes, assign_slots(lanes, 1280))
    ds = LaneSegDataset([frame], pp, line_width=3)
    item = ds[0]
    assert item["image"].shape == (3, 72, 200) and item["image"].dtype == torch.float32
    assert np.allclose(item["image"].numpy(), pp(frame.image))
    assert item["seg"].shape == (72, 200) and item["seg"].dtype == torch.int64
    assert item["exist"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert set(np.unique(item["seg"].numpy())) == {0, 1, 2, 3}
    seg = item["seg"].numpy()
    # lane 1 (slot LEFT -> class 2) passes through its projected bottom point
    u, v = pp.to_input(np.array([500.0]), np.array([700.0]), (1280, 720))
    assert seg[int(round(v[0])), int(round(u[0]))] == 2
    # binary mode (BDD100K) and a 6-lane re-assignment
    assert set(np.unique(LaneSegDataset([frame], pp, num_lanes=1)[0]["seg"].numpy())) == {0, 1}
    six = LaneSegDataset([frame], pp, num_lanes=6)[0]
    assert six["exist"].shape == (6,) and six["exist"].sum() == 3


def test_dataset_from_generator_with_augmentation():
    pp = Preprocessor(input_size=(72, 200), crop_top=0.3)
    gen = SceneGenerator(seed=0, width=640, height=360, length=3)
    ds = LaneSegDataset(gen, pp, augment=AugmentConfig(), seed=1)
    assert len(ds) == 3
    a, b = ds[1], ds[1]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["seg"], b["seg"])
    assert a["seg"].max() >= 1
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["image"], a["image"])
    called = LaneSegDataset(gen.frame, pp, length=2)
    assert len(called) == 2 and called[0]["seg"].shape == (72, 200)
    with pytest.raises(IndexError):
        called[2]
    with pytest.raises(ValueError, match="length"):
        LaneSegDataset(gen.frame, pp)


def test_dataset_uses_mask_file_when_given(tmp_path):
    pp = Preprocessor(input_size=(36, 100))
    mask = np.zeros((72, 200), np.uint8)
    mask[:, 20:24] = 1
    mask[:, 150:154] = 3
    mask_path = tmp_path / "m.png"
    cv2.imwrite(str(mask_path), mask)
    frame = LabelledFrame(None, np.zeros((72, 200, 3), np.uint8), [], [], width=200, height=72,
                          meta={"seg_mask_path": mask_path})
    item = LaneSegDataset([frame], pp)[0]
    assert item["exist"].tolist() == [1.0, 0.0, 1.0, 0.0]
    cfg = AugmentConfig(scale=0, translate=0, rotate_deg=0, flip_prob=1.0)
    flipped = LaneSegDataset([frame], pp, augment=cfg)[0]
    assert flipped["exist"].tolist() == [0.0, 1.0, 0.0, 1.0]  # 1 <-> 4, 3 <-> 2
    frame.meta["seg_mask_path"] = tmp_path / "absent.png"
    with pytest.raises(DataError, match="absent.png"):
        LaneSegDataset([frame], pp)[0]


# ---------------------------------------------------------------- CULane
def _culane_tree(tmp_path):
    root = tmp_path / "CULane"
    clip = root / "driver_00_30frame" / "c.MP4"
    clip.mkdir(parents=True)
    (root / "list" / "test_split").mkdir(parents=True)
    (root / "laneseg_label_w16" / "driver_00_30frame" / "c.MP4").mkdir(parents=True)
    for name in ("00000", "00030"):
        cv2.imwrite(str(clip / f"{name}.jpg"), np.zeros((590, 1640, 3), np.uint8))
    # left lane then right lane, bottom -> top, as CULane writes them
    (clip / "00000.lines.txt").write_text("520.5 590 600.25 500 680 410 \n1100 590 1000 500 920 410 \n")
    (clip / "00030.lines.txt").write_text("")
    mask = np.zeros((590, 1640), np.uint8)
    mask[400:590, 500:700] = 2
    cv2.imwrite(str(root / "laneseg_label_w16" / "driver_00_30frame" / "c.MP4" / "00000.png"), mask)
    (root / "list" / "train_gt.txt").write_text(
        "/driver_00_30frame/c.MP4/00000.jpg /laneseg_label_w16/driver_00_30frame/c.MP4/00000.png 0 1 1 0\n"
        "/driver_00_30frame/c.MP4/00030.jpg /laneseg_label_w16/driver_00_30frame/c.MP4/00030.png 0 0 0 0\n")
    (root / "list" / "test_split" / "test6_curve.txt").write_text(
        "/driver_00_30frame/c.MP4/00000.jpg\n/driver_00_30frame/c.MP4/00030.jpg\n")
    return root


def test_culane_list_lines_masks_and_categories(tmp_path):
    from lanesad_ros.data.culane import read_culane_list, read_culane_test_split
    root = _culane_tree(tmp_path)
    frames = read_culane_list(root / "list" / "train_gt.txt")
    assert len(frames) == 2
    f = frames[0]
    assert f.image_path == root / "driver_00_30frame" / "c.MP4" / "00000.jpg"
    assert f.load_image().shape == (590, 1640, 3)
    assert (f.width, f.height) == (1640, 590)
    assert f.slots == [LaneSlot.LEFT, LaneSlot.RIGHT]
    assert np.allclose(f.lanes[0][0], [520.5, 590]) and np.allclose(f.lanes[1][-1], [920, 410])
    assert f.meta["seg_mask_path"].name == "00000.png"
    assert frames[1].lanes == [] and "seg_mask_path" not in frames[1].meta  # mask absent: rendered
    # the dataset uses the mask when present
    pp = Preprocessor(input_size=(59, 164))
    item = LaneSegDataset(frames, pp)[0]
    assert item["exist"].tolist() == [0.0, 1.0, 0.0, 0.0]
    rendered = LaneSegDataset([frames[0]], pp)
    frames[0].meta.pop("seg_mask_path")
    assert rendered[0]["exist"].tolist() == [0.0, 1.0, 1.0, 0.0]
    # test split: paths only, slots from position, category from the file name
    test = read_culane_test_split(root)
    assert len(test) == 2 and {f.meta["category"] for f in test} == {"curve"}
    assert test[0].slots == [LaneSlot.LEFT, LaneSlot.RIGHT]


def test_culane_errors_and_skip(tmp_path):
    from lanesad_ros.data.culane import read_culane_list
    root = _culane_tree(tmp_path)
    lst = root / "list" / "bad.txt"
    lst.write_text("/driver_00_30frame/c.MP4/00000.jpg 1 1 1 1\n/driver_00_30frame/c.MP4/missing.jpg\n"
                   "/driver_00_30frame/c.MP4/00000.jpg 0 1 x 0\n/driver_00_30frame/c.MP4/00030.jpg\n")
    with pytest.raises(DataError, match=r"bad\.txt:1: 4 existence flags set but .*00000.lines.txt has 2"):
        read_culane_list(lst)
    frames = read_culane_list(lst, skip_bad=True)
    assert len(frames) == 1 and len(frames.skipped) == 3
    assert "missing.lines.txt" in frames.skipped[1] and "bad.txt:3" in frames.skipped[2]
    (root / "driver_00_30frame" / "c.MP4" / "00030.lines.txt").write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"00030.lines.txt:1: expected finite x y pairs"):
        read_culane_list(root / "list" / "test_split" / "test6_curve.txt")


# ---------------------------------------------------------------- BDD100K
def _bdd_json(tmp_path, frames):
    path = tmp_path / "bdd_lane.json"
    path.write_text(json.dumps(frames))
    return path


def test_bdd100k_new_and_old_layouts_and_binary_mask(tmp_path):
    from lanesad_ros.data.bdd100k import read_bdd100k_lanes, render_binary_mask
    new = {"name": "a.jpg", "labels": [
        {"category": "lane/single white", "attributes": {"laneDirection": "parallel"},
         "poly2d": [{"vertices": [[900, 700], [800, 400]], "types": "LL", "closed": False}]},
        {"category": "lane/crosswalk", "poly2d": [{"vertices": [[0, 600], [1200, 600]], "types": "LL"}]},
        {"category": "lane/single white", "attributes": {"laneDirection": "vertical"},
         "poly2d": [{"vertices": [[100, 650], [600, 650]], "types": "LL"}]},
        {"category": "lane/road curb",
         "poly2d": [{"vertices": [[200, 700], [300, 600], [400, 500], [500, 400]], "types": "LCCL"}]},
        {"category": "car", "box2d": {"x1": 0, "y1": 0, "x2": 1, "y2": 1}},
    ]}
    old = {"name": "b.jpg", "labels": [
        {"category": "lane", "attributes": {"laneDirection": "parallel", "laneStyle": "dashed",
                                            "laneType": "single yellow"},
         "poly2d": [{"vertices": [[640, 719], [650, 450]], "types": "LL", "closed": False}]}]}
    frames = read_bdd100k_lanes(_bdd_json(tmp_path, [new, old]))
    a, b = frames
    assert a.image_path == tmp_path / "a.jpg"
    assert a.meta["lane_categories"] == ["lane/road curb", "lane/single white"]  # left to right
    assert len(a.lanes[0]) > 4  # the Bezier curve is sampled
    assert np.allclose(a.lanes[0][0], [200, 700]) and np.allclose(a.lanes[0][-1], [500, 400])
    assert a.slots == [LaneSlot.LEFT, LaneSlot.RIGHT]
    assert len(b.lanes) == 1
    mask = render_binary_mask(a)
    assert mask.shape == (720, 1280) and set(np.unique(mask)) == {0, 1}
    assert mask[550, 850] == 1 and mask[600, 640] == 0 and mask[650, 300] == 0
    small = render_binary_mask(a, line_width=2, size=(640, 360))
    assert small.shape == (360, 640) and small[275, 425] == 1
    # the dataset in binary mode matches
    pp = Preprocessor(input_size=(72, 128))
    a.image = np.zeros((720, 1280, 3), np.uint8)
    assert LaneSegDataset([a], pp, num_lanes=1)[0]["exist"].tolist() == [1.0]


def test_bdd100k_errors(tmp_path):
    from lanesad_ros.data.bdd100k import read_bdd100k_lanes
    bad = [{"name": "ok.jpg", "labels": []},
           {"name": "x.jpg", "labels": [{"category": "lane/single white", "poly2d": [{"vertices": "nope"}]}]},
           {"labels": []}]
    path = _bdd_json(tmp_path, bad)
    with pytest.raises(DataError, match=r"bdd_lane.json: frame 1 \(x.jpg\)"):
        read_bdd100k_lanes(path)
    frames = read_bdd100k_lanes(path, skip_bad=True)
    assert len(frames) == 1 and len(frames.skipped) == 2
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(DataError, match="broken.json: invalid JSON"):
        read_bdd100k_lanes(tmp_path / "broken.json")


def test_camera_effects_change_pixels_not_labels_and_are_deterministic():
    """Each real-camera effect alone changes the image, never the lanes, and repeats per seed."""
    rng = np.random.default_rng(3)
    img = rng.integers(40, 200, (72, 128, 3), dtype=np.uint8)
    lanes = [np.array([[30.0, 70.0], [50.0, 30.0]], np.float32)]
    off = dict(scale=0, translate=0, rotate_deg=0, brightness=0, contrast=0, saturation=0, hue=0,
               blur_prob=0, noise_prob=0, flip_prob=0)
    effects = [dict(gamma=0.5), dict(night_prob=1.0), dict(temperature=0.2), dict(jpeg_prob=1.0),
               dict(shadow_prob=1.0), dict(glare_prob=1.0)]
    for effect in effects:
        cfg = AugmentConfig(**off, **effect)
        out, out_lanes, out_slots, _ = augment(img, lanes, [1], cfg, np.random.default_rng(5))
        again, *_ = augment(img, lanes, [1], cfg, np.random.default_rng(5))
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - img.astype(int)).mean() > 0.5, effect
        np.testing.assert_array_equal(out, again)
        np.testing.assert_array_equal(out_lanes[0], lanes[0])
        assert out_slots == [1]


def test_pitch_moves_image_and_lanes_together():
    img = np.zeros((100, 100, 3), np.uint8)
    img[60, :] = 255  # a horizontal line at row 60
    lanes = [np.array([[50.0, 60.0], [50.0, 90.0]], np.float32)]
    off = dict(scale=0, translate=0, rotate_deg=0, brightness=0, contrast=0, saturation=0, hue=0,
               blur_prob=0, noise_prob=0, flip_prob=0)
    out, out_lanes, _, _ = augment(img, lanes, [1], AugmentConfig(**off, pitch=0.2), np.random.default_rng(1))
    row = int(np.argmax(out[:, 10, 0]))
    assert row != 60 and abs(out_lanes[0][0, 1] - row) <= 1.0
