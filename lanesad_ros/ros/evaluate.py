"""Running a detector over a recorded drive (rosbag2) for ``lanesad-eval``: offline through the Detector,
or live by replaying the bag over ROS into the lane detector node (spawned or already running).

Offline reads the bag and runs the Detector directly (fast, deterministic). Live plays the bag
into the node, records ``/lanes`` and measures end-to-end latency and drops; answers are matched
to their frames by header stamp (frames whose stamps tie are published with stamps that tell them
apart) and frames to their ground truth as the bag reader pairs them. Scoring and the report are
ROS-free (``lanesad_ros.evaluation``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from lanesad_ros.detector import Detector
from lanesad_ros.evaluation.scoring import ModelRun
from lanesad_ros.ros.bag.matching import unique_stamps
from lanesad_ros.ros.bag.reader import BagReader
from lanesad_ros.ros.bag.typestore import COMPRESSED_TYPE, TIMING_KEY
from lanesad_ros.ros.bag.writer import restamp_cdr
from lanesad_ros.ros.convert import lane_array_to_detections
from lanesad_ros.ros.replay import Replayer, ReplayError, ReplayResult


def _progress(total: int | None, desc: str):
    return tqdm(total=total or None, desc=desc, unit="frame", file=sys.stderr, disable=None)


def timing_notes(custom: dict) -> list[str]:
    """A note when the bag's frame times are not the source's own (``lanesad_ros.timing``, see lanesad-bag)."""
    try:
        timing = json.loads(custom.get(TIMING_KEY, "null")) or {}
    except ValueError:
        return [f"custom data {TIMING_KEY} is not JSON: how the frame times were made is unknown"]
    if timing.get("kind") == "nominal":
        return [f"frame times in this bag are nominal ({timing.get('rate_hz')} Hz), not the source's: "
                f"{timing.get('reason', 'the source has no frame times')}; replay pace and time axes follow them"]
    return []


def open_reader(args: argparse.Namespace, labels: list | None) -> BagReader:
    """The BagReader of ``args.bag`` (``--image-topic``, ``--gt-topic``), or with ``labels`` as ground truth."""
    return BagReader(args.bag, image_topic=args.image_topic, gt_topic=args.gt_topic, labels=labels)


def run_offline(args: argparse.Namespace, labels: list | None, problems: list[str]) -> tuple[list[ModelRun], dict]:
    reader = open_reader(args, labels)  # a bad bag is reported before minutes go into loading models
    weights = args.compare or [args.weights]
    detectors, runs = [], []
    for w in weights:
        try:
            det = Detector.from_weights(w, device=args.device, backend=args.backend)
        except BaseException:
            reader.close()
            raise
        detectors.append(det)
        name = det.weights_name
        if any(r.name == name for r in runs):
            name = f"{name} ({len(runs) + 1})"
        runs.append(ModelRun(name, "inference", info={"weights": str(det.weights_path), "model": det.model_name,
                                                       "backend": det.backend_name, "device": str(det.device)}))
    started = time.perf_counter()
    with reader, _progress(len(reader), "offline") as bar:
        for index, frame in reader.indexed_frames():
            if args.max_frames and index >= args.max_frames:
                break
            for det, run in zip(detectors, runs, strict=True):
                try:
                    found = det.detect(frame.image)
                except ValueError as exc:  # DetectorError: a bad image, keep going
                    run.errors.append(f"frame {index}: {exc}")
                    run.add(index, frame.stamp_ns, frame.ground_truth, None, None, bag_time_ns=frame.timestamp_ns)
                    continue
                run.add(index, frame.stamp_ns, frame.ground_truth, found.lanes, found.latency_ms,
                        exist_prob=found.exist_prob, bag_time_ns=frame.timestamp_ns)
            bar.update(1)
        problems.extend(reader.problems)
        context = {"notes": reader.notes + timing_notes(reader.custom), "image_topic": reader.image_topic,
                   "image_type": reader.image_type,
                   "storage": reader.storage, "has_ground_truth": reader.has_ground_truth,
                   "wall_time_s": time.perf_counter() - started}
    return runs, context


def node_topics(bag_topic: str, compressed: bool) -> tuple[str, str]:
    """(node's image_topic parameter, topic to publish on) for a bag image topic.

    The node subscribes to ``<image_topic>/compressed`` for compressed input (image_transport's
    convention), so a compressed bag topic is published there whatever it was called.
    """
    if not compressed:
        return bag_topic, bag_topic
    base = bag_topic[: -len("/compressed")] if bag_topic.endswith("/compressed") else bag_topic
    return base, base.rstrip("/") + "/compressed"


def spawn_node(image_topic: str, compressed: bool, weights: str | None, params: list[str], log_path: Path,
               params_file: str | None = None):
    """Start the lane detector as its own process (same interpreter, so no PATH issues).

    ``params_file``: a ROS parameters YAML (e.g. a camera model and mounting); ``params``
    (NAME:=VALUE) and the image topic / weights given here override it.
    """
    cmd = [sys.executable, "-m", "lanesad_ros.ros.node", "--ros-args"]
    if params_file:
        cmd += ["--params-file", str(Path(params_file).resolve())]
    cmd += ["-p", f"image_topic:={image_topic}"]
    if compressed:
        cmd += ["-p", "input_compressed:=true"]
    if weights:
        cmd += ["-p", f"weights:={Path(weights).resolve()}"]
    for p in params:
        cmd += ["-p", p]
    env = dict(os.environ)
    env.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    env.setdefault("PYTHONUNBUFFERED", "1")
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    proc.log_file = log  # closed in stop_node
    return proc


def stop_node(proc) -> int | None:
    """SIGINT (clean rclpy shutdown), then terminate, then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    proc.log_file.close()
    return proc.returncode


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _stop_spawned(proc, node_log: Path, problems: list[str]) -> None:
    """Stop a spawned node that is still running; an abnormal exit status becomes a problem."""
    if proc is None or proc.log_file.closed:
        return
    code = stop_node(proc)
    if code not in (0, -signal.SIGINT, 130, None):
        problems.append(f"lane detector process exited with status {code} (log: {node_log})")


def _replay(args: argparse.Namespace, labels: list | None, rep: Replayer, published: list[int], total: int,
            problems: list[str], alive, node_log: Path | None) -> ReplayResult:
    """Wait for the detector, warm it up on the drive's first image, then play the drive at ``args.rate``."""
    try:
        rep.wait_for_detector(args.startup_timeout, alive=alive)
    except ReplayError as exc:
        tail = _log_tail(node_log) if node_log is not None else ""
        raise ReplayError(f"{exc}" + (f"\nnode log ({node_log}):\n{tail}" if tail else "")) from None
    reader = open_reader(args, labels)
    with reader, _progress(total, "live") as bar:
        images = reader.serialized_images()
        first = next(images, None)  # warms the node up, then plays as the drive's first frame
        if first is not None:
            rep.warm_up(first[2], args.startup_timeout, alive=alive)
            images = itertools.chain([first], images)
        frames = ((bag_ns, published[i], data if published[i] == stamp else restamp_cdr(data, published[i]))
                  for i, (bag_ns, stamp, data) in enumerate(itertools.islice(images, len(published))))
        result = rep.play(frames, rate=args.rate, settle_s=args.settle, progress=bar,
                          first_answer_s=args.startup_timeout)
        problems.extend(reader.problems)
    return result


def run_live(args: argparse.Namespace, labels: list | None, problems: list[str]) -> tuple[list[ModelRun], dict]:
    reader = open_reader(args, labels)
    with reader:
        image_topic, image_type, storage = reader.image_topic, reader.image_type, reader.storage
        total = len(reader)
        keys = reader.image_keys()
    if args.max_frames:
        keys = keys[:args.max_frames]
    # Answers are matched to frames by header stamp: frames whose stamps tie get stamps that tell them apart.
    published, restamped = unique_stamps([k[1] for k in keys], [k[0] for k in keys])
    compressed = image_type == COMPRESSED_TYPE
    node_topic, publish_topic = node_topics(image_topic, compressed)
    proc = None
    node_log = Path(args.out) / "node.log"
    started = time.perf_counter()
    try:
        if args.spawn:
            proc = spawn_node(node_topic, compressed, args.weights, args.node_param, node_log,
                              params_file=args.node_params_file)
        with Replayer(publish_topic, image_type, args.lanes_topic, close_timeout=args.close_timeout) as rep:
            try:
                result = _replay(args, labels, rep, published, total, problems,
                                 alive=lambda: proc is None or proc.poll() is None, node_log=node_log if proc else None)
            finally:
                # The spawned node ends before our DDS participant closes: Fast DDS's close waits on its TCP
                # channel to a peer that has stopped reading, with the GIL held (the whole process froze,
                # SIGINT too, when a node stopped answering at the end of a replay).
                _stop_spawned(proc, node_log, problems)
    finally:
        _stop_spawned(proc, node_log, problems)  # the replayer never started
    if result.duplicate_stamps:
        problems.append(f"{result.duplicate_stamps} images share a header stamp with an earlier one: "
                        "their answers cannot be told apart")
    run = ModelRun(Path(args.weights).name if args.weights else "node", "end_to_end",
                   info={"weights": str(args.weights) if args.weights else "(the node's)", "spawned": bool(args.spawn)})
    # Second pass: ground truth and scoring, answers matched by the stamp each frame was published with.
    reader = open_reader(args, labels)
    with reader:
        for index, frame in reader.indexed_frames():
            if index >= len(published):
                break
            answer = result.received.get(published[index])
            lanes = inference = None
            if answer is not None:
                det = lane_array_to_detections(answer[1])
                lanes, inference = det.lanes, det.latency_ms
                run.info.setdefault("model", det.model_name)
                run.info.setdefault("weights_name", det.weights_name)
            run.add(index, frame.stamp_ns, frame.ground_truth, lanes, result.latency_ms(published[index]), inference,
                    bag_time_ns=frame.timestamp_ns)
        has_gt = reader.has_ground_truth
        notes = reader.notes + ([restamped] if restamped else []) + timing_notes(reader.custom)
    if not args.weights and run.info.get("weights_name"):
        run.name = run.info["weights_name"]  # the node's own (default) weights, as it reports them
    context = {"notes": notes, "image_topic": image_topic, "image_type": image_type, "storage": storage,
               "has_ground_truth": has_gt, "published_on": publish_topic, "lanes_topic": args.lanes_topic,
               "rate": args.rate, "published": len(result.published), "received": len(result.received),
               "unmatched_answers": result.unmatched,
               "replay_s": result.duration_s, "wall_time_s": time.perf_counter() - started}
    return [run], context
