"""CULane: list files, per-image ``*.lines.txt`` lane files and optional lane masks.

Layout (published): ``ROOT/list/train_gt.txt`` lines ``/path.jpg /laneseg_label_w16/path.png
e1 e2 e3 e4`` (mask and existence of the 4 slots), ``ROOT/list/test.txt`` and
``ROOT/list/test_split/testN_<category>.txt`` lines ``/path.jpg``. Each image has
``path.lines.txt`` next to it: one lane per line as ``x y x y ...`` pairs. Lanes in a lines
file are ordered left to right; with existence flags they fill the flagged slots in order,
otherwise slots come from position (``assign_slots``). When the list names a mask file that
exists, the dataset uses it (``meta["seg_mask_path"]``), else masks are rendered from lines.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lanesad_ros.data.frames import DataError, LabelledFrame, assign_slots
from lanesad_ros.data.tusimple import FrameList

CULANE_SIZE = (1640, 590)
_CATEGORY_RE = re.compile(r"^test\d+_(\w+)$")


def default_root(list_path: Path) -> Path:
    """CULane root for a list file: above ``list/`` (or ``list/test_split/``), else its folder."""
    parent = list_path.parent
    if parent.name == "test_split" and parent.parent.name == "list":
        return parent.parent.parent
    if parent.name == "list":
        return parent.parent
    return parent


def category_of(list_path: str | Path) -> str | None:
    """``test_split/test6_curve.txt`` -> "curve"; None for other list files."""
    m = _CATEGORY_RE.match(Path(list_path).stem)
    return m.group(1) if m else None


def read_lines_file(path: str | Path) -> list[np.ndarray]:
    """A ``*.lines.txt`` file -> lanes as float32 (N, 2) x,y arrays (file order of lanes, points bottom -> top).

    Every lane line is a lane, as the official CULane tools read them (evaluate's ``read_lane_file``
    keeps each line's points): a lane of a single point stays a lane (its list-file existence flag
    counts it; the official evaluator scores it as a ground-truth lane no prediction can match).
    Points with negative or out-of-image x are kept (the official drawing clips them); trailing
    spaces and blank lines are ignored; an empty file has no lanes.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CULane lane file not found: {path}")
    lanes = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                values = np.asarray([float(v) for v in fields], dtype=np.float32)
            except ValueError:
                raise DataError(f"{path}:{lineno}: lane coordinates must be numbers") from None
            if values.size % 2 or not np.all(np.isfinite(values)):
                raise DataError(f"{path}:{lineno}: expected finite x y pairs, got {values.size} values")
            pts = values.reshape(-1, 2)
            lanes.append(pts[np.argsort(-pts[:, 1], kind="stable")])
    return lanes


def _parse_list_line(fields: list[str], source: str):
    image = fields[0]
    mask, flags = None, None
    rest = fields[1:]
    if rest and not re.fullmatch(r"[01]", rest[0]):
        mask, rest = rest[0], rest[1:]
    if rest:
        if len(rest) != 4 or any(f not in ("0", "1") for f in rest):
            raise DataError(f"{source}: expected 'image [mask] e1 e2 e3 e4' with 0/1 flags, got {' '.join(fields)!r}")
        flags = [int(f) for f in rest]
    return image, mask, flags


def read_culane_list(list_path: str | Path, root: str | Path | None = None, category: str | None = None,
                     skip_bad: bool = False, check_images: bool = False,
                     image_size: tuple[int, int] = CULANE_SIZE) -> FrameList:
    """Frames of a CULane list file, lanes read from each image's ``.lines.txt``.

    ``category`` defaults to the one in a ``testN_<category>.txt`` file name and goes to
    ``meta["category"]``. A bad line or lane file raises ``DataError`` naming it, unless
    ``skip_bad`` (then it is skipped and recorded in ``result.skipped``).
    """
    list_path = Path(list_path)
    if not list_path.is_file():
        raise DataError(f"CULane list file not found: {list_path}")
    root = default_root(list_path) if root is None else Path(root)
    category = category if category is not None else category_of(list_path)
    width, height = image_size
    frames = FrameList()
    with open(list_path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            source = f"{list_path}:{lineno}"
            try:
                rel, mask_rel, flags = _parse_list_line(fields, source)
                image_path = root / rel.lstrip("/")
                if check_images and not image_path.is_file():
                    raise DataError(f"{source}: image file not found: {image_path} "
                                    f"(list paths are taken relative to {root})")
                lines_path = image_path.with_suffix(".lines.txt")
                lanes = read_lines_file(lines_path)
                if flags is not None:
                    slot_ids = [i for i, f in enumerate(flags) if f]
                    if len(slot_ids) != len(lanes):
                        raise DataError(f"{source}: {sum(flags)} existence flags set but {lines_path} has "
                                        f"{len(lanes)} lanes")
                    slots = slot_ids
                else:
                    slots = assign_slots(lanes, width)
            except DataError as exc:
                if not skip_bad:
                    raise
                frames.skipped.append(str(exc))
                continue
            meta = {"source": source, "lines_file": str(lines_path)}
            if category:
                meta["category"] = category
            if mask_rel is not None:
                mask_path = root / mask_rel.lstrip("/")
                if mask_path.is_file():
                    meta["seg_mask_path"] = mask_path
            frames.append(LabelledFrame(image_path=image_path, image=None, lanes=lanes,
                                        slots=slots,
                                        h_samples=None, width=width, height=height, meta=meta))
    return frames


def read_culane_test_split(root: str | Path, skip_bad: bool = False) -> FrameList:
    """All ``ROOT/list/test_split/test*_*.txt`` lists, each frame tagged with its category."""
    split = Path(root) / "list" / "test_split"
    files = sorted(split.glob("test*_*.txt"))
    if not files:
        raise DataError(f"no CULane test split lists (test*_*.txt) in {split}")
    frames = FrameList()
    for f in files:
        part = read_culane_list(f, root=root, skip_bad=skip_bad)
        frames.extend(part)
        frames.skipped.extend(part.skipped)
    return frames

