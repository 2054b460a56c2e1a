"""The lane_detector node's start-up and shut-down, each as its own process: params files under a
namespace, failures with clear messages, signals at any moment of start-up, the launch file.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT
from rosutil import require_ros_messages, ros_env

require_ros_messages()

from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from lanesad_ros.msg import LaneArray  # noqa: E402
from lanesad_ros.ros.launch_args import (  # noqa: E402
    ARGUMENTS,
    OUTPUT_SUFFIXES,
    executable,
    node_environment,
    output_remappings,
    parameter_overrides,
    ros_arguments,
)
from lanesad_ros.ros.parameters import PARAMETERS  # noqa: E402
from node_harness import (  # noqa: E402
    PARAMS_FILE,
    STARTUP_TIMEOUT,
    NodeProcess,
    RosClient,
    image_message,
    synthetic_frames,
)

# ----- a user's params file under a namespace -------------------------------------------------

def test_edited_params_file_applies_under_a_namespace(domain_id, random_weights, tmp_path):
    """The shipped file's key matches the node in any namespace, so a user's edited copy is not dropped;
    the launch file's lanes_topic moves every output (the node gets the launch file's own mapping)."""
    config = yaml.safe_load(PARAMS_FILE.read_text())
    (key,) = config
    config[key]["ros__parameters"].update(image_topic="/edited_camera/image_raw", weights=str(random_weights),
                                          device="cpu", backend="torch", exist_threshold=0.05, prob_threshold=0.05,
                                          fx=1000.0, cx=320.0, cy=180.0, pitch=0.08)
    edited = tmp_path / "my_lane_detector.yaml"
    edited.write_text(yaml.safe_dump(config))
    args = ros_arguments({"params_file": str(edited), "namespace": "car1", "lanes_topic": "perception/lanes",
                          "publish_debug_image": "true"})
    node = NodeProcess(ros_env(domain_id), tmp_path / "node.log", params_file=None, ros_args=tuple(args[1:]))
    client = RosClient(domain_id, "/edited_camera/image_raw")
    outputs = {topic: client.listen(f"/car1/perception/lanes{suffix}", msg_type, QoSProfile(depth=5))
               for topic, suffix, msg_type in (("lanes", "", LaneArray), ("debug", "/debug_image", Image),
                                               ("markers", "/markers", MarkerArray), ("points", "/points",
                                                                                       PointCloud2))}
    try:
        node.wait_discovered(lambda: client.publisher.get_subscription_count() > 0)
        node.wait_for_log("start-up: ready")  # topics open before the detector loads (seconds on a busy machine)
        values = client.diagnostics_after(0.0)
        assert values["input_topic"] == "/edited_camera/image_raw" and values["weights"] == str(random_weights)
        assert values["backend"] == "torch-cpu" and values["ground_points"] == "true"
        results = client.set_parameters("/car1/lane_detector", exist_threshold=0.05)  # the node lives in /car1
        assert results[0].successful
        msg = image_message(synthetic_frames(1, 640, 360)[0])
        deadline = time.monotonic() + 20
        while not all(outputs.values()) and time.monotonic() < deadline:
            msg.header.stamp = client.stamp()
            client.publisher.publish(msg)
            client.wait_for(lambda: all(outputs.values()), 1.0)
        assert all(outputs.values()), {topic: len(got) for topic, got in outputs.items()}
        assert not client.lanes and client.node.count_publishers("/car1/lanes") == 0, "nothing left behind"
    finally:
        try:
            code = node.stop(signal.SIGINT)  # before our participant closes
        finally:
            client.close()
    assert code == 0, node.log()[-3000:]


def test_use_sim_time_from_the_params_file_stands_unless_the_argument_is_given(domain_id, tmp_path):
    """Issue 22.2: the launch argument's default 'false' overrode use_sim_time: true from the params file.
    The managed node (lifecycle:=true: unconfigured, nothing loaded) gets the launch file's own mapping."""
    config = yaml.safe_load(PARAMS_FILE.read_text())
    (key,) = config
    config[key]["ros__parameters"]["use_sim_time"] = True
    sim_params = tmp_path / "sim_time.yaml"
    sim_params.write_text(yaml.safe_dump(config))
    cases = {"unset": ("", True), "given": ("false", False)}  # use_sim_time argument -> the node's use_sim_time
    env = ros_env(domain_id)
    nodes = {}
    for case, (given, _) in cases.items():
        values = {"params_file": str(sim_params), "namespace": f"sim_{case}", "lifecycle": "true",
                  "use_sim_time": given}
        nodes[case] = NodeProcess(env, tmp_path / f"{case}.log", executable=executable(values), params_file=None,
                                  ros_args=tuple(ros_arguments(values)[1:]))
    client = RosClient(domain_id, "/sim_time_test/image_raw")
    try:
        for case, (_, expected) in cases.items():
            parameters = AsyncParameterClient(client.node, f"/sim_{case}/lane_detector")
            nodes[case].wait_discovered(parameters.services_are_ready)
            (value,) = client.wait_future(parameters.get_parameters(["use_sim_time"]), 20).values
            assert value.bool_value is expected, f"{case}: use_sim_time {value.bool_value}\n{nodes[case].log()[-2000:]}"
    finally:
        try:
            codes = {case: node.stop(signal.SIGINT) for case, node in nodes.items()}  # before our participant closes
        finally:
            client.close()
    assert codes == {case: 0 for case in cases}, codes


