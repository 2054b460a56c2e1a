"""The launch file's arguments and what they turn into, without the launch libraries.

``launch/lane_detector.launch.py`` declares these arguments and hands the given values to
:func:`parameter_overrides`, :func:`output_remappings`, :func:`managed` and :func:`autostart`;
:func:`ros_arguments` turns the same values into the node's ``--ros-args`` for the pip path
(no launch_ros), so both start the same node the same way and the tests can check the
mapping where launch_ros is absent.

An argument that overrides a node parameter (``use_sim_time`` included) is passed to the node
only when given: left empty, the params file decides. launch checks the choices itself only
where the default is one of them (``lifecycle``, ``autostart``: launch rejects a default outside
its ``choices``, so an argument that may stay empty would have to list ``''`` as a valid option);
the others are checked by :func:`parameter_overrides`, whose error lists the real choices.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from lanesad_ros.ros.parameters import SPECS

BOOLEAN_CHOICES = ("true", "false")
LOCALHOST_PROFILE = "fastdds_localhost_frames.xml"  # in config/, see that file and docs/node.md


@dataclass(frozen=True)
class LaunchArgument:
    """One launch argument: ``parameter`` arguments override the node parameter of that name only
    when given (empty default: the params file decides); ``choices`` are the valid values."""

    name: str
    description: str
    default: str = ""
    choices: tuple[str, ...] | None = None
    parameter: bool = False

    @property
    def launch_choices(self) -> list[str] | None:
        """The choices handed to launch's DeclareLaunchArgument: only where the default is one of them."""
        return list(self.choices) if self.choices and self.default in self.choices else None


def _parameter_argument(name: str, description: str, choices: tuple[str, ...] | None = None) -> LaunchArgument:
    spec = SPECS.get(name)
    if spec is not None:
        choices = BOOLEAN_CHOICES if isinstance(spec.default, bool) else spec.choices or None
    if choices:
        description = f"{description} ({' | '.join(choices)}; empty: the params file decides)"
    return LaunchArgument(name, description, choices=choices, parameter=True)


ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("params_file", "node parameters, YAML keyed /**/lane_detector: ros__parameters: (applies in "
                   "any namespace); default: the installed config/lane_detector.yaml"),
    _parameter_argument("use_sim_time", "use /clock, e.g. for bag replay (false when the params file does not "
                        "set it either)", BOOLEAN_CHOICES),
    LaunchArgument("namespace", "namespace of the node and its relative topics"),
    LaunchArgument("lifecycle", "true: run lane_detector_lifecycle as a launch_ros LifecycleNode (managed node, "
                   "starts unconfigured; launch's ChangeState / OnStateTransition events drive it)",
                   default="false", choices=BOOLEAN_CHOICES),
    LaunchArgument("autostart", "true (with lifecycle:=true): configure, then activate the managed node at "
                   "start-up (the plain node always starts configured and active)",
                   default="false", choices=BOOLEAN_CHOICES),
    LaunchArgument("lanes_topic", "base name of the outputs: <lanes_topic>, <lanes_topic>/debug_image, "
                   "<lanes_topic>/markers, <lanes_topic>/points, <lanes_topic>/model move together",
                   default="lanes"),
    _parameter_argument("image_topic", "camera topic, sensor_msgs/Image (with input_compressed: "
                        "<image_topic>/compressed)"),
    _parameter_argument("input_compressed", "true: subscribe to <image_topic>/compressed"),
    _parameter_argument("weights", "weights .safetensors file (the shipped default when the params file leaves "
                        "it empty)"),
    _parameter_argument("device", "inference device"),
    _parameter_argument("backend", "inference backend"),
    _parameter_argument("publish_debug_image", "true: always publish <lanes_topic>/debug_image (else only while "
                        "subscribed)"),
)
ARGUMENT_NAMES = tuple(argument.name for argument in ARGUMENTS)
OUTPUT_SUFFIXES = ("", "/debug_image", "/markers", "/points", "/model")  # node topics: lanes, lanes/debug_image, ...


def parse_boolean(name: str, value: str) -> bool:
    """'true' / 'false' (any case) -> bool; anything else is an error naming the argument."""
    text = value.strip().lower()
    if text not in BOOLEAN_CHOICES:
        raise ValueError(f"launch argument {name}:={value!r} must be one of: {', '.join(BOOLEAN_CHOICES)}")
    return text == "true"


def parameter_overrides(values: dict[str, str]) -> dict[str, object]:
    """Node parameters from the given launch argument values (empty values left to the params file).

    Raises ValueError naming the argument for a boolean that is not true/false or a value
    outside a parameter's choices (launch's own ``choices`` check catches these first).
    """
    overrides: dict[str, object] = {}
    for argument in ARGUMENTS:
        value = values.get(argument.name, "")
        if not argument.parameter or value == "":
            continue
        if argument.choices == BOOLEAN_CHOICES:
            overrides[argument.name] = parse_boolean(argument.name, value)
        elif argument.choices and value not in argument.choices:
            raise ValueError(f"launch argument {argument.name}:={value!r} must be one of: "
                             f"{', '.join(argument.choices)}")
        else:
            overrides[argument.name] = value
    return overrides


def managed(values: dict[str, str]) -> bool:
    """lifecycle:=true: the managed node, started as a launch_ros LifecycleNode."""
    return parse_boolean("lifecycle", values.get("lifecycle") or "false")


def autostart(values: dict[str, str]) -> bool:
    """lifecycle:=true autostart:=true: the launch file configures the managed node, then activates it
    once configured (the plain node needs neither: it starts configured and active)."""
    return parse_boolean("autostart", values.get("autostart") or "false") and managed(values)


def executable(values: dict[str, str]) -> str:
    """The node executable these launch argument values start."""
    return "lane_detector_lifecycle" if managed(values) else "lane_detector"


def output_remappings(lanes_topic: str) -> list[tuple[str, str]]:
    """Remap rules moving every output to the base name ``lanes_topic`` (none for the default 'lanes')."""
    base = lanes_topic.rstrip("/") or "lanes"
    if base == "lanes":
        return []
    return [("lanes" + suffix, base + suffix) for suffix in OUTPUT_SUFFIXES]


def ros_arguments(values: dict[str, str]) -> list[str]:
    """The node's command-line ROS arguments for these launch argument values (the pip-path equivalent)."""
    args = ["--ros-args"]
    if values.get("params_file"):
        args += ["--params-file", values["params_file"]]
    if values.get("namespace"):
        args += ["-r", f"__ns:=/{values['namespace'].strip('/')}"]
    for source, target in output_remappings(values.get("lanes_topic", "lanes")):
        args += ["-r", f"{source}:={target}"]
    for name, value in parameter_overrides(values).items():
        args += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    return args


def node_environment(environ: Mapping[str, str], config_dir: str) -> dict[str, str]:
    """Environment the launch file adds to the node's: Fast DDS transports for camera-sized frames.

    LARGE_DATA always; with localhost-only discovery (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST or
    ROS_LOCALHOST_ONLY=1) rmw_fastrtps ignores it, so the shipped profile with a large
    shared-memory segment (``config_dir``/fastdds_localhost_frames.xml) is added unless the user
    already names a Fast DDS profiles file.
    """
    env = {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    localhost = (environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper() == "LOCALHOST"
                 or environ.get("ROS_LOCALHOST_ONLY", "").strip() == "1")
    if localhost and not environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = os.path.join(config_dir, LOCALHOST_PROFILE)
    return env
