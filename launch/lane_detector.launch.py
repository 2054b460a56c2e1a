"""Launch the lane detector node (ROS 2 distributions with launch_ros).

    ros2 launch lanesad_ros lane_detector.launch.py image_topic:=/camera/image_raw device:=cuda
    ros2 launch lanesad_ros lane_detector.launch.py namespace:=car1 params_file:=my.yaml lanes_topic:=perception/lanes
    ros2 launch lanesad_ros lane_detector.launch.py lifecycle:=true   # managed node, starts unconfigured
    ros2 launch lanesad_ros lane_detector.launch.py lifecycle:=true autostart:=true   # ... configured + activated

Parameters come from ``params_file`` (default: the installed config/lane_detector.yaml, keyed
``/**/lane_detector`` so it applies in any namespace); the arguments below override single
parameters on top of it only when given (``use_sim_time`` too: the file's value stands unless
the argument is set). Boolean arguments take true or false, backend and device their listed
choices; anything else stops the launch with an error naming the argument and the valid values.
``lanes_topic`` is the base name of every output: lanes, lanes/debug_image, lanes/markers,
lanes/points and lanes/model move together. The arguments, their choices and their mapping live in
lanesad_ros.ros.launch_args (the backend/device choices are the node's own), which is what
`ros2 launch ... --show-args` lists.

``lifecycle:=true`` starts the managed node as a launch_ros ``LifecycleNode``, so a launch file
that includes this one can drive it with launch's lifecycle events (``ChangeState`` with
``matches_node_name('/<namespace>/lane_detector')``, ``OnStateTransition``), as well as
``ros2 lifecycle set``. ``autostart:=true`` configures it at start-up and activates it once
configured, with those same events (launch_ros's own ``autostart`` exists only from Jazzy's
launch_ros 0.26.7 on); a later deactivate is not undone.

Ctrl-C: the node ends quietly with status 0; a second Ctrl-C during its teardown is ignored,
and launch's escalation (SIGTERM after ``sigterm_timeout``, then SIGKILL) ends a teardown that
hangs (lanesad_ros.ros.entry).

Fast DDS drops camera-sized best-effort samples with its default UDP transport, so the node
runs with FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (the camera driver's process needs it as
well: export it in the shell to cover both). With ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
rmw_fastrtps ignores LARGE_DATA; the node then also gets FASTDDS_DEFAULT_PROFILES_FILE =
the installed config/fastdds_localhost_frames.xml (a large shared-memory segment), which the
camera driver needs as well (docs/node.md, "Fast DDS and camera images").

On the pip path (no launch_ros) the same node starts from the same file:
    lane_detector --ros-args --params-file config/lane_detector.yaml -p image_topic:=/cam
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from lanesad_ros.ros.launch_args import (
    ARGUMENTS,
    autostart,
    executable,
    managed,
    node_environment,
    output_remappings,
    parameter_overrides,
)


def _share() -> str:
    return get_package_share_directory("lanesad_ros")


def _node(context):
    values = {argument.name: LaunchConfiguration(argument.name).perform(context) for argument in ARGUMENTS}
    node_kwargs = dict(
        package="lanesad_ros",
        executable=executable(values),
        name="lane_detector",
        namespace=values["namespace"],
        output="screen",
        emulate_tty=True,
        parameters=[values["params_file"], parameter_overrides(values)],
        remappings=output_remappings(values["lanes_topic"]),
        additional_env=node_environment(os.environ, os.path.join(_share(), "config")),
    )
    if not managed(values):
        return [Node(**node_kwargs)]
    node = LifecycleNode(**node_kwargs)
    if not autostart(values):
        return [node]

    def change_state(transition_id: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))
    # Activate once configured (configuring -> inactive), once only: a later deactivate stays.
    activate_when_configured = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[change_state(Transition.TRANSITION_ACTIVATE)], handle_once=True))
    return [node, activate_when_configured, change_state(Transition.TRANSITION_CONFIGURE)]


def generate_launch_description():
    default_params = os.path.join(_share(), "config", "lane_detector.yaml")
    declared = []
    for argument in ARGUMENTS:
        default = default_params if argument.name == "params_file" else argument.default
        declared.append(DeclareLaunchArgument(argument.name, default_value=default, description=argument.description,
                                              choices=argument.launch_choices))
    return LaunchDescription([*declared, OpaqueFunction(function=_node)])