def test_a_node_not_discovered_in_time_is_started_again(domain_id, tmp_path):
    """The harness's guard against a Fast DDS discovery stall: a node not seen within its share of the time
    is killed and started again once, its first log kept; not seen on the second attempt either, the test fails."""
    node = NodeProcess(ros_env(domain_id), tmp_path / "node.log", executable="lane_detector_lifecycle",
                       ros_args=("-r", "__ns:=/rediscovered"))
    try:
        node.wait_discovered(lambda: node.restarts == 1, timeout=4.0, restarts=1)
        assert node.restarts == 1 and node.alive() and node.log_path.name == "node.attempt1.log"
        assert (tmp_path / "node.log").exists()
        with pytest.raises(AssertionError, match="node not discovered in 2 attempts of 1 s"):
            node.wait_discovered(lambda: False, timeout=2.0, restarts=1)
        assert node.restarts == 2 and node.log_path.name == "node.attempt2.log"
    finally:
        node.stop(signal.SIGKILL)


# ----- Ctrl-C / launch shutdown at any moment of start-up -------------------------------------

def test_signal_at_any_moment_of_start_up_ends_quietly(random_weights, tmp_path):
    """SIGINT / SIGTERM while the node's modules import, while rclpy initialises, while the Detector loads,
    once spinning. (Earlier than ~0.5 s the interpreter itself is still starting -- site, the ROS wheels'
    bootstrap re-exec -- and Python, not the node, reports a signal; measured 0.1-0.3 s here.)"""
    plan = ((1.5, signal.SIGINT), (2.25, signal.SIGTERM), (3.0, signal.SIGINT), (4.5, signal.SIGTERM),
            (6.0, signal.SIGINT), (8.0, signal.SIGTERM))
    env = ros_env()
    procs = [NodeProcess(env, tmp_path / f"node_{delay}.log", f"weights:={random_weights}", "device:=cpu",
                         "backend:=torch") for delay, _ in plan]
    started = time.monotonic()
    for (delay, sig), proc in zip(plan, procs, strict=True):
        time.sleep(max(0.0, started + delay - time.monotonic()))
        proc.proc.send_signal(sig)
    for (delay, sig), proc in zip(plan, procs, strict=True):
        code = proc.stop(None, timeout=60)  # signalled once: a second SIGTERM would end a teardown at once
        log = proc.log()
        assert code == 0 and "Traceback" not in log and "RCLError" not in log, \
            f"{sig.name} after {delay} s: exit {code}\n{log[-3000:]}"


