"""Soak: the lane_detector node for N minutes at 30 Hz on real 1280x720 frames, every output on (issue 21).

    python benchmarks/bench_soak.py --minutes 60 --results benchmarks/RESULTS.md  # the issue-21 run
    python benchmarks/bench_soak.py --minutes 2 --interval 15 --out /tmp/soak  # a short proof of the harness

Three processes, as on a car: a camera publisher (this script with --role publisher: the
20-frame TuSimple clip ../shared/data/unlabeled/tusimple-clip looped at --rate Hz as bgr8
sensor_msgs/Image, sensor-data QoS, stamped from the clock when published), the lane_detector
node (its own process; tracking, debug image, markers and points on; the camera model of
demo/udacity/lane_detector.yaml, a calibrated 1280x720 camera), and this process, which
receives lanes, lanes/markers, lanes/points, lanes/debug_image and /diagnostics. All over
Fast DDS with the LARGE_DATA transports. The node is started and its backend left to settle;
the publisher then sends a frame every 0.5 s until the node answers one (so the node counts
every later gap in the publisher's sequence numbers), and the stream (t = 0) begins.

Every --interval seconds the node process is sampled: RSS and threads (/proc/<pid>/status),
open file descriptors (/proc/<pid>/fd), CPU time (/proc/<pid>/stat) and its diagnostics
counters. Per interval the table gives frames sent and answered, the node's newest-frame-wins
drops (frames_dropped: replaced in its one-slot mailbox; frames_missed: replaced in the
depth-1 input queue, or lost on the way), errors, the outputs received, and the latency
(header stamp -> LaneArray received here) p50 / p99 of the frames sent in that interval.

At the end (targets of issue 21): the RSS slope after the warm-up (least squares, MB/h;
target < 5), the latency p50 of the last window against the first (target within 10 %), and
a frame audit (target: no frame lost that newest-wins does not explain): every frame sent
reached the node or is counted by it as missed; every frame the node received was answered,
replaced by a newer one or counted as an error; every answer arrived here; the last frame
sent was answered; and no frame was skipped although the node was idle when it was sent
(sent more than --idle-tolerance-ms after the previous answered frame's lanes, markers and
points arrived, and not the one answered next). A run shorter than 20 minutes scales the
5-minute warm-up down to a quarter of the run and the 10-minute windows to half of it, and
says so. Writes soak.md, soak.json, node.log and the stream's stamps to --out; the exit
status is 0 whether or not the targets are met (the table says which).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lanesad_ros.fileio import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LANESAD_SHARED_DATA", REPO.parent / "shared" / "data"))
CLIP = SHARED_DATA / "unlabeled" / "tusimple-clip"
PARAMS_FILES = (REPO / "config" / "lane_detector.yaml", REPO / "demo" / "udacity" / "lane_detector.yaml")
IMAGE_TOPIC = "/soak_camera/image_raw"
NAMESPACE = "/soak"  # the node's outputs: /soak/lanes, ...; its diagnostics are told apart by input_topic
DIAG_NAME = "lane_detector: lane detection"
COUNTERS = ("frames_received", "frames_processed", "frames_dropped", "frames_missed", "errors")
OUTPUTS = ("lanes/markers", "lanes/points", "lanes/debug_image")
# Issue 21 targets and the windows they are measured over (minutes).
TARGET_RSS_MB_PER_H = 5.0
TARGET_P50_CHANGE = 0.10
WARMUP_MIN, WINDOW_MIN = 5.0, 10.0
SECTION = "## Soak (issue 21)"  # --results: the section of benchmarks/RESULTS.md (run_all.py keeps it)


# ----- camera publisher (child process) ---------------------------------------------------------
def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def run_publisher(rate: float, seconds: float, stamps_path: Path, startup_timeout: float) -> None:
    """Warm up, then publish the clip, looped, at ``rate`` Hz for ``seconds``; append each stamp (ns)
    of the stream to ``stamps_path`` and print a JSON report.

    Warm-up: one frame every 0.5 s (same publisher) until the node answers one. The node then
    knows this publisher's sequence numbers, so every frame of the stream that does not reach it
    is counted in its frames_missed. A publisher that falls more than a frame behind its
    schedule (a loaded machine) takes the schedule up from now instead of bursting frames, as a
    camera would.
    """
    import cv2
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from lanesad_ros.msg import LaneArray
    from lanesad_ros.ros.convert import bgr_to_image_msg

    frames = [cv2.imread(str(path)) for path in sorted(CLIP.glob("*.jpg"))]
    msgs = [bgr_to_image_msg(frame, Header(frame_id="camera")) for frame in frames]
    rclpy.init()
    node = rclpy.create_node("soak_camera")
    publisher = node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
    answered: list[int] = []
    answers = node.create_subscription(LaneArray, f"{NAMESPACE}/lanes",
                                       lambda msg: answered.append(stamp_ns(msg.header.stamp)), QoSProfile(depth=10))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    deadline = time.monotonic() + startup_timeout
    warmup: list[int] = []
    while not answered and time.monotonic() < deadline:
        msg = msgs[len(warmup) % len(msgs)]
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)
        warmup.append(stamp_ns(msg.header.stamp))
        time.sleep(0.5)
    if not answered:
        raise SystemExit(f"bench_soak.py publisher: no answer to {len(warmup)} warm-up frames in {startup_timeout:g} s")
    node.destroy_subscription(answers)
    time.sleep(1.0)  # let the node finish the warm-up frames
    period = 1.0 / rate
    sent = late = 0
    with open(stamps_path, "w", encoding="ascii") as out:
        start = next_time = last_flush = time.monotonic()
        while next_time < start + seconds:
            msg = msgs[sent % len(msgs)]
            msg.header.stamp = node.get_clock().now().to_msg()
            publisher.publish(msg)
            out.write(f"{stamp_ns(msg.header.stamp)}\n")
            sent += 1
            now = time.monotonic()
            if sent == 1 or now - last_flush >= 1.0:
                out.flush()
                last_flush = now
            next_time += period
            if now > next_time + period:
                next_time, late = now, late + 1
            time.sleep(max(0.0, next_time - time.monotonic()))
    print(json.dumps({"sent": sent, "late": late, "seconds": time.monotonic() - start, "warmup_sent": len(warmup),
                      "warmup_first_answered": warmup.index(answered[0]) if answered[0] in warmup else -1}),
          flush=True)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()


# ----- this process: outputs and diagnostics ------------------------------------------------------
class Receiver:
    """Collects (stamp, arrival) of every LaneArray, arrivals of the other outputs and the node's diagnostics."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import Image, PointCloud2
        from visualization_msgs.msg import MarkerArray

        from lanesad_ros.msg import LaneArray

        rclpy.init()
        self.node = rclpy.create_node("soak_receiver")
        self.lock = threading.Lock()
        self.answers: list[tuple[int, int]] = []  # (stamp ns, arrival ns) of /lanes
        self.outputs: dict[str, list[tuple[int, int]]] = {name: [] for name in OUTPUTS}  # the same, other outputs
        self.diagnostics: list[tuple[int, dict[str, str]]] = []  # (arrival ns, values)
        self.node.create_subscription(LaneArray, f"{NAMESPACE}/lanes", self._on_lanes, QoSProfile(depth=1000))
        for name, msg_type, qos in (("lanes/markers", MarkerArray, QoSProfile(depth=100)),
                                    ("lanes/points", PointCloud2, QoSProfile(depth=100)),
                                    ("lanes/debug_image", Image, qos_profile_sensor_data)):
            self.node.create_subscription(msg_type, f"{NAMESPACE}/{name}", lambda m, n=name: self._on_output(n, m), qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self._spin, daemon=True).start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def _on_lanes(self, msg) -> None:
        arrival = time.time_ns()
        with self.lock:
            self.answers.append((stamp_ns(msg.header.stamp), arrival))

    def _on_output(self, name: str, msg) -> None:
        arrival = time.time_ns()
        header = msg.markers[0].header if name == "lanes/markers" else msg.header  # markers: DELETEALL first
        with self.lock:
            self.outputs[name].append((stamp_ns(header.stamp), arrival))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name == DIAG_NAME and values.get("input_topic") == IMAGE_TOPIC:
                with self.lock:
                    self.diagnostics.append((time.time_ns(), values))

    def latest_diagnostics(self, after_ns: int = 0) -> dict[str, str] | None:
        with self.lock:
            return self.diagnostics[-1][1] if self.diagnostics and self.diagnostics[-1][0] > after_ns else None

    def close(self) -> None:
        import rclpy

        rclpy.shutdown()


