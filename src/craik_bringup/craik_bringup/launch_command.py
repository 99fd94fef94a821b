"""`craik launch <graph>`: start a graph of config/graphs/ where `ros2 launch` is not installed.

    craik launch sim
    craik launch robot --robot-ip 172.16.0.2 --camera craik
    craik launch replay bag:=recordings/scene.db3 rviz:=true

The graph description is the one launch/<graph>.launch.py builds from, resolved the same way
(craik_bringup.graph_description). One process per node; each node's output goes to the
terminal, every line prefixed with ``[node_name]``, and to ``<log-dir>/<node_name>.log``.
Ctrl-C (SIGINT) or SIGTERM stops every node (SIGINT, then SIGTERM, then SIGKILL) and exits 0.
A node that exits on its own ends the launch: it is reported with its name and exit code, the
other nodes are stopped, and the exit code is 1. Executables that are not installed are all
named, with the package to install, before anything starts (exit code 2, as for a bad
argument).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from craik_bringup.graph import Graph, NodeSpec, find_executable, install_hint, workspace_root
from craik_bringup.graph_description import (
    GraphDescriptionError,
    ResolvedGraph,
    available_graphs,
    load_graph,
    parse_assignments,
)

# Options that set a launch argument (`--robot-ip X` is `robot_ip:=X`); a graph that does not
# declare the argument refuses the option.
OPTION_ARGUMENTS = {
    'robot_ip': 'FCI address of the FR3 (sim: the loopback address of the simulated FR3)',
    'camera': 'camera source: driver | craik | bag | none (graphs that have a camera)',
    'params_file': 'extra ROS parameters file applied on top of every node',
    'namespace': 'ROS namespace of every node',
    'runtime': 'world-model runtime: tensorrt | onnxruntime | torch',
}
# `craik launch sim --robot-ip X rviz:=true`: options between the positionals (cli.main).
INTERMIXED_ARGS = True
EXIT_STOPPED = 0      # stopped by Ctrl-C / SIGTERM
EXIT_NODE_DIED = 1    # a node exited on its own
EXIT_USAGE = 2        # bad graph or arguments, or executables missing


def configure_parser(parser: argparse.ArgumentParser) -> None:
    root = workspace_root()
    graphs = available_graphs(root)
    parser.add_argument('graph', help=f'graph in config/graphs/: {", ".join(graphs) or "none"}')
    for name, help_text in OPTION_ARGUMENTS.items():
        parser.add_argument(f'--{name.replace("_", "-")}', dest=name, default=None,
                            help=f'{help_text} (= {name}:=VALUE)')
    parser.add_argument('--log-dir', type=Path, default=None,
                        help="folder of the nodes' logs (default: log/launch/<graph>-<time>/)")
    parser.add_argument('--dry-run', action='store_true',
                        help='print the arguments and the nodes with their command lines, start '
                             'nothing')
    parser.add_argument('assignments', nargs='*', metavar='name:=value',
                        help='launch arguments, as for ros2 launch (see --dry-run for a '
                             "graph's arguments)")
    parser.epilog = ('The graphs and their arguments are described in config/graphs/*.yaml '
                     '(config/README.md).')


def launch_arguments(args: argparse.Namespace) -> dict[str, str]:
    """The launch-argument values given on the command line: ``name:=value`` items and the
    options (an option and an item for the same argument: the item wins). Relative paths are
    relative to the current directory (graph_description.GraphDescription.resolve)."""
    values: dict[str, str] = {}
    for name in OPTION_ARGUMENTS:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    values.update(parse_assignments(args.assignments))
    return values


def missing_executables(graph: ResolvedGraph) -> list[str]:
    """One line per node whose executable is not installed here: node, executable, package
    and how to install it."""
    return [f'node {node.name}: executable {node.executable!r} of package {node.package!r} is '
            f'not installed ({install_hint(node.package)})'
            for node in graph.nodes if find_executable(node.package, node.executable) is None]


def describe(graph: ResolvedGraph, nodes: list[NodeSpec]) -> str:
    """The resolved arguments and each node's command line (--dry-run; inline parameters are
    shown as ``-p`` where a launch writes them to a parameters file in its log folder)."""
    lines = [f'graph {graph.name}:'] + [f'  {k}:={v}' for k, v in graph.arguments.items()]
    for spec in nodes:
        lines.append(f'node {spec.node_name} ({spec.package}/{spec.executable}):')
        if find_executable(spec.package, spec.executable) is None:
            lines.append(f'  (not installed here: {install_hint(spec.package)})')
            continue
        lines.append('  ' + ' '.join(_shell_word(w) for w in
                                     spec.command(workspace_root() / 'config')))
    return '\n'.join(lines)


def _shell_word(word: str) -> str:
    if len(word) > 120:
        return f'<{len(word)} characters>'
    return word if word and all(c.isalnum() or c in '-_./:=,[]' for c in word) else repr(word)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f'{code} (killed by {signal.Signals(-code).name})'
        except ValueError:
            return f'{code} (killed by signal {-code})'
    return str(code)


def run(args: argparse.Namespace) -> int:
    root = workspace_root()
    try:
        graph = load_graph(args.graph, root).resolve(launch_arguments(args), root)
    except GraphDescriptionError as err:
        print(f'craik launch: {err}', file=sys.stderr)
        return EXIT_USAGE
    nodes = [NodeSpec.from_resolved(node) for node in graph.nodes]
    log_dir = args.log_dir or root / 'log' / 'launch' / (
        f'{graph.name}-{time.strftime("%Y%m%d-%H%M%S")}')
    if args.dry_run:
        print(describe(graph, nodes))
        return 0
    missing = missing_executables(graph)
    if missing:
        print(f'craik launch: cannot start graph {graph.name}:\n  ' + '\n  '.join(missing),
              file=sys.stderr)
        return EXIT_USAGE

    def say(message: str) -> None:
        print(f'[launch] {message}', flush=True)

    say(f'graph {graph.name}: ' + ', '.join(f'{k}:={v}' for k, v in graph.arguments.items()))
    if threading.current_thread() is threading.main_thread():
        # Also when run() is called without cli.main (which does the same for every command):
        # SIGINT inherited ignored must still stop the graph.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return supervise(Graph(nodes, log_dir, say=say, stream=sys.stdout), say)


def supervise(graph: Graph, say: Callable[[str], None]) -> int:
    """Start the graph, wait until a signal or until a node exits, stop everything."""
    code = EXIT_STOPPED
    try:
        for spec in graph.nodes:
            graph.start_node(spec)
            say(f'started {spec.node_name} (pid {graph.processes[spec.node_name].pid})')
        say(f'all {len(graph.nodes)} nodes started; logs in {graph.log_dir}; Ctrl-C stops them')
        while True:
            for name, proc in list(graph.processes.items()):
                exit_code = proc.poll()
                if exit_code is not None:
                    graph.stop_node(name)   # its last output lines, what it left in its group
                    print(f'craik launch: node {name} exited with code {_exit_text(exit_code)} '
                          f'(log: {graph.log_dir / name}.log); stopping the other nodes',
                          file=sys.stderr, flush=True)
                    code = EXIT_NODE_DIED
                    break
            if code != EXIT_STOPPED:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        say('stopping (signal received)')
    finally:
        _stop(graph, say)
    return code


def _stop(graph: Graph, say: Callable[[str], None]) -> None:
    # A second Ctrl-C or SIGTERM while stopping must not abandon nodes halfway: the escalation
    # to SIGKILL bounds how long stopping takes.
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        def patient(signum: int, frame: FrameType | None) -> None:
            say('already stopping (each node gets SIGINT, then SIGTERM, then SIGKILL)')

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, patient)
    try:
        graph.stop()
        say('all nodes stopped')
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
