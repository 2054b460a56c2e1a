"""Write the held-out validation split of the many-camera recipe (TuSimple + CULane), by clip and time.

- TuSimple: the 19 clips of ``config/train/splits/tusimple_val.txt`` (one frame each, drawn by
  ``make_tusimple_split.py``), plus a *time block* of the one 0313-1 drive of
  ``tusimple-train-0313``: its frames from clip number ``--block-start`` on (the clip number is
  the frame's position in the drive), less any frame within ``--gap`` of a frame the start
  weights trained on (those train, so validation never sees a near-copy of a training frame).
- CULane: one whole clip (``--culane-val``) of ``culane-train``; the other clip trains. Folds
  are by clip, never by frame: frames of one clip are 3 s apart and look alike. With
  ``--no-culane-val`` both clips train (the refit on every labelled CULane frame, after the folds
  have fixed the recipe); only TuSimple frames validate.

    python tools/make_multicam_split.py ../shared/data config/train/splits/multicam_val.txt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def clip_number(clip: str) -> int:
    return int(clip.rsplit("/", 1)[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path, help="the shared data folder (tusimple-train-0313/, culane-train/)")
    p.add_argument("out", type=Path)
    p.add_argument("--tusimple-split", type=Path, default=Path("config/train/splits/tusimple_val.txt"))
    p.add_argument("--block-start", type=int, default=40000)
    p.add_argument("--gap", type=int, default=300, help="clip-number distance to a training frame kept out")
    p.add_argument("--culane-val", default="driver_161_90frame/06030822_0756.MP4")
    p.add_argument("--no-culane-val", action="store_true", help="hold no CULane clip out: both train")
    a = p.parse_args()

    old_val = [ln.strip() for ln in a.tusimple_split.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    trained = []  # 0313-1 frames of tusimple-train the start weights trained on
    for line in (a.data / "tusimple-train" / "labels.json").read_text().splitlines():
        clip = json.loads(line)["raw_file"].rsplit("/", 1)[0] if line.strip() else None
        if clip and clip.startswith("clips/0313-1/") and clip not in old_val:
            trained.append(clip_number(clip))
    block = []
    for line in (a.data / "tusimple-train-0313" / "labels.json").read_text().splitlines():
        if not line.strip():
            continue
        clip = json.loads(line)["raw_file"].rsplit("/", 1)[0]
        n = clip_number(clip)
        if n >= a.block_start and all(abs(n - t) > a.gap for t in trained):
            block.append(clip)
    culane = a.data / "culane-train" / a.culane_val
    if not a.no_culane_val and not culane.is_dir():
        raise SystemExit(f"CULane validation clip not found: {culane}")
    culane_lines = (["# CULane: none held out (both clips of driver_161_90frame train)"] if a.no_culane_val else
                    ["# CULane: one whole clip of driver_161_90frame (the other trains)", a.culane_val])
    lines = ["# Held-out validation of the many-camera recipe (config/train/enet_sad_multicam.yaml), written by",
             "# tools/make_multicam_split.py. Thresholds, calibration and checkpoints are chosen on these only.",
             f"# TuSimple: the {len(old_val)} clips of tusimple_val.txt",
             *old_val,
             f"# TuSimple 0313-1 drive from clip {a.block_start} on ({len(block)} frames; none within {a.gap} of a"
             " training frame)",
             *sorted(block, key=clip_number),
             *culane_lines]
    a.out.write_text("\n".join(lines) + "\n")
    print(f"{a.out}: {len(old_val) + len(block)} TuSimple clips, {0 if a.no_culane_val else 1} CULane clip")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
