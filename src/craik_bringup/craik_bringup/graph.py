"""Start craik's node graph as processes: `ros2 launch` for machines without it.

Every graph is described once in config/graphs/<graph>.yaml (craik_bringup.graph_description);
the lab robot starts it with the launch files in launch/, everywhere else (CI, `make demo`,
`craik eval`, `craik launch`, system tests) this module starts the same executables with the
same parameter files and overrides, and stops them all, escalating from SIGINT to SIGKILL, on
exit. Each node's output goes to `<log_dir>/<node>.log` (and, for `craik launch`, to the
terminal with a `[node]` prefix).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import fcntl
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

from craik_bringup.graph_description import ResolvedNode, load_graph, write_parameters_file


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
    """Path of a node executable installed by colcon (what `ros2 run` would start); raises
    FileNotFoundError naming the executable, its package and how to install it."""
    path = find_executable(package, name)
    if path is None:
        raise FileNotFoundError(f'executable {name!r} of package {package!r} is not installed: '
                                f'{install_hint(package)}')
    return path


def find_executable(package: str, name: str) -> Path | None:
    """Path of a node executable (``<prefix>/lib/<package>/<name>``, where `ros2 run` looks),
    None when the package or the executable is not installed."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        path = Path(get_package_prefix(package)) / 'lib' / package / name
    except (PackageNotFoundError, ValueError):
        return None
    return path if path.is_file() and os.access(path, os.X_OK) else None


def install_hint(package: str) -> str:
    """How to get a missing package: craik's own are built by `make setup`; any other is a ROS
    package from the ROS apt repository (the lab robot's image has them)."""
    if package.startswith('craik_'):
        return 'run `make setup` and `source env.bash`'
    distro = os.environ.get('ROS_DISTRO', '<distro>')
    return f"install it: apt install ros-{distro}-{package.replace('_', '-')}"


def _cli_value(value: Any) -> str:
    """A parameter value as `-p name:=VALUE` text (ROS parses VALUE as YAML)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, list | tuple):
        return '[' + ','.join(_cli_value(v) for v in value) + ']'
    if isinstance(value, str):
        import yaml

        # A string that YAML would read as something else ('', '1.0', 'true', 'null') is
        # quoted, so the node receives the string it was given.
        try:
            plain = yaml.safe_load(value) == value and '\n' not in value
        except yaml.YAMLError:
            plain = False
        if not plain:
            return "'" + value.replace("'", "''") + "'"
    return str(value)


@dataclass
class NodeSpec:
    """One node process: executable, parameters and overrides.

    ``parameters`` lists parameter files and inline parameter dicts in order (later entries
    win); None means the node's own ``<config_dir>/<node_name>.yaml`` if it exists. ``overrides``
    come after all of them. ``arguments`` go before ``--ros-args``.
    """

    package: str
    executable: str
    node_name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    parameters: list[Path | dict[str, Any]] | None = None
    namespace: str = ''
    remappings: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)

    def command(self, config_dir: Path, params_dir: Path | None = None) -> list[str]:
        """The command line; inline parameter dicts are written to ``params_dir`` as
        parameters files when it is given (exact types, any length), else passed as ``-p``."""
        cmd = [str(executable(self.package, self.executable)), *self.arguments, '--ros-args',
               '-r', f'__node:={self.node_name}']
        if self.namespace:
            cmd += ['-r', f'__ns:={self.namespace}']
        for source, target in self.remappings:
            cmd += ['-r', f'{source}:={target}']
        if self.parameters is None:
            params = config_dir / f'{self.node_name}.yaml'
            entries: list[Path | dict[str, Any]] = [params] if params.exists() else []
        else:
            entries = list(self.parameters)
        for i, entry in enumerate(entries):
            if isinstance(entry, Path):
                cmd += ['--params-file', str(entry)]
            elif params_dir is not None:
                path = params_dir / f'{self.node_name}.{i}.yaml'
                write_parameters_file(path, entry)
                cmd += ['--params-file', str(path)]
            else:
                cmd += self._override_args(entry)
        return cmd + self._override_args(self.overrides)

    @staticmethod
    def _override_args(values: dict[str, Any]) -> list[str]:
        args: list[str] = []
        for key, value in values.items():
            args += ['-p', f'{key}:={_cli_value(value)}']
        return args

    @classmethod
    def from_resolved(cls, node: ResolvedNode) -> NodeSpec:
        """The process of a node of a resolved graph description."""
        return cls(node.package, node.executable, node.name, parameters=list(node.parameters),
                   namespace=node.namespace, remappings=list(node.remappings),
                   arguments=list(node.arguments))


def graph_nodes(graph: str, arguments: dict[str, str] | None = None,
                root: Path | None = None) -> list[NodeSpec]:
    """The processes of ``config/graphs/<graph>.yaml`` with these launch arguments."""
    resolved = load_graph(graph, root or workspace_root()).resolve(arguments or {},
                                                                   root or workspace_root())
    return [NodeSpec.from_resolved(node) for node in resolved.nodes]


def sim_graph(robot_ip: str = '127.0.0.1', planner: dict[str, Any] | None = None,
              sim: dict[str, Any] | None = None,
              controller: dict[str, Any] | None = None,
              mapping: bool = False) -> list[NodeSpec]:
    """The simulated lab of config/graphs/sim.yaml: sim (franky-sim + camera),
    franka_controller, with ``mapping`` the gaussian_mapper, mpc_planner (last); ``planner``,
    ``sim`` and ``controller`` are overrides applied after the graph's parameters."""
    nodes = graph_nodes('sim', {'robot_ip': robot_ip, 'mapping': str(mapping).lower()})
    extra = {'sim': sim, 'franka_controller': controller, 'mpc_planner': planner}
    for node in nodes:
        node.overrides.update(extra.get(node.node_name) or {})
    return nodes


