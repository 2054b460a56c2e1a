"""Contact sheet of synthetic frames with their labels drawn, to look at what a profile renders.

    .venv/bin/python tools/synthetic_contact_sheet.py --profile varied --out outputs/synthetic_varied.png

Each tile is one frame (TuSimple-like 640x360 and CULane-like 820x295 alternate, scaled to one
tile width) with its lanes drawn in slot colours (LEFT_LEFT blue, LEFT green, RIGHT red,
RIGHT_RIGHT yellow, no slot grey) and a caption of the ingredients it drew.
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from lanesad_ros.data.synthetic import SceneGenerator
from lanesad_ros.fileio import atomic_path

_SLOT_COLOURS = {0: (255, 120, 0), 1: (0, 220, 0), 2: (0, 0, 255), 3: (0, 220, 255)}
_FLAGS = ("city", "negative", "intersection", "zebra", "arrows", "parked_cars", "crossing_cars", "night",
          "dusk", "rain", "hood")


def tile(frame, width: int) -> np.ndarray:
    img = frame.image.copy()
    for lane, slot in zip(frame.lanes, frame.slots, strict=True):
        pts = np.round(lane).astype(np.int32)
        colour = _SLOT_COLOURS.get(slot, (160, 160, 160))
        cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        for x, y in pts:
            cv2.circle(img, (int(x), int(y)), 2, colour, -1)
    scale = width / img.shape[1]
    img = cv2.resize(img, (width, int(round(img.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    m = frame.meta
    words = [k for k in _FLAGS if m.get(k)]
    if m.get("fov_deg") is not None:
        words.insert(0, f"fov {m['fov_deg']:.0f}")
    if m.get("distortion_k"):
        words.append(f"k {m['distortion_k']:.2f}")
    if m.get("roll_deg"):
        words.append(f"roll {m['roll_deg']:.1f}")
    caption = f"#{m['index']} {len(frame.lanes)} lanes: " + " ".join(words)
    bar = np.zeros((18, width, 3), np.uint8)
    cv2.putText(bar, caption, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, img])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="varied")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--tile-width", type=int, default=480)
    ap.add_argument("--out", default="outputs/synthetic_varied.png")
    args = ap.parse_args(argv)
    gens = [SceneGenerator(seed=args.seed, width=640, height=360, profile=args.profile),
            SceneGenerator(seed=args.seed, width=820, height=295, profile=args.profile)]
    tiles = [tile(gens[i % 2].frame(i), args.tile_width) for i in range(args.count)]
    h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % args.cols)
    rows = [np.concatenate(tiles[r:r + args.cols], 1) for r in range(0, len(tiles), args.cols)]
    sheet = np.concatenate(rows, 0)
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:
        raise SystemExit(f"cannot encode {args.out}")
    with atomic_path(args.out) as tmp:
        tmp.write_bytes(buf.tobytes())
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]}, {args.count} frames, profile {args.profile})")


if __name__ == "__main__":
    main()
