"""``lanesad-bag``: from-tusimple, from-culane, from-video, synthetic, info.

Errors (bad input, existing output) end in ``lanesad-bag: error: ...`` and exit status 2;
``info`` exits 1 when the bag has problems.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

from lanesad_ros.data.frames import DataError
from lanesad_ros.ros.bag.from_culane import from_culane
from lanesad_ros.ros.bag.from_tusimple import from_tusimple
from lanesad_ros.ros.bag.from_video import from_video
from lanesad_ros.ros.bag.reader import bag_info
from lanesad_ros.ros.bag.synthetic import synthetic
from lanesad_ros.ros.bag.typestore import DEFAULT_GT_TOPIC, DEFAULT_IMAGE_TOPIC, STORAGES, TIMING_KEY, BagError
from lanesad_ros.ros.bag.writer import remove_bag, timing_warning


def _add_output_args(p: argparse.ArgumentParser, rate: float | None = 10.0) -> None:
    p.add_argument("--storage", choices=STORAGES, default="mcap", help="rosbag2 storage format (default mcap)")
    p.add_argument("--compressed", action="store_true", help="write sensor_msgs/CompressedImage (jpeg)")
    p.add_argument("--rate", type=float, default=rate,
                   help="nominal frame rate, Hz, for a source without frame times (default 10; from-video: "
                        "replaces the video's own frame times)")
    p.add_argument("--image-topic", help=f"default {DEFAULT_IMAGE_TOPIC} (raw) or {DEFAULT_IMAGE_TOPIC}/compressed")
    p.add_argument("--gt-topic", default=DEFAULT_GT_TOPIC)
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag at OUT")


def _out_kwargs(a: argparse.Namespace) -> dict:
    kw = dict(storage=a.storage, compressed=a.compressed, image_topic=a.image_topic, gt_topic=a.gt_topic)
    if a.rate is not None:
        kw["rate_hz"] = a.rate
    return kw


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="lanesad-bag", description="Make and inspect rosbag2 drives for lanesad_ros.")
    # subcommands take no abbreviated options either
    sub = parser.add_subparsers(dest="command", required=True,
                                parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False))
    p = sub.add_parser("from-tusimple",
                       help="TuSimple folder + label json -> bag with ground truth")
    p.add_argument("root", help="folder the labels' raw_file paths are relative to")
    p.add_argument("labels", help="TuSimple label file (json lines)")
    p.add_argument("out", help="output bag folder (must not exist, unless --overwrite)")
    _add_output_args(p)
    p = sub.add_parser("from-culane", help="CULane folder + list file -> bag with ground truth")
    p.add_argument("root", help="CULane folder the list's image paths are relative to")
    p.add_argument("list", help="CULane list file (image paths relative to ROOT; .lines.txt labels beside the images)")
    p.add_argument("out", help="output bag folder (must not exist, unless --overwrite)")
    _add_output_args(p)
    p = sub.add_parser("from-video", help="video file -> bag (no ground truth)")
    p.add_argument("video")
    p.add_argument("out")
    _add_output_args(p, rate=None)
    p = sub.add_parser("synthetic", help="synthetic road scenes -> bag with ground truth")
    p.add_argument("out")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--geometry", help="TuSimple label file whose lane shapes drive the scenes")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    _add_output_args(p)
    p = sub.add_parser("info", help="topics, types, counts and problems of a bag")
    p.add_argument("bag")
    p.add_argument("--json", action="store_true", help="print JSON")
    for command_parser in sub.choices.values():  # main reports errors with the subcommand's usage
        command_parser.set_defaults(command_parser=command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # no FFmpeg lines ("moov atom not found"): ours says it
    if unknown:  # the subcommand's usage, not the top level's
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    out = Path(args.out) if args.command != "info" else None
    existed = out is not None and out.exists()  # not ours to describe if a conversion fails
    try:
        if getattr(args, "overwrite", False):
            remove_bag(out)
            existed = False
        if args.command == "info":
            info = bag_info(args.bag)
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                print(f"bag:      {info['path']} ({info['storage']})")
                print(f"duration: {info['duration_s']:.2f} s")
                for topic, t in sorted(info["topics"].items()):
                    print(f"  {topic:30s} {t['type']:40s} {t['count']:6d} msgs")
                for k, v in info["custom_data"].items():
                    print(f"custom:   {k} = {v[:80]}")
                for problem in info["problems"]:
                    print(f"PROBLEM:  {problem}")
            return 1 if info["problems"] else 0
        if args.command == "from-tusimple":
            n = from_tusimple(args.root, args.labels, args.out, **_out_kwargs(args))
        elif args.command == "from-culane":
            n = from_culane(args.root, args.list, args.out, **_out_kwargs(args))
        elif args.command == "from-video":
            n = from_video(args.video, args.out, **_out_kwargs(args))
        else:
            if args.frames <= 0:
                raise BagError(f"--frames must be positive, got {args.frames}")
            n = synthetic(args.out, args.frames, seed=args.seed, geometry=args.geometry, width=args.width,
                          height=args.height, **_out_kwargs(args))
        print(f"wrote {n} frames to {args.out}")
        warning = timing_warning(bag_info(args.out)["custom_data"].get(TIMING_KEY))
        if warning:
            print(f"lanesad-bag: warning: {warning}", file=sys.stderr)
        return 0
    except (BagError, DataError) as exc:
        note = ""
        if out is not None and not existed and out.exists():  # stopped part-way: what was written stays readable
            try:
                frames = max((t["count"] for t in bag_info(out)["topics"].values()), default=0)
                note = (f" (the bag {out} keeps the {frames} frame{'' if frames == 1 else 's'} written before it; "
                        "--overwrite replaces it)")
            except BagError:  # not a readable bag after all: the error alone
                pass
        elif args.command in ("from-tusimple", "from-culane") and any(
                kind in str(exc) for kind in ("image file not found: ", "lane file not found: ")):
            listing = "label" if args.command == "from-tusimple" else "list"  # its first image or lane file
            note = f" (the {listing} file's image paths are taken relative to ROOT, {args.root})"
        print(f"lanesad-bag: error: {exc}{note}", file=sys.stderr)
        return 2
