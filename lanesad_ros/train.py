"""Offline training of the SAD lane networks: ``lanesad-train --config CFG.yaml [key=value ...]``.

Runs without ROS. One YAML config (see ``lanesad_ros/config.py`` and ``config/train/``)
names the model, the data mix, augmentation, optimiser, the iteration at which Self
Attention Distillation switches on, evaluation and the output folder.

Exact resume: the sample drawn for (iteration, slot) is a pure function of
``(train.seed, iteration, slot)`` (source, index and augmentation randomness alike), so a
checkpoint needs only the iteration to restore the data order; model, optimiser,
scheduler, AMP scaler and the python/numpy/torch RNG states are stored too. Checkpoints
are written atomically and read with ``torch.load(weights_only=True)``.

Multi-GPU / multi-node: launch with ``torchrun --nproc_per_node=N -m lanesad_ros.train
--config ...``; each rank draws the slots ``rank * batch .. (rank + 1) * batch - 1`` of
every iteration, so the global batch is ``N * train.batch_size``.

``lanesad-train export CKPT OUT.safetensors`` writes a weights file + metadata JSON that
alone configures the Detector.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime as _dt
import glob
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.distributed as dist

from lanesad_ros.config import ConfigError, load_config, validate
from lanesad_ros.fileio import atomic_path
from lanesad_ros.preprocess import Preprocessor

CHECKPOINT_FORMAT = "lanesad-checkpoint/1"


# --------------------------------------------------------------------------- paths, rng

def resolve_path(text: str) -> Path:
    """Config path -> Path: ``$VARS`` and ``~`` expanded; relative paths are relative to the CWD."""
    return Path(os.path.expanduser(os.path.expandvars(text)))


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


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors and plain types (loadable with weights_only=True)."""
    version, internal, gauss = random.getstate()
    key, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
        "numpy": {"key": str(key), "state": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["key"], npst["state"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, then os.replace (never a half-written file)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (weights_only); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe files
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a lanesad training checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


# --------------------------------------------------------------------------- data

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
    from lanesad_ros.data.tusimple import load_label_dicts

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
        from lanesad_ros.data.synthetic import SceneGenerator

        geometry = load_geometry(entry["geometry"]) if entry["geometry"] else None
        gen = SceneGenerator(seed=entry["seed"], width=entry["width"], height=entry["height"], geometry=geometry)
        size = entry["size"] if entry["size"] is not None else (10**9 if role == "train" else 64)
        frames: Sequence = SyntheticFrames(gen, size)
    else:
        root = resolve_path(entry["root"])
        if kind == "tusimple":
            from lanesad_ros.data.tusimple import read_tusimple_labels

            files = [p if Path(p).is_absolute() else str(root / p) for p in _labels_list(entry)]
            if not files:
                raise ConfigError(f"data.{role}: tusimple entry needs 'labels' (label json files)")
            frames = read_tusimple_labels([resolve_path(f) for f in files], root, skip_bad=skip)
        elif kind == "culane":
            from lanesad_ros.data.culane import read_culane_list

            if not entry["list_file"]:
                raise ConfigError(f"data.{role}: culane entry needs 'list_file'")
            list_file = Path(entry["list_file"])
            frames = read_culane_list(list_file if list_file.is_absolute() else root / list_file, root,
                                      skip_bad=skip)
        elif kind == "bdd100k":
            from lanesad_ros.data.bdd100k import read_bdd100k_lanes

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
            frames = [f for f in frames if (frame_clip(f) in held_out) == keep]
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


def frame_clip(frame) -> str:
    """The clip a frame belongs to: its ``raw_file`` (or image path) without the file name."""
    name = frame.meta.get("raw_file") or (str(frame.image_path) if frame.image_path is not None else "")
    return str(Path(name).parent)


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


# --------------------------------------------------------------------------- schedule

class PolyLambda:
    """Poly learning-rate factor (1 - it / iterations) ** power after an optional linear warm-up.

    A class, not a closure, so LambdaLR's state_dict records its parameters.
    """

    def __init__(self, iterations: int, power: float, warmup: int = 0):
        self.iterations, self.power, self.warmup = int(iterations), float(power), int(warmup)

    def __call__(self, it: int) -> float:
        factor = max(0.0, 1.0 - it / self.iterations) ** self.power
        if self.warmup > 0 and it < self.warmup:
            factor *= (it + 1) / self.warmup
        return factor


# --------------------------------------------------------------------------- trainer

def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("config key 'train.device' is cuda but CUDA is not available")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def model_metadata(cfg: dict) -> dict[str, Any]:
    """The preprocessing part of a weights file's metadata, from a training config."""
    m = cfg["model"]
    return {
        "format": "lanesad-weights/1",
        "model": m["name"],
        "num_lanes": m["num_lanes"],
        "input_size": list(m["input_size"]),
        "crop_top": m["crop_top"],
        "mean": list(m["mean"]),
        "std": list(m["std"]),
    }


def make_preprocessor(cfg: dict) -> Preprocessor:
    """The Preprocessor the Detector will build from the exported metadata: one path for both."""
    from lanesad_ros.model.weights import metadata_preprocessor

    return metadata_preprocessor(model_metadata(cfg))


def build_network(cfg: dict) -> torch.nn.Module:
    """The configured model, optionally initialised from a weights file (fine-tuning)."""
    from lanesad_ros.model import build_model

    m = cfg["model"]
    model = build_model(m["name"], num_lanes=m["num_lanes"], input_size=tuple(m["input_size"]), **m["options"])
    if m["init_weights"]:
        from lanesad_ros.model.weights import load_weights

        init, _ = load_weights(resolve_path(m["init_weights"]), num_lanes=m["num_lanes"])
        model.load_state_dict(init.state_dict(), strict=True)
    return model


class Trainer:
    """Owns model, optimiser, schedule, data and evaluation for one training run.

    ``run()`` trains from the current iteration to ``train.iterations``; ``history`` keeps
    one dict of losses per step (used by the tests and the logs).
    """

    def __init__(self, cfg: dict, resume: str | Path | None = None):
        self.cfg = cfg
        t = cfg["train"]
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.distributed = self.world_size > 1
        self.device = _device(t["device"], self.local_rank)
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if t["num_threads"]:
            torch.set_num_threads(t["num_threads"])
        if t["deterministic"] and self.device.type == "cuda":
            # CPU kernels are deterministic already; on CUDA ask for the deterministic ones.
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        random.seed(t["seed"])
        np.random.seed(t["seed"])
        torch.manual_seed(t["seed"] + self.rank)

        self.output_dir = resolve_path(t["output_dir"])
        self.is_main = self.rank == 0
        self.preprocessor = make_preprocessor(cfg)
        self.model = build_network(cfg).to(self.device)
        if self.distributed and t["sync_bn"]:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.net = self.model
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        from lanesad_ros.model.losses import SADLoss

        lc = cfg["loss"]
        self.criterion = SADLoss(bg_weight=lc["bg_weight"], iou_weight=lc["iou_weight"],
                                 exist_weight=lc["exist_weight"], distill_weight=lc["distill_weight"],
                                 distill_pairs=lc["distill_pairs"])
        self.optimizer = self._make_optimizer()
        o = cfg["optim"]
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, PolyLambda(t["iterations"], o["poly_power"], o["warmup_iters"]))
        self.amp = bool(t["amp"]) and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.iteration = 0
        self.best: dict[str, Any] = {"key": None, "value": None, "iteration": None, "metrics": None}
        self.last_metrics: dict[str, Any] | None = None
        self.history: list[dict[str, float]] = []
        self._writer = None
        self._sad_logged = False
        self._train_data: MixedDataset | None = None
        self._val_sets: list[tuple[dict, Sequence]] | None = None
        if resume is not None:
            self.load(resume)

    # -- setup helpers
    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg["optim"]
        params = self.model.parameters()
        if o["name"] == "sgd":
            return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
        if o["name"] == "adam":
            return torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"])
        return torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"])

    def train_dataset(self) -> MixedDataset:
        """The training stream (built on first use)."""
        if self._train_data is None:
            from lanesad_ros.data import AugmentConfig, LaneSegDataset

            d = self.cfg["data"]
            if not d["train"]:
                raise ConfigError("config key 'data.train' lists no datasets")
            try:
                augment = AugmentConfig.from_dict(d["augment"]) if d["augment"] else None
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"config key 'data.augment': {exc}") from None
            kwargs = {} if d["line_width"] is None else {"line_width": d["line_width"]}
            sources, weights = [], []
            for entry in d["train"]:
                frames = load_frames(entry, "train")
                sources.append(LaneSegDataset(frames, self.preprocessor, num_lanes=self.cfg["model"]["num_lanes"],
                                              augment=augment, **kwargs))
                weights.append(entry["weight"])
            self._train_data = MixedDataset(sources, weights, self.cfg["train"]["seed"])
        return self._train_data

    def val_sets(self) -> list[tuple[dict, Sequence]]:
        if self._val_sets is None:
            self._val_sets = [(entry, load_frames(entry, "val")) for entry in self.cfg["data"]["val"]]
        return self._val_sets

    def data_loader(self, start: int, end: int) -> torch.utils.data.DataLoader:
        t = self.cfg["train"]
        workers = self.cfg["data"]["num_workers"]
        sampler = IterationBatches(start, end, t["batch_size"], self.rank)
        # A private generator: creating the loader must not consume the global torch RNG,
        # or a resumed run's dropout masks would differ from an uninterrupted run's.
        return torch.utils.data.DataLoader(
            self.train_dataset(), batch_sampler=sampler, num_workers=workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            generator=torch.Generator().manual_seed(t["seed"]),
            prefetch_factor=2 if workers else None)

    @property
    def writer(self):
        if self._writer is None and self.is_main and self.cfg["train"]["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        return self._writer

    def log(self, text: str) -> None:
        if not self.is_main:
            return
        from tqdm import tqdm

        stamp = _dt.datetime.now().strftime("%H:%M:%S")
        tqdm.write(f"[{stamp}] {text}", file=sys.stdout)
        sys.stdout.flush()

    # -- one optimisation step
    def use_sad(self, iteration: int) -> bool:
        return iteration >= self.cfg["train"]["sad_start_iter"] and self.cfg["loss"]["distill_weight"] > 0

    def train_step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
        """Forward, SAD loss, backward, optimiser and schedule step for ``iteration``."""
        self.net.train()
        images = batch["image"].to(self.device, non_blocking=True)
        seg = batch["seg"].to(self.device, non_blocking=True)
        exist = batch["exist"].to(self.device, non_blocking=True)
        sad = self.use_sad(iteration)
        if sad and not self._sad_logged:
            self.log(f"SAD (self attention distillation) switched on at iteration {iteration}")
            self._sad_logged = True
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            outputs = self.net(images, with_attention=sad) if sad else self.net(images)
        total, parts = self.criterion(outputs, seg, exist, use_sad=sad)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        clip = self.cfg["optim"]["grad_clip"]
        if clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        record = {"iteration": iteration, "loss": float(total.detach()), "lr": lr, "sad": sad}
        record.update({k: float(v) for k, v in parts.items()})
        if not math.isfinite(record["loss"]):
            raise FloatingPointError(f"loss is {record['loss']} at iteration {iteration}")
        return record

    # -- the loop
    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train up to ``train.iterations`` (or ``stop_at``, e.g. to simulate a kill in tests)."""
        from tqdm import tqdm

        t = self.cfg["train"]
        end = t["iterations"] if stop_at is None else min(stop_at, t["iterations"])
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            from lanesad_ros.config import dump

            dump(self.cfg, self.output_dir / "config.yaml")
        self.log(f"training {self.cfg['model']['name']} {self.cfg['model']['input_size']} on {self.device} "
                 f"(world size {self.world_size}) from iteration {self.iteration} to {end}; "
                 f"SAD from iteration {t['sad_start_iter']}; output {self.output_dir}")
        loader = self.data_loader(self.iteration, end)
        bar = tqdm(total=end, initial=self.iteration, disable=not (self.is_main and t["progress"]),
                   dynamic_ncols=True, desc="train")
        window: list[dict[str, float]] = []
        tic = time.perf_counter()
        for batch in loader:
            it = self.iteration
            record = self.train_step(batch, it)
            self.history.append(record)
            window.append(record)
            self.iteration = it + 1
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", sad=int(record["sad"]))
            if self.iteration % t["log_interval"] == 0 or self.iteration == end:
                self._log_window(window, time.perf_counter() - tic)
                window, tic = [], time.perf_counter()
            evaluate_now = (self.cfg["eval"]["interval"] > 0 and self.iteration % self.cfg["eval"]["interval"] == 0) \
                or self.iteration == t["iterations"]
            if evaluate_now and self.cfg["data"]["val"]:
                self.evaluate()
            if self.iteration % t["checkpoint_interval"] == 0 or self.iteration == end or evaluate_now:
                self.save()
        bar.close()
        if self.iteration >= t["iterations"] and self.cfg["export"]["path"] and self.is_main:
            which = self.cfg["export"]["which"]
            ckpt = self.output_dir / ("best.pt" if which == "best" and (self.output_dir / "best.pt").exists() else "last.pt")
            export_checkpoint(ckpt, resolve_path(self.cfg["export"]["path"]))
            self.log(f"exported {ckpt} -> {self.cfg['export']['path']}")
        if self._writer is not None:
            self._writer.flush()
        return {"iteration": self.iteration, "best": self.best, "last_metrics": self.last_metrics}

    def _log_window(self, window: list[dict[str, float]], seconds: float) -> None:
        if not window or not self.is_main:
            return
        keys = ("loss", "seg", "iou", "exist", "distill")
        mean = {k: float(np.mean([r[k] for r in window])) for k in keys}
        images = len(window) * self.cfg["train"]["batch_size"] * self.world_size
        self.log(f"it {self.iteration} loss {mean['loss']:.4f} seg {mean['seg']:.4f} iou {mean['iou']:.4f} "
                 f"exist {mean['exist']:.4f} distill {mean['distill']:.5f} lr {window[-1]['lr']:.5f} "
                 f"{seconds / len(window):.2f} s/it {images / max(seconds, 1e-9):.1f} img/s")
        if self.writer is not None:
            for k, v in mean.items():
                self.writer.add_scalar(f"train/{k}", v, self.iteration)
            self.writer.add_scalar("train/lr", window[-1]["lr"], self.iteration)
            self.writer.add_scalar("train/sad", float(window[-1]["sad"]), self.iteration)
            self.writer.add_scalar("train/images_per_s", images / max(seconds, 1e-9), self.iteration)

    # -- evaluation
    def evaluate(self) -> dict[str, Any]:
        """Score the val frames through the Detector with the same metric code as lanesad-eval."""
        if not self.is_main:
            if self.distributed:
                dist.barrier()
            return {}
        metrics = evaluate_model(self.model, self.cfg, self.val_sets(), self.device,
                                 overlay_dir=self.output_dir / "overlays", iteration=self.iteration,
                                 writer=self.writer)
        self.last_metrics = metrics
        summary = " ".join(f"{k} {v:.4f}" for k, v in flat_metrics(metrics).items())
        self.log(f"eval at it {self.iteration}: {summary}")
        with open(self.output_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"iteration": self.iteration, **metrics}) + "\n")
        key = best_key(self.cfg, metrics)
        value = flat_metrics(metrics).get(key)
        if value is not None and (self.best["value"] is None or value > self.best["value"]):
            self.best = {"key": key, "value": value, "iteration": self.iteration, "metrics": metrics}
            self.log(f"new best {key} {value:.4f} at iteration {self.iteration}")
            self._save_to(self.output_dir / "best.pt")
        if self.distributed:
            dist.barrier()
        return metrics

    # -- checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            # The data order is a pure function of (seed, iteration): this is all of its state.
            "data_order": {"seed": self.cfg["train"]["seed"], "next_iteration": self.iteration,
                           "batch_size": self.cfg["train"]["batch_size"], "world_size": self.world_size},
            "config": copy.deepcopy(self.cfg),
            "best": copy.deepcopy(self.best),
            "metrics": copy.deepcopy(self.last_metrics),
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    def _save_to(self, path: Path) -> None:
        atomic_torch_save(self.state(), path)

    def save(self) -> None:
        """Write last.pt (and ckpt_<iteration>.pt when train.keep_checkpoints)."""
        if not self.is_main:
            return
        self._save_to(self.output_dir / "last.pt")
        if self.cfg["train"]["keep_checkpoints"]:
            self._save_to(self.output_dir / f"ckpt_{self.iteration:07d}.pt")

    def load(self, path: str | Path) -> None:
        """Restore everything a checkpoint holds, so the next step equals an uninterrupted run's."""
        ckpt = load_checkpoint(path)
        order = ckpt["data_order"]
        t = self.cfg["train"]
        if order["seed"] != t["seed"] or order["batch_size"] != t["batch_size"]:
            raise ConfigError(f"{path}: checkpoint has train.seed={order['seed']} batch_size={order['batch_size']}, "
                              f"config has {t['seed']} / {t['batch_size']}; the data order would not continue")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scheduler.lr_lambdas = [PolyLambda(t["iterations"], self.cfg["optim"]["poly_power"],
                                                self.cfg["optim"]["warmup_iters"])]
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.iteration = int(ckpt["iteration"])
        self.best = ckpt["best"]
        self.last_metrics = ckpt["metrics"]
        self._sad_logged = self.use_sad(self.iteration - 1) if self.iteration > 0 else False
        self.log(f"resumed from {path} at iteration {self.iteration}")


# --------------------------------------------------------------------------- evaluation

def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """{"tusimple": {"accuracy": ..}} -> {"tusimple.accuracy": ..} (numbers only, no per-frame lists)."""
    out = {}
    for group, values in metrics.items():
        if isinstance(values, dict):
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "frames":
                    out[f"{group}.{k}"] = float(v)
    return out


def best_key(cfg: dict, metrics: dict[str, Any]) -> str:
    key = cfg["eval"]["best_key"]
    if key != "auto":
        return key
    for candidate in ("culane.f1", "tusimple.accuracy", "bdd100k.iou"):
        if candidate in flat_metrics(metrics):
            return candidate
    return "tusimple.accuracy"


def _metric_for(entry: dict, cfg: dict) -> str:
    chosen = cfg["eval"]["metric"]
    if chosen != "auto":
        return chosen
    return {"culane": "culane", "bdd100k": "bdd100k"}.get(entry["type"], "tusimple")


# BGR per slot LEFT_LEFT, LEFT, RIGHT, RIGHT_RIGHT (then UNKNOWN).
_SLOT_COLOURS = [(255, 128, 0), (0, 255, 0), (0, 0, 255), (255, 0, 255), (0, 255, 255)]


def draw_validation(bgr: np.ndarray, frame, lanes) -> np.ndarray:
    """Ground truth as white dots, predictions as slot-coloured polylines (training overlays)."""
    import cv2

    out = bgr.copy()
    for lane in lanes:
        pts = np.round(lane.image_points).astype(np.int32).reshape(-1, 1, 2)
        colour = _SLOT_COLOURS[min(int(lane.slot), 4)]
        cv2.polylines(out, [pts], False, colour, 3, cv2.LINE_AA)
    for lane in frame.lanes:
        for x, y in np.asarray(lane):
            cv2.circle(out, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    return out


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, cfg: dict, val_sets: list[tuple[dict, Sequence]], device: torch.device,
                   overlay_dir: Path | None = None, iteration: int = 0, writer=None) -> dict[str, Any]:
    """Detector.from_model on each val frame, scored with the metrics module.

    Returns {"tusimple": {accuracy, fp, fn, frames, per_frame: [...]}, "culane": {...}, ...}
    for the metric kinds present.
    """
    import cv2

    from lanesad_ros.detector import Detector
    from lanesad_ros.metrics.culane import CULaneScorer
    from lanesad_ros.metrics.tusimple import TuSimpleScorer

    was_training = model.training
    model.eval()
    detector = Detector.from_model(model, model_metadata(cfg), device=str(device), backend="torch",
                                   **cfg["eval"]["postprocess"])
    scorers: dict[str, Any] = {}
    overlays_left = cfg["eval"]["overlays"]
    limit = cfg["eval"]["max_frames"]
    for entry, frames in val_sets:
        kind = _metric_for(entry, cfg)
        if kind == "none":
            continue
        name = entry["name"] or entry["type"]
        n = len(frames) if limit is None else min(limit, len(frames))
        for i in range(n):
            frame = frames[i]
            bgr = frame.load_image()
            det = detector.detect(bgr)
            frame_id = frame.meta.get("raw_file") or f"{name}/{i}"
            if kind == "tusimple":
                scorer = scorers.setdefault("tusimple", TuSimpleScorer())
                scorer.add(det.lanes, frame, frame_id=frame_id)
            elif kind == "culane":
                scorer = scorers.setdefault("culane", CULaneScorer())
                scorer.add(det.lanes, frame.lanes, image_size=(bgr.shape[1], bgr.shape[0]),
                           category=frame.meta.get("category"), frame_id=frame_id)
            else:
                from lanesad_ros.metrics.bdd100k import BDDScorer, lanes_to_mask

                scorer = scorers.setdefault("bdd100k", BDDScorer())
                size = (bgr.shape[1], bgr.shape[0])
                scorer.add(lanes_to_mask([l.image_points for l in det.lanes], size), lanes_to_mask(frame.lanes, size))
            if overlay_dir is not None and overlays_left > 0:
                overlays_left -= 1
                image = draw_validation(bgr, frame, det.lanes)
                scale = 640.0 / image.shape[1]
                image = cv2.resize(image, (640, int(round(image.shape[0] * scale))))
                overlay_dir.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(overlay_dir / f"it{iteration:07d}_{name}_{i}.png"), image)
                if writer is not None:
                    writer.add_image(f"val/{name}_{i}", image[:, :, ::-1].copy(), iteration, dataformats="HWC")
    metrics: dict[str, Any] = {}
    for kind, scorer in scorers.items():
        result = dict(scorer.result())
        if kind == "tusimple":
            result["per_frame"] = [{k: r[k] for k in ("frame", "accuracy", "fp", "fn", "num_pred", "num_gt")}
                                   for r in scorer.records]
        metrics[kind] = result
    if writer is not None:
        for k, v in flat_metrics(metrics).items():
            writer.add_scalar(f"val/{k}", v, iteration)
    if was_training:
        model.train()
    return metrics


