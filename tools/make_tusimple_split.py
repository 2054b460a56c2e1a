"""Write the held-out validation split of the labelled real TuSimple frames, by clip.

Every labelled frame here is frame 20 of its own clip (``clips/<date>/<clip>/20.jpg``), so
a split by clip is a split by frame; grouping by the clip folder keeps that true if more
frames of one clip are ever added. The split is stratified by recording date and by the
number of labelled lanes (3 / 4 / 5), so validation sees every kind of frame the training
set has, and it is drawn once with a fixed seed:

    python tools/make_tusimple_split.py ../shared/data/tusimple-train/labels.json \
        config/train/splits/tusimple_val.txt --fraction 0.2 --seed 0
"""
from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("labels", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    clips: dict[str, tuple[str, int]] = {}
    for line in a.labels.read_text().splitlines():
        if line.strip():
            label = json.loads(line)
            clip = label["raw_file"].rsplit("/", 1)[0]
            lanes = sum(1 for xs in label["lanes"] if max(xs) >= 0)
            clips[clip] = (clip.split("/")[1], lanes)
    strata = collections.defaultdict(list)
    for clip, key in sorted(clips.items()):
        strata[key].append(clip)
    rng = np.random.default_rng(a.seed)
    val = []
    for key in sorted(strata):
        members = strata[key]
        n = int(round(a.fraction * len(members)))
        val += [members[i] for i in sorted(rng.choice(len(members), size=n, replace=False))]
    header = ("# Held-out validation clips of ../shared/data/tusimple-train (one clip folder a line),\n"
              f"# written by tools/make_tusimple_split.py --fraction {a.fraction} --seed {a.seed}.\n"
              "# Thresholds, checkpoints and calibration are chosen on these clips only.\n")
    a.out.write_text(header + "".join(f"{clip}\n" for clip in sorted(val)))
    print(f"{len(val)} of {len(clips)} clips held out -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
