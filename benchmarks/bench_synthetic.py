"""Synthetic scene render speed: ms per frame for each profile at the two camera shapes.

    nice -n 10 .venv/bin/python benchmarks/bench_synthetic.py [--frames 40]

Training renders synthetic frames on the fly (data type ``synthetic``), so a batch of 8 must
render well inside one training step (~0.7 s for ENet-SAD batch 8 on one CPU core). The
profiles are timed interleaved, frame by frame, in CPU time of this process (all its threads)
as well as wall time: on a shared, busy machine the wall time grows with the load, the CPU time
much less.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from lanesad_ros.data.synthetic import SceneGenerator
from lanesad_ros.data.synthetic.profile import PROFILES

SIZES = ((640, 360), (820, 295))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)
    gens = {(p, w, h): SceneGenerator(seed=args.seed, width=w, height=h, profile=p)
            for p in PROFILES for w, h in SIZES}
    for g in gens.values():
        g.frame(0)  # noise bank, lens grid
    cpu: dict[tuple, list[float]] = {k: [] for k in gens}
    wall: dict[tuple, list[float]] = {k: [] for k in gens}
    for i in range(1, args.frames + 1):
        for key, g in gens.items():
            t, c = time.perf_counter(), time.process_time()
            g.frame(i)
            cpu[key].append(time.process_time() - c)
            wall[key].append(time.perf_counter() - t)
    print(f"{'profile':8s} {'size':>8s} {'cpu ms':>7s} {'p90':>6s} {'wall ms':>8s} {'8 frames cpu ms':>16s}")
    for (p, w, h), ts in cpu.items():
        ms = np.asarray(ts) * 1000
        print(f"{p:8s} {f'{w}x{h}':>8s} {ms.mean():7.1f} {np.percentile(ms, 90):6.1f} "
              f"{1000 * np.mean(wall[(p, w, h)]):8.1f} {8 * ms.mean():16.0f}")


if __name__ == "__main__":
    main()
