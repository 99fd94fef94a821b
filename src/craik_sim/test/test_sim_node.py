"""The `sim` node: RealSense topics, ground truth, reset service; franky moves the gripper.

The node runs in a process of its own, as a launcher runs it: franky-sim's 1 kHz protocol loop
is Python, and inside the test process (hundreds of earlier tests' objects for the garbage
collector, the probe's image callbacks) it missed libfranka's 1 s UDP deadline on a loaded
2-core CI machine.
"""

from collections import deque
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
franky = pytest.importorskip('franky')

from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from craik_interfaces.msg import GroundTruth  # noqa: E402
from craik_interfaces.srv import ResetEpisode  # noqa: E402
from craik_sim.calibration import default_calibration_path, load_calibration  # noqa: E402
from craik_sim.sim_node import (  # noqa: E402
    COLOR_INFO_TOPIC,
    COLOR_TOPIC,
    DEPTH_INFO_TOPIC,
    DEPTH_TOPIC,
    GROUND_TRUTH_TOPIC,
    RESET_SERVICE,
)

HOSTNAME = '127.0.0.1'


@pytest.fixture(scope='module')
def graph(module_node_process):
    sim = module_node_process('craik_sim.sim_node', stop_timeout_s=60.0, hostname=HOSTNAME)
    rclpy.init()
    probe = rclpy.create_node('sim_probe')
    # Bounded: a few seconds of 640x480 frames, not the whole module's.
    received = {name: deque(maxlen=30) for name in ('color', 'depth', 'info', 'depth_info', 'gt')}
    streams = {'color': (Image, COLOR_TOPIC, qos_profile_sensor_data),
               'depth': (Image, DEPTH_TOPIC, qos_profile_sensor_data),
               'info': (CameraInfo, COLOR_INFO_TOPIC, qos_profile_sensor_data),
               'depth_info': (CameraInfo, DEPTH_INFO_TOPIC, qos_profile_sensor_data),
               'gt': (GroundTruth, GROUND_TRUTH_TOPIC, 10)}
    for name, (msg_type, topic, qos) in streams.items():
        probe.create_subscription(msg_type, topic, lambda m, q=received[name]: q.append(m), qos)
    client = probe.create_client(ResetEpisode, RESET_SERVICE)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert client.wait_for_service(timeout_sec=60.0), sim.log()
        yield sim, client, received
    finally:
        executor.shutdown()
        probe.destroy_node()
        rclpy.shutdown()
        sim.stop()


def _wait(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _call(client, **fields):
    request = ResetEpisode.Request(**fields)
    future = client.call_async(request)
    assert _wait(future.done, 30.0)
    return future.result()


def _image(msg):
    if msg.encoding == 'rgb8':
        return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
    return np.frombuffer(bytes(msg.data), np.uint16).reshape(msg.height, msg.width)


@pytest.mark.slow
def test_topics_reset_and_franky_motion(graph):
    sim, client, received = graph
    assert _wait(lambda: all(len(v) >= 3 for v in received.values()), 30.0), sim.log()
    color, depth = received['color'][-1], received['depth'][-1]
    info = received['info'][-1]
    assert color.encoding == 'rgb8' and (color.width, color.height) == (640, 480)
    assert depth.encoding == '16UC1' and depth.header.frame_id == 'camera_color_optical_frame'
    assert color.header.frame_id == 'camera_color_optical_frame'
    stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in list(received['color'])}
    assert any((m.header.stamp.sec, m.header.stamp.nanosec) in stamps
               for m in list(received['depth']))
    assert info.k[0] == pytest.approx(615.0) and info.k[4] == pytest.approx(615.0)
    assert 300 < np.median(_image(depth)[_image(depth) > 0]) < 3000  # millimetres

    bad = _call(client, task='fly', seed=0)
    assert not bad.success and 'unknown task' in bad.message
    bad = _call(client, task='reach', seed=-3)
    assert not bad.success and 'seed' in bad.message

    first = _call(client, task='push', seed=7)
    again = _call(client, task='push', seed=7)
    other = _call(client, task='push', seed=8)
    assert first.success and again.success and other.success
    assert first.goal_image.encoding == 'rgb8' and first.goal_depth.encoding == '16UC1'
    np.testing.assert_array_equal(_image(first.goal_image), _image(again.goal_image))
    assert first.goal_object_position != other.goal_object_position
    assert _wait(lambda: received['gt'][-1].task == 'push' and received['gt'][-1].seed == 8)

    # franky drives the simulated FR3 at 127.0.0.1; the gripper moves in the published image.
    robot = franky.Robot('127.0.0.1', realtime_config=franky.RealtimeConfig.Ignore)
    robot.relative_dynamics_factor = 0.1
    time.sleep(0.3)
    before_gt = received['gt'][-1]
    before = _image(received['color'][-1]).astype(int)
    robot.move(franky.CartesianMotion(franky.Affine(np.array([0.0, 0.1, 0.0])),
                                      franky.ReferenceType.Relative))  # EE +y = base -y
    time.sleep(0.8)
    after_gt = received['gt'][-1]
    after = _image(received['color'][-1]).astype(int)
    assert after_gt.ee_pose.position.y < before_gt.ee_pose.position.y - 0.08
    cam = load_calibration(default_calibration_path())  # the node's default
    pts = np.array([[p.x, p.y, p.z] for p in (before_gt.ee_pose.position,
                                               after_gt.ee_pose.position)])
    (u0, v0), (u1, v1) = cam.project(pts)
    assert abs(u1 - u0) + abs(v1 - v0) > 30  # the gripper moved across the image
    for u, v in ((u0, v0), (u1, v1)):
        patch = np.s_[max(int(v) - 30, 0):int(v) + 30, max(int(u) - 30, 0):int(u) + 30]
        assert np.abs(after[patch] - before[patch]).mean() > 5


