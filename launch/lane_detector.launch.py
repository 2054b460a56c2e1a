"""Launch the lane detector node (ROS 2 distributions with launch_ros).

    ros2 launch lanesad_ros lane_detector.launch.py image_topic:=/camera/image_raw device:=cuda

Parameters come from ``params_file`` (default: the installed config/lane_detector.yaml);
the arguments below override single parameters on top of it only when given. Fast DDS
drops camera-sized best-effort samples with its default UDP transport, so the node runs
with FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (the camera driver's process needs it as well:
export it in the shell to cover both).

On the pip path (no launch_ros) the same node starts from the same file:
    lane_detector --ros-args --params-file config/lane_detector.yaml -p image_topic:=/cam
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# Arguments that override one node parameter when given (empty: the params file decides).
PARAMETER_ARGUMENTS = {
    "image_topic": "camera topic, sensor_msgs/Image (with input_compressed: <image_topic>/compressed)",
    "input_compressed": "true: subscribe to <image_topic>/compressed",
    "weights": "weights .safetensors file (the shipped default when the params file leaves it empty)",
    "device": "auto | cuda | cpu",
    "backend": "auto | torch | onnxruntime",
    "publish_debug_image": "true: always publish lanes/debug_image (else only while subscribed)",
}
BOOLEAN_PARAMETERS = ("input_compressed", "publish_debug_image")


def _node(context):
    overrides = {}
    for name in PARAMETER_ARGUMENTS:
        value = LaunchConfiguration(name).perform(context)
        if value != "":
            overrides[name] = value.lower() in ("true", "1", "yes") if name in BOOLEAN_PARAMETERS else value
    overrides["use_sim_time"] = LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1", "yes")
    return [Node(
        package="lanesad_ros",
        executable="lane_detector",
        name="lane_detector",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("lanes", LaunchConfiguration("lanes_topic"))],
        additional_env={"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
    )]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("lanesad_ros"), "config", "lane_detector.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="node parameters (YAML: lane_detector: ros__parameters: ...)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("lanes_topic", default_value="lanes", description="remap the LaneArray output"),
        *[DeclareLaunchArgument(name, default_value="", description=text)
          for name, text in PARAMETER_ARGUMENTS.items()],
        OpaqueFunction(function=_node),
    ])
