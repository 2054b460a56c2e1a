"""Training data: config data entries -> frame sequences, and the deterministic mixed training stream.

The sample drawn for (iteration, slot) is a pure function of ``(train.seed, iteration, slot)``
(source, index and augmentation randomness alike), so a checkpoint needs only the iteration to
restore the data order. Each distributed rank draws the slots ``rank * batch .. (rank + 1) * batch - 1``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from lanesad_ros.data.bdd100k import read_bdd100k_lanes
from lanesad_ros.data.culane import read_culane_list
from lanesad_ros.data.synthetic import SceneGenerator
from lanesad_ros.data.tusimple import load_label_dicts, read_tusimple_labels
from lanesad_ros.training.config import ConfigError, resolve_path


def sample_rng(seed: int, iteration: int, slot: int) -> np.random.Generator:
    """The generator behind one training sample: a pure function of (seed, iteration, slot)."""
    return np.random.default_rng([int(seed), int(iteration), int(slot)])


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed python/numpy/torch global RNGs for a block, restoring the outer states afterwards.

    Augmentation code may use any of the global RNGs; seeding them per sample makes a
    sample independent of which worker made it and of what ran before.
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class SyntheticFrames(Sequence):
    """A lazy, indexable view of ``SceneGenerator.frame(i)`` for i in range(size)."""

    def __init__(self, generator, size: int):
        self.generator = generator
        self.size = int(size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.generator.frame(i) for i in range(*index.indices(self.size))]
        if not -self.size <= index < self.size:
            raise IndexError(index)
        return self.generator.frame(index % self.size)


class ResizedFrames(Sequence):
    """Frames decoded once, resized to ``size`` (width, height) with their lanes scaled, cached.

    Each DataLoader worker keeps its own cache (a few tens of MB for a hundred 640x360 frames),
    so every frame is decoded and resized at most once per worker instead of once per sample.
    """

    def __init__(self, frames: Sequence, size: tuple[int, int]):
        self.frames = frames
        self.size = (int(size[0]), int(size[1]))
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        if index not in self._cache:
            frame = self.frames[index]
            image = frame.load_image()
            sx, sy = self.size[0] / image.shape[1], self.size[1] / image.shape[0]
            small = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
            lanes = [lane * np.array([sx, sy], np.float32) for lane in frame.lanes]
            self._cache[index] = dataclasses.replace(frame, image=small, lanes=lanes, width=self.size[0],
                                                     height=self.size[1], h_samples=None)
        return self._cache[index]


def load_geometry(spec: str | list[str]) -> list[dict]:
    """TuSimple label dicts from one or more files (globs allowed) for the synthetic generator."""
    patterns = [spec] if isinstance(spec, str) else list(spec)
    files: list[str] = []
    for pattern in patterns:
        matched = sorted(glob.glob(str(resolve_path(pattern))))
        if not matched:
            raise FileNotFoundError(f"synthetic geometry: no file matches {pattern}")
        files += matched
    return load_label_dicts(files)


def _labels_list(entry: dict) -> list[str]:
    labels = entry["labels"]
    if labels is None:
        return []
    return [labels] if isinstance(labels, str) else list(labels)


def load_frames(entry: dict, role: str) -> Sequence:
    """The LabelledFrames of one ``data.train`` / ``data.val`` entry (lazy images)."""
    kind = entry["type"]
    skip = entry["on_error"] == "skip"
    if kind == "synthetic":
        geometry = load_geometry(entry["geometry"]) if entry["geometry"] else None
        gen = SceneGenerator(seed=entry["seed"], width=entry["width"], height=entry["height"], geometry=geometry,
                             profile=entry["profile"], profile_options=entry["profile_options"])
        size = entry["size"] if entry["size"] is not None else (10**9 if role == "train" else 64)
        frames: Sequence = SyntheticFrames(gen, size)
    else:
        root = resolve_path(entry["root"])
        if kind == "tusimple":
            files = [p if Path(p).is_absolute() else str(root / p) for p in _labels_list(entry)]
            if not files:
                raise ConfigError(f"data.{role}: tusimple entry needs 'labels' (label json files)")
            frames = read_tusimple_labels([resolve_path(f) for f in files], root, skip_bad=skip)
        elif kind == "culane":
            if not entry["list_file"]:
                raise ConfigError(f"data.{role}: culane entry needs 'list_file'")
            list_file = Path(entry["list_file"])
            frames = read_culane_list(list_file if list_file.is_absolute() else root / list_file, root,
                                      skip_bad=skip)
        elif kind == "bdd100k":
            labels = _labels_list(entry)
            if len(labels) != 1:
                raise ConfigError(f"data.{role}: bdd100k entry needs one 'labels' JSON file")
            frames = read_bdd100k_lanes(root / labels[0], root / (entry["images"] or "images"), skip_bad=skip)
        else:  # validated by the config schema
            raise ConfigError(f"data.{role}: unknown dataset type {kind}")
        exclude = set(entry["exclude"])
        if exclude:
            frames = [f for f in frames if not _frame_names(f, root) & exclude]
        if entry["split_file"]:
            held_out = read_split_file(resolve_path(entry["split_file"]))
            keep = entry["split"] == "held_out"
            frames = [f for f in frames if (frame_clip(f, root) in held_out) == keep]
    if entry["max_frames"] is not None and len(frames) > entry["max_frames"]:
        frames = frames[: entry["max_frames"]]
    if entry["load_size"] is not None and kind != "synthetic":
        size = entry["load_size"]
        if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise ConfigError(f"data.{role}: 'load_size' must be [width, height] positive ints, got {size}")
        frames = ResizedFrames(frames, tuple(size))
    if len(frames) == 0:
        raise ConfigError(f"data.{role}: dataset entry {entry.get('name') or kind} has no frames")
    return frames


def read_split_file(path: Path) -> set[str]:
    """Clip folders listed in a split file (one a line, '#' comments); ConfigError if missing."""
    if not path.is_file():
        raise ConfigError(f"split file not found: {path}")
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {line.rstrip("/") for line in lines if line}


def frame_clip(frame, root: str | Path | None = None) -> str:
    """The clip a frame belongs to: its ``raw_file`` (TuSimple) or image path without the file name.

    An image path under ``root`` is taken relative to it, so a split file names CULane clips as
    their list files do (``driver_161_90frame/06030822_0756.MP4``), wherever the dataset lies.
    """
    if frame.meta.get("raw_file"):
        return str(Path(frame.meta["raw_file"]).parent)
    if frame.image_path is None:
        return "."
    path = Path(frame.image_path)
    if root is not None:
        with contextlib.suppress(ValueError):
            path = path.relative_to(Path(root))
    return str(path.parent)


def _frame_names(frame, root: Path) -> set[str]:
    """Names an ``exclude`` list may use for a frame: raw_file, path relative to root, full path."""
    names = set()
    if frame.meta.get("raw_file"):
        names.add(str(frame.meta["raw_file"]))
    if frame.image_path is not None:
        names.add(str(frame.image_path))
        with contextlib.suppress(ValueError):
            names.add(str(Path(frame.image_path).relative_to(root)))
    return names


class MixedDataset(torch.utils.data.Dataset):
    """Training stream over several sources; item ``(iteration, slot)`` is fully deterministic.

    The source is drawn by the configured weights, the frame index uniformly within it, and
    the augmentation RNGs seeded, all from ``sample_rng(seed, iteration, slot)``.
    """

    def __init__(self, sources: list, weights: list[float], seed: int):
        self.sources = sources
        total = float(sum(weights))
        self.probs = np.asarray([w / total for w in weights], dtype=np.float64)
        self.seed = int(seed)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def __getitem__(self, key):
        iteration, slot = key
        rng = sample_rng(self.seed, iteration, slot)
        src = int(rng.choice(len(self.sources), p=self.probs))
        index = int(rng.integers(len(self.sources[src])))
        aug_seed = int(rng.integers(2**31 - 1))
        source = self.sources[src]
        if hasattr(source, "set_epoch"):
            # LaneSegDataset draws augmentation from (its seed, epoch, index): make the
            # "epoch" per-sample so a frame drawn twice is augmented differently.
            source.set_epoch(aug_seed)
        with seeded(aug_seed):
            return source[index]


class IterationBatches(torch.utils.data.Sampler):
    """Yields, for iterations start..end-1, the keys (iteration, slot) of this rank's batch."""

    def __init__(self, start: int, end: int, batch_size: int, rank: int = 0):
        self.start, self.end, self.batch_size, self.rank = start, end, batch_size, rank

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def __iter__(self):
        first = self.rank * self.batch_size
        for it in range(self.start, self.end):
            yield [(it, first + j) for j in range(self.batch_size)]