# ----- node process -------------------------------------------------------------------------------
def proc_sample(pid: int) -> dict[str, float]:
    """RSS (MB), threads, open fds and CPU seconds of a live process, from /proc (Linux)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024, "threads": int(status["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "cpu_s": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")}


def start_node(args, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lanesad_ros.ros.node", "--ros-args", "-r", f"__ns:={NAMESPACE}"]
    for path in PARAMS_FILES:
        cmd += ["--params-file", str(path)]
    cmd += ["-p", f"image_topic:={IMAGE_TOPIC}", "-p", "tracking:=true", "-p", "publish_debug_image:=true",
            "-p", "publish_markers:=true", "-p", "publish_points:=true", "-p", f"backend:={args.backend}",
            "-p", f"device:={args.device}"]
    if args.weights:
        cmd += ["-p", f"weights:={args.weights.resolve()}"]
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


# ----- analysis (pure) ----------------------------------------------------------------------------
def slope_per_hour(t_s: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``values`` against time, per hour (nan with fewer than 2 points)."""
    if len(t_s) < 2 or np.ptp(t_s) == 0:
        return math.nan
    return float(np.polyfit(t_s / 3600.0, values, 1)[0])


def percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def frame_audit(sent_ns: np.ndarray, answers: list[tuple[int, int]], busy_until: dict[int, int],
                idle_tolerance_ns: int) -> dict:
    """What newest-frame-wins explains about the stream, from stamps alone.

    ``sent_ns``: the stamps of the stream in publishing order; ``answers``: (stamp, arrival) of
    its LaneArrays; ``busy_until``: per answered stamp, the arrival of its last output of the
    inference worker (lanes, markers, points). Newest-wins answers frames in order, always
    answers the last one, and skips a frame only when a newer one reaches the node before it is
    free for it. A frame sent more than ``idle_tolerance_ns`` after the node was free again,
    yet skipped (a later one answered next), is not explained by it: lost on the way, or the
    node's executor was more than a frame period late to take it.
    """
    by_arrival = [stamp for stamp, _ in sorted(answers, key=lambda a: a[1])]
    answered = np.isin(sent_ns, np.array(by_arrival, dtype=np.int64))
    answered_idx = np.flatnonzero(answered)
    idle_skipped: list[int] = []
    for i, j in zip(answered_idx[:-1], answered_idx[1:], strict=True):
        free_ns = busy_until[int(sent_ns[i])]
        idle_skipped += [int(stamp) for stamp in sent_ns[i + 1:j] if stamp > free_ns + idle_tolerance_ns]
    return {
        "sent": int(len(sent_ns)),
        "answered": int(answered.sum()),
        "answers_not_sent": len(set(by_arrival) - set(sent_ns.tolist())),
        "answered_in_order": all(a < b for a, b in zip(by_arrival, by_arrival[1:], strict=False)),
        "last_answered": bool(len(sent_ns)) and bool(answered[-1]),
        "skipped_while_idle": len(idle_skipped),
        "skipped_while_idle_stamps": idle_skipped[:10],
    }


