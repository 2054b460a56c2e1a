"""End-to-end latency through ROS 2: image published by one process -> LaneArray received by another.

Three processes, as on a car: a camera publisher (sensor_msgs/Image bgr8 at a fixed rate),
the lane_detector node, and this process receiving /lanes. Latency is the LaneArray's
arrival time minus the image's header stamp (set at publish time; all on one clock).
Frames the node skipped because a newer one arrived show up as drops.

    python benchmarks/bench_ros_e2e.py                       # shipped weights, 10/30/60 Hz, 1280x720 + 1640x590
    python benchmarks/bench_ros_e2e.py --weights W.safetensors --seconds 10 --rates 30 --sizes 1640x590

Prints a markdown table. Without --weights and without shipped weights, an untrained
ENet-SAD at 288x800 stands in (same network cost; lanes are meaningless).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LANESAD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
IMAGE_TOPIC = "/bench_camera/image_raw"
DIAG_NAME = "lane_detector: lane detection"


def road_frame(width: int, height: int) -> np.ndarray:
    """A real TuSimple frame resized to the size asked for, else a synthetic road scene."""
    import cv2

    real = sorted((SHARED_DATA / "tusimple" / "clips").glob("*/*/*.jpg"))
    if real:
        return cv2.resize(cv2.imread(str(real[0])), (width, height), interpolation=cv2.INTER_AREA)
    from lanesad_ros.data.synthetic import SceneGenerator

    return SceneGenerator(seed=0, width=width, height=height).frame(0).image


def run_publisher(rate: float, width: int, height: int, seconds: float) -> None:
    """Child process: publish bgr8 frames at ``rate`` Hz, print how many as JSON."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from lanesad_ros.ros.convert import bgr_to_image_msg

    rclpy.init()
    node = rclpy.create_node("bench_camera")
    publisher = node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
    msg = bgr_to_image_msg(road_frame(width, height), Header(frame_id="camera"))
    deadline = time.monotonic() + 30
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    period = 1.0 / rate
    start = time.monotonic()
    sent = 0
    stamps = []
    while time.monotonic() < start + seconds:
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)
        stamps.append(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)
        sent += 1
        time.sleep(max(0.0, start + sent * period - time.monotonic()))
    print(json.dumps({"sent": sent, "first_ns": stamps[0], "last_ns": stamps[-1]}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def run_publisher_process(rate: float, width: int, height: int, seconds: float) -> dict:
    """Run the camera publisher in its own process and return its report.

    The report line is read as soon as it is printed; the child is then given a few seconds
    to tear DDS down and killed if it does not (a teardown hang must not stall the run).
    """
    child = subprocess.Popen([sys.executable, __file__, "--role", "publisher", "--rate", str(rate),
                              "--size", f"{width}x{height}", "--seconds", str(seconds)],
                             stdout=subprocess.PIPE, text=True)
    report: list[str] = []
    reader = threading.Thread(target=lambda: report.append(child.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=seconds + 60)
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    if not report or not report[0].strip():
        raise SystemExit(f"publisher at {rate:g} Hz {width}x{height} gave no report (exit code {child.returncode})")
    return json.loads(report[0])


class Receiver:
    """This process: collects (stamp, arrival) of every LaneArray and the node's diagnostics."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile

        from lanesad_ros.msg import LaneArray

        rclpy.init()
        self.node = rclpy.create_node("bench_receiver")
        self.lock = threading.Lock()
        self.arrivals: list[tuple[int, int]] = []  # (stamp ns, arrival ns)
        self.diagnostics: list[tuple[float, dict[str, str]]] = []  # (arrival, values)
        self.node.create_subscription(LaneArray, "/lanes", self._on_lanes, QoSProfile(depth=1000))
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
            self.arrivals.append((msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, arrival))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name == DIAG_NAME:
                with self.lock:
                    self.diagnostics.append((time.monotonic(), {kv.key: kv.value for kv in status.values}))

    def node_ready(self) -> bool:
        return self.node.count_publishers("/lanes") > 0 and self.node.count_subscribers(IMAGE_TOPIC) > 0

    def window(self, first_ns: int, last_ns: int) -> list[float]:
        """Latencies (ms) of the answers to frames stamped within [first_ns, last_ns]."""
        with self.lock:
            return [(arrival - stamp) / 1e6 for stamp, arrival in self.arrivals if first_ns <= stamp <= last_ns]

    def node_inference_ms(self, since: float, until: float) -> float:
        """Median of the node's own per-second inference latency reports between two monotonic times."""
        with self.lock:
            values = [float(v["inference_latency_ms"]) for t, v in self.diagnostics if since <= t <= until]
        values = [v for v in values if not np.isnan(v)]
        return statistics.median(values) if values else float("nan")

    def close(self) -> None:
        import rclpy

        rclpy.shutdown()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def default_or_random_weights(folder: Path) -> tuple[Path, str]:
    from lanesad_ros.weights import default_weights_path

    if default_weights_path().exists():
        return default_weights_path(), "shipped default"
    from lanesad_ros.model import build_model
    from lanesad_ros.model.weights import save_weights

    path = folder / "enet_sad_untrained.safetensors"
    save_weights(build_model("enet_sad", num_lanes=4, input_size=(288, 800)), path,
                 {"training": {"data": "none (benchmark stand-in)"}})
    return path, "untrained ENet-SAD 288x800 (no shipped weights yet)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    parser.add_argument("--seconds", type=float, default=5.0, help="publishing time per rate and size")
    parser.add_argument("--rates", default="10,30,60", help="input rates in Hz, comma separated")
    parser.add_argument("--sizes", default="1280x720,1640x590", help="input sizes WxH, comma separated")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "openvino"))
    parser.add_argument("--role", choices=("bench", "publisher"), default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))  # ROS 2 docs: 0-101 on Linux
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    if args.role == "publisher":
        width, height = (int(v) for v in args.size.split("x"))
        run_publisher(args.rate, width, height, args.seconds)
        return 0

    rates = [float(r) for r in args.rates.split(",")]
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.weights:
            weights, weights_note = args.weights, str(args.weights)
        else:
            weights, weights_note = default_or_random_weights(Path(tmp))
        from lanesad_ros.ros.evaluate import stop_node  # this file's roles import only what each needs

        node_log = open(Path(tmp) / "node.log", "wb")
        node = subprocess.Popen([sys.executable, "-m", "lanesad_ros.ros.node", "--ros-args",
                                 "--params-file", str(REPO_ROOT / "config" / "lane_detector.yaml"),
                                 "-p", f"weights:={weights}", "-p", f"device:={args.device}",
                                 "-p", f"backend:={args.backend}", "-p", f"image_topic:={IMAGE_TOPIC}"],
                                stdout=node_log, stderr=subprocess.STDOUT)
        node.log_file = node_log  # closed by stop_node
        receiver = Receiver()
        rows = []
        try:
            deadline = time.monotonic() + 180
            while not receiver.node_ready():
                if node.poll() is not None or time.monotonic() > deadline:
                    node_log.flush()
                    sys.stderr.write((Path(tmp) / "node.log").read_text(errors="replace"))
                    raise SystemExit("lane_detector node did not come up")
                time.sleep(0.1)
            for width, height in sizes:
                for rate in rates:
                    started = time.monotonic()
                    sent = run_publisher_process(rate, width, height, args.seconds)
                    time.sleep(1.5)  # let the last answers arrive
                    latencies = receiver.window(sent["first_ns"], sent["last_ns"])
                    rows.append((f"{width}x{height}", rate, sent["sent"], len(latencies),
                                 statistics.median(latencies) if latencies else float("nan"),
                                 percentile(latencies, 99), len(latencies) / args.seconds,
                                 receiver.node_inference_ms(started, time.monotonic())))
                    print(f"# {width}x{height} @ {rate:g} Hz: {len(latencies)}/{sent['sent']} answered",
                          file=sys.stderr)
            diag = receiver.diagnostics[-1][1] if receiver.diagnostics else {}
        finally:
            try:
                stop_node(node)  # before our participant closes (lanesad_ros.ros.evaluate.run_live)
            finally:
                receiver.close()

    print("End-to-end latency, image published -> LaneArray received (3 processes, Fast DDS LARGE_DATA)\n")
    print(f"- weights: {weights_note}; model input {diag.get('input_size', '?')}; "
          f"node backend {diag.get('backend', '?')} on {diag.get('device', '?')}")
    print(f"- {os.cpu_count()} CPU cores; {args.seconds:g} s per row; bgr8 sensor_msgs/Image input\n")
    print("| input | rate (Hz) | published | answered | dropped | median (ms) | p99 (ms) | output (Hz) "
          "| node inference (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, rate, sent, answered, median, p99, out_hz, inference in rows:
        print(f"| {size} | {rate:g} | {sent} | {answered} | {sent - answered} | {median:.1f} | {p99:.1f} "
              f"| {out_hz:.1f} | {inference:.1f} |")
    print("\nlatency: stamp (set when published) -> LaneArray arrival; node inference: preprocess + network + "
          "postprocess as the node reports it on /diagnostics (median of its 1 s reports)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