# --------------------------------------------------------------------------- export

def describe_training(cfg: dict) -> str:
    """A one-line, honest description of the training data for the weights metadata."""
    if cfg["export"]["training_data"]:
        return cfg["export"]["training_data"]
    parts = []
    for entry in cfg["data"]["train"]:
        what = entry["type"]
        if entry["type"] == "synthetic":
            what += " scenes" + (f" with geometry from {entry['geometry']}" if entry["geometry"] else "")
        else:
            what += f" {entry['root']} {entry['labels'] or entry['list_file'] or ''}".rstrip()
        parts.append(f"{what} (weight {entry['weight']})")
    return "; ".join(parts)


def export_checkpoint(checkpoint: str | Path, out: str | Path, extra: dict | None = None) -> Path:
    """Checkpoint -> ``out`` (.safetensors) + ``.json`` metadata describing data, iterations and metrics."""
    from lanesad_ros.model import build_model
    from lanesad_ros.model.weights import save_weights

    ckpt = load_checkpoint(checkpoint)
    cfg = validate(ckpt["config"])
    m = cfg["model"]
    model = build_model(m["name"], num_lanes=m["num_lanes"], input_size=tuple(m["input_size"]), **m["options"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    meta = model_metadata(cfg)
    meta.pop("format")
    meta["training"] = {
        "config_name": cfg["name"],
        "description": cfg["description"],
        "data": describe_training(cfg),
        "iterations": int(ckpt["iteration"]),
        "total_iterations": cfg["train"]["iterations"],
        "batch_size": cfg["train"]["batch_size"],
        "sad_start_iter": cfg["train"]["sad_start_iter"],
        "optimizer": cfg["optim"]["name"],
        "lr": cfg["optim"]["lr"],
        "seed": cfg["train"]["seed"],
        "checkpoint": Path(checkpoint).name,
        "saved_at": ckpt.get("saved_at"),
    }
    if ckpt.get("metrics"):
        val_names = [e["name"] or e["type"] for e in cfg["data"]["val"]]
        meta["metrics"] = {"measured_on": val_names, "at_iteration": int(ckpt["iteration"]),
                           "postprocess_overrides": dict(cfg["eval"]["postprocess"]), **ckpt["metrics"]}
    if extra:
        meta.update(extra)
    out = Path(out)
    save_weights(model, out, meta)
    return out


# --------------------------------------------------------------------------- self-training

def pseudo_label(weights: str | Path, images: Sequence[str | Path], root: str | Path, out: str | Path,
                 min_confidence: float = 0.5, min_points: int = 8) -> Path:
    """Label unlabelled images with a trained model: TuSimple json lines for a later run.

    Each kept lane (existence >= ``min_confidence``, at least ``min_points`` rows) is sampled
    at TuSimple's h_samples scaled to the image height; ``raw_file`` is relative to ``root``
    so a ``type: tusimple`` data entry with that root reads the file back.
    """
    from lanesad_ros.data.frames import TUSIMPLE_H_SAMPLES, read_image
    from lanesad_ros.data.tusimple import write_tusimple_labels
    from lanesad_ros.detector import Detector

    detector = Detector.from_weights(weights, device="cpu", backend="torch")
    root = Path(root)
    labels = []
    for image_path in map(Path, images):
        bgr = read_image(image_path)
        h_samples = np.round(TUSIMPLE_H_SAMPLES * (bgr.shape[0] / 720.0)).astype(int)
        lanes = []
        for lane in detector.detect(bgr).lanes:
            xs = lane.x_at_rows(h_samples.astype(np.float32))
            if lane.confidence >= min_confidence and int((xs >= 0).sum()) >= min_points:
                lanes.append(np.where(xs >= 0, np.round(xs), -2).astype(int).tolist())
        labels.append({"lanes": lanes, "h_samples": h_samples.tolist(),
                       "raw_file": os.path.relpath(image_path, root)})
    return write_tusimple_labels(labels, out)


# --------------------------------------------------------------------------- CLI

def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lanesad-train",
        description="Train an ENet-SAD / ResNet-SAD lane network. "
                    "Subcommands: 'lanesad-train export CKPT OUT.safetensors', "
                    "'lanesad-train pseudo-label WEIGHTS OUT.json IMAGES... --root DIR'.")
    p.add_argument("--config", "-c", help="YAML config (config/train/*.yaml); optional with --resume")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CKPT",
                   help="continue exactly from CKPT (default: <train.output_dir>/last.pt)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, YAML-typed values")
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lanesad-train export", description="Export a checkpoint to weights + metadata.")
    p.add_argument("checkpoint")
    p.add_argument("out", help="output .safetensors path (a .json metadata file is written next to it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="extra top-level metadata entry, JSON value (repeatable)")
    return p


def _pseudo_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lanesad-train pseudo-label",
                                description="Write TuSimple pseudo-labels of unlabelled images from a weights file.")
    p.add_argument("weights")
    p.add_argument("out", help="output label json (TuSimple json lines)")
    p.add_argument("images", nargs="+")
    p.add_argument("--root", required=True, help="folder raw_file entries are relative to")
    p.add_argument("--min-confidence", type=float, default=0.5)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "pseudo-label":
            args = _pseudo_parser().parse_args(argv[1:])
            out = pseudo_label(args.weights, args.images, args.root, args.out, args.min_confidence)
            print(f"wrote {out}")
            return 0
        if argv and argv[0] == "export":
            args = _export_parser().parse_args(argv[1:])
            extra = {}
            for item in args.set:
                key, _, value = item.partition("=")
                extra[key] = json.loads(value)
            out = export_checkpoint(args.checkpoint, args.out, extra)
            print(f"wrote {out} and {out.with_suffix('.json')}")
            return 0
        args = _train_parser().parse_args(argv)
        resume = None
        if args.resume is not None:
            if args.config:
                cfg = load_config(args.config, args.overrides)
            else:
                if not args.resume:
                    raise ConfigError("--resume without a checkpoint path needs --config (to find train.output_dir)")
                from lanesad_ros.config import apply_overrides

                cfg = validate(apply_overrides(load_checkpoint(args.resume)["config"], args.overrides))
            resume = args.resume or str(resolve_path(cfg["train"]["output_dir"]) / "last.pt")
        else:
            if not args.config:
                raise ConfigError("--config is required (or --resume CKPT)")
            cfg = load_config(args.config, args.overrides)
        trainer = Trainer(cfg, resume=resume)
        result = trainer.run()
        best = result["best"]
        if best["value"] is not None:
            trainer.log(f"done: best {best['key']} {best['value']:.4f} at iteration {best['iteration']}")
        if trainer.distributed:
            dist.destroy_process_group()
        return 0
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"lanesad-train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
