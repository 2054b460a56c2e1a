"""Launch the lane detector node (ROS 2 distributions with launch_ros).

    ros2 launch lanesad_ros lane_detector.launch.py image_topic:=/camera/image_raw device:=cuda
    ros2 launch lanesad_ros lane_detector.launch.py namespace:=car1 params_file:=my.yaml lanes_topic:=perception/lanes
    ros2 launch lanesad_ros lane_detector.launch.py lifecycle:=true   # managed node: configure/activate via lifecycle

Parameters come from ``params_file`` (default: the installed config/lane_detector.yaml, keyed
``/**/lane_detector`` so it applies in any namespace); the arguments below override single
parameters on top of it only when given. Boolean arguments take true or false (launch
rejects anything else). ``lanes_topic`` is the base name of every output: lanes,
lanes/debug_image, lanes/markers and lanes/points move together. The arguments, their
choices and their mapping live in lanesad_ros.ros.launch_args (the backend/device choices
are the node's own), which is what `ros2 launch ... --show-args` lists.

Fast DDS drops camera-sized best-effort samples with its default UDP transport, so the node
runs with FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (the camera driver's process needs it as
well: export it in the shell to cover both). With ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
rmw_fastrtps ignores LARGE_DATA; the node then also gets FASTDDS_DEFAULT_PROFILES_FILE =
the installed config/fastdds_localhost_frames.xml (a large shared-memory segment), which the
camera driver needs as well (README, "Fast DDS and camera images").

On the pip path (no launch_ros) the same node starts from the same file:
    lane_detector --ros-args --params-file config/lane_detector.yaml -p image_topic:=/cam
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from lanesad_ros.ros.launch_args import (
    ARGUMENTS,
    executable,
    node_environment,
    output_remappings,
    parameter_overrides,
)


def _share() -> str:
    return get_package_share_directory("lanesad_ros")


def _node(context):
    values = {argument.name: LaunchConfiguration(argument.name).perform(context) for argument in ARGUMENTS}
    return [Node(
        package="lanesad_ros",
        executable=executable(values),
        name="lane_detector",
        namespace=values["namespace"],
        output="screen",
        emulate_tty=True,
        parameters=[values["params_file"], parameter_overrides(values)],
        remappings=output_remappings(values["lanes_topic"]),
        additional_env=node_environment(os.environ, os.path.join(_share(), "config")),
    )]


def generate_launch_description():
    default_params = os.path.join(_share(), "config", "lane_detector.yaml")
    declared = []
    for argument in ARGUMENTS:
        default = default_params if argument.name == "params_file" else argument.default
        declared.append(DeclareLaunchArgument(argument.name, default_value=default, description=argument.description,
                                              choices=list(argument.choices) if argument.choices else None))
    return LaunchDescription([*declared, OpaqueFunction(function=_node)])
