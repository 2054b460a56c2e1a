"""Start-up of the lane_detector node: process start -> first LaneArray for a real 1280x720 frame.

    python benchmarks/bench_startup.py [--runs 3] [--backend auto] [--weights W] [--json out.json]

Each round starts the node as a whole process twice, side by side: **cold** (an empty
cache directory: ONNX export, OpenVINO compile and the backend choice all happen) and
**warm** (the same cache directory again). The clock starts just before the process is
spawned and stops when this process receives the LaneArray answering the frame, which it
publishes every 50 ms until one comes back (so discovery is included, as a user sees it).
A cold node is left running until its background backend measurement has finished (its log
says "after measuring"), so that the warm start finds the choice remembered. The node's own
start-up phase log lines ("start-up: ...") of the last warm and cold run are
printed too. Prints the load average with each figure: on a shared machine the figures are
slower than on a quiet one; the cold/warm ratio, measured in the same rounds, holds better.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FRAME = REPO.parent / "shared" / "data" / "tusimple" / "clips" / "lanenet" / "0000" / "20.jpg"
PARAMS_FILE = REPO / "config" / "lane_detector.yaml"


def load_average() -> float:
    return os.getloadavg()[0]


def test_frame() -> np.ndarray:
    """A real 1280x720 TuSimple frame when shared data is there, else a blurred noise frame (said so)."""
    image = cv2.imread(str(FRAME)) if FRAME.is_file() else None
    if image is None:
        print(f"note: {FRAME} not found, using a synthetic 1280x720 frame", file=sys.stderr)
        rng = np.random.default_rng(0)
        image = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (5, 5), 0)
    return cv2.resize(image, (1280, 720)) if image.shape[:2] != (720, 1280) else image


class Client:
    """Publishes the frame until a LaneArray answers it; its own rclpy context and DDS domain."""

    def __init__(self, domain_id: int, image_topic: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from lanesad_ros.msg import LaneArray

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("startup_bench_client", context=self.context)
        self.answered = threading.Event()
        self.node.create_subscription(LaneArray, "/lanes", lambda msg: self.answered.set(), QoSProfile(depth=10))
        self.publisher = self.node.create_publisher(Image, image_topic, qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # shutdown of the context ends the spin
            pass

    def close(self) -> None:
        self.rclpy.shutdown(context=self.context)
        self.thread.join(timeout=10)


def start_once(frame_msg, cache: Path, args, domain_id: int, wait_for_choice: bool) -> dict:
    """One node process from spawn to the first LaneArray; returns seconds and its start-up log."""
    transports = os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), FASTDDS_BUILTIN_TRANSPORTS=transports,
               LANESAD_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "lanesad_ros.ros.node", "--ros-args", "--params-file", str(PARAMS_FILE),
           "-p", f"backend:={args.backend}"]
    if args.weights:
        cmd += ["-p", f"weights:={args.weights}"]
    client = Client(domain_id, "/image_raw")
    load = load_average()
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            seconds = matched = None
            while time.perf_counter() - start < args.timeout:
                if matched is None and client.publisher.get_subscription_count() > 0:
                    matched = time.perf_counter() - start
                frame_msg.header.stamp = client.node.get_clock().now().to_msg()
                client.publisher.publish(frame_msg)
                if client.answered.wait(0.05):
                    seconds = time.perf_counter() - start
                    break
                if proc.poll() is not None:
                    break
            if seconds is not None and wait_for_choice:
                # A first start-up measures the backends in the background after answering: let it
                # finish (and remember its choice), or the next start would not be warm.
                while time.perf_counter() - start < args.timeout and proc.poll() is None:
                    log.seek(0)
                    if b"after measuring" in log.read():
                        break
                    time.sleep(0.2)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            client.close()
        log.seek(0)
        text = log.read().decode(errors="replace")
    if seconds is None:
        raise SystemExit(f"bench_startup.py: error: no LaneArray within {args.timeout} s; node log:\n{text[-3000:]}")
    phases = [re.sub(r"^\[[^\]]*\] \[[^\]]*\] \[[^\]]*\]: ", "", line) for line in text.splitlines()
              if "start-up" in line]
    return {"seconds": seconds, "matched": matched, "load_before": load, "load_after": load_average(), "phases": phases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_startup.py", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds of (cold, warm) starts")
    parser.add_argument("--backend", default="auto", help="the node's backend parameter")
    parser.add_argument("--weights", default="", help="weights file (default: the shipped weights)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a start counts as failed")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    from std_msgs.msg import Header

    from lanesad_ros.ros.convert import bgr_to_image_msg

    frame_msg = bgr_to_image_msg(test_frame(), Header(frame_id="camera"), "bgr8")
    results = {"cold": [], "warm": []}
    domain_id = 100 + os.getpid() % 90
    print(f"# Start-up benchmark\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC | "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs | backend {args.backend} | "
          f"load average {load_average():.2f} at the start\n")
    print(f"command: `{' '.join(['bench_startup.py'] + (argv if argv is not None else sys.argv[1:]))}`\n")
    print("| round | kind | first LaneArray (s) | subscription matched (s) | load before | load after |\n"
          "| ---: | --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="lanesad-startup-") as tmp:
        for i in range(args.runs):
            cache = Path(tmp) / f"cache{i}"
            for kind in ("cold", "warm"):
                run = start_once(frame_msg, cache, args, domain_id, wait_for_choice=kind == "cold")
                results[kind].append(run)
                matched = f"{run['matched']:.2f}" if run["matched"] is not None else "-"
                print(f"| {i + 1} | {kind} | {run['seconds']:.2f} | {matched} | {run['load_before']:.2f} | "
                      f"{run['load_after']:.2f} |", flush=True)
    cold = statistics.median(r["seconds"] for r in results["cold"])
    warm = statistics.median(r["seconds"] for r in results["warm"])
    print(f"\nmedian: cold {cold:.2f} s, warm {warm:.2f} s (warm/cold {warm / cold:.2f}); "
          f"load average {load_average():.2f} at the end")
    for kind in ("cold", "warm"):
        print(f"\nnode's start-up log, last {kind} run:")
        for line in results[kind][-1]["phases"]:
            print(f"    {line}")
    if args.json:
        args.json.write_text(json.dumps({"cold_s": cold, "warm_s": warm, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
