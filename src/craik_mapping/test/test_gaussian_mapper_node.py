"""Node test: the gaussian_mapper node integrates a simulated push with the arm moving.

The node runs in its own process (as a launcher runs it) on a ROS domain of its own; a camera
stand-in process (camera_stand_in.py) publishes a scripted push from craik_sim's fast environment
(colour, aligned depth, camera info and /joint_states, as the camera node and franka_controller
publish them); the test saves the map through /mapping/save and checks it against the
simulator's ground truth: no Gaussian on the arm where it was at any frame or where it ended,
none where the pushed cube used to stand, the cube mapped where it is now; then the published
cloud and render, the save path validation and the reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import os
from pathlib import Path
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from scipy.spatial import cKDTree
from sensor_msgs.msg import Image, PointCloud2
from std_srvs.srv import Trigger

from craik_interfaces.srv import SaveMap
from craik_mapping.gaussian_mapper_node import GAUSSIANS_TOPIC, RENDER_COLOR_TOPIC
from craik_mapping.ply import load_ply
from craik_mapping.sim_sequences import SimFrame, push_sequence

SEED = 3
CUBE_HALF_M = 0.025


@pytest.fixture(scope='module')
def frames() -> list[SimFrame]:
    return push_sequence(SEED)


class _Client(Node):
    """The test's side: the map's cloud and render, the save and reset services."""

    def __init__(self) -> None:
        super().__init__('mapper_test_client')
        self.clouds: list[PointCloud2] = []
        self.renders: list[Image] = []
        self.create_subscription(PointCloud2, GAUSSIANS_TOPIC, self.clouds.append, 1)
        self.create_subscription(Image, RENDER_COLOR_TOPIC, self.renders.append, 1)
        self.save = self.create_client(SaveMap, '/mapping/save')
        self.reset = self.create_client(Trigger, '/mapping/reset')

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
def mapper(module_node_process: Callable[..., Any], fresh_ros_domain: int) -> Any:
    """The gaussian_mapper node in its own process, on a ROS domain of its own (earlier tests in
    this process leave DDS state behind)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('ROS_DOMAIN_ID', str(fresh_ros_domain))
        return module_node_process('craik_mapping.gaussian_mapper_node',
                                   keyframe_min_interval=0.0, keyframe_max_interval=0.05,
                                   publish_period=0.5)


@pytest.fixture(scope='module')
def client(mapper: Any, fresh_ros_domain: int) -> Iterator[_Client]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('ROS_DOMAIN_ID', str(fresh_ros_domain))
        rclpy.init()
        node = _Client()  # its DDS participant reads the domain now
    try:
        assert node.save.wait_for_service(timeout_sec=60.0), mapper.log()
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        assert mapper.proc.poll() is None, f'gaussian_mapper died:\n{mapper.log()}'


@pytest.fixture(scope='module')
def mapped(client: _Client, mapper: Any, frames: list[SimFrame], fresh_ros_domain: int,
           tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The push published frame by frame by the camera stand-in (each integrated before the
    next), then the map saved."""
    # The camera keeps streaming after the push: the last frame three more times.
    played = [*frames, frames[-1], frames[-1], frames[-1]]
    directory = tmp_path_factory.mktemp('map')
    recording = directory / 'push.npz'
    np.savez(recording, rgb=np.stack([f.rgb for f in played]),
             depth_m=np.stack([f.depth_m for f in played]),
             q=np.stack([f.q for f in played]),
             gripper_width_m=np.array([f.gripper_width_m for f in played]),
             intrinsics=frames[0].intrinsics)
    camera = subprocess.run(
        [sys.executable, str(Path(__file__).with_name('camera_stand_in.py')), str(recording)],
        env=dict(os.environ, ROS_DOMAIN_ID=str(fresh_ros_domain), PYTHONUNBUFFERED='1'),
        capture_output=True, text=True, timeout=60 * len(played))
    assert camera.returncode == 0, (f'camera stand-in: {camera.stdout}{camera.stderr}\n'
                                    f'gaussian_mapper log:\n{mapper.log()}')
    path = directory / 'push.ply'
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
