"""Start craik's node graph as processes: `ros2 launch` for machines without it.

The lab robot uses the launch files in launch/; everywhere else (CI, `make demo`, `craik eval`,
system tests) this module starts the same executables with the same parameter files
(`config/<node>.yaml`) and overrides, waits until each node is ready, and stops them all,
escalating from SIGINT to SIGKILL, on exit. Each node's output goes to `<log_dir>/<node>.log`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from typing import Any


def workspace_root() -> Path:
    """The checkout (for config/ and models/): $CRAIK_ROOT, else the current directory."""
    return Path(os.environ.get('CRAIK_ROOT', Path.cwd()))


def git_commit(root: Path | None = None) -> str | None:
    """The commit checked out at ``root`` (default: the workspace), None outside a git checkout;
    reports and benchmark JSON record it."""
    try:
        return subprocess.run(['git', '-C', str(root or workspace_root()), 'rev-parse', 'HEAD'],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def executable(package: str, name: str) -> Path:
    """Path of a node executable installed by colcon (what `ros2 run` would start)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        prefix = Path(get_package_prefix(package))
    except PackageNotFoundError:
        raise FileNotFoundError(f'package {package!r} is not installed: run `make setup` and '
                                '`source env.bash`') from None
    path = prefix / 'lib' / package / name
    if not path.exists():
        raise FileNotFoundError(f'{path} does not exist: rebuild with `make setup`')
    return path


@dataclass
class NodeSpec:
    """One node process: executable, parameter file and overrides."""

    package: str
    executable: str
    node_name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def command(self, config_dir: Path) -> list[str]:
        cmd = [str(executable(self.package, self.executable)), '--ros-args']
        params = config_dir / f'{self.node_name}.yaml'
        if params.exists():
            cmd += ['--params-file', str(params)]
        for key, value in self.overrides.items():
            if isinstance(value, bool):
                value = 'true' if value else 'false'
            elif isinstance(value, list | tuple):
                value = '[' + ','.join(str(v) for v in value) + ']'
            cmd += ['-p', f'{key}:={value}']
        return cmd


def sim_graph(robot_ip: str = '127.0.0.1', planner: dict[str, Any] | None = None,
              sim: dict[str, Any] | None = None,
              controller: dict[str, Any] | None = None) -> list[NodeSpec]:
    """The simulated lab: sim (franky-sim + camera), franka_controller, mpc_planner."""
    return [
        NodeSpec('craik_sim', 'sim', 'sim', {'hostname': robot_ip, **(sim or {})}),
        NodeSpec('craik_franka', 'franka_controller', 'franka_controller',
                 {'robot_ip': robot_ip, **(controller or {})}),
        NodeSpec('craik_planner', 'mpc_planner', 'mpc_planner', dict(planner or {})),
    ]


class GraphError(RuntimeError):
    """A node of the graph failed to start or died; the message names it and its log."""


class Graph:
    """Running node processes; a context manager that always stops them."""

    def __init__(self, nodes: list[NodeSpec], log_dir: Path, config_dir: Path | None = None,
                 say: Callable[[str], None] | None = None,
                 domain_id: int | None = None) -> None:
        self.nodes = nodes
        self.env = dict(os.environ)
        if domain_id is not None:
            self.env['ROS_DOMAIN_ID'] = str(domain_id)
        self.log_dir = log_dir
        self.config_dir = config_dir or workspace_root() / 'config'
        self.say = say or (lambda msg: None)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.nodes:
            self.start_node(spec)

    def start_node(self, spec: NodeSpec) -> None:
        log = open(self.log_dir / f'{spec.node_name}.log', 'ab')  # noqa: SIM115 (child owns it)
        self.say(f'starting {spec.node_name} (log: {self.log_dir / spec.node_name}.log)')
        self.processes[spec.node_name] = subprocess.Popen(
            spec.command(self.config_dir), stdout=log, stderr=subprocess.STDOUT,
            cwd=workspace_root(), start_new_session=True, env=self.env)

    def check_alive(self) -> None:
        """Raise :class:`GraphError` naming any node that has exited."""
        for name, proc in self.processes.items():
            code = proc.poll()
            if code is not None:
                tail = self.log_tail(name)
                raise GraphError(f'node {name} exited with code {code}; last log lines:\n{tail}')

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f'{name}.log'
        if not path.exists():
            return '(no log)'
        return '\n'.join(path.read_text(errors='replace').splitlines()[-lines:])

    def stop_node(self, name: str, timeout_s: float = 10.0) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 5.0),
                          (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        # Planner first (it stops streaming targets), the robot server last.
        for name in reversed(list(self.processes)):
            self.stop_node(name)

    def __enter__(self) -> Graph:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def private_robot_ip(domain: int | None = None) -> str:
    """A loopback address private to a ROS domain (default: this process's), so concurrent test
    runs never share the libfranka port of one simulated robot."""
    if domain is None:
        domain = int(os.environ.get('ROS_DOMAIN_ID', '0'))
    return f'127.0.1.{max(1, min(domain, 254))}'


def run_forever(graph: Graph) -> int:
    """Keep the graph running until Ctrl-C or until a node dies."""
    try:
        while True:
            graph.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    except GraphError as exc:
        print(f'craik: {exc}', file=sys.stderr)
        return 1
