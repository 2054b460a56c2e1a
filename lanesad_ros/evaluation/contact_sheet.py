"""Contact sheet: the detector's lanes drawn on many unlabelled real frames, in one grid image.

For looking, not scoring: a glance over frames from several cameras (TuSimple, Udacity,
CULane, your own) shows whether lanes snake, slots land on barriers or cars, or lanes go
missing, which one number per bag does not. ``lanesad-eval contact-sheet`` is the CLI.
"""
from __future__ import annotations

import glob
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lanesad_ros.fileio import write_bytes_atomic, write_text_atomic
from lanesad_ros.lanes import LaneDetections
from lanesad_ros.overlay import draw_lanes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class SheetEntry:
    """One tile: the source image and what the detector said about it."""

    path: Path
    detections: LaneDetections


def images_in(source: str | Path) -> list[Path]:
    """Image files named by ``source``: a file, a folder (its images, sorted by name) or a glob."""
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(str(source)) if Path(p).suffix.lower() in IMAGE_SUFFIXES)


def select_images(sources: Sequence[str | Path], count: int) -> list[Path]:
    """Up to ``count`` images, shared as evenly as possible between ``sources`` (each a file,
    folder or glob) and evenly spaced within each, so every source and camera is seen.

    Raises ValueError naming the sources that do not exist (neither a file, a folder nor a glob
    that matches anything) and those that hold no image.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    missing = [str(s) for s in sources if not Path(s).exists() and not glob.glob(str(s))]
    if missing:
        raise ValueError(f"no such file or folder: {', '.join(missing)}")
    lists = [images_in(s) for s in sources]
    empty = [str(s) for s, found in zip(sources, lists, strict=True) if not found]
    if empty:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in: {', '.join(empty)}")
    # Deal the count out one at a time to the sources that still have images left.
    share = [0] * len(lists)
    remaining = count
    while remaining > 0 and any(share[i] < len(lists[i]) for i in range(len(lists))):
        for i, found in enumerate(lists):
            if remaining > 0 and share[i] < len(found):
                share[i] += 1
                remaining -= 1
    chosen = []
    for found, n in zip(lists, share, strict=True):
        index = np.unique(np.round(np.linspace(0, len(found) - 1, n)).astype(int)) if n else []
        chosen.extend(found[i] for i in index)
    return chosen


def _tile(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Letterbox ``image`` into a (width, height) tile, keeping its aspect ratio."""
    w, h = size
    scale = min(w / image.shape[1], h / image.shape[0])
    resized = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
    tile = np.zeros((h, w, 3), np.uint8)
    y, x = (h - resized.shape[0]) // 2, (w - resized.shape[1]) // 2
    tile[y:y + resized.shape[0], x:x + resized.shape[1]] = resized
    return tile


def label_for(path: Path) -> str:
    """Short caption: the parent folder and the file name."""
    return f"{path.parent.name}/{path.name}"


def build_sheet(entries: Sequence[SheetEntry], images: Sequence[np.ndarray], columns: int = 6,
                tile_size: tuple[int, int] = (480, 270)) -> np.ndarray:
    """Grid image (BGR uint8) of the overlays, ``columns`` tiles wide, row by row.

    Each tile: the frame with the lanes in slot colours and their existence probability, and
    the caption (folder/file, lane count, detector latency) on top.
    """
    if len(entries) != len(images) or not entries:
        raise ValueError(f"need one image per entry and at least one entry, got {len(entries)} / {len(images)}")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    tiles = []
    for entry, image in zip(entries, images, strict=True):
        det = entry.detections
        tile = _tile(draw_lanes(image, det.lanes), tile_size)
        caption = f"{label_for(entry.path)}  {len(det.lanes)} lanes  {det.latency_ms:.0f} ms"
        # Outlined so it reads on sky and road; never thinner than 2 (OpenCV 5 lays out thin glyphs differently).
        for colour, width in (((0, 0, 0), 4), ((255, 255, 255), 2)):
            cv2.putText(tile, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, width, cv2.LINE_AA)
        tiles.append(tile)
    rows = -(-len(tiles) // columns)
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (rows * columns - len(tiles))
    return cv2.vconcat([cv2.hconcat(tiles[r * columns:(r + 1) * columns]) for r in range(rows)])


def write_contact_sheet(detect: Callable[[np.ndarray], LaneDetections], paths: Sequence[Path], out: str | Path,
                        columns: int = 6, tile_size: tuple[int, int | None] = (480, None), quality: int = 90
                        ) -> list[dict]:
    """Run ``detect`` on each image, write the grid to ``out`` (.jpg or .png) and a ``.json``
    beside it listing per image the lanes (slot, existence probability, point count).
    ``tile_size`` (width, height) in pixels; height None: the images' median aspect ratio (a
    1640x590 camera is not letterboxed into 16:9 tiles), images of another aspect letterboxed.

    Raises ValueError for an unreadable image (naming it) or an unknown output suffix.
    """
    out = Path(out)
    if out.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise ValueError(f"contact sheet output must end in .jpg, .jpeg or .png, got {out.name}")
    entries, images, summary = [], [], []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read image {path}")
        det = detect(image)
        entries.append(SheetEntry(Path(path), det))
        images.append(image)
        summary.append({"image": str(path), "width": image.shape[1], "height": image.shape[0],
                        "latency_ms": round(det.latency_ms, 2),
                        "lanes": [{"slot": lane.slot.name, "confidence": round(float(lane.confidence), 4),
                                   "points": len(lane.image_points)} for lane in det.lanes]})
    if tile_size[1] is None and images:
        aspect = float(np.median([image.shape[0] / image.shape[1] for image in images]))
        tile_size = (tile_size[0], max(1, round(tile_size[0] * aspect)))
    sheet = build_sheet(entries, images, columns, tile_size)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if out.suffix.lower() in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(out.suffix.lower(), sheet, params)
    if not ok:
        raise ValueError(f"cannot encode the contact sheet as {out.suffix}")
    write_bytes_atomic(out, encoded.tobytes())
    write_text_atomic(out.with_suffix(".json"), json.dumps(summary, indent=1))
    return summary
