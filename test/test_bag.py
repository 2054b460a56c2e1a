"""rosbag2 in and out (sqlite3 and mcap, Image and CompressedImage, LaneArray ground truth),
the lanesad-bag CLI, and damaged bags (truncated file, missing topic, wrong type)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import shared_path
from lanesad_ros.data.synthetic import SceneGenerator
from lanesad_ros.ros.bag.cli import main as bag_main
from lanesad_ros.ros.bag.reader import BagReader, bag_info
from lanesad_ros.ros.bag.typestore import COMPRESSED_TYPE, IMAGE_TYPE, LANE_ARRAY_TYPE, START_NS, BagError, typestore
from lanesad_ros.ros.bag.writer import BagWriter

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

W, H = 256, 144
N = 4


@pytest.fixture(scope="module")
def scenes():
    gen = SceneGenerator(seed=3, width=W, height=H)
    return [gen.frame(i) for i in range(N)]


def write_bag(path: Path, scenes, storage: str, compressed: bool) -> Path:
    with BagWriter(path, storage=storage, compressed=compressed) as writer:
        for i, frame in enumerate(scenes):
            writer.write(frame.image, START_NS + i * 100_000_000, frame)
    return path


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("compressed", [False, True])
def test_round_trip(tmp_path, scenes, storage, compressed):
    path = write_bag(tmp_path / "drive", scenes, storage, compressed)
    with BagReader(path) as reader:
        assert reader.storage == storage
        assert reader.image_topic == ("/image_raw/compressed" if compressed else "/image_raw")
        assert reader.image_type == (COMPRESSED_TYPE if compressed else IMAGE_TYPE)
        assert len(reader) == N
        frames = list(reader.frames())
        assert reader.problems == []
    assert len(frames) == N
    for i, (got, want) in enumerate(zip(frames, scenes, strict=True)):
        timestamp, image, stamp, frame_id, gt = got  # the documented 5-tuple
        assert stamp == timestamp == START_NS + i * 100_000_000
        assert frame_id == "camera"
        assert image.shape == want.image.shape and image.dtype == np.uint8
        if compressed:
            assert np.abs(image.astype(int) - want.image).mean() < 4  # jpeg
        else:
            np.testing.assert_array_equal(image, want.image)
        order = range(len(want.slots))  # ground truth keeps the label's lane order (left to right)
        assert gt.slots == [want.slots[k] for k in order]
        for lane, k in zip(gt.lanes, order, strict=True):
            want_lane = want.lanes[k]
            np.testing.assert_allclose(lane[np.argsort(lane[:, 1])], want_lane[np.argsort(want_lane[:, 1])], atol=1e-3)
        np.testing.assert_array_equal(gt.h_samples, want.h_samples)
        assert (gt.width, gt.height) == (W, H)


def test_serialized_images_are_the_bag_bytes(tmp_path, scenes):
    path = write_bag(tmp_path / "drive", scenes, "mcap", False)
    store = typestore()
    with BagReader(path) as reader:
        items = list(reader.serialized_images())
    assert [s for _, s, _ in items] == [START_NS + i * 100_000_000 for i in range(N)]
    msg = store.deserialize_cdr(items[1][2], IMAGE_TYPE)
    np.testing.assert_array_equal(np.asarray(msg.data).reshape(H, W, 3), scenes[1].image)


def test_cli_synthetic_and_info(tmp_path, capsys):
    out = tmp_path / "syn"
    assert bag_main(["synthetic", str(out), "--frames", "3", "--seed", "5", "--width", "192", "--height", "108",
                     "--storage", "sqlite3", "--rate", "5"]) == 0
    assert bag_main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["storage"] == "sqlite3"
    assert info["topics"]["/image_raw"] == {"type": IMAGE_TYPE, "count": 3}
    assert info["topics"]["/lanes_gt"] == {"type": LANE_ARRAY_TYPE, "count": 3}
    assert info["duration_s"] == pytest.approx(0.4, abs=1e-6)  # 5 Hz
    # Same seed -> same scenes as the generator itself.
    with BagReader(out) as reader:
        first = next(reader.frames())
    np.testing.assert_array_equal(first.image, SceneGenerator(seed=5, width=192, height=108).frame(0).image)
    # An existing output is refused, naming it, unless --overwrite (which only ever deletes a bag).
    assert bag_main(["synthetic", str(out), "--frames", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert bag_main(["synthetic", str(out), "--frames", "2", "--overwrite"]) == 0
    assert bag_info(out)["topics"]["/image_raw"]["count"] == 2
    (out / "notes.txt").write_text("mine")
    assert bag_main(["synthetic", str(out), "--frames", "1", "--overwrite"]) == 2
    assert "holds more than a bag (notes.txt)" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert bag_main(["synthetic", str(afile), "--frames", "1", "--overwrite"]) == 2  # one line, no traceback
    err = capsys.readouterr().err.strip()
    assert err == f"lanesad-bag: error: {afile} exists and is not a bag folder; not overwriting it"
    assert (out / "notes.txt").exists()


def test_from_video(tmp_path, scenes):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (W, H))
    for frame in scenes:
        writer.write(frame.image)
    writer.release()
    assert bag_main(["from-video", str(video), str(tmp_path / "v"), "--compressed"]) == 0
    with BagReader(tmp_path / "v") as reader:
        frames = list(reader.frames())
        assert not reader.has_ground_truth
        assert reader.problems == [] and any("not in bag" in n for n in reader.notes)  # no /lanes_gt: a note
    assert len(frames) == N and all(f.ground_truth is None for f in frames)
    assert frames[1].stamp_ns - frames[0].stamp_ns == 200_000_000  # the video's 5 fps


def test_from_video_names_a_missing_file_and_an_undecodable_one(tmp_path, capsys):
    assert bag_main(["from-video", str(tmp_path / "none.mp4"), str(tmp_path / "a")]) == 2
    assert f"no such video file: {tmp_path / 'none.mp4'}" in capsys.readouterr().err
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert bag_main(["from-video", str(text), str(tmp_path / "b")]) == 2
    assert "not a video OpenCV can decode" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_from_tusimple_real_frames(tmp_path):
    labels = shared_path("tusimple", "labels.json")
    out = tmp_path / "tus"
    assert bag_main(["from-tusimple", str(labels.parent), str(labels), str(out), "--storage", "mcap"]) == 0
    rows = [json.loads(l) for l in labels.read_text().splitlines() if l.strip()]
    with BagReader(out) as reader:
        frames = list(reader.frames())
    assert len(frames) == len(rows)
    for frame, row in zip(frames, rows, strict=True):
        assert frame.image.shape == (720, 1280, 3)
        assert len(frame.ground_truth.lanes) == sum(any(x >= 0 for x in lane) for lane in row["lanes"])
        np.testing.assert_array_equal(frame.ground_truth.h_samples, row["h_samples"])


def test_a_conversion_that_fails_leaves_no_empty_bag_and_keeps_a_partial_one(tmp_path, capsys):
    """A wrong root failed on the first image and left an empty bag that blocked the retry ("already
    exists"); now nothing is left. Stopped after some frames, the bag keeps them, readable, and the
    error says so."""
    labels = shared_path("tusimple", "labels.json")
    out = tmp_path / "tus"
    assert bag_main(["from-tusimple", str(tmp_path / "wrong_root"), str(labels), str(out)]) == 2
    err = capsys.readouterr().err
    assert "image file not found" in err and "image paths are taken relative to ROOT" in err and not out.exists()
    assert bag_main(["from-tusimple", str(labels.parent), str(labels), str(out)]) == 0  # the retry just works
    culane_list = shared_path("culane-train", "list.txt")
    assert bag_main(["from-culane", str(tmp_path / "wrong_root"), str(culane_list), str(tmp_path / "cul")]) == 2
    assert "list file's image paths are taken relative to ROOT" in capsys.readouterr().err
    assert bag_main(["from-tusimple", str(tmp_path), str(tmp_path / "no_labels.json"), str(out)]) == 2
    err = capsys.readouterr().err  # the label file itself is missing: no word about ROOT
    assert "TuSimple label file not found" in err and "ROOT" not in err
    partial_root = tmp_path / "one_frame"  # the first labelled frame is there, the second is not
    first = json.loads(labels.read_text().splitlines()[0])["raw_file"]
    (partial_root / first).parent.mkdir(parents=True)
    shutil.copy(labels.parent / first, partial_root / first)
    partial = tmp_path / "partial"
    capsys.readouterr()
    assert bag_main(["from-tusimple", str(partial_root), str(labels), str(partial)]) == 2
    err = capsys.readouterr().err
    assert "image file not found" in err and f"the bag {partial} keeps the 1 frame written before it" in err
    with BagReader(partial) as reader:
        assert len(list(reader.frames())) == 1


def test_from_culane_list(tmp_path, scenes):
    root = tmp_path / "culane"
    (root / "driver_1").mkdir(parents=True)
    lines = []
    for i, frame in enumerate(scenes[:2]):
        cv2.imwrite(str(root / "driver_1" / f"{i:05d}.jpg"), frame.image)
        with open(root / "driver_1" / f"{i:05d}.lines.txt", "w") as fh:
            for lane in frame.lanes:
                fh.write(" ".join(f"{x:.2f} {y:.0f}" for x, y in lane) + "\n")
        lines.append(f"/driver_1/{i:05d}.jpg")
    (root / "test6_curve.txt").write_text("\n".join(lines) + "\n")  # a CULane test-split list
    assert bag_main(["from-culane", str(root), str(root / "test6_curve.txt"), str(tmp_path / "cu")]) == 0
    with BagReader(tmp_path / "cu") as reader:
        frames = list(reader.frames())
    assert len(frames) == 2
    assert len(frames[0].ground_truth.lanes) == len(scenes[0].lanes)
    assert all(f.ground_truth.meta["category"] == "curve" for f in frames)


def truncate(path: Path, fraction: float) -> None:
    data_file = next(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    size = data_file.stat().st_size
    with open(data_file, "r+b") as fh:
        fh.truncate(int(size * fraction))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_bag_yields_what_is_readable(tmp_path, storage):
    gen = SceneGenerator(seed=4, width=W, height=H)
    scenes = [gen.frame(i) for i in range(12)]
    path = write_bag(tmp_path / "drive", scenes, storage, False)
    truncate(path, 0.6)
    with BagReader(path) as reader:
        frames = list(reader.frames())
        problems = " | ".join(reader.problems)
    assert 0 < len(frames) < 12
    assert "damaged" in problems and str(path) in problems
    assert f"only {len(frames)} of 12 image messages" in problems
    for i, f in enumerate(frames):  # what was read is intact and in order
        np.testing.assert_array_equal(f.image, scenes[i].image)
        assert f.ground_truth is not None
    assert bag_main(["info", str(path)]) == 1  # info reports the damage in its exit status


def test_missing_and_wrong_topics(tmp_path, scenes):
    path = write_bag(tmp_path / "drive", scenes, "mcap", False)
    with pytest.raises(BagError, match=r"image topic '/camera/nope' not in bag.*/image_raw"):
        BagReader(path, image_topic="/camera/nope")
    with pytest.raises(BagError, match="has type lanesad_ros/msg/LaneArray, not sensor_msgs"):
        BagReader(path, image_topic="/lanes_gt")
    with BagReader(path, gt_topic="/other_gt") as reader:
        frames = list(reader.frames())
        assert any("'/other_gt' not in bag" in n for n in reader.notes)
    assert len(frames) == N and all(f.ground_truth is None for f in frames)
    # A ground-truth topic of the wrong type is reported, and the images are still read.
    with BagReader(path, gt_topic="/image_raw") as reader:
        assert len(list(reader.frames())) == N
        assert any("expected lanesad_ros/msg/LaneArray" in p for p in reader.problems)


def test_unreadable_bags_raise_naming_the_path(tmp_path):
    with pytest.raises(BagError, match="bag not found"):
        BagReader(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no .mcap or .db3"):
        BagReader(tmp_path / "empty")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "junk.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(BagError, match="junk.mcap: not an MCAP file"):
        BagReader(junk)


def test_labels_matched_by_index(tmp_path, scenes):
    path = tmp_path / "nogt"
    with BagWriter(path, storage="sqlite3") as writer:
        for i, frame in enumerate(scenes):
            writer.write(frame.image, START_NS + i, None)
    with BagReader(path, labels=scenes[:3]) as reader:
        frames = list(reader.frames())
        assert reader.problems == ["1 frames have no matching ground truth"]
    assert [f.ground_truth is scenes[i] for i, f in enumerate(frames[:3])] == [True] * 3
    assert frames[3].ground_truth is None


def test_unknown_message_type_is_named(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer

    writer = Writer(tmp_path / "unknown", version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conn = writer.add_connection("/cam", "foo_msgs/msg/Camera", msgdef="int32 x", rihs01="RIHS01_" + "0" * 64)
    writer.write(conn, 1, b"\x00\x01\x00\x00\x05\x00\x00\x00")
    writer.close()
    with pytest.raises(BagError, match=r"no sensor_msgs Image or CompressedImage topic.*/cam \[foo_msgs/msg/Camera\]"):
        BagReader(tmp_path / "unknown")


def compress_files(path: Path) -> Path:
    """Turn a bag into what ``ros2 bag record --compression-mode file --compression-format zstd``
    writes: each storage file zstd-compressed as ``<name>.zstd``, metadata.yaml saying so."""
    meta_path = path / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    info = meta["rosbag2_bagfile_information"]
    for name in info["relative_file_paths"]:
        data = path / name
        (path / f"{name}.zstd").write_bytes(zstd.compress(data.read_bytes()))
        data.unlink()
    info["relative_file_paths"] = [f"{name}.zstd" for name in info["relative_file_paths"]]
    for entry in info.get("files", []):
        entry["path"] += ".zstd"
    info["compression_format"], info["compression_mode"] = "zstd", "FILE"
    meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
    return path


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_file_compressed_bag_is_read(tmp_path, scenes, storage):
    """Issue 21 item 6: ``*.db3.zstd`` / ``*.mcap.zstd`` bags were refused as "no .mcap or .db3 file
    in the bag folder" though they are fine."""
    path = compress_files(write_bag(tmp_path / "drive", scenes, storage, False))
    assert sorted(p.suffix for p in path.iterdir()) == [".yaml", ".zstd"]
    with BagReader(path) as reader:
        assert reader.storage == storage and len(reader) == N
        frames = list(reader.frames())
        assert reader.problems == []
    assert len(frames) == N
    for got, want in zip(frames, scenes, strict=True):
        np.testing.assert_array_equal(got.image, want.image)
        assert got.ground_truth is not None
    lone = next(path.glob("*.zstd"))  # the storage file alone
    with BagReader(lone) as reader:
        assert len(list(reader.frames())) == N and reader.problems == []
    assert bag_main(["info", str(path)]) == 0


def test_without_zstd_only_compressed_bags_are_refused(tmp_path, scenes, monkeypatch):
    """The device machine (no backports.zstd) could not start ``lanesad-train`` at all: the training CLI
    imports the bag reader through ``adapt``. Without zstd, training imports; a compressed bag gets
    an error naming what to install; an uncompressed bag still reads."""
    blocked = "import sys; sys.modules['backports'] = sys.modules['compression'] = None; "
    done = subprocess.run([sys.executable, "-c", blocked + "import lanesad_ros.training.cli"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    plain = write_bag(tmp_path / "plain", scenes, "mcap", False)
    path = compress_files(write_bag(tmp_path / "drive", scenes, "mcap", False))
    monkeypatch.setitem(sys.modules, "backports", None)
    monkeypatch.setitem(sys.modules, "compression", None)
    with pytest.raises(BagError, match="pip install backports.zstd"), BagReader(next(path.glob("*.zstd"))) as reader:
        list(reader.frames())
    with BagReader(plain) as reader:
        assert len(list(reader.frames())) == N


def test_cut_file_compressed_bag_yields_what_is_readable(tmp_path):
    gen = SceneGenerator(seed=4, width=W, height=H)
    scenes = [gen.frame(i) for i in range(12)]
    path = compress_files(write_bag(tmp_path / "drive", scenes, "mcap", False))
    data_file = next(path.glob("*.zstd"))
    with open(data_file, "r+b") as fh:
        fh.truncate(int(data_file.stat().st_size * 0.6))
    with BagReader(path) as reader:
        frames = list(reader.frames())
        problems = " | ".join(reader.problems)
    assert 0 < len(frames) < 12 and "compressed stream damaged" in problems and str(path) in problems
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(f.image, scenes[i].image)


def test_a_folder_without_storage_files_says_what_it_holds(tmp_path):
    folder = tmp_path / "not_a_bag"
    folder.mkdir()
    (folder / "drive_0.mcap.lz4").write_bytes(b"lz4 is no rosbag2 compression")
    with pytest.raises(BagError, match=r"no .mcap or .db3 file \(nor .mcap.zstd / .db3.zstd\).*drive_0.mcap.lz4"):
        BagReader(folder)


def test_a_broken_mp4_is_one_line(tmp_path):
    """FFmpeg printed its own '[mov,mp4,...] moov atom not found' before lanesad-bag's error (a new user's
    trial); the command-line tools quiet FFmpeg (OPENCV_FFMPEG_LOGLEVEL, a user's own setting wins)."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    script = f"from lanesad_ros.ros.bag.cli import main; raise SystemExit(main(['from-video', {str(broken)!r}, " \
             f"{str(tmp_path / 'out')!r}]))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"lanesad-bag: error: cannot open video {broken} (not a video OpenCV can decode)"], result.stderr
