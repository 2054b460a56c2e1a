"""``lanesad-train``: train (``--config CFG.yaml [key=value ...]``, ``--resume``), ``export``, ``pseudo-label``,
``calibrate`` (existence, on every camera's validation frames), ``tune``, ``soup`` (average seeds' weights),
``adapt`` (to a user's camera from unlabelled drives, :mod:`lanesad_ros.training.adapt`).

Errors in the config or the inputs end in ``lanesad-train: error: ...`` and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch.distributed as dist

from lanesad_ros.training.adapt import main as adapt_main
from lanesad_ros.training.checkpoint import load_checkpoint
from lanesad_ros.training.config import ConfigError, apply_overrides, load_config, resolve_path, validate
from lanesad_ros.training.export import export_checkpoint
from lanesad_ros.training.pseudo import pseudo_label
from lanesad_ros.training.soup import make_soup
from lanesad_ros.training.trainer import Trainer
from lanesad_ros.training.tune import calibrate_on_config, tune_weights


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        allow_abbrev=False, prog="lanesad-train",
        description="Train an ENet-SAD / ResNet-SAD lane network. "
                    "Subcommands: 'lanesad-train export CKPT OUT.safetensors', "
                    "'lanesad-train pseudo-label WEIGHTS OUT.json IMAGES... --root DIR', "
                    "'lanesad-train calibrate WEIGHTS --config CFG [--out DIR] [--write]', "
                    "'lanesad-train tune WEIGHTS --config CFG [--write]', "
                    "'lanesad-train soup OUT.safetensors WEIGHTS WEIGHTS...', "
                    "'lanesad-train adapt SOURCE... --out OUT.safetensors' (adapt to your camera, no labels).")
    p.add_argument("--config", "-c", help="YAML config (config/train/*.yaml); optional with --resume")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CKPT",
                   help="continue exactly from CKPT (default: <train.output_dir>/last.pt)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, YAML-typed values")
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        allow_abbrev=False, prog="lanesad-train export", description="Export a checkpoint to weights + metadata.")
    p.add_argument("checkpoint")
    p.add_argument("out", help="output .safetensors path (a .json metadata file is written next to it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="extra top-level metadata entry, JSON value (repeatable)")
    return p


def _pseudo_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="lanesad-train pseudo-label",
                                description="Write TuSimple pseudo-labels of unlabelled images from a weights file.")
    p.add_argument("weights")
    p.add_argument("out", help="output label json (TuSimple json lines)")
    p.add_argument("images", nargs="+")
    p.add_argument("--root", required=True, help="folder raw_file entries are relative to")
    p.add_argument("--min-confidence", type=float, default=0.5)
    return p


def _soup_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="lanesad-train soup",
                                description="Average the weights of several runs of one recipe (a uniform model "
                                            "soup); calibrate and tune the result.")
    p.add_argument("out", help="output .safetensors path (a .json metadata file is written next to it)")
    p.add_argument("weights", nargs="+", help="two or more weights files of one network and preprocessing")
    return p


def _tune_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="lanesad-train tune",
                                description="Choose exist/prob thresholds on the config's validation frames "
                                            "(TuSimple F1), with a cross-fitted score that did not choose them.")
    p.add_argument("weights")
    p.add_argument("--config", "-c", required=True, help="training config whose data.val holds the validation frames")
    p.add_argument("--folds", type=int, default=2, help="clip folds of the cross-fitted estimate (default 2)")
    p.add_argument("--write", action="store_true", help="store the choice and the figures in the weights' metadata")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    return p


def _calibrate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="lanesad-train calibrate",
                                description="Fit the existence calibration (Platt) on the config's validation frames "
                                            "of every camera; reliability diagram per camera.")
    p.add_argument("weights")
    p.add_argument("--config", "-c", required=True, help="training config whose data.val holds the validation frames")
    p.add_argument("--out", help="folder for reliability_<camera>.png and calibration.json")
    p.add_argument("--method", choices=("platt", "temperature"), default="platt")
    p.add_argument("--write", action="store_true", help="store the fit in the weights' metadata")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "adapt":
        return adapt_main(argv[1:])
    try:
        if argv and argv[0] == "pseudo-label":
            args = _pseudo_parser().parse_args(argv[1:])
            out = pseudo_label(args.weights, args.images, args.root, args.out, args.min_confidence)
            print(f"wrote {out}")
            return 0
        if argv and argv[0] == "calibrate":
            args = _calibrate_parser().parse_args(argv[1:])
            result = calibrate_on_config(args.weights, load_config(args.config, args.overrides), args.out,
                                         args.write, args.method)
            summary = {"fit": result["fit"], "frames": result["frames"],
                       "ece": {g: {k: round(r[k]["ece"], 4) for k in ("before", "after")}
                               for g, r in result.get("per_group", {}).items()}}
            print(json.dumps(summary, indent=2))
            return 0
        if argv and argv[0] == "tune":
            args = _tune_parser().parse_args(argv[1:])
            result = tune_weights(args.weights, load_config(args.config, args.overrides), args.folds, args.write)
            print(json.dumps({k: v for k, v in result.items() if k != "grid"}, indent=2))
            return 0
        if argv and argv[0] == "soup":
            args = _soup_parser().parse_args(argv[1:])
            out = make_soup(args.weights, args.out)
            print(f"wrote {out} and {out.with_suffix('.json')}")
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
