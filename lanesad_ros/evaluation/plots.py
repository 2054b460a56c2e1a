"""Report plots: per-frame accuracy (or lanes found) over time, the latency histogram and the slot confusion matrix."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lanesad_ros.evaluation.scoring import SLOT_COLS, SLOT_ROWS, ModelRun, slot_confusion


def plot_accuracy(runs: list[ModelRun], path: Path) -> None:
    # Lazy: matplotlib is an optional dependency (setup.py extra "eval") and slow to import.
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5))
    t0 = runs[0].results[0].stamp_ns if runs[0].results else 0
    for run in runs:
        scored = [r for r in run.results if r.tusimple is not None]
        if scored:
            ax.plot([(r.stamp_ns - t0) / 1e9 for r in scored], [r.tusimple["accuracy"] for r in scored],
                    ".-", lw=1, label=f"{run.name} accuracy")
        else:
            answered = [r for r in run.results if r.lanes is not None]
            ax.plot([(r.stamp_ns - t0) / 1e9 for r in answered], [len(r.lanes) for r in answered],
                    ".-", lw=1, label=f"{run.name} lanes found")
        dropped = [r for r in run.results if r.lanes is None]
        if dropped:
            ax.plot([(r.stamp_ns - t0) / 1e9 for r in dropped], [0] * len(dropped), "rx", label=f"{run.name} dropped")
    ax.set_xlabel("time in bag (s)")
    ax.set_ylabel("TuSimple accuracy" if any(r.tusimple for r in runs[0].results) else "lanes")
    ax.set_title("per-frame accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
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
