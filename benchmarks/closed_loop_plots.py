"""Plots of benchmarks/closed_loop.py: the trajectory on the road (world frame and unrolled along
the road) and the lateral error and latency over time, written atomically as PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lanesad_ros.fileio import atomic_path


def _write_png(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def write_plots(out: Path, road, log: dict, lane: int, limit: float, title: str) -> None:
    # Lazy: matplotlib is an optional dependency (setup.py extra "eval") and slow to import.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s_max = max(log["s"]) + 50.0 if log["s"] else road.length_m
    s = road.s[road.s <= s_max]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), gridspec_kw={"height_ratios": [3, 2]})
    for j, marking in enumerate(road.markings):
        xy = road.points(s, road.boundary_offset(j))
        top.plot(xy[:, 0], xy[:, 1], color="goldenrod" if marking.colour == "yellow" else "0.6", lw=0.8)
        bottom.axhline(road.boundary_offset(j) - road.lane_centre_offset(lane), color="0.6", lw=0.8,
                       ls="-" if marking.kind == "solid" else "--")
    top.plot(log["x"], log["y"], color="tab:red", lw=1.2, label="car (rear axle)")
    top.set_aspect("equal")
    top.set_xlabel("x (m)")
    top.set_ylabel("y (m)")
    top.set_title(title)
    top.legend(loc="best", fontsize=8)
    bottom.plot(log["s"], log["lateral_error"], color="tab:red", lw=1.0, label="car")
    bottom.axhspan(-limit, limit, color="tab:green", alpha=0.12, label=f"within {limit} m of the lane centre")
    bottom.set_xlabel("station along the road (m)")
    bottom.set_ylabel("left of lane centre (m)")
    bottom.set_title("the drive unrolled: lane boundaries (grey) and the car's offset")
    bottom.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    _write_png(fig, out / "trajectory.png")
    plt.close(fig)

    fig, (ax, lat) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    ax.plot(log["t"], log["lateral_error"], color="tab:red", lw=1.0, label="lateral error")
    ax.axhspan(-limit, limit, color="tab:green", alpha=0.12)
    ax.set_ylabel("lateral error (m, + left)")
    ax.grid(alpha=0.3)
    curv = ax.twinx()
    curv.plot(log["t"], 1000.0 * np.asarray(log["curvature"]), color="0.5", lw=0.8, label="lane curvature")
    curv.set_ylabel("curvature (1/km)", color="0.4")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("lateral error over time")
    latency = [v if v is not None else np.nan for v in log["latency_ms"]]
    lat.plot(log["t"], latency, ".", ms=2, color="tab:blue", label="frame published -> command received")
    lat.axhline(1000.0 / log["rate"], color="k", lw=0.8, ls="--", label="frame period")
    lat.set_xlabel("simulated time (s)")
    lat.set_ylabel("latency (ms)")
    lat.grid(alpha=0.3)
    lat.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    _write_png(fig, out / "lateral_error.png")
    plt.close(fig)
