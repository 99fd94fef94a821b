"""The `sim` node in its own process exits with status 0 when a signal stops it.

A launcher stops its nodes with SIGINT and then SIGTERM, and reads any other exit status than
0 as a crash. The simulated FR3 binds 127.0.0.2 here, so that these tests never take the
address (127.0.0.1) of a simulation or robot that other processes on the machine use.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

rclpy = pytest.importorskip('rclpy', reason='the sim node needs rclpy')
pytest.importorskip('franky_sim', reason='the sim node needs franky-sim')

from craik_interfaces.msg import GroundTruth  # noqa: E402
from craik_interfaces.srv import ResetEpisode  # noqa: E402
from craik_sim.sim_node import GROUND_TRUTH_TOPIC, RESET_SERVICE  # noqa: E402

HOSTNAME = '127.0.0.2'
SIGNALS = pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM],
                                  ids=['SIGINT', 'SIGTERM'])


class SimProcess:
    """``python -m craik_sim.sim_node`` in a subprocess, its output collected."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_LOGGING_BUFFERED_STREAM='0')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'craik_sim.sim_node', '--ros-args',
             '-p', f'hostname:={HOSTNAME}', '-p', 'rate_hz:=5.0'],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self, sig: signal.Signals) -> int:
        """Send ``sig``; the exit status (the process is killed if it ignores the signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def log(self) -> str:
        return ''.join(self.output)


@pytest.fixture
def probe():
    rclpy.init()
    node = rclpy.create_node('sim_exit_probe')
    yield node
    node.destroy_node()
    rclpy.shutdown()


@pytest.fixture
def sim():
    process = SimProcess()
    yield process
    process.stop(signal.SIGKILL)


def _wait(probe, predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        rclpy.spin_once(probe, timeout_sec=0.1)
    return False


@pytest.mark.slow
@SIGNALS
def test_a_running_sim_exits_0_when_stopped_by_a_signal(probe, sim, sig):
    received = []
    probe.create_subscription(GroundTruth, GROUND_TRUTH_TOPIC, received.append, 10)
    # Ground truth comes with every camera frame: physics, renderer and server are all running.
    assert _wait(probe, lambda: received, 120.0), sim.log()
    assert sim.stop(sig) == 0, sim.log()
    assert 'Traceback' not in sim.log() and 'sim failed' not in sim.log(), sim.log()


@pytest.mark.slow
@SIGNALS
def test_a_starting_sim_exits_0_when_stopped_by_a_signal(probe, sim, sig):
    # The reset service appears when the node is built, before the seconds it takes to build the
    # scene and start the robot and camera: the signal comes while the node is starting.
    client = probe.create_client(ResetEpisode, RESET_SERVICE)
    assert _wait(probe, client.service_is_ready, 120.0), sim.log()
    assert sim.stop(sig) == 0, sim.log()
    assert 'Traceback' not in sim.log() and 'sim failed' not in sim.log(), sim.log()
