"""The workspace harness itself: DDS isolation, idempotent setup, CI entry point."""

import os
from pathlib import Path
import subprocess

ROOT = Path(__file__).resolve().parents[1]


def test_each_test_process_has_its_own_ros_domain():
    domain = int(os.environ['ROS_DOMAIN_ID'])
    assert 1 <= domain <= 101, 'tests must never use the interactive default domain 0'
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    # The domain is reserved with a lock that another process cannot take while we run.
    lock = Path('/tmp/craik-ros-domains') / f'{domain}.lock'
    probe = subprocess.run(['flock', '--nonblock', str(lock), 'true'], check=False)
    assert probe.returncode != 0, 'the domain lock is not held by this test process'


def test_second_setup_run_is_a_no_op():
    # make test ran setup before the tests: nothing changed since, so every stage is skipped.
    out = subprocess.run([str(ROOT / 'scripts' / 'setup.sh')], capture_output=True, text=True,
                         check=True).stdout
    assert 'Python packages up to date' in out
    assert 'workspace up to date' in out
    assert 'installing' not in out


def test_ci_runs_exactly_make_test():
    lines = [line.strip() for line in (ROOT / '.ci' / 'run').read_text().splitlines()
             if line.strip() and not line.startswith('#')]
    assert lines[-1] == 'exec make test'
