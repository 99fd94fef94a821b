"""Node test: the gaussian_mapper node integrates a simulated push with the arm moving.

The node runs in its own process (as a launcher runs it) on this test's ROS domain; the test
publishes a scripted push from craik_sim's fast environment (colour, aligned depth, camera info
and /joint_states, as the sim node and franka_controller publish them), saves the map through
/mapping/save and checks it against the simulator's ground truth: no Gaussian on the arm where
it was at any frame or where it ended, none where the pushed cube used to stand, the cube mapped
where it is now; then the published cloud and render, the save path validation and the reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import os
from pathlib import Path
import time
from typing import Any

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from scipy.spatial import cKDTree
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from craik_interfaces.srv import SaveMap
from craik_mapping.gaussian_mapper_node import (
    COLOR_INFO_TOPIC,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    GAUSSIANS_TOPIC,
    RENDER_COLOR_TOPIC,
)
from craik_mapping.ply import load_ply
from craik_mapping.sim_sequences import SimFrame, push_sequence
from craik_perception.dds_profile import apply_large_data_profile

SEED = 3
CUBE_HALF_M = 0.025


@pytest.fixture(scope='module')
def frames() -> list[SimFrame]:
    return push_sequence(SEED)


class _Client(Node):
    def __init__(self) -> None:
        super().__init__('mapper_test_client')
        self.color = self.create_publisher(Image, COLOR_TOPIC, qos_profile_sensor_data)
        self.depth = self.create_publisher(Image, DEPTH_TOPIC, qos_profile_sensor_data)
        self.info = self.create_publisher(CameraInfo, COLOR_INFO_TOPIC, qos_profile_sensor_data)
        self.joints = self.create_publisher(
            JointState, '/joint_states', QoSProfile(depth=50,
                                                    reliability=ReliabilityPolicy.RELIABLE))
        self.clouds: list[PointCloud2] = []
        self.renders: list[Image] = []
        self.create_subscription(PointCloud2, GAUSSIANS_TOPIC, self.clouds.append, 1)
        self.create_subscription(Image, RENDER_COLOR_TOPIC, self.renders.append, 1)
        self.save = self.create_client(SaveMap, '/mapping/save')
        self.node_log: Callable[[], str] = lambda: '(not started)'
        self.reset = self.create_client(Trigger, '/mapping/reset')

    def publish(self, frame: SimFrame) -> Any:
        """Publish one frame as the camera and the controller would; returns its stamp."""
        header = Header(stamp=self.get_clock().now().to_msg(),
                        frame_id='camera_color_optical_frame')
        h, w = frame.depth_m.shape
        joints = JointState(header=header, name=[f'fr3_joint{i}' for i in range(1, 8)] +
                            ['fr3_finger_joint1', 'fr3_finger_joint2'],
                            position=[float(v) for v in frame.q] +
                            [frame.gripper_width_m / 2] * 2)
        self.joints.publish(joints)
        info = CameraInfo(header=header, width=w, height=h,
                          k=[float(v) for v in frame.intrinsics.ravel()])
        self.info.publish(info)
        self.color.publish(Image(header=header, height=h, width=w, encoding='rgb8',
                                 step=3 * w, data=frame.rgb.tobytes()))
        depth_mm = np.clip(np.rint(frame.depth_m * 1000), 0, 65535).astype(np.uint16)
        self.depth.publish(Image(header=header, height=h, width=w, encoding='16UC1',
                                 step=2 * w, data=depth_mm.tobytes()))
        return header.stamp

    def integrate(self, frame: SimFrame, timeout_s: float = 60.0) -> None:
        """Publish ``frame`` until the map cloud is stamped with it (the node stamps the cloud
        with its last integrated frame; camera topics are best effort, so resend)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stamp = self.publish(frame)
            resend = time.monotonic() + 3.0
            while time.monotonic() < resend:
                rclpy.spin_once(self, timeout_sec=0.05)
                if self.clouds and self.clouds[-1].header.stamp == stamp:
                    return
        raise AssertionError('the mapper never integrated the frame; its log:\n' +
                             self.node_log())

    def call(self, client: Any, request: Any, timeout_s: float = 30.0) -> Any:
        assert client.wait_for_service(timeout_sec=timeout_s), 'mapping service not available'
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self, future, timeout_sec=timeout_s)
        assert future.done(), 'no service reply'
        return future.result()

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self, timeout_sec=0.05)


