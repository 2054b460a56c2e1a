"""Report plots: per-frame TuSimple accuracy or CULane F1 (or lanes found) over time, the latency
histogram, the slot confusion matrix, the existence reliability diagram and a bird's-eye view of
the ground-plane lanes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lanesad_ros.evaluation.scoring import SLOT_COLS, SLOT_ROWS, FrameResult, ModelRun, slot_confusion
from lanesad_ros.lanes import LaneSlot
from lanesad_ros.overlay import SLOT_COLORS


def frame_score(result: FrameResult) -> float | None:
    """The per-frame figure of the official metric the frame's labels are for: TuSimple accuracy, or
    for CULane labels the frame's CULane F1 (2 TP / (2 TP + FP + FN): 0 when nothing matched, None
    without any lane on either side); None for a frame not scored."""
    if result.labels == "culane" and result.culane is not None:
        tp, fp, fn = result.culane["tp"], result.culane["fp"], result.culane["fn"]
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return result.tusimple["accuracy"] if result.tusimple is not None else None


def plot_accuracy(runs: list[ModelRun], path: Path) -> None:
    """Per-frame TuSimple accuracy or CULane F1 (whichever the labels are for) over bag time, or the
    lanes found per frame without ground truth; dropped frames as red crosses."""
    # Lazy: matplotlib is an optional dependency (setup.py extra "eval") and slow to import.
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5))
    t0 = runs[0].results[0].time_ns if runs[0].results else 0
    labelled = [r.labels for r in runs[0].results if r.labels]
    metric = "CULane F1" if labelled and labelled.count("culane") > len(labelled) / 2 else "TuSimple accuracy"
    for run in runs:
        scored = [(r, v) for r in run.results if (v := frame_score(r)) is not None]
        if labelled:
            ax.plot([(r.time_ns - t0) / 1e9 for r, _ in scored], [v for _, v in scored],
                    ".-", lw=1, label=f"{run.name} {metric}")
        else:
            answered = [r for r in run.results if r.lanes is not None]
            ax.plot([(r.time_ns - t0) / 1e9 for r in answered], [len(r.lanes) for r in answered],
                    ".-", lw=1, label=f"{run.name} lanes found")
        dropped = [r for r in run.results if r.lanes is None]
        if dropped:
            ax.plot([(r.time_ns - t0) / 1e9 for r in dropped], [0] * len(dropped), "rx", label=f"{run.name} dropped")
    ax.set_xlabel("time in bag (s)")
    ax.set_ylabel(metric if labelled else "lanes")
    if not labelled:  # whole lanes, counted from none
        ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.set_ylim(-0.2, ax.get_ylim()[1] + 0.3)
    ax.set_title(f"per-frame {metric}" if labelled else "lanes found per frame (no ground truth in the bag)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)  # not over the points: lanes found sit at the bottom right
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latency(runs: list[ModelRun], path: Path) -> None:
    # Lazy: matplotlib is an optional dependency (setup.py extra "eval") and slow to import.
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for run in runs:
        lat = [r.latency_ms for r in run.results if r.latency_ms is not None]
        if lat:
            ax.hist(lat, bins=30, alpha=0.6, label=f"{run.name} (median {np.median(lat):.1f} ms)")
    kind = runs[0].latency_kind.replace("_", "-")
    ax.set_xlabel(f"{kind} latency (ms)")
    ax.set_ylabel("frames")
    ax.set_title("image published -> LaneArray received" if runs[0].latency_kind == "end_to_end"
                 else "detector latency (preprocess + network + postprocess)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(runs: list[ModelRun], path: Path) -> None:
    # Lazy: matplotlib is an optional dependency (setup.py extra "eval") and slow to import.
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.5), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        m = slot_confusion(run)
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(SLOT_COLS)), SLOT_COLS, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(SLOT_ROWS)), SLOT_ROWS, fontsize=8)
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", color="black" if v < m.max() / 2 else "white")
        ax.set_xlabel("predicted slot")
        ax.set_ylabel("ground-truth slot")
        ax.set_title(f"slot confusion: {run.name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(curves: dict[str, dict], path: Path, title: str = "lane existence reliability") -> None:
    """Reliability diagram: per confidence bin, the fraction of slots holding a lane against the
    mean predicted existence probability (a calibrated output lies on the diagonal), with each
    curve's ECE; below, how many predictions fall in each bin. ``curves``: name -> ``reliability()`` dict."""
    # Lazy: matplotlib is an optional dependency (setup.py extra "eval") and slow to import.
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfectly calibrated")
    width = 1.0 / max(len(next(iter(curves.values()))["bins"]), 1) / (len(curves) + 1)
    for k, (name, rel) in enumerate(curves.items()):
        filled = [b for b in rel["bins"] if b["count"]]
        ax.plot([b["mean_prob"] for b in filled], [b["frac_present"] for b in filled], "o-",
                label=f"{name}: ECE {rel['ece']:.3f}, n={rel['samples']}")
        hist.bar([b["lower"] + (k + 0.5) * width for b in rel["bins"]], [b["count"] for b in rel["bins"]],
                 width=width, align="edge", alpha=0.8, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction of slots with a ground-truth lane")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    hist.set_xlabel("predicted existence probability")
    hist.set_ylabel("slots")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ground_lanes(runs: list[ModelRun], path: Path, max_forward_m: float = 60.0) -> bool:
    """Bird's-eye view of the ground-plane lanes of every answered frame (REP 103 vehicle frame:
    x forward up the plot, y left to the left), one colour per slot, later frames drawn darker.
    Returns False (and writes nothing) when no lane has ground points (no camera model)."""
    # Lazy: matplotlib is an optional dependency (setup.py extra "eval") and slow to import.
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    run = runs[0]
    frames = [r for r in run.results if r.lanes and any(lane.ground_points is not None and len(lane.ground_points)
                                                        for lane in r.lanes)]
    if not frames:
        return False
    fig, ax = plt.subplots(figsize=(5, 7))
    seen: dict[LaneSlot, tuple] = {}
    for k, r in enumerate(frames):
        alpha = 0.15 + 0.85 * (k + 1) / len(frames)
        for lane in r.lanes:
            g = lane.ground_points
            if g is None or len(g) < 2:
                continue
            colour = tuple(np.asarray(SLOT_COLORS.get(lane.slot, SLOT_COLORS[LaneSlot.UNKNOWN]), float)[::-1] / 255)
            ax.plot(g[:, 1], g[:, 0], "-", color=colour, alpha=alpha, lw=1)
            seen[lane.slot] = colour
    handles = [Line2D([], [], color=colour, label=slot.name) for slot, colour in sorted(seen.items())]
    handles.append(ax.plot([0], [0], "k^", ms=9, label="vehicle origin")[0])
    ax.set_xlim(12, -12)  # y (left) grows to the left, as seen from above looking forward
    ax.set_ylim(0, max_forward_m)
    ax.set_xlabel("y, left of the vehicle (m)")
    ax.set_ylabel("x, ahead of the vehicle (m)")
    ax.set_title(f"ground-plane lanes, {len(frames)} frames ({run.name})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
