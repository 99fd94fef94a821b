"""Processes that use librealsense and ROS 2 together exit with status 0 (issue #18).

pyrealsense2 carries its own Fast DDS; loaded before ROS 2's, it made every process that then
created an rclpy node die in exit() with SIGSEGV (status 139) after all its work was done,
pytest runs of this package included. craik_perception.librealsense loads ROS 2's Fast DDS
first. Each check runs in a process of its own, since only the exit status shows the fault.
"""

from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[3]

# librealsense first (as pytest's conftest imports it), ROS 2 second: the order that crashed.
_LIBREALSENSE_THEN_ROS = """
import sys

from craik_perception.pipeline import RealSenseSource
from craik_perception.profiles import RealSenseConfig, StreamProfile

assert 'rclpy' not in sys.modules, 'craik_perception.pipeline must not need rclpy'
config = RealSenseConfig(rosbag_filename=sys.argv[1], rosbag_real_time=False,
                         color_profile=StreamProfile(0, 0, 0),
                         depth_profile=StreamProfile(0, 0, 0))
with RealSenseSource(config) as source:
    source.read(10.0).detach()

import rclpy
from std_msgs.msg import String

rclpy.init()
node = rclpy.create_node('librealsense_then_ros')
node.create_publisher(String, 'exit_check', 10).publish(String(data='bye'))
node.destroy_node()
rclpy.shutdown()
print('finished')
"""


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)


def test_librealsense_and_an_rclpy_node_in_one_process_exit_0(box_recording):
    proc = _run([sys.executable, '-c', _LIBREALSENSE_THEN_ROS, str(box_recording.path)], 120)
    output = proc.stdout + proc.stderr
    assert 'finished' in proc.stdout, output
    assert proc.returncode == 0, f'exit status {proc.returncode}\n{output}'


@pytest.mark.slow
def test_the_node_tests_exit_0_in_a_pytest_process_of_their_own():
    # The module that crashed at exit: rclpy nodes in the pytest process, pyrealsense2 loaded
    # first by conftest.py, and node processes started and stopped by signals.
    module = Path(__file__).with_name('test_realsense_node.py')
    proc = _run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', str(module)],
                600)
    output = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert ' passed' in proc.stdout and ' failed' not in proc.stdout, output
    assert proc.returncode == 0, f'exit status {proc.returncode}\n{output}'