def windows(minutes: float) -> tuple[float, float, bool]:
    """(warm-up, comparison window) in minutes for a run of ``minutes``; True when scaled down."""
    warmup, window = min(WARMUP_MIN, minutes / 4), min(WINDOW_MIN, minutes / 2)
    return warmup, window, (warmup, window) != (WARMUP_MIN, WINDOW_MIN)


def interval_rows(samples: list[dict], sent_ns: np.ndarray, answers: list[tuple[int, int]],
                  outputs: dict[str, list[tuple[int, int]]]) -> list[dict]:
    """One row per interval between consecutive samples: counter deltas, outputs received in it,
    and frames sent in it with the latency of their answers."""
    t0 = int(sent_ns[0])
    stamps = np.array([s for s, _ in answers], dtype=np.int64)
    latency_ms = np.array([(a - s) / 1e6 for s, a in answers])
    arrivals = {name: np.array([a for _, a in v], dtype=np.int64) for name, v in outputs.items()}
    rows = []
    for before, after in zip(samples, samples[1:], strict=False):
        lo, hi = t0 + int(before["t_s"] * 1e9), t0 + int(after["t_s"] * 1e9)
        span = max(after["t_s"] - before["t_s"], 1e-9)
        frames = (stamps >= lo) & (stamps < hi)
        row = {"t_min": after["t_s"] / 60, "rss_mb": after["rss_mb"], "fds": after["fds"],
               "threads": after["threads"], "cpu_pct": 100 * (after["cpu_s"] - before["cpu_s"]) / span,
               "sent": int(((sent_ns >= lo) & (sent_ns < hi)).sum()), "answered": int(frames.sum()),
               "p50_ms": percentile(latency_ms[frames], 50), "p99_ms": percentile(latency_ms[frames], 99),
               "load1": after["load1"]}
        row.update({key: after[key] - before[key] for key in COUNTERS})
        row.update({name: int(((a >= lo) & (a < hi)).sum()) for name, a in arrivals.items()})
        rows.append(row)
    return rows


