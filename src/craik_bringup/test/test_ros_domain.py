"""reserve_ros_domain: one domain per holder on a machine, held until the process exits."""

import subprocess
import sys

from craik_bringup.graph import private_robot_ip, reserve_ros_domain

_TRY_LOCK = """
import fcntl, sys
handle = open(sys.argv[1], "w")
try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(3)
"""


def test_reserved_domains_differ_and_other_processes_cannot_take_them(tmp_path, monkeypatch):
    monkeypatch.setenv('TMPDIR', str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', None)  # re-read TMPDIR
    first, second = reserve_ros_domain(), reserve_ros_domain()
    assert first != second
    assert 1 <= first <= 101 and 1 <= second <= 101
    for domain in (first, second):
        lock = tmp_path / 'craik-ros-domains' / f'{domain}.lock'
        taken = subprocess.run([sys.executable, '-c', _TRY_LOCK, str(lock)])
        assert taken.returncode == 3, f'domain {domain} was not held'
    # ... and the simulated robot of each domain gets its own address.
    assert private_robot_ip(first) != private_robot_ip(second)
