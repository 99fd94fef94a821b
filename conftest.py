"""Workspace-wide pytest setup: DDS isolation per test process and the craik markers.

Every pytest process (and every subprocess it starts, which inherits the environment) gets its
own ROS_DOMAIN_ID, reserved with a file lock so that concurrent test runs on one machine never
share a domain, and discovery limited to localhost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import os
import signal
import subprocess
import sys
import threading

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption('--hardware', action='store_true', default=False,
                     help='run tests marked "hardware" (needs a real FR3 / RealSense)')


def pytest_configure(config: pytest.Config) -> None:
    from craik_bringup.graph import reserve_ros_domain

    os.environ['ROS_DOMAIN_ID'] = str(reserve_ros_domain())
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('MUJOCO_GL', 'egl')


@pytest.fixture(scope='module')
def fresh_ros_domain() -> int:
    """Another ROS domain, reserved for this process like its own.

    For a node graph that must not share DDS state with what earlier tests in this process
    left behind (e.g. shared-memory segments of processes they killed). Subprocesses started
    in it need ROS_DOMAIN_ID set to it explicitly.
    """
    from craik_bringup.graph import reserve_ros_domain

    return reserve_ros_domain()


class NodeProcess:
    """``python -m MODULE --ros-args -p name:=value ...`` in a subprocess, its output collected
    (a node as a launcher runs it: its own process, stopped by a signal)."""

    def __init__(self, module: str, stop_timeout_s: float = 15.0, **params: object) -> None:
        args: list[str] = []
        for name, value in params.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ['-p', f'{name}:={text}']
        env = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_LOGGING_BUFFERED_STREAM='0')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', module, '--ros-args', *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.stop_timeout_s = stop_timeout_s
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        """Send ``sig``; the exit status (the process is killed if it ignores the signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def log(self) -> str:
        return ''.join(self.output)


def _started_node_processes() -> Iterator[Callable[..., NodeProcess]]:
    started: list[NodeProcess] = []

    def start(module: str, stop_timeout_s: float = 15.0, **params: object) -> NodeProcess:
        process = NodeProcess(module, stop_timeout_s, **params)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def node_process() -> Iterator[Callable[..., NodeProcess]]:
    """Start node processes (``node_process(module, **params)``); any still running at the
    end of the test is stopped like a launcher does (SIGINT, killed if it does not exit; a
    SIGKILL would leave its DDS shared memory behind for later tests)."""
    yield from _started_node_processes()


@pytest.fixture(scope='module')
def module_node_process() -> Iterator[Callable[..., NodeProcess]]:
    """``node_process`` for module-scoped fixtures: the processes live until the module ends."""
    yield from _started_node_processes()


def pytest_report_header(config: pytest.Config) -> str:
    return (f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
            f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_hardware = config.getoption('--hardware')
    gpu_items = [item for item in items if 'gpu' in item.keywords]
    has_cuda = _cuda_available() if gpu_items else False
    for item in items:
        if 'hardware' in item.keywords and not run_hardware:
            item.add_marker(pytest.mark.skip(
                reason='needs a real FR3 or RealSense camera; run with --hardware on the robot'))
    for item in gpu_items:
        if not has_cuda:
            item.add_marker(pytest.mark.skip(
                reason='needs a CUDA GPU (torch.cuda.is_available() is False on this machine)'))
