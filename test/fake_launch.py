"""A recording stand-in for the parts of launch / launch_ros that launch/lane_detector.launch.py uses.

launch and launch_ros come with ROS 2 distributions, not from PyPI (ros-on-pip.md). These classes
take the same keyword arguments as the real ones (ros2/launch and ros2/launch_ros, Humble to
Rolling: DeclareLaunchArgument, OpaqueFunction, EmitEvent, RegisterEventHandler, matches_action,
LaunchConfiguration, Node, LifecycleNode, OnStateTransition, ChangeState), so a misspelt or
missing argument fails here as it would there, and keep what they were given. Two behaviours
are launch's own and copied: DeclareLaunchArgument rejects a default outside its ``choices``
when built, and a given value outside them when executed ("Valid options are: [...]").
:func:`launch` runs a description the way LaunchService does for these actions: declarations
first (given values, else defaults), then the OpaqueFunction, whose actions it returns.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

from lifecycle_msgs.msg import Transition

ROS_NODE_OPTIONS = {"package", "name", "namespace", "exec_name", "parameters", "remappings", "ros_arguments",
                    "arguments"}
EXECUTE_PROCESS_OPTIONS = {"output", "emulate_tty", "additional_env", "env", "cwd", "prefix", "respawn",
                           "respawn_delay", "sigterm_timeout", "sigkill_timeout", "condition", "on_exit"}


class LaunchContext:
    def __init__(self, launch_configurations: dict[str, str]):
        self.launch_configurations = dict(launch_configurations)


class LaunchDescription:
    def __init__(self, initial_entities=None):
        self.entities = list(initial_entities or [])


class DeclareLaunchArgument:
    def __init__(self, name: str, *, default_value=None, description=None, choices=None):
        if choices is not None:
            if len(choices) == 0:
                raise RuntimeError("Provided choices arg is empty. Use None to ignore the choice list.")
            if default_value is not None and default_value not in choices:
                raise RuntimeError(f'Provided default_value "{default_value}" is not in provided choices "{choices}".')
        self.name, self.default_value, self.description, self.choices = name, default_value, description, choices

    def execute(self, context: LaunchContext) -> None:
        if self.name not in context.launch_configurations:
            if self.default_value is None:
                raise RuntimeError(f'Required launch argument "{self.name}" was not provided.')
            context.launch_configurations[self.name] = self.default_value
        value = context.launch_configurations[self.name]
        if self.choices is not None and value not in self.choices:
            raise RuntimeError(f'Argument "{self.name}" provided value "{value}" is not valid. '
                               f"Valid options are: {self.choices}")


class LaunchConfiguration:
    def __init__(self, variable_name: str, *, default=None):
        self.variable_name = variable_name

    def perform(self, context: LaunchContext) -> str:
        return context.launch_configurations[self.variable_name]


class OpaqueFunction:
    def __init__(self, *, function, args=None, kwargs=None):
        self.function = function


class EmitEvent:
    def __init__(self, *, event):
        self.event = event


class RegisterEventHandler:
    def __init__(self, event_handler):
        self.event_handler = event_handler


def matches_action(target_action):
    return lambda action: action is target_action


class Node:
    def __init__(self, *, executable: str, **kwargs: Any):
        unknown = set(kwargs) - ROS_NODE_OPTIONS - EXECUTE_PROCESS_OPTIONS
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {sorted(unknown)}")
        self.executable, self.kwargs = executable, kwargs


class LifecycleNode(Node):
    def __init__(self, *, name, namespace, **kwargs: Any):
        super().__init__(name=name, namespace=namespace, **kwargs)


class OnStateTransition:
    def __init__(self, *, entities, target_lifecycle_node=None, transition=None, start_state=None, goal_state=None,
                 matcher=None, handle_once: bool = False):
        self.entities, self.target_lifecycle_node, self.handle_once = entities, target_lifecycle_node, handle_once
        self.transition, self.start_state, self.goal_state = transition, start_state, goal_state


class ChangeState:
    def __init__(self, *, lifecycle_node_matcher, transition_id: int):
        valid = {getattr(Transition, name) for name in dir(Transition) if name.startswith("TRANSITION_")}
        if transition_id not in valid:
            raise ValueError(f"given transition_id of '{transition_id}'")
        self.lifecycle_node_matcher, self.transition_id = lifecycle_node_matcher, transition_id


MODULES = {
    "launch": {"LaunchDescription": LaunchDescription},
    "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument, "OpaqueFunction": OpaqueFunction,
                       "EmitEvent": EmitEvent, "RegisterEventHandler": RegisterEventHandler},
    "launch.events": {"matches_action": matches_action},
    "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
    "launch_ros": {},
    "launch_ros.actions": {"Node": Node, "LifecycleNode": LifecycleNode},
    "launch_ros.event_handlers": {"OnStateTransition": OnStateTransition},
    "launch_ros.events": {},
    "launch_ros.events.lifecycle": {"ChangeState": ChangeState},
}


def load_launch_file(path: Path, monkeypatch, share_dir: str = "/opt/ros/share/lanesad_ros") -> types.ModuleType:
    """Import the launch file against these fakes (and a fixed package share folder)."""
    for name, attributes in MODULES.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)
    import ament_index_python.packages

    monkeypatch.setattr(ament_index_python.packages, "get_package_share_directory", lambda package: share_dir)
    spec = importlib.util.spec_from_file_location("lane_detector_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch(description: LaunchDescription, given: dict[str, str]) -> list:
    """The actions the description's OpaqueFunction returns for these ``name:=value`` arguments."""
    context = LaunchContext(given)
    actions = []
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            entity.execute(context)
        else:
            actions.extend(entity.function(context))
    return actions