def summarise(samples: list[dict], sent_ns: np.ndarray, answers: list[tuple[int, int]],
              outputs: dict[str, list[tuple[int, int]]], final: dict[str, int], warmup: dict[str, int],
              minutes: float, idle_tolerance_ms: float) -> dict:
    """Slopes, latency windows, frame accounting and the pass/fail of each issue-21 target.

    ``answers`` include the warm-up's; ``final``: the node's counters after the stream;
    ``warmup``: frames the publisher sent before the stream and the index of the first answered.
    """
    warmup_min, window, scaled = windows(minutes)
    t = np.array([s["t_s"] for s in samples])
    after = (t >= warmup_min * 60) & np.array([not s.get("after_stream") for s in samples])  # frames flowing
    slopes = {key: slope_per_hour(t[after], np.array([s[key] for s in samples])[after])
              for key in ("rss_mb", "fds", "threads")}
    t0 = int(sent_ns[0])
    stream = [(s, a) for s, a in answers if s >= t0]
    rel_s = np.array([(s - t0) / 1e9 for s, _ in stream])
    latency_ms = np.array([(a - s) / 1e6 for s, a in stream])
    end_s = (int(sent_ns[-1]) - t0) / 1e9
    first = percentile(latency_ms[rel_s < window * 60], 50)
    last = percentile(latency_ms[rel_s >= end_s - window * 60], 50)
    busy_until: dict[int, int] = {}
    for stamp, arrival in stream + outputs["lanes/markers"] + outputs["lanes/points"]:
        busy_until[stamp] = max(busy_until.get(stamp, 0), arrival)
    audit = frame_audit(sent_ns, stream, busy_until, int(idle_tolerance_ms * 1e6))
    # Every frame sent reached the node (frames_received) or is a gap in the sequence numbers it
    # saw (frames_missed), except warm-up frames before its first one: at most the index of the
    # first warm-up frame it answered.
    before_first = warmup["sent"] + audit["sent"] - final["frames_received"] - final["frames_missed"]
    accounting = {
        "never_reached_node": max(0, before_first - warmup["first_answered"]) + max(0, -before_first),
        "received_not_accounted": abs(final["frames_received"] - final["frames_processed"] - final["frames_dropped"]
                                      - final["errors"]),
        "published_not_received_here": abs(final["frames_processed"] - len(answers)),
    }
    unexplained = (sum(accounting.values()) + audit["skipped_while_idle"] + audit["answers_not_sent"]
                   + (not audit["last_answered"]) + (not audit["answered_in_order"]))
    change = last / first - 1 if not (math.isnan(first) or math.isnan(last)) else math.nan
    checks = {
        f"RSS growth after the first {warmup_min:g} min < {TARGET_RSS_MB_PER_H:g} MB/h":
            (f"{slopes['rss_mb']:+.2f} MB/h", slopes["rss_mb"] < TARGET_RSS_MB_PER_H),
        f"latency p50, last {window:g} min within {TARGET_P50_CHANGE:.0%} of the first {window:g} min":
            (f"{first:.1f} -> {last:.1f} ms ({change:+.1%})", abs(change) <= TARGET_P50_CHANGE),
        "no frame lost that newest-frame-wins does not explain":
            (f"{unexplained} unexplained", unexplained == 0),
    }
    return {"warmup_min": warmup_min, "window_min": window, "windows_scaled": scaled, "slopes_per_h": slopes,
            "p50_first_ms": first, "p50_last_ms": last, "p50_change": change, "audit": audit,
            "warmup_frames_before_node": before_first, "accounting": accounting, "final_counters": final,
            "outputs_received": {name: len(v) for name, v in outputs.items()}, "unexplained": unexplained,
            "checks": {k: {"measured": v, "met": bool(ok)} for k, (v, ok) in checks.items()}}


