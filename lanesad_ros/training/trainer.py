"""The training loop: model, optimiser, poly schedule, SAD switch-on, evaluation and checkpoints of one run.

Exact resume: model, optimiser, scheduler, AMP scaler and the python/numpy/torch RNG states are
checkpointed; the data order is a pure function of (seed, iteration) (see ``training.data``).
Multi-GPU / multi-node: under ``torchrun`` each rank trains on its own slots of every iteration,
so the global batch is ``WORLD_SIZE * train.batch_size``. Each rank draws its own dropout masks
(torch seeded with seed + rank), so a checkpoint holds every rank's RNG state (``rng_ranks``,
gathered from all ranks; rank 0 writes), and a resume needs the same number of ranks.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from lanesad_ros.data.augment import AugmentConfig
from lanesad_ros.data.dataset import LaneSegDataset
from lanesad_ros.model import build_model
from lanesad_ros.model.losses import SADLoss
from lanesad_ros.model.weights import load_weights, metadata_preprocessor
from lanesad_ros.preprocess import Preprocessor
from lanesad_ros.training.checkpoint import (
    CHECKPOINT_FORMAT,
    RESUMABLE_KEYS,
    atomic_torch_save,
    load_checkpoint,
    resume_conflicts,
    rng_state,
    set_rng_state,
)
from lanesad_ros.training.config import ConfigError, dump, resolve_path
from lanesad_ros.training.data import IterationBatches, MixedDataset, load_frames
from lanesad_ros.training.export import export_checkpoint, model_metadata
from lanesad_ros.training.validation import best_key, evaluate_model, flat_metrics


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


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("config key 'train.device' is cuda but CUDA is not available")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def make_preprocessor(cfg: dict) -> Preprocessor:
    """The Preprocessor the Detector will build from the exported metadata: one path for both."""
    return metadata_preprocessor(model_metadata(cfg))


def build_network(cfg: dict) -> torch.nn.Module:
    """The configured model, optionally initialised from a weights file (fine-tuning).

    Weights trained at another input size initialise every layer as they are except the
    existence head's first FC, which depends on the input size and is resampled to the new
    grid (``ExistenceHead.load_resampled``).
    """
    m = cfg["model"]
    model = build_model(m["name"], num_lanes=m["num_lanes"], input_size=tuple(m["input_size"]), **m["options"])
    if m["init_weights"]:
        init, _ = load_weights(resolve_path(m["init_weights"]), num_lanes=m["num_lanes"])
        if init.exist.grid == model.exist.grid:
            model.load_state_dict(init.state_dict(), strict=True)
        else:
            state = {k: v for k, v in init.state_dict().items() if not k.startswith("exist.")}
            result = model.load_state_dict(state, strict=False)
            missing = [k for k in result.missing_keys if not k.startswith("exist.")]
            if missing or result.unexpected_keys:
                raise ConfigError(f"model.init_weights {m['init_weights']}: does not fit {m['name']} "
                                  f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")
            model.exist.load_resampled(init.exist)
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
            # CPU kernels are deterministic already; on CUDA ask for the deterministic ones. ENet-SAD's
            # max_unpool2d and nll_loss2d have none there (a warning each, seen on an H200), so a CUDA
            # run still does not repeat exactly (docs/recipe-studies.md, "Seeds").
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
        self._best_unsaved = False  # evaluate() found a new best; save() writes best.pt
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
            # Lazy: tensorboard is an optional, heavy dependency (only with train.tensorboard).
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        return self._writer

    def log(self, text: str, every_rank: bool = False) -> None:
        """A time-stamped line on stdout from rank 0 (from every rank with ``every_rank``)."""
        if not (self.is_main or every_rank):
            return
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
        t = self.cfg["train"]
        end = t["iterations"] if stop_at is None else min(stop_at, t["iterations"])
        # The data first, training and validation: a config whose data cannot be read fails before it
        # writes anything (no empty run folder, no config.yaml of a run already there replaced) and
        # before it trains (a wrong validation root used to fail at the first evaluation).
        loader = self.data_loader(self.iteration, end)
        if self.cfg["eval"]["interval"] > 0 or end == t["iterations"]:
            self.val_sets()
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            dump(self.cfg, self.output_dir / "config.yaml")
        self.log(f"training {self.cfg['model']['name']} {self.cfg['model']['input_size']} on {self.device} "
                 f"(world size {self.world_size}) from iteration {self.iteration} to {end}; "
                 f"SAD from iteration {t['sad_start_iter']}; output {self.output_dir}")
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
        if self.distributed:  # every rank says what it did: a rank that never stepped shows
            losses = [r["loss"] for r in self.history]
            done = (f"{len(losses)} steps, iterations {self.history[0]['iteration']}..{self.iteration - 1}, "
                    f"last loss {losses[-1]:.4f}") if losses else f"0 steps (already at iteration {self.iteration})"
            self.log(f"rank {self.rank} of {self.world_size}: {done}", every_rank=True)
        if self.iteration >= t["iterations"] and self.cfg["export"]["path"] and self.is_main:
            which = self.cfg["export"]["which"]
            use_best = which == "best" and (self.output_dir / "best.pt").exists()
            ckpt = self.output_dir / ("best.pt" if use_best else "last.pt")
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
        scale = self.scaler.get_scale() if self.amp else None  # GradScaler halves it on every step it skips
        self.log(f"it {self.iteration} loss {mean['loss']:.4f} seg {mean['seg']:.4f} iou {mean['iou']:.4f} "
                 f"exist {mean['exist']:.4f} distill {mean['distill']:.5f} lr {window[-1]['lr']:.5f} "
                 f"{seconds / len(window):.2f} s/it {images / max(seconds, 1e-9):.1f} img/s"
                 + (f" loss scale {scale:g}" if self.amp else ""))
        if self.writer is not None:
            for k, v in mean.items():
                self.writer.add_scalar(f"train/{k}", v, self.iteration)
            self.writer.add_scalar("train/lr", window[-1]["lr"], self.iteration)
            self.writer.add_scalar("train/sad", float(window[-1]["sad"]), self.iteration)
            self.writer.add_scalar("train/images_per_s", images / max(seconds, 1e-9), self.iteration)
            if self.amp:
                self.writer.add_scalar("train/loss_scale", scale, self.iteration)

    # -- evaluation
    def evaluate(self) -> dict[str, Any]:
        """Score the val frames through the Detector with the same metric code as lanesad-eval.

        Rank 0 evaluates while the others wait; a new best is written as best.pt by the next
        ``save()`` (which every rank calls)."""
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
            self._best_unsaved = True
        if self.distributed:
            dist.barrier()
        return metrics

    # -- checkpoints
    def rank_rng_states(self) -> list[dict[str, Any]]:
        """Every rank's RNG state (``rng_state()``) in rank order; under torchrun a collective:
        every rank must call it."""
        own = rng_state()
        if not self.distributed:
            return [own]
        states: list[Any] = [None] * self.world_size
        dist.all_gather_object(states, own)
        return states

    def state(self, rank_rng: list[dict[str, Any]]) -> dict[str, Any]:
        """The checkpoint dict; ``rank_rng`` is ``rank_rng_states()``."""
        return {
            "format": CHECKPOINT_FORMAT,
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rank_rng[0],
            **({"rng_ranks": rank_rng} if self.distributed else {}),  # under torchrun: every rank's, in rank order
            # The data order is a pure function of (seed, iteration): this is all of its state.
            "data_order": {"seed": self.cfg["train"]["seed"], "next_iteration": self.iteration,
                           "batch_size": self.cfg["train"]["batch_size"], "world_size": self.world_size},
            "config": copy.deepcopy(self.cfg),
            "best": copy.deepcopy(self.best),
            "metrics": copy.deepcopy(self.last_metrics),
            "saved_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }

    def save(self) -> None:
        """Write best.pt after a new best, last.pt, and ckpt_<iteration>.pt when train.keep_checkpoints.

        Every rank calls it (the RNG states are gathered from all); rank 0 alone writes."""
        rank_rng = self.rank_rng_states()
        if not self.is_main:
            return
        names = (["best.pt"] if self._best_unsaved else []) + ["last.pt"]
        if self.cfg["train"]["keep_checkpoints"]:
            names.append(f"ckpt_{self.iteration:07d}.pt")
        state = self.state(rank_rng)
        for name in names:
            atomic_torch_save(state, self.output_dir / name)
        self._best_unsaved = False

    def load(self, path: str | Path) -> None:
        """Restore everything a checkpoint holds, so the next step equals an uninterrupted run's."""
        ckpt = load_checkpoint(path)
        conflicts = resume_conflicts(ckpt["config"], self.cfg)
        if conflicts:
            raise ConfigError(f"cannot resume from {path}: the config differs from the checkpoint's in "
                              f"{'; '.join(conflicts)} (a resume may change only {', '.join(RESUMABLE_KEYS)}; "
                              f"for other changes start a new run with model.init_weights)")
        saved_ranks = int(ckpt["data_order"]["world_size"])
        if saved_ranks != self.world_size:
            batch = self.cfg["train"]["batch_size"]
            raise ConfigError(f"cannot resume from {path}: it was saved by {saved_ranks} ranks, this run has "
                              f"{self.world_size}; the global batch (ranks x train.batch_size = {saved_ranks} x "
                              f"{batch} -> {self.world_size} x {batch}) and the data order would change "
                              f"(resume with {saved_ranks} ranks in all, or start a new run with model.init_weights)")
        t, o = self.cfg["train"], self.cfg["optim"]
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        # The schedule and the optimiser hyper-parameters a resume may change come from the new config.
        poly = PolyLambda(t["iterations"], o["poly_power"], o["warmup_iters"])
        self.scheduler.lr_lambdas = [poly]
        self.scheduler.base_lrs = [o["lr"]] * len(self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = o["lr"]
            group["lr"] = o["lr"] * poly(self.scheduler.last_epoch)
            group["weight_decay"] = o["weight_decay"]
            if "momentum" in group:
                group["momentum"] = o["momentum"]
        if self.scaler.is_enabled() and not ckpt["scaler"]:
            # A run begun without AMP (on the CPU, or with train.amp false) resumed with it: GradScaler refuses
            # the empty state of a disabled scaler; mixed precision starts here with a fresh loss scale.
            self.log(f"{path} was trained without mixed precision: AMP starts at iteration {ckpt['iteration']}")
        else:
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.distributed and "rng_ranks" not in ckpt:  # written before checkpoints held every rank's
            self.log(f"{path} holds rank 0's RNG state only: every rank continues from it (dropout masks "
                     "of ranks > 0 differ from the interrupted run's)")
        set_rng_state(ckpt.get("rng_ranks", [ckpt["rng"]] * self.world_size)[self.rank])
        self.iteration = int(ckpt["iteration"])
        self.best = ckpt["best"]
        self.last_metrics = ckpt["metrics"]
        self._sad_logged = self.use_sad(self.iteration - 1) if self.iteration > 0 else False
        self.log(f"resumed from {path} at iteration {self.iteration}")
