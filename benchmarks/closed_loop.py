#!/usr/bin/env python3
"""Closed-loop lane keeping: a simulated car, its camera, the lane_detector node and the example planner.

    python benchmarks/closed_loop.py [--duration 60] [--speed 20] [--rate 20] [--min-radius 250]
                                     [--ground-truth-lanes] [--out demo_output/closed_loop]

A kinematic bicycle (``data/synthetic/vehicle.py``) drives a highway course of curves down to
``--min-radius`` (``data/synthetic/road.py``). At every camera frame its view is rendered
through the true camera model (``data/synthetic/drive.py``) and published over DDS to the
lane_detector node, spawned as its own process with that camera model; the example planner
(``examples/lane_keeping/lane_keeping_node.py``, its own process) turns the node's ``/lanes``
into ``/cmd_vel``, and that command steers the car. The simulation runs in lock-step with
the answers: frame k is stamped with simulated time k / rate, the car waits for the command
of frame k, and that command starts to act at k / rate + the measured publish -> command
latency (the previous one acts until then), so a slow node costs the car as it would on the
road. Latencies are reported against the frame period: the node keeps up in real time when
they stay under it. ``--actuation-delay S`` makes every command act S seconds after its
frame instead (the control a real-time node gives, on a machine too busy to run one).
``--ground-truth-lanes`` publishes the exact lanes instead of running the detector, which
isolates the planner.

Writes to ``--out`` (atomically): ``summary.json`` (duration_s, speed_mps, min_radius_m,
rms_lateral_error_m, max_lateral_error_m, latencies, ...), ``trajectory.png``,
``lateral_error.png``, ``trajectory.csv``, and the node logs. Exit status 0 when the car
stayed within ``--limit`` (0.5 m) of its lane centre, 1 when it did not, 2 on a failure.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "lane_keeping"))  # the example planner's pure core

from closed_loop_plots import write_plots  # noqa: E402
from lane_keeping_controller import CentreEstimator  # noqa: E402

from lanesad_ros.data.synthetic.drive import DriveRenderer, camera_parameters, default_drive_camera  # noqa: E402
from lanesad_ros.data.synthetic.road import highway_course  # noqa: E402
from lanesad_ros.data.synthetic.vehicle import KinematicBicycle  # noqa: E402
from lanesad_ros.fileio import write_text_atomic  # noqa: E402
from lanesad_ros.lanes import Lane, LaneDetections, LaneSlot  # noqa: E402

PLANNER = REPO / "examples" / "lane_keeping" / "lane_keeping_node.py"
SIM_EPOCH_NS = 1_000 * 10**9      # simulated time 0 (any positive stamp: zero means "no stamp" to ROS tools)
WARM_UP_EPOCH_NS = 500 * 10**9    # warm-up frames: stamps the drive never uses
PLANNER_RESTART_S = 60.0          # lanes flowing this long without a command: the planner is restarted
MAX_PLANNER_RESTARTS = 3
IMAGE_TOPIC, LANES_TOPIC, CMD_TOPIC, ODOM_TOPIC = "/closed_loop/image_raw", "/lanes", "/cmd_vel", "/odom"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=60.0, help="simulated seconds of driving (default 60)")
    p.add_argument("--speed", type=float, default=20.0, help="m/s (default 20)")
    p.add_argument("--rate", type=float, default=20.0, help="camera frames per second (default 20)")
    p.add_argument("--min-radius", type=float, default=250.0, help="sharpest lane-centre radius, m (default 250)")
    p.add_argument("--start-offset", type=float, default=0.0, help="initial lateral offset from the lane centre, m")
    p.add_argument("--seed", type=int, default=0, help="road colour, roadside and texture")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--ground-truth-lanes", action="store_true", help="publish the exact lanes instead of running "
                   "the detector (isolates the planner)")
    p.add_argument("--weights", help="detector weights (default: the shipped ones)")
    p.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                   help="extra lane_detector parameter (repeatable)")
    p.add_argument("--actuation-delay", type=float, metavar="S", help="each command acts this many simulated "
                   "seconds after its frame, instead of after the measured publish -> command latency: the control "
                   "a real-time node gives, on a machine too busy to run one (latencies are measured all the same)")
    p.add_argument("--limit", type=float, default=0.5, help="lateral error the car must stay within, m")
    p.add_argument("--startup-timeout", type=float, default=300.0, help="s for the nodes to answer a first frame")
    p.add_argument("--settle-timeout", type=float, default=120.0, help="s after the first answer to wait for the "
                   "detector's backend choice to settle (its first start-up on a machine measures the backends in "
                   "the background); then the drive starts anyway, and summary.json says so")
    p.add_argument("--answer-timeout", type=float, default=30.0, help="s to wait for one frame's command")
    p.add_argument("--resend", type=float, default=1.0, help="republish an unanswered frame after this many s "
                   "(images are best effort)")
    p.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: the environment's, else a random one)")
    p.add_argument("--out", default="demo_output/closed_loop")
    args = p.parse_args(argv)
    if not (args.duration > 0 and args.speed > 0 and args.rate > 0):
        p.error("--duration, --speed and --rate must be > 0")
    return args


def _spawn(cmd: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=REPO)
    proc.log_file = log  # closed by evaluate.stop_node
    return proc


class SimBridge:
    """The simulation's side of DDS: publishes camera frames (or ground-truth lanes), collects
    ``/lanes``, ``/lanes/model`` and ``/cmd_vel`` by header stamp and ``/diagnostics``' backend_settled."""

    def __init__(self, ground_truth: bool):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import TwistStamped
        from nav_msgs.msg import Odometry
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from lanesad_ros.msg import LaneArray, LaneModel

        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node("closed_loop_sim", context=self.context)
        self.cond = threading.Condition()
        self.lanes: dict[int, tuple[float, object]] = {}
        self.cmds: dict[int, tuple[float, object]] = {}
        self.models: dict[int, tuple[float, object]] = {}
        self.settled: bool | None = None
        reliable = QoSProfile(depth=50)
        self.node.create_subscription(LaneArray, LANES_TOPIC, self._store(self.lanes), reliable)
        self.node.create_subscription(TwistStamped, CMD_TOPIC, self._store(self.cmds), reliable)
        self.node.create_subscription(LaneModel, LANES_TOPIC + "/model", self._store(self.models), reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.image_pub = self.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        self.odom_pub = self.node.create_publisher(Odometry, ODOM_TOPIC, QoSProfile(depth=10))
        self._odometry = Odometry
        self.lanes_pub = self.node.create_publisher(LaneArray, LANES_TOPIC, QoSProfile(depth=1)) \
            if ground_truth else None
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def _store(self, into: dict):
        def callback(msg) -> None:
            now = time.perf_counter()
            key = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            with self.cond:
                into.setdefault(key, (now, msg))
                self.cond.notify_all()
        return callback

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            for kv in status.values:
                if kv.key == "backend_settled":
                    with self.cond:
                        self.settled = kv.value == "true"

    def ready(self, ground_truth: bool) -> bool:
        cmd_ok = self.node.count_publishers(CMD_TOPIC) > 0 and self.node.count_subscribers(LANES_TOPIC) > 1
        if ground_truth:
            return cmd_ok
        return cmd_ok and self.image_pub.get_subscription_count() > 0

    def publish(self, stamp_ns: int, image: np.ndarray | None, lanes: LaneDetections | None,
                speed_mps: float, yaw_rate_rps: float) -> None:
        """One frame: the car's odometry (wheel speed and yaw rate, as a car's odometry gives them),
        then its camera image or, with ground-truth lanes, the exact LaneArray."""
        from std_msgs.msg import Header

        from lanesad_ros.ros.convert import bgr_to_image_msg, detections_to_lane_array

        odom = self._odometry()
        odom.header.frame_id, odom.child_frame_id = "odom", "base_link"
        odom.header.stamp.sec, odom.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        odom.twist.twist.linear.x, odom.twist.twist.angular.z = float(speed_mps), float(yaw_rate_rps)
        self.odom_pub.publish(odom)
        header = Header(frame_id="camera")
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 10**9)
        if lanes is not None:
            self.lanes_pub.publish(detections_to_lane_array(lanes, header, "base_link"))
        else:
            self.image_pub.publish(bgr_to_image_msg(image, header))

    def wait(self, stamp_ns: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: stamp_ns in self.cmds, timeout)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=5)  # the spin thread ends before its context does
        self._thread.join(timeout=10)
        rclpy.shutdown(context=self.context)