def markdown(meta: dict, rows: list[dict], summary: dict) -> str:
    lines = [f"{SECTION[1:]}: lane_detector for {meta['minutes']:g} min at {meta['rate']:g} Hz", "",
             f"{meta['date']} | {meta['machine']} | backend {meta['backend']} on {meta['device']}, "
             f"model input {meta['input_size']} | load average {meta['load_start']:.2f} at the start, "
             f"{meta['load_end']:.2f} at the end", "",
             f"command: `{meta['command']}`  ",
             f"input: {meta['frames']} real 1280x720 frames (../shared/data/unlabeled/tusimple-clip) looped, bgr8; "
             "tracking, debug image, markers and points on; camera model demo/udacity/lane_detector.yaml. "
             f"Publisher: {meta['sent']} frames in {meta['publish_s']:.0f} s "
             f"({meta['sent'] / meta['publish_s']:.1f} Hz; {meta['late']} times over a frame behind, schedule "
             f"restarted) after {meta['warmup_sent']} warm-up frames",
             "", "| min | RSS MB | fds | threads | node CPU % | sent | answered | mailbox drops | queue misses "
             "| errors | markers | points | debug images | p50 ms | p99 ms | load |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['t_min']:.2f} | {r['rss_mb']:.1f} | {r['fds']} | {r['threads']} | {r['cpu_pct']:.0f} "
                     f"| {r['sent']} | {r['answered']} | {r['frames_dropped']} | {r['frames_missed']} | {r['errors']} "
                     f"| {r['lanes/markers']} | {r['lanes/points']} | {r['lanes/debug_image']} | {r['p50_ms']:.0f} "
                     f"| {r['p99_ms']:.0f} | {r['load1']:.2f} |")
    s, a, acc = summary["slopes_per_h"], summary["audit"], summary["accounting"]
    scaled = " (scaled down for a short run)" if summary["windows_scaled"] else ""
    lines += ["", "Rows: node counters are the change over the interval (mailbox drops = frames_dropped, queue "
              "misses = frames_missed, both newest-frame-wins), outputs are those received here in it, sent / "
              "answered / latency are the frames sent in it (latency: header stamp -> LaneArray received here).", "",
              f"Slopes after the {summary['warmup_min']:g}-min warm-up{scaled} (least squares): "
              f"RSS {s['rss_mb']:+.2f} MB/h, fds {s['fds']:+.1f}/h, threads {s['threads']:+.1f}/h. "
              f"Latency p50: first {summary['window_min']:g} min {summary['p50_first_ms']:.1f} ms, "
              f"last {summary['window_min']:g} min {summary['p50_last_ms']:.1f} ms.", "",
              f"Frames of the stream: {a['sent']} sent, {a['answered']} answered. Node counters at the end (warm-up "
              "included): " + ", ".join(f"{k} {v}" for k, v in summary["final_counters"].items())
              + "; outputs received here: " + ", ".join(f"{k} {v}" for k, v in summary["outputs_received"].items())
              + f". Not explained by newest-frame-wins: never reached the node {acc['never_reached_node']}, "
              f"received but neither answered, replaced nor an error {acc['received_not_accounted']}, "
              f"published but not received here {acc['published_not_received_here']}, skipped while the node "
              f"was idle {a['skipped_while_idle']}, answers to frames never sent {a['answers_not_sent']}; "
              f"last frame answered {'yes' if a['last_answered'] else 'NO'}, "
              f"answers in order {'yes' if a['answered_in_order'] else 'NO'}.",
              "", "| target (issue 21) | measured | met |", "| --- | --- | --- |"]
    lines += [f"| {k} | {v['measured']} | {'yes' if v['met'] else 'NO'} |" for k, v in summary["checks"].items()]
    return "\n".join(lines) + "\n"


