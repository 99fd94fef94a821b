"""`craik launch`: prefixed output and logs, clean stop on SIGINT / SIGTERM, a dying node ends
the launch, missing executables named before anything starts.

These run `craik launch` as a process on a small graph of stand-in nodes (a package of
executable scripts in a temporary ament prefix), so they take seconds; the simulated lab itself
is launched in test/test_launch_system.py.
"""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from craik_bringup import cli, launch_command

ROOT = Path(__file__).resolve().parents[3]
# A stand-in node: prints its name, then waits; SIGINT ends it with a last line and code 0.
# FAKE_EXIT=<code> makes it exit by itself with that code instead (once it has printed).
NODE = """\
    import os, signal, sys, time
    name = sys.argv[sys.argv.index('-r') + 1].split(':=')[1]
    def stop(signum, frame):
        print(f'{name} stopping', flush=True)
        sys.exit(0)
    signal.signal(signal.SIGINT, stop)
    print(f'hello from {name}', flush=True)
    code = os.environ.get('FAKE_EXIT_' + name)
    if code is not None:
        time.sleep(0.5)
        sys.exit(int(code))
    while True:
        time.sleep(0.1)
    """
GRAPH = """\
    format_version: 1
    arguments:
      extra: {type: bool, default: false}
    nodes:
      - {name: talker, package: craik_fake_nodes, executable: node}
      - {name: listener, package: craik_fake_nodes, executable: node}
      - {name: extra, package: craik_fake_nodes, executable: node, condition: extra}
    """


class Launch:
    """`python -m craik_bringup.cli launch ...` with its output collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'craik_bringup.cli', 'launch', *argv], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))

    @property
    def output(self) -> str:
        return '\n'.join(self.lines)

    def wait_for(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline:
                raise AssertionError(f'no {text!r} within {timeout_s} s:\n{self.output}')
            time.sleep(0.05)

    def pids(self) -> dict[str, int]:
        """Node name -> pid, from `craik launch`'s "started NAME (pid N)" lines."""
        pids = {}
        for line in self.lines:
            if line.startswith('[launch] started '):
                name, _, rest = line[len('[launch] started '):].partition(' (pid ')
                pids[name] = int(rest.rstrip(')'))
        return pids

    def finish(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def keep_signal_handlers() -> Iterator[None]:
    """cli.main turns SIGTERM into KeyboardInterrupt for its command; not for pytest after it."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def fake_graph(tmp_path) -> tuple[Path, dict[str, str]]:
    """A graph file of stand-in nodes and the environment in which their package exists."""
    prefix = tmp_path / 'prefix'
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages').mkdir(parents=True)
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' /
     'craik_fake_nodes').write_text('')
    node = prefix / 'lib' / 'craik_fake_nodes' / 'node'
    node.parent.mkdir(parents=True)
    node.write_text(f'#!{sys.executable}\n' + textwrap.dedent(NODE))
    node.chmod(0o755)
    graph = tmp_path / 'fake.yaml'
    graph.write_text(textwrap.dedent(GRAPH))
    env = dict(os.environ, AMENT_PREFIX_PATH=f'{prefix}:{os.environ.get("AMENT_PREFIX_PATH", "")}',
               PYTHONUNBUFFERED='1')
    return graph, env


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_every_node_and_exits_0(fake_graph, tmp_path, sig):
    graph, env = fake_graph
    launch = Launch([str(graph), '--log-dir', str(tmp_path / 'logs'), 'extra:=true'], env)
    try:
        for name in ('talker', 'listener', 'extra'):
            launch.wait_for(f'[{name}] hello from {name}')
        pids = launch.pids()
        assert set(pids) == {'talker', 'listener', 'extra'}
        launch.proc.send_signal(sig)
        assert launch.finish(timeout_s=60) == 0, launch.output
    finally:
        launch.kill()
    assert not any(group_alive(pid) for pid in pids.values())
    # Each node got SIGINT and its last words were still printed, prefixed.
    for name in pids:
        assert f'[{name}] {name} stopping' in launch.lines
        log = (tmp_path / 'logs' / f'{name}.log').read_text()
        assert f'hello from {name}' in log and f'{name} stopping' in log
    assert '[launch] all nodes stopped' in launch.lines


def test_a_node_that_dies_ends_the_launch_naming_it_and_its_code(fake_graph, tmp_path):
    graph, env = fake_graph
    launch = Launch([str(graph), '--log-dir', str(tmp_path / 'logs')],
                    {**env, 'FAKE_EXIT_listener': '3'})
    try:
        code = launch.finish(timeout_s=60)
    finally:
        launch.kill()
    assert code == launch_command.EXIT_NODE_DIED, launch.output
    assert 'craik launch: node listener exited with code 3' in launch.output
    assert '[talker] talker stopping' in launch.lines    # the other node was stopped
    assert not any(group_alive(pid) for pid in launch.pids().values())


def test_missing_executables_are_named_with_their_package_before_anything_starts(
        monkeypatch, capsys):
    # As on a CI machine, whatever is installed here: only craik's own packages exist.
    real = launch_command.find_executable
    monkeypatch.setattr(launch_command, 'find_executable',
                        lambda package, name: real(package, name)
                        if package.startswith('craik_') else None)
    code = cli.main(['launch', 'robot', '--robot-ip', '172.16.0.2', 'rviz:=true',
                     'calibration:=config/calibration/sim_d435.yaml'])
    assert code == launch_command.EXIT_USAGE
    err = capsys.readouterr().err
    for executable, package in [('realsense2_camera_node', 'realsense2_camera'),
                                ('robot_state_publisher', 'robot_state_publisher'),
                                ('static_transform_publisher', 'tf2_ros'), ('rviz2', 'rviz2')]:
        assert f"executable '{executable}' of package '{package}' is not installed" in err
        assert f"apt install ros-{os.environ.get('ROS_DISTRO', '<distro>')}-" \
               f"{package.replace('_', '-')}" in err
    assert 'Traceback' not in err


@pytest.mark.parametrize(('argv', 'message'), [
    (['sim', '--camera', 'driver'], 'graph sim has no argument camera'),
    (['robot'], 'argument robot_ip is required'),
    (['robot', '--robot-ip', '172.16.0.2'], 'needs argument calibration'),
    (['sim', 'runtime:=cuda'], "runtime='cuda' is not one of"),
    (['sim', 'runtime=torch'], "expected NAME:=VALUE, got 'runtime=torch'"),
    (['nope'], "no graph 'nope'"),
])
def test_bad_arguments_are_refused_with_a_reason(capsys, argv, message):
    assert cli.main(['launch', *argv]) == launch_command.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_dry_run_prints_the_nodes_and_starts_nothing(capsys):
    assert cli.main(['launch', 'robot', '--dry-run', '--robot-ip', '172.16.0.2',
                     '--camera', 'craik', 'namespace:=lab',
                     'calibration:=config/calibration/sim_d435.yaml']) == 0
    out = capsys.readouterr().out
    assert '  camera:=craik' in out and '  namespace:=lab' in out
    assert 'node franka_controller (craik_franka/franka_controller):' in out
    assert '-r __ns:=/lab' in out
    assert 'node camera_tf (tf2_ros/static_transform_publisher):' in out
