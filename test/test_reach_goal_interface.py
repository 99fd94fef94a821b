"""ReachGoal over real DDS: a client here, the server in another process."""

import os
from pathlib import Path
import subprocess
import sys
import time

import pytest
import rclpy
from rclpy.action import ActionClient
from rclpy.node import Node
from sensor_msgs.msg import Image

from craik_interfaces.action import ReachGoal

SERVER = Path(__file__).with_name('reach_goal_echo_server.py')


@pytest.fixture
def ros_node():
    rclpy.init()
    node = Node('reach_goal_test_client')
    yield node
    node.destroy_node()
    rclpy.shutdown()


@pytest.fixture
def echo_server():
    proc = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == 'ready'
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        # Fast DDS may linger while it flushes reliable writers; the test is over either way.
        proc.kill()
        proc.wait(timeout=10)


def _wait(node: Node, future, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while not future.done() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    assert future.done(), 'timed out waiting for the action server'
    return future.result()


def _image(width: int, height: int) -> Image:
    img = Image(width=width, height=height, encoding='rgb8', step=3 * width)
    img.data = bytes(3 * width * height)
    return img


def test_status_constants_are_distinct():
    names = [n for n in dir(ReachGoal.Result) if n.startswith('STATUS_')]
    assert {'STATUS_REACHED', 'STATUS_MAX_STEPS', 'STATUS_TIMEOUT', 'STATUS_CANCELED',
            'STATUS_REJECTED_INPUT', 'STATUS_ROBOT_FAULT'} <= set(names)
    assert len({getattr(ReachGoal.Result, n) for n in names}) == len(names)
    # A result left at its default value (a server that died mid-goal) never reads as success.
    assert ReachGoal.Result().status == ReachGoal.Result.STATUS_UNKNOWN != \
        ReachGoal.Result.STATUS_REACHED


def test_client_gets_feedback_and_result_across_processes(echo_server, ros_node):
    client = ActionClient(ros_node, ReachGoal, '/planner/reach_goal')
    assert client.wait_for_server(timeout_sec=30.0), 'server not discovered over DDS'
    feedback: list = []
    goal = ReachGoal.Goal(goal_image=_image(64, 48), max_steps=3)
    handle = _wait(ros_node, client.send_goal_async(
        goal, feedback_callback=lambda msg: feedback.append(msg.feedback)))
    assert handle.accepted
    wrapped = _wait(ros_node, handle.get_result_async())
    result = wrapped.result
    assert result.status == ReachGoal.Result.STATUS_REACHED
    assert result.steps == 3
    assert result.message == '64x48 rgb8'
    assert [f.step for f in feedback] == [1, 2, 3]
    assert feedback[-1].commanded_action[0] == pytest.approx(0.03)


def test_rejected_goal_carries_status_and_reason(echo_server, ros_node):
    client = ActionClient(ros_node, ReachGoal, '/planner/reach_goal')
    assert client.wait_for_server(timeout_sec=30.0)
    handle = _wait(ros_node, client.send_goal_async(ReachGoal.Goal(max_steps=2)))
    result = _wait(ros_node, handle.get_result_async()).result
    assert result.status == ReachGoal.Result.STATUS_REJECTED_INPUT
    assert 'empty' in result.message
