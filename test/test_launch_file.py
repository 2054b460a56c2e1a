"""launch/lane_detector.launch.py as launch runs it, against recording stand-ins for launch / launch_ros
(test/fake_launch.py: they are not on PyPI): what each argument turns into (issue 22)."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("lifecycle_msgs", reason="lifecycle_msgs comes with the ROS 2 wheels (make setup)")

from fake_launch import (  # noqa: E402
    DeclareLaunchArgument,
    EmitEvent,
    LifecycleNode,
    Node,
    OnStateTransition,
    RegisterEventHandler,
    launch,
    load_launch_file,
)
from lifecycle_msgs.msg import Transition  # noqa: E402

from conftest import REPO_ROOT  # noqa: E402
from lanesad_ros.ros.launch_args import ARGUMENT_NAMES, ros_arguments  # noqa: E402
from lanesad_ros.ros.parameters import SPECS  # noqa: E402

LAUNCH_FILE = REPO_ROOT / "launch" / "lane_detector.launch.py"
SHARE = "/opt/ros/jazzy/share/lanesad_ros"


@pytest.fixture
def description(monkeypatch):
    return load_launch_file(LAUNCH_FILE, monkeypatch, SHARE).generate_launch_description()


def test_every_argument_is_declared_with_only_its_real_choices(description):
    """Issue 22: launch listed '' as a valid option ("Valid options are: ['', 'true', 'false']")."""
    declared = {entity.name: entity for entity in description.entities if isinstance(entity, DeclareLaunchArgument)}
    assert tuple(declared) == ARGUMENT_NAMES
    assert all("" not in (argument.choices or ()) for argument in declared.values())
    assert declared["lifecycle"].choices == declared["autostart"].choices == ["true", "false"]
    assert declared["params_file"].default_value == f"{SHARE}/config/lane_detector.yaml"
    with pytest.raises(RuntimeError, match=re.escape("Valid options are: ['true', 'false']")):
        launch(description, {"lifecycle": "maybe"})


@pytest.mark.parametrize("given,problem", [
    ({"use_sim_time": "yes"}, "use_sim_time:='yes' must be one of: true, false"),
    ({"input_compressed": "1"}, "input_compressed:='1' must be one of: true, false"),
    ({"backend": "tensorrt"}, f"backend:='tensorrt' must be one of: {', '.join(SPECS['backend'].choices)}"),
    ({"device": "gpu"}, f"device:='gpu' must be one of: {', '.join(SPECS['device'].choices)}"),
    ({"lifecycle": "true", "autostart": "on"}, "Valid options are: ['true', 'false']"),
])
def test_a_bad_value_stops_the_launch_naming_the_argument_and_the_real_choices(description, given, problem):
    with pytest.raises((ValueError, RuntimeError), match=re.escape(problem)):
        launch(description, given)


def test_use_sim_time_reaches_the_node_only_when_given(description):
    """Issue 22.2: the argument's default 'false' overrode use_sim_time from the params file."""
    (node,) = launch(description, {"params_file": "/my/params.yaml"})
    assert node.kwargs["parameters"] == ["/my/params.yaml", {}], "the params file decides"
    for value, expected in (("true", True), ("false", False)):
        (node,) = launch(description, {"use_sim_time": value})
        assert node.kwargs["parameters"][1] == {"use_sim_time": expected}
    assert not any("use_sim_time" in arg for arg in ros_arguments({"params_file": "/my/params.yaml"})), "pip path"


def test_plain_node_by_default(description):
    (node,) = launch(description, {"autostart": "true"})  # the plain node is configured and active anyway
    assert type(node) is Node and node.executable == "lane_detector"
    assert node.kwargs["name"] == "lane_detector" and node.kwargs["package"] == "lanesad_ros"


def test_lifecycle_starts_a_launch_ros_lifecycle_node(description):
    """Issue 22.3: lifecycle:=true started a plain launch_ros Node, which launch's ChangeState /
    OnStateTransition events cannot drive; it starts unconfigured unless autostart:=true."""
    (node,) = launch(description, {"lifecycle": "true", "namespace": "car1"})
    assert isinstance(node, LifecycleNode) and node.executable == "lane_detector_lifecycle"
    assert node.kwargs["name"] == "lane_detector" and node.kwargs["namespace"] == "car1"


def test_autostart_configures_then_activates_once_configured(description):
    node, register, configure = launch(description, {"lifecycle": "true", "autostart": "true"})
    assert isinstance(node, LifecycleNode)
    assert isinstance(configure, EmitEvent) and configure.event.transition_id == Transition.TRANSITION_CONFIGURE
    assert configure.event.lifecycle_node_matcher(node) and not configure.event.lifecycle_node_matcher(object())
    assert isinstance(register, RegisterEventHandler)  # registered before the configure request is emitted
    handler = register.event_handler
    assert isinstance(handler, OnStateTransition) and handler.target_lifecycle_node is node
    assert (handler.start_state, handler.goal_state) == ("configuring", "inactive"), "configure succeeded"
    assert handler.handle_once, "a later deactivate (also -> inactive) is not undone"
    (activate,) = handler.entities
    assert activate.event.transition_id == Transition.TRANSITION_ACTIVATE
    assert activate.event.lifecycle_node_matcher(node)