class GraphError(RuntimeError):
    """A node of the graph failed to start or died; the message names it and its log."""


class Graph:
    """Running node processes; a context manager that always stops them."""

    def __init__(self, nodes: list[NodeSpec], log_dir: Path, config_dir: Path | None = None,
                 say: Callable[[str], None] | None = None,
                 domain_id: int | None = None, stream: IO[str] | None = None) -> None:
        """``stream``: also copy every node's output there, each line prefixed ``[node]``
        (`craik launch`); without it the output goes only to ``<log_dir>/<node>.log``."""
        self.nodes = nodes
        self.env = dict(os.environ)
        if domain_id is not None:
            self.env['ROS_DOMAIN_ID'] = str(domain_id)
        if stream is not None:
            # Piped output is block-buffered unless told otherwise: lines would arrive late.
            self.env.update(PYTHONUNBUFFERED='1', RCUTILS_LOGGING_BUFFERED_STREAM='0')
        self.log_dir = log_dir
        self.config_dir = config_dir or workspace_root() / 'config'
        self.say = say or (lambda msg: None)
        self.stream = stream
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._copiers: dict[str, threading.Thread] = {}
        self._stream_lock = threading.Lock()

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.nodes:
            self.start_node(spec)

    def start_node(self, spec: NodeSpec) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = spec.command(self.config_dir, self.log_dir / 'params')
        log = open(self.log_dir / f'{spec.node_name}.log', 'ab')  # noqa: SIM115 (child owns it)
        self.say(f'starting {spec.node_name} (log: {self.log_dir / spec.node_name}.log)')
        proc = subprocess.Popen(
            command, stdout=log if self.stream is None else subprocess.PIPE,
            stderr=subprocess.STDOUT, cwd=workspace_root(), start_new_session=True,
            env=self.env)
        self.processes[spec.node_name] = proc
        if self.stream is not None:
            copier = threading.Thread(target=self._copy_output,
                                      args=(spec.node_name, proc, log), daemon=True)
            self._copiers[spec.node_name] = copier
            copier.start()
        else:
            log.close()   # the child has its own copy of the descriptor

    def _copy_output(self, name: str, proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        assert proc.stdout is not None and self.stream is not None
        with log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                text = line.decode(errors='replace').rstrip('\n')
                with self._stream_lock:
                    self.stream.write(f'[{name}] {text}\n')
                    self.stream.flush()

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
        """Stop a node's process group: SIGINT, then SIGTERM after ``timeout_s``, then SIGKILL
        after 5 s more. A node that already exited has what it left in its group stopped."""
        proc = self.processes.pop(name, None)
        if proc is None:
            return
        for sig, wait in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 5.0),
                          (signal.SIGKILL, 5.0)):
            if not _group_alive(proc):
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while _group_alive(proc) and time.monotonic() < deadline:
                time.sleep(0.05)
        self._join_copier(name)

    def _join_copier(self, name: str) -> None:
        # The node's last lines (its shutdown messages) are printed before the launcher's own.
        copier = self._copiers.pop(name, None)
        if copier is not None:
            copier.join(timeout=2.0)

    def stop(self) -> None:
        # Planner first (it stops streaming targets), the robot server last.
        for name in reversed(list(self.processes)):
            self.stop_node(name)

    def __enter__(self) -> Graph:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the node's process or anything else in its process group still runs (the node
    is its group's leader: ``start_new_session``)."""
    if proc.poll() is None:
        return True
    try:
        os.killpg(proc.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# Linux allows domains 0..101 with the default port mapping; 0 is what an interactive session
# uses, so reserved domains stay away from it.
_DOMAIN_RANGE = range(1, 102)
# Locks of the domains this process holds (released when the process exits).
_domain_locks: list[IO[str]] = []


def reserve_ros_domain() -> int:
    """A ROS domain no other process on this machine has reserved, held until this process
    exits (a file lock per domain), so concurrent test runs and soaks never share DDS traffic
    or a simulated robot's address (private_robot_ip)."""
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
    raise RuntimeError(f'all ROS domains {_DOMAIN_RANGE.start}..{_DOMAIN_RANGE.stop - 1} are '
                       f'held by other processes (locks in {lock_dir})')


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
