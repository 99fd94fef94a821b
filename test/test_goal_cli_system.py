"""`craik goal` end to end against the simulated lab (sim + franka_controller + mpc_planner).

The command runs as a subprocess in the graph's ROS domain, exactly as a user runs it: a goal
image and depth from the simulator's reset, written in the snapshot format (PNG, 16-bit depth
in millimetres), sent with `craik goal --image --depth --max-steps 3`; and `craik goal
--snapshot` of the simulated camera, which, sent back as a goal, is where the arm already is.

Like test_reach_goal_system.py this module starts a whole graph: run it in a pytest process of
its own (scripts/run_tests.sh lists the system tests).
"""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import subprocess
import sys
from typing import Any

import numpy as np
from PIL import Image as PilImage
import pytest

from craik_bringup import goal_command as gc
from craik_bringup.graph import Graph, private_robot_ip, sim_graph, workspace_root
from craik_bringup.sim_client import SimClient
from craik_perception.ros_image import image_to_array

pytestmark = pytest.mark.slow
MODEL_DIR = workspace_root() / 'models' / 'craik_wm_geo'
WORLD_MODEL = (MODEL_DIR / 'manifest.json').exists()


@pytest.fixture(scope='module')
def lab(tmp_path_factory: pytest.TempPathFactory,
        fresh_ros_domain: int) -> Iterator[tuple[Graph, SimClient, int]]:
    # The shipped world model when it is there (it reads the goal's depth: the PNG round trip
    # matters), else the oracle.
    planner = None if WORLD_MODEL else {'backend': 'oracle', 'oracle_task': 'reach'}
    nodes = sim_graph(private_robot_ip(fresh_ros_domain), planner=planner)
    graph = Graph(nodes, tmp_path_factory.mktemp('graph_logs'), domain_id=fresh_ros_domain)
    graph.start()
    client = SimClient('goal_cli_test_client', domain_id=fresh_ros_domain)
    try:
        client.wait_ready(timeout_s=180.0, check=graph.check_alive)
        yield graph, client, fresh_ros_domain
    finally:
        client.close()
        graph.stop()


def craik_goal(domain: int, *argv: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED='1')
    return subprocess.run([sys.executable, '-m', 'craik_bringup.cli', 'goal', *argv], env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def _distance(client: SimClient) -> float:
    return float(client.latest_ground_truth().distance)


def _steps(stdout: str) -> list[int]:
    return [int(line.split()[1]) for line in stdout.splitlines() if line.startswith('step ')]


def _text(done: subprocess.CompletedProcess) -> str:
    return f'exit {done.returncode}\n{done.stdout}--- stderr ---\n{done.stderr}'


def test_goal_files_run_steps_with_progress_and_exit_with_the_result(
        lab: Any, tmp_path: Path) -> None:
    graph, client, domain = lab
    reset = client.reset('reach', 7)
    client.wait_until_still()
    color_path, depth_path = tmp_path / 'goal.png', tmp_path / 'goal_depth.png'
    gc.save_goal_images(np.array(image_to_array(reset.goal_image, ('rgb8',))),
                        np.array(image_to_array(reset.goal_depth, ('16UC1',))),
                        color_path, depth_path)
    start = _distance(client)
    done = craik_goal(domain, '--image', str(color_path), '--depth', str(depth_path),
                      '--max-steps', '3', '--server-timeout', '60')
    assert done.returncode in (gc.EXIT_REACHED, gc.EXIT_MAX_STEPS), _text(done)
    steps = _steps(done.stdout)
    result = done.stdout.splitlines()[-1]
    if done.returncode == gc.EXIT_MAX_STEPS:
        assert steps == [1, 2, 3], _text(done)
        assert result.startswith('result: max_steps after 3 steps'), _text(done)
    else:
        assert steps == list(range(1, len(steps) + 1)) and 1 <= len(steps) <= 3, _text(done)
        assert result.startswith('result: reached'), _text(done)
    size = f'{reset.goal_image.width}x{reset.goal_image.height}'
    assert f'sending goal to /planner/reach_goal: {size} rgb8, depth 16UC1, max_steps 3' in \
        done.stdout, _text(done)
    for line in done.stdout.splitlines():
        if line.startswith('step '):
            assert 'energy ' in line and ' m  gripper ' in line and line.endswith(' ms')
    client.wait_until_still()
    assert _distance(client) < start, \
        f'the arm did not get closer to the goal: {start:.3f} m -> {_distance(client):.3f} m'


def test_snapshot_writes_the_camera_view_and_reads_back_as_a_goal(
        lab: Any, tmp_path: Path) -> None:
    graph, client, domain = lab
    client.reset('reach', 3)
    client.wait_until_still()
    view = client.latest_color()
    assert view is not None
    height, width = view.shape[:2]
    color_path = tmp_path / 'view.png'
    done = craik_goal(domain, '--snapshot', str(color_path), '--frame-timeout', '30')
    assert done.returncode == gc.EXIT_OK, _text(done)
    depth_path = tmp_path / 'view_depth.png'
    assert f'wrote {color_path} ({width}x{height} RGB) and {depth_path}' in done.stdout
    with PilImage.open(color_path) as image:
        assert (image.mode, image.size) == ('RGB', (width, height))
        rgb = np.asarray(image)
    with PilImage.open(depth_path) as image:
        assert (image.mode, image.size) == ('I;16', (width, height))
        depth = np.asarray(image)
    # The scene stood still: the snapshot is the camera's view now.
    now = client.latest_color()
    assert now is not None
    assert np.abs(rgb.astype(int) - now.astype(int)).mean() < 5.0
    valid = depth[depth > 0]
    assert valid.size > 0.5 * depth.size, 'most of the view has no depth'
    assert 300 < np.median(valid) < 3000, f'median depth {np.median(valid)} mm'
    # Sent back as a goal: the planner accepts it (and the world model, which reads the goal's
    # TCP from its depth, finds the arm already there).
    back = craik_goal(domain, '--image', str(color_path), '--depth', str(depth_path),
                      '--max-steps', '2', '--server-timeout', '60')
    if WORLD_MODEL:
        assert back.returncode == gc.EXIT_REACHED, _text(back)
    else:
        assert back.returncode in (gc.EXIT_REACHED, gc.EXIT_MAX_STEPS), _text(back)
