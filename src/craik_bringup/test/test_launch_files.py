"""launch/<graph>.launch.py and `craik launch <graph>` build from the same description.

`launch` / `launch_ros` are not installed on CI machines, so the launch files run here against
stand-ins of the three classes they use, which record their keyword arguments: what the launch
files would hand to ros2 launch is compared with what the generator
(craik_bringup.launch_description) and `craik launch` produce. ros2 launch itself runs only on
the lab robot.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
from pathlib import Path
import re
import sys
import tempfile
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import yaml

from craik_bringup import launch_command
from craik_bringup.graph import NodeSpec
from craik_bringup.graph_description import LaunchArgumentError, load_graph
from craik_bringup.launch_description import build, declare

ROOT = Path(__file__).resolve().parents[3]
# Any existing file passes for a recording: nothing is played.
A_FILE = str(ROOT / 'config' / 'sim.yaml')
DEFAULT_URDF = ROOT / 'src' / 'craik_franka' / 'craik_franka' / 'data' / 'fr3.urdf'
GRAPHS = ['sim', 'robot', 'replay']
CALIBRATION = 'config/calibration/sim_d435.yaml'   # the robot graph requires one
# Argument values per graph: the defaults, and a second set that switches conditional nodes.
CASES = {
    'sim': [{}, {'rviz': 'true', 'runtime': 'torch', 'namespace': 'a'}],
    'robot': [{'robot_ip': '172.16.0.2', 'calibration': CALIBRATION},
              {'robot_ip': '172.16.0.2', 'calibration': CALIBRATION, 'camera': 'craik',
               'rviz': 'true'},
              {'robot_ip': '172.16.0.2', 'calibration': CALIBRATION, 'camera': 'bag',
               'bag': A_FILE}],
    'replay': [{'bag': A_FILE}, {'camera': 'none', 'rviz': 'true'}],
}


class _Recorded:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def fake_launch(monkeypatch, tmp_path):
    """Stand-ins of launch.LaunchDescription, launch.actions.{DeclareLaunchArgument,
    OpaqueFunction} and launch_ros.actions.Node; the launch files' temporary parameter folders
    go below tmp_path."""
    made = itertools.count()

    def mkdtemp(prefix: str = 'tmp') -> str:
        path = tmp_path / f'{prefix}{next(made)}'
        path.mkdir()
        return str(path)

    monkeypatch.setattr(tempfile, 'mkdtemp', mkdtemp)
    classes = {name: type(name, (_Recorded,), {}) for name in
               ('LaunchDescription', 'DeclareLaunchArgument', 'OpaqueFunction', 'Node')}
    modules = {name: ModuleType(name) for name in
               ('launch', 'launch.actions', 'launch_ros', 'launch_ros.actions')}
    modules['launch'].LaunchDescription = classes['LaunchDescription']
    modules['launch.actions'].DeclareLaunchArgument = classes['DeclareLaunchArgument']
    modules['launch.actions'].OpaqueFunction = classes['OpaqueFunction']
    modules['launch_ros.actions'].Node = classes['Node']
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return classes


def run_launch_file(graph: str, configurations: dict[str, str]
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(DeclareLaunchArgument kwargs, Node kwargs) of launch/<graph>.launch.py, its
    OpaqueFunction called as ros2 launch would with these launch configurations."""
    path = ROOT / 'launch' / f'{graph}.launch.py'
    spec = importlib.util.spec_from_file_location(f'craik_launch_file_{graph}', path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    entities = description.args[0]
    declared = [e.kwargs for e in entities if type(e).__name__ == 'DeclareLaunchArgument']
    functions = [e.kwargs['function'] for e in entities if type(e).__name__ == 'OpaqueFunction']
    assert len(functions) == 1
    nodes = functions[0](SimpleNamespace(launch_configurations=dict(configurations)))
    assert all(type(n).__name__ == 'Node' and not n.args for n in nodes)
    return declared, [n.kwargs for n in nodes]


def materialize(parameters: list[Any]) -> list[Path | dict[str, Any]]:
    """A node's parameters with the files a launch file generated for its inline parameters
    read back (they hold one ``/**`` block); other files stay paths."""
    out: list[Path | dict[str, Any]] = []
    for entry in parameters:
        if isinstance(entry, dict):
            out.append(entry)
            continue
        path = Path(entry)
        if '-params-' in path.parent.name:
            data = yaml.safe_load(path.read_text())
            assert list(data) == ['/**']
            out.append(data['/**']['ros__parameters'])
        else:
            out.append(path)
    return out


def craik_launch_nodes(argv: list[str]) -> list[NodeSpec]:
    """The processes `craik launch ARGV` starts (its own argument parsing and resolution)."""
    parser = argparse.ArgumentParser()
    launch_command.configure_parser(parser)
    args = parser.parse_intermixed_args(argv)
    graph = load_graph(args.graph, ROOT).resolve(launch_command.launch_arguments(args), ROOT)
    return [NodeSpec.from_resolved(node) for node in graph.nodes]


@pytest.mark.parametrize('graph', GRAPHS)
def test_launch_file_text_calls_the_generator_for_its_graph(graph):
    text = (ROOT / 'launch' / f'{graph}.launch.py').read_text()
    assert re.search(rf"^GRAPH = '{graph}'$", text, re.MULTILINE)
    assert 'build(GRAPH, context.launch_configurations, ROOT, params_dir)' in text
    assert 'declare(GRAPH, ROOT)' in text
    # launch / launch_ros are imported by the launch file, never by craik_bringup.
    assert 'from launch_ros.actions import Node' in text


def test_every_launch_file_is_generated_from_a_graph_description():
    graphs = {p.stem for p in (ROOT / 'config' / 'graphs').glob('*.yaml')}
    for path in (ROOT / 'launch').glob('*.launch.py'):
        name = path.name.removesuffix('.launch.py')
        assert name in graphs, f'{path} has no config/graphs/{name}.yaml'
        assert f"GRAPH = '{name}'" in path.read_text()


def test_the_old_robot_launch_file_is_gone_and_not_referenced():
    assert not (ROOT / 'launch' / 'craik_robot.launch.py').exists()
    docs = [ROOT / 'README.md', ROOT / 'CONTRIBUTING.md', *ROOT.glob('*/README.md'),
            *ROOT.glob('src/*/README.md'), *ROOT.glob('docs/**/*.md')]
    for doc in docs:
        assert 'craik_robot.launch' not in doc.read_text(), doc


@pytest.mark.parametrize('graph', GRAPHS)
def test_launch_file_declares_the_graph_arguments(fake_launch, graph):
    declared, _ = run_launch_file(graph, CASES[graph][0])
    description = load_graph(graph, ROOT)
    assert declared == declare(graph, ROOT)
    assert [d['name'] for d in declared] == list(description.arguments)
    for d in declared:
        spec = description.arguments[d['name']]
        assert d.get('default_value') == spec.default      # None: required (robot_ip on robot)
        assert d.get('choices') == (list(spec.choices) if spec.choices else None)


@pytest.mark.parametrize(('graph', 'case'), [(g, i) for g in GRAPHS for i in range(len(CASES[g]))])
def test_launch_file_and_craik_launch_start_the_same_nodes(fake_launch, graph, case):
    values = CASES[graph][case]
    _, nodes = run_launch_file(graph, values)
    plain = build(graph, values, ROOT)
    assert [{**n, 'parameters': None} for n in nodes] == \
        [{**n, 'parameters': None} for n in plain]
    assert [materialize(n['parameters']) for n in nodes] == \
        [materialize(n['parameters']) for n in plain]
    # `craik launch` with the same values as name:=value items starts the same processes.
    specs = craik_launch_nodes([graph, *(f'{k}:={v}' for k, v in values.items())])
    assert [(n['package'], n['executable'], n['name']) for n in nodes] == \
        [(s.package, s.executable, s.node_name) for s in specs]
    for node, spec in zip(nodes, specs, strict=True):
        assert materialize(node['parameters']) == spec.parameters
        assert node.get('namespace', '') == spec.namespace
        assert node['arguments'] == spec.arguments
        assert node['remappings'] == spec.remappings
        assert node['cwd'] == str(ROOT)    # as craik launch runs its nodes in the workspace


def test_craik_launch_options_are_the_launch_arguments():
    by_options = craik_launch_nodes(['robot', '--robot-ip', '172.16.0.2', '--camera', 'craik',
                                     '--runtime', 'onnxruntime', 'rviz:=true',
                                     f'calibration:={CALIBRATION}'])
    by_items = craik_launch_nodes(['robot', 'robot_ip:=172.16.0.2', 'camera:=craik',
                                   'runtime:=onnxruntime', 'rviz:=true',
                                   f'calibration:={CALIBRATION}'])
    assert by_options == by_items
    assert 'rviz' in [s.node_name for s in by_options]


def test_launch_configurations_of_other_launch_files_are_ignored(fake_launch):
    _, nodes = run_launch_file('sim', {'use_sim_time': 'true'})
    assert [n['name'] for n in nodes] == ['sim', 'franka_controller', 'mpc_planner']


def test_a_bad_value_fails_the_launch_with_the_argument_named(fake_launch):
    with pytest.raises(LaunchArgumentError, match="camera='usb' is not one of"):
        run_launch_file('robot', {'robot_ip': '172.16.0.2', 'camera': 'usb'})
    with pytest.raises(LaunchArgumentError, match='argument robot_ip is required'):
        run_launch_file('robot', {})


def test_robot_launch_file_starts_rsp_and_the_camera_transform(fake_launch):
    _, nodes = run_launch_file('robot', {'robot_ip': '172.16.0.2', 'calibration': CALIBRATION})
    by_name = {n['name']: n for n in nodes}
    assert by_name['robot_state_publisher']['package'] == 'robot_state_publisher'
    # The URDF reaches robot_state_publisher as a string parameter in a parameters file (in
    # a parameter dict launch_ros would parse it as YAML).
    (rsp_file,) = by_name['robot_state_publisher']['parameters']
    assert materialize([rsp_file]) == [{'robot_description': DEFAULT_URDF.read_text()}]
    assert by_name['camera_tf']['arguments'][:2] == ['--x', '1.3']
    assert {'realsense2_camera', 'craik_franka', 'craik_planner'} <= {
        n['package'] for n in nodes}
