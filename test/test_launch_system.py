"""`craik launch sim` end to end: the simulated lab comes up, stops cleanly on SIGINT, and a
node that dies ends the launch naming it.

`craik launch` runs as a subprocess in a ROS domain of its own (``fresh_ros_domain``) with a
loopback robot address private to that domain (one simulated robot per address); the test
waits with rclpy until the planner's action server /planner/reach_goal exists.
"""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import pytest
import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.node import Node

from craik_bringup.graph import private_robot_ip
from craik_interfaces.action import ReachGoal

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# Bounds, not performance figures: loading the world model and starting franky-sim on a busy
# 2-core machine; stopping is SIGINT, then SIGTERM after 10 s, SIGKILL after 5 s more, per node.
READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 120.0


class CraikLaunch:
    """`craik launch sim` in a subprocess, its output collected."""

    def __init__(self, domain: int, log_dir: Path) -> None:
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED='1')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'craik_bringup.cli', 'launch', 'sim',
             '--robot-ip', private_robot_ip(domain), '--log-dir', str(log_dir)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))

    def tail(self, n: int = 40) -> str:
        return '\n'.join(self.lines[-n:])

    def pids(self) -> dict[str, int]:
        pids = {}
        for line in list(self.lines):
            if line.startswith('[launch] started '):
                name, _, rest = line[len('[launch] started '):].partition(' (pid ')
                pids[name] = int(rest.rstrip(')'))
        return pids

    def finish(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=5)
        return code

    def cleanup(self) -> None:
        """After a failed test: nothing may outlive it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for pid in self.pids().values():
            if group_alive(pid):
                os.killpg(pid, signal.SIGKILL)


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for_planner(launch: CraikLaunch, domain: int) -> None:
    """Until /planner/reach_goal has a server (seen from this process, over DDS)."""
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        node = Node('launch_system_test', context=context)
        client = ActionClient(node, ReachGoal, '/planner/reach_goal')
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not client.server_is_ready():
            assert launch.proc.poll() is None, f'craik launch exited:\n{launch.tail()}'
            assert time.monotonic() < deadline, \
                f'no /planner/reach_goal after {READY_TIMEOUT_S:.0f} s:\n{launch.tail()}'
            time.sleep(0.2)
        client.destroy()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


@pytest.fixture
def launch(fresh_ros_domain, tmp_path) -> Iterator[CraikLaunch]:
    process = CraikLaunch(fresh_ros_domain, tmp_path / 'logs')
    try:
        yield process
    finally:
        process.cleanup()


def test_craik_launch_sim_comes_up_and_stops_cleanly_on_sigint(launch, fresh_ros_domain):
    wait_for_planner(launch, fresh_ros_domain)
    pids = launch.pids()
    assert set(pids) == {'sim', 'franka_controller', 'mpc_planner'}
    assert all(group_alive(pid) for pid in pids.values())
    # Every node's output reaches the terminal under its name.
    assert any(line.startswith('[mpc_planner] ') for line in launch.lines), launch.tail()
    assert any(line.startswith('[sim] ') for line in launch.lines), launch.tail()
    launch.proc.send_signal(signal.SIGINT)
    assert launch.finish(STOP_TIMEOUT_S) == 0, launch.tail()
    assert not [name for name, pid in pids.items() if group_alive(pid)]
    assert '[launch] all nodes stopped' in launch.lines


def test_a_killed_node_ends_craik_launch_with_its_name_and_exit_code(launch, fresh_ros_domain):
    wait_for_planner(launch, fresh_ros_domain)
    pids = launch.pids()
    os.kill(pids['mpc_planner'], signal.SIGKILL)
    code = launch.finish(STOP_TIMEOUT_S)
    assert code != 0
    assert 'craik launch: node mpc_planner exited with code -9 (killed by SIGKILL)' in \
        '\n'.join(launch.lines), launch.tail()
    assert not [name for name, pid in pids.items() if group_alive(pid)]