def test_ctrl_c_pressed_twice_ends_quietly(random_weights, tmp_path):
    """Issue 22.1: a second Ctrl-C 50-150 ms after the first lands in the teardown (closing the node,
    rclpy shutdown, the interpreter's exit); it is ignored: exit status 0 and nothing on stderr but the
    node's log lines (before: killed by it, status -2, or 'Exception ignored ... SystemExit' printed)."""
    gaps = (0.05, 0.1, 0.15)
    env = ros_env()
    procs = [NodeProcess(env, tmp_path / f"node_{gap}.log", f"weights:={random_weights}", "device:=cpu",
                         "backend:=torch", ros_args=("-r", f"__ns:=/twice{i}")) for i, gap in enumerate(gaps)]
    try:
        for proc in procs:
            proc.wait_for_log("start-up: ready")
        for gap, proc in zip(gaps, procs, strict=True):
            proc.proc.send_signal(signal.SIGINT)
            time.sleep(gap)
            proc.proc.send_signal(signal.SIGINT)
    finally:
        results = [(gap, proc.stop(None, timeout=60), proc.log()) for gap, proc in zip(gaps, procs, strict=True)]
    for gap, code, log in results:
        assert code == 0 and "Traceback" not in log and "Exception ignored" not in log, \
            f"second SIGINT {gap} s after the first: exit {code}\n{log[-3000:]}"


HANGING_TEARDOWN = """
import sys, threading
from rclpy.node import Node
from lanesad_ros.ros.node import run

class HangingTeardown(Node):
    def __init__(self):
        super().__init__("hanging_teardown")
        print("spinning", flush=True)

    def close(self):
        print("closing", flush=True)
        threading.Event().wait()  # a teardown that never ends

sys.exit(run(HangingTeardown, ["hanging_teardown"]))
"""


@contextmanager
def script_process(script: str, log: Path) -> Iterator[subprocess.Popen]:
    """``script`` run by this Python as a child process (ROS environment), its output in ``log``;
    killed on the way out if it is still running."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], env=ros_env(), stdout=out,
                                stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_text(proc: subprocess.Popen, log: Path, text: str) -> None:
    """Wait until ``log`` holds ``text``; fail if the process exits or STARTUP_TIMEOUT passes first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while text not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_launch_escalation_ends_a_hanging_teardown(tmp_path):
    """Issue 22.1: with a teardown that hangs, further SIGINTs are ignored, and launch's escalation
    (SIGTERM after sigterm_timeout) still ends the process."""
    log = tmp_path / "hanging.log"
    with script_process(HANGING_TEARDOWN, log) as proc:
        for signal_after, count in (("spinning", 1), ("closing", 2)):  # Ctrl-C, then twice more in the teardown
            wait_for_text(proc, log, signal_after)
            for _ in range(count):
                proc.send_signal(signal.SIGINT)
                time.sleep(0.1)
        time.sleep(1.0)  # an un-ignored SIGINT ends the process within milliseconds
        assert proc.poll() is None, f"a SIGINT during the teardown ended it: {proc.returncode}\n{log.read_text()}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM, log.read_text()


def test_teardown_watchdog_ends_a_hanging_teardown_without_launch(tmp_path):
    """``ros2 run`` and one Ctrl-C, no launch to escalate: a teardown still hanging TEARDOWN_TIMEOUT_S
    (here 1 s) after the stop began ends by itself, status 1, every thread's stack in the log."""
    log = tmp_path / "hanging.log"
    script = "import lanesad_ros.ros.entry as entry\nentry.TEARDOWN_TIMEOUT_S = 1.0\n" + HANGING_TEARDOWN
    with script_process(script, log) as proc:
        wait_for_text(proc, log, "spinning")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 1, log.read_text()
        text = log.read_text()
        assert "closing" in text and "Timeout (0:00:01)!" in text and "in close" in text, text


SLOW_CALLBACK = """
import sys, time
from rclpy.node import Node
import lanesad_ros.ros.entry as entry
from lanesad_ros.ros.node import run

entry.TEARDOWN_TIMEOUT_S = 1.0

class SlowCallback(Node):
    def __init__(self):
        super().__init__("slow_callback")
        self.create_timer(0.01, self.work)

    def work(self):
        print("working", flush=True)
        time.sleep(3.0)  # a lifecycle configure loading weights: the stop waits for it
        print("worked", flush=True)

    def close(self):
        self.destroy_node()

sys.exit(run(SlowCallback, ["slow_callback"]))
"""


