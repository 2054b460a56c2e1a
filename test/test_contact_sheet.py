"""Contact sheet: images shared between sources, one tile each in a grid, the lanes listed beside it."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from lanesad_ros.evaluation.contact_sheet import SheetEntry, build_sheet, select_images, write_contact_sheet
from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot


def make_images(folder, count, size=(64, 36), suffix=".jpg"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:03d}{suffix}"), np.full((size[1], size[0], 3), 40 * (i % 6), np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_images_are_shared_between_sources_and_spread_within_each(tmp_path):
    big, small = make_images(tmp_path / "big", 30), make_images(tmp_path / "small", 8)
    make_images(tmp_path / "tiny", 2)
    chosen = select_images([big, small, str(tmp_path / "tiny" / "*.jpg")], 12)
    by_source = {name: [p.name for p in chosen if p.parent.name == name] for name in ("big", "small", "tiny")}
    # tiny has only 2: the 2 left over go to the others, dealt one at a time.
    assert {k: len(v) for k, v in by_source.items()} == {"big": 5, "small": 5, "tiny": 2}
    assert by_source["big"] == ["000.jpg", "007.jpg", "014.jpg", "022.jpg", "029.jpg"]  # first to last, evenly
    assert len(select_images([small], 100)) == 8
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images .* in: .*empty"):
        select_images([big, tmp_path / "empty"], 4)
    # a path that is not there says so (it read "no images in" the missing folder)
    with pytest.raises(ValueError, match=f"^no such file or folder: {tmp_path / 'nowhere'}$"):
        select_images([big, tmp_path / "nowhere"], 4)
    with pytest.raises(ValueError, match=r"no images .* in: .*big/\*\.txt$"):  # a glob matching no image
        select_images([str(tmp_path / "big" / "*.txt")], 4)


def test_sheet_grid_and_summary(tmp_path):
    paths = select_images([make_images(tmp_path / "cam", 7, size=(160, 90)),
                           make_images(tmp_path / "wide", 2, size=(164, 59), suffix=".png")], 9)
    lane = Lane(LaneSlot.LEFT, 0.83, np.array([[20.0, 85.0], [60.0, 40.0]]))

    def detect(image):
        return LaneDetections([lane] if image.shape[1] == 160 else [], image.shape[1], image.shape[0], latency_ms=12.0)

    summary = write_contact_sheet(detect, paths, tmp_path / "sheet.jpg", columns=4, tile_size=(200, 100))
    sheet = cv2.imread(str(tmp_path / "sheet.jpg"))
    assert sheet.shape == (3 * 100, 4 * 200, 3)  # 9 tiles: 3 rows of 4, the last row padded
    assert sheet[250:, 650:].max() < 30  # padding tiles are blank
    listed = json.loads((tmp_path / "sheet.json").read_text())
    assert listed == summary and len(listed) == 9
    assert listed[0]["lanes"] == [{"slot": "LEFT", "confidence": 0.83, "points": 2}] and listed[-1]["lanes"] == []
    # no height given: tiles take the images' median aspect (a CULane-shaped camera is not letterboxed into 16:9)
    wide = select_images([tmp_path / "wide"], 2)
    write_contact_sheet(detect, wide, tmp_path / "wide.png", columns=2, tile_size=(328, None))
    assert cv2.imread(str(tmp_path / "wide.png")).shape == (118, 2 * 328, 3)  # 328 * 59 / 164
    with pytest.raises(ValueError, match="must end in .jpg"):
        write_contact_sheet(detect, paths, tmp_path / "sheet.gif")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg"):
        write_contact_sheet(detect, [tmp_path / "broken.jpg"], tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="at least one entry"):
        build_sheet([], [])
    with pytest.raises(ValueError, match="columns must be >= 1"):
        build_sheet([SheetEntry(paths[0], detect(cv2.imread(str(paths[0]))))], [cv2.imread(str(paths[0]))], columns=0)