def update_results(path: Path, text: str) -> None:
    """Put ``text`` (markdown whose first line is its ``# `` heading) into ``path`` as the soak section:
    in place of the previous one, else at the end."""
    section = "#" + text.rstrip()  # "# Soak (issue 21): ..." -> "## Soak (issue 21): ..."
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    start = next((i for i, line in enumerate(lines) if line.startswith(SECTION)), len(lines))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    before, after = "\n".join(lines[:start]).rstrip(), "\n".join(lines[end:])
    write_text_atomic(path, "\n\n".join(part for part in (before, section, after) if part) + "\n")


# ----- the run ------------------------------------------------------------------------------------
def wait_for_node(receiver: Receiver, node: subprocess.Popen, log_path: Path, timeout: float) -> dict[str, str]:
    """Block until the node publishes diagnostics with a settled backend; its last diagnostics."""
    deadline = time.monotonic() + timeout
    while True:
        diag = receiver.latest_diagnostics()
        if diag is not None and diag.get("backend_settled", "true") == "true":
            return diag
        if node.poll() is not None or time.monotonic() > deadline:
            sys.stderr.write(log_path.read_text(errors="replace")[-3000:])
            raise SystemExit(f"bench_soak.py: error: the node did not come up with a settled backend in {timeout:g} s")
        time.sleep(0.2)


def node_counters(receiver: Receiver) -> dict[str, int]:
    diag = receiver.latest_diagnostics() or {}
    return {key: int(diag.get(key, 0)) for key in COUNTERS}


def read_stamps(path: Path) -> np.ndarray:
    text = path.read_text(encoding="ascii") if path.exists() else ""
    return np.array([int(line) for line in text.splitlines() if line.strip()], dtype=np.int64)