def test_teardown_watchdog_waits_for_the_callback_in_progress(tmp_path):
    """The watchdog is armed when the teardown begins, not at the signal: Ctrl-C during a callback
    three times longer than the watchdog's time still ends quietly once the callback is done."""
    log = tmp_path / "slow.log"
    with script_process(SLOW_CALLBACK, log) as proc:
        wait_for_text(proc, log, "working")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
        assert "worked" in log.read_text() and "Timeout" not in log.read_text(), log.read_text()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_while_the_node_is_being_built_ends_quietly(random_weights, sig):
    """The signal lands after rclpy.init, inside the node constructor (the 'context is invalid' window)."""
    script = (
        "import os, signal, sys, time\n"
        "from lanesad_ros.ros.node import LaneDetectorNode, run\n"
        "def build():\n"
        f"    os.kill(os.getpid(), signal.{sig})\n"
        "    time.sleep(0.2)\n"
        "    return LaneDetectorNode()\n"
        f"sys.exit(run(build, ['lane_detector', '--ros-args', '-p', 'weights:={random_weights}', "
        "'-p', 'backend:=torch', '-p', 'device:=cpu']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=ros_env(), capture_output=True, text=True,
                            timeout=STARTUP_TIMEOUT, cwd=REPO_ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output[-3000:]


# ----- start-up failures: each must exit non-zero with a clear message ------------------------

@pytest.fixture(scope="module")
def startup_failures(random_weights, tmp_path_factory):
    """Start every failing configuration at once (they load nothing heavy before failing)."""
    folder = tmp_path_factory.mktemp("bad_weights")
    corrupt = folder / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage, not a safetensors file" * 10)
    (folder / "corrupt.json").write_text(random_weights.with_suffix(".json").read_text())
    six_lanes = folder / "six_lanes.safetensors"
    six_lanes.write_bytes(random_weights.read_bytes())
    meta = json.loads(random_weights.with_suffix(".json").read_text())
    meta["num_lanes"] = 6
    (folder / "six_lanes.json").write_text(json.dumps(meta))
    cases = {
        "missing_weights": ([f"weights:={folder / 'no_such_weights.safetensors'}"], ["no_such_weights.safetensors"]),
        "corrupt_weights": ([f"weights:={corrupt}"], ["corrupt.safetensors"]),
        "other_lane_count": ([f"weights:={six_lanes}"], ["six_lanes"]),
        "wrong_parameter_type": ([f"weights:={random_weights}", "exist_threshold:=abc"],
                                 ["invalid parameter", "exist_threshold", "DOUBLE"]),
        "bad_device": ([f"weights:={random_weights}", "device:=gpu"], ["device must be one of auto, cuda, cpu"]),
    }
    env = ros_env()
    procs = {name: NodeProcess(env, folder / f"{name}.log", *overrides) for name, (overrides, _) in cases.items()}
    results = {}
    for name, proc in procs.items():
        try:
            code = proc.wait(STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.proc.kill()
            proc.proc.wait()
            code = None
        results[name] = (code, proc.log(), cases[name][1])
    return results


@pytest.mark.parametrize("case", ["missing_weights", "corrupt_weights", "other_lane_count", "wrong_parameter_type",
                                  "bad_device"])
def test_startup_failure_exits_with_a_clear_message(startup_failures, case):
    code, log, expected = startup_failures[case]
    assert code not in (0, None), f"{case}: exit code {code}\n{log[-2000:]}"
    for text in expected:
        assert text in log, f"{case}: {text!r} not in\n{log[-2000:]}"
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("case", ["unwritable_ros_log_dir", "home_unset"])
def test_no_usable_ros_log_folder_is_one_line(random_weights, tmp_path, case):
    """Issue 21 item 3: without a usable ROS log folder rclpy.init failed with a traceback; one line
    naming ROS_LOG_DIR does."""
    env = ros_env()
    for name in ("ROS_LOG_DIR", "ROS_HOME"):
        env.pop(name, None)
    if case == "home_unset":
        env.pop("HOME", None)  # ~/.ros/log cannot be named
    else:
        (tmp_path / "file").write_text("a file, not a folder")
        env["ROS_LOG_DIR"] = str(tmp_path / "file" / "log")
    proc = NodeProcess(env, tmp_path / "node.log", f"weights:={random_weights}")
    code = proc.wait(STARTUP_TIMEOUT)
    log = proc.log()
    assert code == 1, log[-2000:]
    assert "Traceback" not in log, log[-3000:]
    lines = [line for line in log.splitlines() if "ROS_LOG_DIR" in line]
    assert len(lines) == 1 and "cannot start: ROS cannot set up its log folder" in lines[0], log[-2000:]


@pytest.mark.parametrize(("ros_args", "problem"), [
    (("--params-file", "config/lane_detectr.yaml"),
     "Couldn't parse params file: '--params-file config/lane_detectr.yaml'. Error: Error opening YAML file"),
    (("-p", "image_topic"), "Couldn't parse parameter override rule: '-p image_topic'"),
    (("-r",), "Couldn't parse trailing -r flag"),
    (("--param-file", "config/lane_detector.yaml"),
     "unknown --ros-args: --param-file config/lane_detector.yaml (did you mean --params-file?)"),
])
def test_ros_args_rcl_cannot_parse_are_one_line(tmp_path, ros_args, problem):
    """A typo in the README's own command (a params file that is not there) ended in a 25-line
    traceback of rclpy.init; one line says what rcl could not parse (exit status 2, a usage error)."""
    proc = NodeProcess(ros_env(), tmp_path / "node.log", params_file=None, ros_args=ros_args)
    code = proc.wait(STARTUP_TIMEOUT)
    log = proc.log()
    assert code == 2 and "Traceback" not in log, log[-3000:]
    (line,) = [line for line in log.splitlines() if "cannot start" in line]
    prefix = "" if problem.startswith("unknown --ros-args") else "bad --ros-args: "
    assert line.startswith(f"lane_detector: cannot start: {prefix}{problem}") and ", at /" not in line


def test_a_parameter_the_node_does_not_have_is_named(random_weights, tmp_path):
    """ROS ignores an undeclared -p name:=value without a word: 'image_topik' ran on /image_raw. One
    warning per unknown name, with the closest parameter; the shipped params file has none."""
    node = NodeProcess(ros_env(), tmp_path / "node.log", f"weights:={random_weights}", "device:=cpu",
                       "backend:=torch", "image_topik:=/cam/image_raw")
    try:
        node.wait_for_log("start-up: ready")
    finally:
        assert node.stop(signal.SIGINT) == 0, node.log()[-3000:]
    warnings = [line for line in node.log().splitlines() if "is not one of this node's" in line]
    assert len(warnings) == 1 and warnings[0].endswith(
        "parameter 'image_topik' is not one of this node's: ignored (did you mean 'image_topic'? fine if it is "
        "meant for other nodes, as a /** entry)"), warnings


# ----- launch file (runs only where launch_ros exists; its contents are checked everywhere) ----

LAUNCH_FILE = REPO_ROOT / "launch" / "lane_detector.launch.py"


def test_launch_file_compiles_and_takes_its_arguments_from_the_shared_table():
    import ast

    tree = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))
    compile(tree, str(LAUNCH_FILE), "exec")
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "lanesad_ros.ros.launch_args" for alias in node.names}
    assert {"ARGUMENTS", "executable", "output_remappings", "parameter_overrides"} <= imported
    assert "choices=" in LAUNCH_FILE.read_text(), "launch itself validates the choices"