def truth_lanes(frame, renderer: DriveRenderer, x_near: float) -> LaneDetections:
    """What a perfect detector would report: the ego lane's neighbours' boundaries, exact, as far as the camera sees."""
    lanes = []
    cam = renderer.camera
    for b in frame.boundaries:
        if b.slot == LaneSlot.UNKNOWN:
            continue
        pts = b.points[b.points[:, 0] >= x_near]
        ground = np.column_stack([pts, np.zeros(len(pts))])
        px = renderer.projector.ground_to_image(ground)
        inside = np.all(np.isfinite(px), axis=1) & (px[:, 0] >= 0) & (px[:, 0] < cam.width) & (px[:, 1] < cam.height)
        if inside.sum() >= 2:
            lanes.append(Lane(b.slot, 1.0, px[inside], ground[inside]))
    return LaneDetections(lanes, cam.width, cam.height, model_name="ground_truth")


def estimate_errors(msg, estimator: CentreEstimator, frame) -> tuple[float, float, float] | None:
    """(offset, heading rad, width) error of the centre line the planner builds from ``msg``, at the vehicle."""
    boundaries = {lane.slot: np.array([(p.x, p.y) for p in lane.ground_points]).reshape(-1, 2)
                  for lane in msg.lanes if len(lane.ground_points)}
    centre = estimator.update(boundaries)
    if centre is None or centre.source != "both":
        return None
    c = np.pad(centre.coeffs, (0, 2))
    ego = frame.ego
    return (-c[0] - ego.lateral_offset_m, -math.atan(c[1]) - ego.heading_error_rad, centre.width_m - ego.width_m)