def soak(args) -> int:
    frames = sorted(CLIP.glob("*.jpg"))
    if not frames:
        raise SystemExit(f"bench_soak.py: error: no frames in {CLIP} (set LANESAD_SHARED_DATA to the shared data)")
    args.out.mkdir(parents=True, exist_ok=True)
    log_path, stamps_path = args.out / "node.log", args.out / "stamps.txt"
    stamps_path.unlink(missing_ok=True)
    load_start = os.getloadavg()[0]
    node = start_node(args, log_path)
    receiver = Receiver()
    publisher = None
    samples: list[dict] = []

    def sample(t0_ns: int, after_stream: bool = False) -> None:
        t_s = (time.time_ns() - t0_ns) / 1e9
        samples.append({"t_s": t_s, **proc_sample(node.pid), **node_counters(receiver), "load1": os.getloadavg()[0],
                        "after_stream": after_stream})
        s = samples[-1]
        print(f"[soak] {t_s / 60:6.2f} min: RSS {s['rss_mb']:.1f} MB, fds {s['fds']}, threads {s['threads']}, "
              f"node received {s['frames_received']} processed {s['frames_processed']}, load {s['load1']:.2f}",
              file=sys.stderr, flush=True)

    try:
        diag = wait_for_node(receiver, node, log_path, args.startup_timeout)
        seconds = args.minutes * 60
        publisher = subprocess.Popen([sys.executable, __file__, "--role", "publisher", "--rate", str(args.rate),
                                      "--seconds", str(seconds), "--stamps", str(stamps_path),
                                      "--startup-timeout", str(args.startup_timeout)],
                                     stdout=subprocess.PIPE, text=True)
        while not read_stamps(stamps_path).size:  # the first frame of the stream is t = 0
            if publisher.poll() is not None:
                raise SystemExit("bench_soak.py: error: the camera publisher ended before the stream began")
            time.sleep(0.05)
        t0_ns = int(read_stamps(stamps_path)[0])
        sample(t0_ns)
        k = 1
        while k * args.interval < seconds:
            time.sleep(max(0.0, t0_ns / 1e9 + k * args.interval - time.time()))
            if node.poll() is not None:
                raise SystemExit(f"bench_soak.py: error: the node exited ({node.returncode}); see {log_path}")
            sample(t0_ns)
            k += 1
        report = json.loads(publisher.communicate(timeout=seconds + 120)[0].strip().splitlines()[-1])
        end_ns = time.time_ns()
        time.sleep(2.0)  # the last answers, then a diagnostics report that counts them
        deadline = time.monotonic() + 30
        while receiver.latest_diagnostics(after_ns=end_ns + 1_500_000_000) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        sample(t0_ns, after_stream=True)  # counts the last frames; left out of the slopes
        final = node_counters(receiver)
        with receiver.lock:
            answers = list(receiver.answers)
            outputs = {name: list(v) for name, v in receiver.outputs.items()}
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.kill()
        node.terminate()  # before our participant closes (lanesad_ros.ros.evaluate.run_live)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        receiver.close()

    sent_ns = read_stamps(stamps_path)
    rows = interval_rows(samples, sent_ns, answers, outputs)
    summary = summarise(samples, sent_ns, answers, outputs, final,
                        {"sent": report["warmup_sent"], "first_answered": report["warmup_first_answered"]},
                        args.minutes, args.idle_tolerance_ms)
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "command": " ".join(["python benchmarks/bench_soak.py", *sys.argv[1:]]),
            "minutes": args.minutes, "rate": args.rate, "interval_s": args.interval, "frames": len(frames),
            "backend": diag.get("backend", "?"), "device": diag.get("device", "?"),
            "input_size": diag.get("input_size", "?"), "load_start": load_start, "load_end": os.getloadavg()[0],
            "sent": report["sent"], "late": report["late"], "publish_s": report["seconds"],
            "warmup_sent": report["warmup_sent"]}
    text = markdown(meta, rows, summary)
    (args.out / "soak.md").write_text(text, encoding="utf-8")
    (args.out / "soak.json").write_text(json.dumps({"meta": meta, "samples": samples, "rows": rows,
                                                    "summary": summary}, indent=1), encoding="utf-8")
    if args.results:
        update_results(args.results, text)
    print(text)
    print(f"[soak] wrote {args.out / 'soak.md'} and {args.out / 'soak.json'} (node log: {log_path})", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_soak.py", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="publishing time (default 60)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples (default 60)")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate in Hz (default 30)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "soak",
                        help="folder for soak.md, soak.json, node.log and the sent stamps (default outputs/soak)")
    parser.add_argument("--results", type=Path,
                        help=f"also put the table into this markdown file as its '{SECTION}' section "
                             "(benchmarks/RESULTS.md; replaces the previous one)")
    parser.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    parser.add_argument("--backend", default="auto", help="the node's backend parameter (default auto)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--idle-tolerance-ms", type=float, default=50.0,
                        help="a frame sent this long after the previous answer found the node idle (default 50)")
    parser.add_argument("--startup-timeout", type=float, default=300.0,
                        help="seconds for the node to come up with a settled backend (default 300)")
    parser.add_argument("--role", choices=("soak", "publisher"), default="soak", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--stamps", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))  # ROS 2 docs: 0-101 on Linux
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    if args.role == "publisher":
        run_publisher(args.rate, args.seconds, args.stamps, args.startup_timeout)
        return 0
    if args.minutes <= 0 or args.interval <= 0 or args.rate <= 0:
        parser.error("--minutes, --interval and --rate must be > 0")
    if args.interval > args.minutes * 60 / 2:
        parser.error("--interval must leave at least 2 samples in the run")
    return soak(args)


if __name__ == "__main__":
    sys.exit(main())