def test_launch_arguments_match_the_node_and_the_manual():
    specs = {spec.name: spec for spec in PARAMETERS}
    arguments = {argument.name: argument for argument in ARGUMENTS}
    for argument in ARGUMENTS:
        if argument.parameter and argument.name in specs:
            spec = specs[argument.name]
            if isinstance(spec.default, bool):
                assert argument.choices == ("true", "false"), argument
            if spec.choices:
                assert argument.choices == spec.choices, argument
        assert "" not in (argument.choices or ()), f"{argument.name}: '' is no choice a user should see"
    assert "openvino" in arguments["backend"].choices and "openvino" in arguments["backend"].description
    assert arguments["use_sim_time"].choices == arguments["lifecycle"].choices == ("true", "false")
    assert arguments["use_sim_time"].default == "", "given only when set: the params file decides otherwise"
    manual = (REPO_ROOT / "docs" / "node.md").read_text()
    listed = manual[manual.index("Launch arguments:"):].split("\n\n")[0]
    for name in arguments:
        assert f"`{name}`" in listed, f"docs/node.md's launch argument list lacks {name}"


def test_manual_moves_every_output_with_lanes_topic():
    """docs/node.md names every output that ``lanes_topic`` moves, and its pip-path example remaps each
    (``lanes/model`` was missing from both)."""
    manual = (REPO_ROOT / "docs" / "node.md").read_text()
    listed = manual[manual.index("Launch arguments:"):].split("\n\n")[0]
    example = manual[manual.index("lane_detector --ros-args -r __ns:="):].split("```")[0]
    for suffix in OUTPUT_SUFFIXES:
        assert f"`<lanes_topic>{suffix}`" in listed, f"docs/node.md: lanes_topic does not list <lanes_topic>{suffix}"
        assert f"-r lanes{suffix}:=perception/lanes{suffix}" in example, f"docs/node.md: no remap of lanes{suffix}"