@pytest.fixture(scope='module')
def client(module_node_process: Callable[..., Any], fresh_ros_domain: int) -> Iterator[_Client]:
    # A domain of its own: earlier tests in this process leave DDS state behind (the node got
    # no frame at all after ~400 other tests on the shared domain). This process stands in for
    # the camera: without the camera node's large-data profile Fast DDS loses most best-effort
    # 640x480 frames between processes (craik_perception.dds_profile).
    with pytest.MonkeyPatch.context() as patch:
        environ = dict(os.environ)
        apply_large_data_profile(environ)
        for name in environ.keys() - os.environ.keys():
            patch.setenv(name, environ[name])
        patch.setenv('ROS_DOMAIN_ID', str(fresh_ros_domain))
        process = module_node_process('craik_mapping.gaussian_mapper_node',
                                      keyframe_min_interval=0.0, keyframe_max_interval=0.05,
                                      publish_period=0.5)
        rclpy.init()
        node = _Client()  # its DDS participant reads the profile and the domain now
    node.node_log = process.log
    try:
        assert node.save.wait_for_service(timeout_sec=60.0), process.log()
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        assert process.proc.poll() is None, f'gaussian_mapper died:\n{process.log()}'


@pytest.fixture(scope='module')
def mapped(client: _Client, frames: list[SimFrame], tmp_path_factory: pytest.TempPathFactory
           ) -> Path:
    """Publish the push frame by frame (each integrated before the next) and save the map."""
    # The camera keeps streaming after the push: the last frame three more times.
    for frame in [*frames, frames[-1], frames[-1], frames[-1]]:
        client.integrate(frame)
    path = tmp_path_factory.mktemp('map') / 'push.ply'
    reply = client.call(client.save, SaveMap.Request(path=str(path)))
    assert reply.success, reply.message
    assert reply.saved_path == str(path.resolve()) and reply.gaussian_count > 10_000
    return path


def test_no_gaussians_where_the_arm_was_or_is(mapped: Path, frames: list[SimFrame]) -> None:
    means = load_ply(mapped).means.numpy().astype(float)
    final_cubes = frames[-1].cube_pos
    # Not the table top and not the cubes (the fingers touched the pushed one's face).
    on_cube = np.zeros(len(means), dtype=bool)
    for cube in final_cubes:
        on_cube |= np.all(np.abs(means - cube) <= CUBE_HALF_M + 0.01, axis=1)
    candidates = means[(means[:, 2] > 0.01) & ~on_cube]
    tree = cKDTree(candidates)
    for i, frame in enumerate(frames):
        near = tree.query_ball_point(frame.robot_surface, r=0.01)
        hits = {j for group in near for j in group}
        assert not hits, f'{len(hits)} Gaussians on the arm as it was at frame {i}'


def test_the_pushed_cubes_old_place_is_cleared(mapped: Path, frames: list[SimFrame]) -> None:
    means = load_ply(mapped).means.numpy()
    before, after = frames[0].cube_pos, frames[-1].cube_pos
    moved = np.linalg.norm(after[:, :2] - before[:, :2], axis=1) > 0.05
    assert moved.sum() == 1, 'the scripted push should move exactly one cube'
    old, new = before[moved][0], after[moved][0]
    above = means[:, 2] > 0.006
    at_old = above & np.all(np.abs(means[:, :2] - old[:2]) < CUBE_HALF_M - 0.005, axis=1)
    at_new = above & np.all(np.abs(means[:, :2] - new[:2]) < CUBE_HALF_M, axis=1)
    assert int(at_old.sum()) == 0, (f'{int(at_old.sum())} Gaussians left at the old position: '
                                    f'{means[at_old].tolist()} (cube was at {old.tolist()})')
    assert int(at_new.sum()) > 50, 'the cube is not mapped where it is now'


def test_cloud_and_render_are_published(client: _Client, mapped: Path) -> None:
    client.spin_for(1.5)
    assert client.clouds and client.renders
    cloud = client.clouds[-1]
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb', 'scale', 'opacity']
    assert cloud.header.frame_id == 'fr3_link0' and cloud.width > 10_000
    points = np.frombuffer(bytes(cloud.data), dtype=np.float32).reshape(-1, 6)
    assert np.all(np.isfinite(points)) and np.all((points[:, 5] > 0) & (points[:, 5] < 1))
    render = client.renders[-1]
    assert render.encoding == 'rgb8' and (render.width, render.height) == (160, 120)
    pixels = np.frombuffer(bytes(render.data), dtype=np.uint8).reshape(120, 160, 3)
    assert pixels.mean() > 40, 'the render of the mapped table should not be black'


def test_save_rejects_bad_paths_and_reset_clears(client: _Client, mapped: Path,
                                                 tmp_path: Path) -> None:
    for bad, reason in ((str(tmp_path / 'map.txt'), '.ply'),
                        (str(tmp_path / 'missing' / 'map.ply'), 'does not exist'),
                        ('', 'empty')):
        reply = client.call(client.save, SaveMap.Request(path=bad))
        assert not reply.success and reason in reply.message, reply.message
    assert client.call(client.reset, Trigger.Request()).success
    empty = tmp_path / 'empty.ply'
    reply = client.call(client.save, SaveMap.Request(path=str(empty)))
    assert reply.success and reply.gaussian_count == 0
    assert len(load_ply(empty)) == 0
