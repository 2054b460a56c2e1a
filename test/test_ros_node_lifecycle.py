"""lane_detector_lifecycle: the managed node driven through the standard lifecycle services."""
from __future__ import annotations

import contextlib
import shutil
import signal
import time

import pytest

from rosutil import require_ros_messages, ros_env

require_ros_messages()

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402

from node_harness import LOW_THRESHOLDS, NodeProcess, RosClient, image_message, synthetic_frames  # noqa: E402,E501

TOPIC = "/lifecycle_camera/image_raw"
NS = "/lifecycle_test"  # its own namespace: other lane_detector nodes on this machine never answer for it


@pytest.fixture(scope="module")
def managed(domain_id, random_weights, tmp_path_factory):
    node = NodeProcess(ros_env(domain_id), tmp_path_factory.mktemp("lifecycle") / "node.log",
                       f"weights:={random_weights}", "device:=cpu", "backend:=torch", f"image_topic:={TOPIC}",
                       *LOW_THRESHOLDS, executable="lane_detector_lifecycle", ros_args=("-r", f"__ns:={NS}"))
    client = RosClient(domain_id, TOPIC, namespace=NS)
    change = client.node.create_client(ChangeState, f"{NS}/lane_detector/change_state")
    get = client.node.create_client(GetState, f"{NS}/lane_detector/get_state")
    try:
        node.wait_discovered(lambda: change.service_is_ready() and get.service_is_ready())
        yield node, client, change, get
    finally:
        try:
            node.stop(signal.SIGKILL if node.alive() else None)  # before our participant closes
        finally:
            client.close()


def call(client, service, request, timeout: float = 60.0):
    return client.wait_future(service.call_async(request), timeout)


def transition(client, change, transition_id: int) -> bool:
    return call(client, change, ChangeState.Request(transition=Transition(id=transition_id))).success


def state(client, get) -> int:
    return call(client, get, GetState.Request()).current_state.id


def back_to_unconfigured(client, change, get) -> None:
    """Deactivate and clean up as far as needed: a failed test leaves the module's node as it found it
    (its rerun, dds_reruns, starts from there)."""
    for step in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP):
        if state(client, get) != State.PRIMARY_STATE_UNCONFIGURED:
            transition(client, change, step)


def test_new_weights_between_cleanup_and_configure(managed, random_weights, tmp_path):
    """Issue 21.8: while configured a weights change is refused with what to do; after cleanup it is
    taken, and the next configure loads the new file."""
    node, client, change, get = managed
    second = tmp_path / "enet_sad_second.safetensors"
    shutil.copyfile(random_weights, second)
    shutil.copyfile(random_weights.with_suffix(".json"), second.with_suffix(".json"))
    frame = synthetic_frames(1, 640, 360)[0]
    assert state(client, get) == State.PRIMARY_STATE_UNCONFIGURED
    try:
        assert transition(client, change, Transition.TRANSITION_CONFIGURE)
        for configured in (State.PRIMARY_STATE_INACTIVE, State.PRIMARY_STATE_ACTIVE):
            (refused,) = client.set_parameters(f"{NS}/lane_detector", weights=str(second))
            assert not refused.successful and refused.reason == (
                "weights is read-only while the node is configured: it is read at start-up; deactivate and clean "
                "up the node (ros2 lifecycle set <node> cleanup), set it, then configure: the new value is read then")
            if configured == State.PRIMARY_STATE_INACTIVE:
                assert transition(client, change, Transition.TRANSITION_ACTIVATE)
        assert transition(client, change, Transition.TRANSITION_DEACTIVATE)
        assert transition(client, change, Transition.TRANSITION_CLEANUP)
        (taken,) = client.set_parameters(f"{NS}/lane_detector", weights=str(second))
        assert taken.successful, taken.reason
        assert transition(client, change, Transition.TRANSITION_CONFIGURE)
        assert transition(client, change, Transition.TRANSITION_ACTIVATE)
        client.wait_ready(node, restarts=0)
        assert client.request(image_message(frame)).weights_name == second.name
    finally:
        back_to_unconfigured(client, change, get)
        client.set_parameters(f"{NS}/lane_detector", weights=str(random_weights))
    assert state(client, get) == State.PRIMARY_STATE_UNCONFIGURED


def test_transitions_load_run_pause_and_release(managed):
    node, client, change, get = managed
    frame = synthetic_frames(1, 640, 360)[0]
    assert state(client, get) == State.PRIMARY_STATE_UNCONFIGURED
    configured_before = node.log().count("configured: enet_sad")
    assert client.node.count_publishers(f"{NS}/lanes") == 0 and client.publisher.get_subscription_count() == 0

    try:
        assert transition(client, change, Transition.TRANSITION_CONFIGURE)  # loads weights + backend
        assert state(client, get) == State.PRIMARY_STATE_INACTIVE
        assert "configured: enet_sad on torch-cpu" in node.log()
        assert client.node.count_publishers(f"{NS}/lanes") == 0 and client.publisher.get_subscription_count() == 0

        for _ in range(2):  # activate, work, deactivate: twice on one loaded model
            assert transition(client, change, Transition.TRANSITION_ACTIVATE)
            assert state(client, get) == State.PRIMARY_STATE_ACTIVE
            client.wait_ready(node, restarts=0)
            assert client.request(image_message(frame)).image_width == 640
            assert transition(client, change, Transition.TRANSITION_DEACTIVATE)
            assert state(client, get) == State.PRIMARY_STATE_INACTIVE
            deadline = time.monotonic() + 10
            while client.publisher.get_subscription_count() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.publisher.get_subscription_count() == 0, "deactivated: the image is not subscribed"
        assert node.log().count("configured: enet_sad") == configured_before + 1, "deactivate kept the model loaded"

        assert transition(client, change, Transition.TRANSITION_CLEANUP)
        assert state(client, get) == State.PRIMARY_STATE_UNCONFIGURED
        assert "cleaned up: model released" in node.log()
        assert transition(client, change, Transition.TRANSITION_CONFIGURE)  # and loads again
        assert transition(client, change, Transition.TRANSITION_ACTIVATE)
        client.wait_ready(node, restarts=0)
        assert client.request(image_message(frame)).image_width == 640
    except BaseException:
        with contextlib.suppress(AssertionError):  # the test's own failure is the one to report
            back_to_unconfigured(client, change, get)
        raise
    assert node.alive() and "Traceback" not in node.log()
    assert node.stop(signal.SIGINT) == 0, node.log()[-3000:]
    assert "Traceback" not in node.log()