@pytest.mark.parametrize("values,problem", [
    ({"input_compressed": "maybe"}, "input_compressed:='maybe' must be one of: true, false"),
    ({"publish_debug_image": "yes"}, "publish_debug_image:='yes' must be one of: true, false"),
    ({"use_sim_time": "1"}, "use_sim_time:='1' must be one of: true, false"),
    ({"backend": "tensorrt"}, "backend:='tensorrt' must be one of: auto, torch, onnxruntime, openvino"),
])
def test_launch_arguments_reject_words_they_do_not_know(values, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        parameter_overrides(values)
    with pytest.raises(ValueError, match="lifecycle:='maybe' must be one of: true, false"):
        executable({"lifecycle": "maybe"})
    assert parameter_overrides({"input_compressed": "True", "use_sim_time": "false"}) == {
        "input_compressed": True, "use_sim_time": False}


def test_output_remappings_move_every_output_together():
    assert output_remappings("lanes") == []
    assert output_remappings("/perception/lanes/") == [
        ("lanes", "/perception/lanes"), ("lanes/debug_image", "/perception/lanes/debug_image"),
        ("lanes/markers", "/perception/lanes/markers"), ("lanes/points", "/perception/lanes/points"),
        ("lanes/model", "/perception/lanes/model")]


def test_launch_description_builds():
    pytest.importorskip("launch_ros", reason="launch_ros comes with ROS 2 distributions, not from PyPI")
    import importlib.util

    spec = importlib.util.spec_from_file_location("lane_detector_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {entity.name for entity in description.entities if hasattr(entity, "default_value")}
    assert {argument.name for argument in ARGUMENTS} <= names


# ----- Fast DDS with localhost-only discovery (docs/node.md: "Fast DDS and camera images") -------

def test_localhost_discovery_carries_camera_frames_with_the_launch_environment():
    """With ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST rmw_fastrtps ignores LARGE_DATA; the environment the
    launch file gives (the shipped large shared-memory profile) carries 2.9 MB best-effort frames."""
    env = {**ros_env(), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    env.update(node_environment(env, str(REPO_ROOT / "config")))
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(REPO_ROOT / "config" / "fastdds_localhost_frames.xml")
    probe = [sys.executable, str(Path(__file__).with_name("frame_probe.py"))]
    subscriber = subprocess.Popen([*probe, "sub", "20"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
    try:
        publisher = subprocess.run([*probe, "pub", "20"], env=env, capture_output=True, text=True, timeout=90)
        output = subscriber.communicate(timeout=60)[0]
    finally:
        subscriber.kill()
    assert publisher.returncode == 0, publisher.stdout + publisher.stderr
    received = int(re.search(r"received (\d+)", output).group(1))
    assert received >= 15, f"{received} of 20 frames arrived:\n{output}"


def test_launch_environment_adds_the_profile_only_for_localhost_discovery():
    config = "/opt/share/lanesad_ros/config"
    assert node_environment({}, config) == {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    assert node_environment({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}, config) == {
        "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    for localhost in ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, {"ROS_LOCALHOST_ONLY": "1"}):
        assert node_environment(localhost, config)["FASTDDS_DEFAULT_PROFILES_FILE"] == \
            f"{config}/fastdds_localhost_frames.xml"
    mine = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "FASTDDS_DEFAULT_PROFILES_FILE": "/my/profile.xml"}
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in node_environment(mine, config), "the user's own file stays"
