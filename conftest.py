"""Workspace-wide pytest setup: DDS isolation per test process and the craik markers.

Every pytest process (and every subprocess it starts, which inherits the environment) gets its
own ROS_DOMAIN_ID, reserved with a file lock so that concurrent test runs on one machine never
share a domain, and discovery limited to localhost.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
import tempfile
from typing import IO

import pytest

# Linux allows domains 0..101 with the default port mapping; 0 is what an interactive session
# uses, so tests stay away from it.
_DOMAIN_RANGE = range(1, 102)
# Locks of the domains this process holds (released when the process exits).
_domain_locks: list[IO[str]] = []


def _reserve_ros_domain() -> int:
    lock_dir = Path(tempfile.gettempdir()) / 'craik-ros-domains'
    lock_dir.mkdir(exist_ok=True)
    start = os.getpid() % len(_DOMAIN_RANGE)
    for i in range(len(_DOMAIN_RANGE)):
        domain = _DOMAIN_RANGE[(start + i) % len(_DOMAIN_RANGE)]
        handle = open(lock_dir / f'{domain}.lock', 'w')  # noqa: SIM115 (held for the process)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _domain_locks.append(handle)
        return domain
    raise RuntimeError('all ROS domains 1..101 are held by other test processes')


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption('--hardware', action='store_true', default=False,
                     help='run tests marked "hardware" (needs a real FR3 / RealSense)')


def pytest_configure(config: pytest.Config) -> None:
    os.environ['ROS_DOMAIN_ID'] = str(_reserve_ros_domain())
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.setdefault('MUJOCO_GL', 'egl')


@pytest.fixture(scope='module')
def fresh_ros_domain() -> int:
    """Another ROS domain, reserved for this process like its own.

    For a node graph that must not share DDS state with what earlier tests in this process
    left behind (e.g. shared-memory segments of processes they killed). Subprocesses started
    in it need ROS_DOMAIN_ID set to it explicitly.
    """
    return _reserve_ros_domain()


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