def _stats(values, scale: float = 1.0) -> dict:
    v = np.asarray([x for x in values if x is not None], np.float64) * scale
    if not len(v):
        return {"n": 0}
    return {"n": int(len(v)), "median": round(float(np.median(v)), 4), "p95": round(float(np.percentile(v, 95)), 4),
            "max": round(float(np.max(v)), 4)}


def run(args: argparse.Namespace) -> dict:
    from lanesad_ros.ros.evaluate import spawn_node, stop_node

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    if args.domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    else:
        os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))  # ROS 2 docs: 0-101 on Linux
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    dt = 1.0 / args.rate
    frames = int(round(args.duration * args.rate))
    road = highway_course(length_m=args.speed * args.duration + 400.0, min_radius_m=args.min_radius)
    camera, mounting = default_drive_camera(args.width, args.height)
    renderer = DriveRenderer(road, camera, mounting, seed=args.seed)
    x_near = float(renderer.projector.image_to_ground(np.array([[args.width / 2.0, args.height - 1.0]]))[0, 0])
    lane = 1
    car = KinematicBicycle(road.pose_at(0.0, road.lane_centre_offset(lane) + args.start_offset), args.speed)
    node_params = {"/**/lane_detector": {"ros__parameters": {**camera_parameters(camera, mounting),
                                                             "odom_topic": ODOM_TOPIC}}}
    params_file = out / "lane_detector_params.yaml"
    write_text_atomic(params_file, yaml.safe_dump(node_params, sort_keys=False))
    procs = []
    load_before = os.getloadavg()
    started = time.perf_counter()
    log = {k: [] for k in ("t", "x", "y", "s", "lateral_error", "heading_error", "curvature", "steer",
                           "latency_ms", "detector_ms", "inference_ms", "offset_est_err", "heading_est_err",
                           "width_est_err", "truth_ego")}
    log["rate"] = args.rate
    missed = resent = 0
    bridge = None
    backend_settled = None
    try:
        bridge = SimBridge(args.ground_truth_lanes)
        estimator = CentreEstimator()
        deadline = time.monotonic() + args.startup_timeout
        if not args.ground_truth_lanes:
            procs.append(spawn_node(IMAGE_TOPIC, False, args.weights, args.node_param, out / "lane_detector.log",
                                    params_file=str(params_file)))
            # The planner starts once the detector's subscription is up: started in the same instant,
            # Fast DDS (LARGE_DATA) sometimes matched the planner's lanes subscriptions without ever
            # delivering to them (graph complete, lanes flowing to others, no command in 300 s).
            while bridge.image_pub.get_subscription_count() == 0:
                if procs[0].poll() is not None or time.monotonic() > deadline:
                    break  # alive() / the connection wait below say why
                time.sleep(0.1)
        def spawn_planner(attempt: int) -> subprocess.Popen:
            log = out / ("lane_keeper.log" if attempt == 0 else f"lane_keeper.{attempt}.log")
            return _spawn([sys.executable, str(PLANNER), "--ros-args", "-p", f"speed:={args.speed}",
                           "-p", f"wheelbase:={car.wheelbase_m}"], env, log)

        procs.append(spawn_planner(0))
        planner_restarts, lanes_without_commands_since = 0, None

        def alive() -> None:
            for proc in procs:
                if proc.poll() is not None:
                    tail = Path(proc.log_file.name).read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{proc.args[2] if len(proc.args) > 2 else proc.args} exited "
                                       f"({proc.returncode}):\n{tail}")

        def frame_payload(frame):
            if args.ground_truth_lanes:
                return None, truth_lanes(frame, renderer, x_near)
            return frame.image, None

        # Start-up: nodes matched, then frames of the start pose until a command comes back on a
        # settled backend (the detector's first start-up on a machine measures its backends first).
        while not bridge.ready(args.ground_truth_lanes):
            alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes not connected within {args.startup_timeout} s")
            time.sleep(0.1)
        image, lanes = frame_payload(renderer.render(car.pose))
        warm, first_answer, answers_when_settled = 0, None, None
        while True:
            alive()
            if time.monotonic() > deadline:
                with bridge.cond:
                    got = f"{len(bridge.lanes)} LaneArray, {len(bridge.models)} LaneModel, {len(bridge.cmds)} commands"
                raise RuntimeError(f"no answer to warm-up frames within {args.startup_timeout} s (received {got})")
            stamp = WARM_UP_EPOCH_NS + warm
            bridge.publish(stamp, image, lanes, car.speed_mps, 0.0)
            warm += 1
            bridge.wait(stamp, args.resend)
            # Any warm-up frame's answer counts: on a loaded machine they come later than the next frame.
            with bridge.cond:
                answers = sum(WARM_UP_EPOCH_NS <= key < SIM_EPOCH_NS for key in bridge.cmds)
            if answers and first_answer is None:
                first_answer = time.monotonic()
            with bridge.cond:
                lanes_only = bool(bridge.lanes) and not bridge.cmds
            if not lanes_only:
                lanes_without_commands_since = None
            elif lanes_without_commands_since is None:
                lanes_without_commands_since = time.monotonic()
            elif (time.monotonic() - lanes_without_commands_since > PLANNER_RESTART_S
                  and planner_restarts < MAX_PLANNER_RESTARTS):
                # Lanes reach us but the matched planner receives none: the Fast DDS start-up stall of
                # the comment above, seen about once in six test runs. A new planner process matches afresh.
                planner_restarts += 1
                print(f"closed loop: the planner received no lanes in {PLANNER_RESTART_S:.0f} s while they "
                      f"flowed; restarting it ({planner_restarts} of {MAX_PLANNER_RESTARTS})", flush=True)
                stop_node(procs.pop())
                procs.append(spawn_planner(planner_restarts))
                lanes_without_commands_since = None
            settled = args.ground_truth_lanes or bridge.settled is not False
            if answers and settled and answers_when_settled is None:
                answers_when_settled = answers
            if answers_when_settled is not None and answers > answers_when_settled:
                break  # answered again on the backend it keeps
            if first_answer is not None and time.monotonic() - first_answer > args.settle_timeout:
                break  # still measuring its backends in the background: drive on what answers now
        backend_settled = bridge.settled if not args.ground_truth_lanes else None
        print(f"closed loop: nodes answer after {time.perf_counter() - started:.1f} s ({warm} warm-up frames, "
              f"detector backend settled: {backend_settled}); driving {args.duration:.0f} s at {args.speed:.1f} m/s, "
              f"{args.rate:.0f} fps", flush=True)

        steer = 0.0
        pending: list[tuple[float, float]] = []  # (simulated time it acts from, steering angle)
        s_hint = 0.0
        for k in range(frames):
            t = k * dt
            frame = renderer.render(car.pose, s_hint)
            s_hint = frame.ego.s_m
            s_now, d_now = road.project(car.pose.x, car.pose.y, s_hint)
            log["t"].append(t)
            log["x"].append(car.pose.x)
            log["y"].append(car.pose.y)
            log["s"].append(s_now)
            log["lateral_error"].append(d_now - road.lane_centre_offset(lane))
            log["heading_error"].append(frame.ego.heading_error_rad)
            log["curvature"].append(float(road.curvature_at(s_now, road.lane_centre_offset(lane))))
            stamp = SIM_EPOCH_NS + int(round(t * 1e9))
            log["truth_ego"].append((stamp, frame.ego))
            image, lanes = frame_payload(frame)
            active = log["steer"][-1] if log["steer"] else 0.0  # the steering angle acting now
            yaw_rate = car.yaw_rate(active)
            sent_at = time.perf_counter()
            bridge.publish(stamp, image, lanes, car.speed_mps, yaw_rate)
            answered = False
            while time.perf_counter() - sent_at < args.answer_timeout:
                if bridge.wait(stamp, args.resend):
                    answered = True
                    break
                alive()
                bridge.publish(stamp, image, lanes, car.speed_mps, yaw_rate)
                resent += 1
            latency = detector = inference = errors = None
            if answered:
                received, cmd = bridge.cmds[stamp]
                latency = received - sent_at
                if cmd.twist.linear.x > 0:
                    car.speed_mps = cmd.twist.linear.x
                    steer = math.atan(car.wheelbase_m * cmd.twist.angular.z / cmd.twist.linear.x)
                pending.append((t + (latency if args.actuation_delay is None else args.actuation_delay), steer))
                if stamp in bridge.lanes:
                    lanes_at, lanes_msg = bridge.lanes[stamp]
                    detector = (lanes_at - sent_at) * 1000.0
                    inference = float(lanes_msg.inference_latency_ms)
                    errors = estimate_errors(lanes_msg, estimator, frame)
            else:
                missed += 1
            log["latency_ms"].append(latency * 1000.0 if latency is not None else None)
            log["detector_ms"].append(detector if not args.ground_truth_lanes else None)
            log["inference_ms"].append(inference if not args.ground_truth_lanes else None)
            for key, value in zip(("offset_est_err", "heading_est_err", "width_est_err"),
                                  errors if errors else (None, None, None), strict=True):
                log[key].append(value)
            # Drive to the next frame: each command acts from the moment it arrived.
            t_now, t_end = t, t + dt
            for t_apply, value in sorted(pending):
                if t_apply >= t_end:
                    break
                car.step(active, max(t_apply - t_now, 0.0))
                t_now, active = max(t_apply, t_now), value
            pending = [p for p in pending if p[0] >= t_end]
            car.step(active, t_end - t_now)
            log["steer"].append(active)
            if k % max(int(args.rate * 5), 1) == 0:
                print(f"  t={t:5.1f} s  station {s_now:7.1f} m  lateral error {log['lateral_error'][-1]:+.3f} m  "
                      f"latency {log['latency_ms'][-1] or float('nan'):.0f} ms", flush=True)
    finally:
        # The nodes end before our DDS participant closes: Fast DDS's close can wait, holding the GIL, on
        # a TCP channel to a peer that has stopped reading (evaluate.run_live, test_live_ends_when_...).
        try:
            codes = [stop_node(proc) for proc in procs]
        finally:
            if bridge is not None:
                bridge.close()
    load_after = os.getloadavg()
    # The detector's filtered ego lane (lanes/model), where it publishes one, against the truth.
    model_errors = {"offset_m": [], "heading_deg": [], "width_m": []}
    models = bridge.models if bridge is not None else {}
    valid = 0
    for stamp, truth in log["truth_ego"]:
        ego = models[stamp][1].ego_lane if stamp in models else None
        if ego is not None and ego.valid:
            valid += 1
            model_errors["offset_m"].append(abs(ego.lateral_offset - truth.lateral_offset_m))
            model_errors["heading_deg"].append(abs(math.degrees(ego.heading_error - truth.heading_error_rad)))
            model_errors["width_m"].append(abs(ego.lane_width - truth.width_m))
    err = np.asarray(log["lateral_error"])
    latency = [v for v in log["latency_ms"] if v is not None]
    period_ms = 1000.0 * dt
    title = (f"closed loop, {'ground-truth lanes' if args.ground_truth_lanes else 'lane_detector'}: "
             f"{args.duration:.0f} s at {args.speed:.0f} m/s, curves down to R {args.min_radius:.0f} m")
    summary = {
        "mode": "ground_truth_lanes" if args.ground_truth_lanes else "detector",
        "planner_restarts": planner_restarts,
        "duration_s": round(frames * dt, 3),
        "speed_mps": args.speed,
        "min_radius_m": round(road.min_radius_m, 1),
        "rms_lateral_error_m": round(float(np.sqrt(np.mean(err**2))), 4),
        "max_lateral_error_m": round(float(np.max(np.abs(err))), 4),
        "limit_m": args.limit,
        "within_limit": bool(np.max(np.abs(err)) <= args.limit),
        "rms_heading_error_deg": round(float(np.degrees(np.sqrt(np.mean(np.square(log["heading_error"]))))), 3),
        "actuation_delay": "measured latency" if args.actuation_delay is None else f"{args.actuation_delay} s",
        "frame_rate_hz": args.rate,
        "frame_period_ms": round(period_ms, 2),
        "frames": frames,
        "frames_answered": frames - missed,
        "frames_missed": missed,
        "frames_resent": resent,
        "end_to_end_latency_ms": _stats(latency),
        "frames_over_period": int(sum(v > period_ms for v in latency)),
        "real_time": bool(latency) and float(np.percentile(latency, 95)) <= period_ms,
        "detector_latency_ms": _stats(log["detector_ms"]),
        "backend_settled_at_start": backend_settled,  # false: the detector still measured its backends
        "inference_latency_ms": _stats(log["inference_ms"]),
        "centre_estimate_error": {  # the planner's centre line from /lanes, at the rear axle, vs the truth
            "offset_m": _stats(np.abs([v for v in log["offset_est_err"] if v is not None])),
            "heading_deg": _stats(np.abs([v for v in log["heading_est_err"] if v is not None]), 180.0 / math.pi),
            "width_m": _stats(np.abs([v for v in log["width_est_err"] if v is not None])),
        },
        "ego_lane_estimate_error": {  # lanes/model's filtered ego lane vs the truth (n 0: not published)
            "published": sum(stamp in models for stamp, _ in log["truth_ego"]), "valid": valid,
            **{key: _stats(values) for key, values in model_errors.items()}},
        "road": {"lanes": road.lanes, "lane_width_m": road.lane_width_m, "length_m": round(road.length_m, 1),
                 "ego_lane": lane, "start_offset_m": args.start_offset},
        "camera": camera_parameters(camera, mounting),
        "wheelbase_m": car.wheelbase_m,
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]},
        "cpu_count": os.cpu_count(),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "node_exit_codes": codes,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    rows = ["t_s,x_m,y_m,station_m,lateral_error_m,heading_error_rad,steer_rad,latency_ms"]
    for i in range(len(log["t"])):
        lat_ms = log["latency_ms"][i]
        rows.append(f"{log['t'][i]:.3f},{log['x'][i]:.4f},{log['y'][i]:.4f},{log['s'][i]:.3f},"
                    f"{log['lateral_error'][i]:.4f},{log['heading_error'][i]:.5f},{log['steer'][i]:.5f},"
                    f"{'' if lat_ms is None else f'{lat_ms:.1f}'}")
    write_text_atomic(out / "trajectory.csv", "\n".join(rows) + "\n")
    write_plots(out, road, log, lane, args.limit, title)
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except (RuntimeError, ImportError) as exc:
        print(f"closed loop failed: {exc}", file=sys.stderr)
        return 2
    keys = ("mode", "duration_s", "speed_mps", "min_radius_m", "rms_lateral_error_m", "max_lateral_error_m",
            "frames_answered", "frames_missed", "end_to_end_latency_ms", "frame_period_ms", "real_time")
    print(json.dumps({k: summary[k] for k in keys}, indent=2))
    print(f"written to {args.out}: summary.json, trajectory.png, lateral_error.png, trajectory.csv")
    return 0 if summary["within_limit"] else 1


if __name__ == "__main__":
    sys.exit(main())