def test_the_camera_pose_is_latched_and_follows_the_episode(graph):
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from craik_sim.scene import SceneConfig, VariationConfig
    from craik_sim.sim_node import CAMERA_POSE_TOPIC
    from craik_sim.tasks import sample_episode

    _, client, _ = graph
    calibration = load_calibration(default_calibration_path())
    response = _call(client, task='reach', seed=77, vary_camera_pose=True)
    assert response.success, response.message
    expected = sample_episode('reach', 77, SceneConfig(), calibration,
                              VariationConfig(camera_jitter=True)).appearance.camera
    # A subscriber that comes late still gets the pose (transient local), and it is the
    # episode's moved camera, published before the reset returned.
    late = rclpy.create_node('late_pose_probe')
    poses = []
    late.create_subscription(PoseStamped, CAMERA_POSE_TOPIC, poses.append,
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                        durability=DurabilityPolicy.TRANSIENT_LOCAL))
    try:
        end = time.monotonic() + 10.0
        while not poses and time.monotonic() < end:
            rclpy.spin_once(late, timeout_sec=0.1)
        assert poses, 'no latched camera pose'
        p = poses[-1].pose
        assert poses[-1].header.frame_id == 'fr3_link0'
        assert [p.position.x, p.position.y, p.position.z] == pytest.approx(
            list(expected.translation), abs=1e-6)
        assert np.linalg.norm(np.array(expected.translation)
                              - np.array(calibration.translation)) > 1e-3
    finally:
        late.destroy_node()


def _set(probe_client, **values):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    request = SetParameters.Request(
        parameters=[Parameter(name, value=value).to_parameter_msg()
                    for name, value in values.items()])
    future = probe_client.call_async(request)
    assert _wait(future.done, 30.0), 'no reply from /sim/set_parameters'
    return future.result().results


def test_camera_can_be_stopped_and_resumed_while_running(graph):
    """camera_enabled (the fault-injection switch): false stops the camera topics while ground
    truth keeps flowing, true brings them back; start-up parameters are refused live."""
    from rcl_interfaces.srv import SetParameters
    sim, client, received = graph
    node = rclpy.create_node('sim_param_probe')
    try:
        params = node.create_client(SetParameters, '/sim/set_parameters')
        assert params.wait_for_service(timeout_sec=30.0)
        spinner = rclpy.executors.SingleThreadedExecutor()
        spinner.add_node(node)
        thread = threading.Thread(target=spinner.spin, daemon=True)
        thread.start()
        assert _wait(lambda: len(received['color']) >= 1, 30.0), sim.log()
        [stopped] = _set(params, camera_enabled=False)
        assert stopped.successful, stopped.reason
        time.sleep(0.5)   # frames already on their way
        colors, gts = len(received['color']), received['gt'][-1].header.stamp.sec
        last_color = received['color'][-1].header.stamp
        time.sleep(1.5)
        assert received['color'][-1].header.stamp == last_color, 'frames kept coming'
        assert len(received['color']) == colors
        assert _wait(lambda: received['gt'][-1].header.stamp.sec > gts, 5.0), \
            'ground truth stopped with the camera'
        [refused] = _set(params, rate_hz=5.0)
        assert not refused.successful and 'start-up' in refused.reason
        [resumed] = _set(params, camera_enabled=True)
        assert resumed.successful
        assert _wait(lambda: received['color'][-1].header.stamp != last_color, 10.0), sim.log()
        assert 'camera stopped' in sim.log() and 'camera resumed' in sim.log()
        spinner.shutdown()
    finally:
        node.destroy_node()
