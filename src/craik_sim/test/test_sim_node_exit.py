"""The `sim` node in its own process exits with status 0 when a signal stops it.

A launcher stops its nodes with SIGINT and then SIGTERM, and reads any other exit status than
0 as a crash. The simulated FR3 binds 127.0.0.2 here, so that these tests never take the
address (127.0.0.1) of a simulation or robot that other processes on the machine use.
"""

import signal
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


@pytest.fixture
def probe():
    rclpy.init()
    node = rclpy.create_node('sim_exit_probe')
    yield node
    node.destroy_node()
    rclpy.shutdown()


@pytest.fixture
def sim(node_process):
    return node_process('craik_sim.sim_node', stop_timeout_s=60.0, hostname=HOSTNAME,
                        rate_hz=5.0)


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
