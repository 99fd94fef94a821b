"""config/graphs/*.yaml: loading, validation, launch arguments, conditions, and the graphs."""

from __future__ import annotations

from pathlib import Path
import textwrap

import pytest

from craik_bringup.graph import NodeSpec, graph_nodes, sim_graph
from craik_bringup.graph_description import (
    GraphDescriptionError,
    LaunchArgumentError,
    available_graphs,
    load_graph,
    parse_assignments,
    resolve_graph,
)
from craik_sim.calibration import load_calibration, save_calibration

ROOT = Path(__file__).resolve().parents[3]
# Any existing file passes for a recording: nothing is played.
A_FILE = str(ROOT / 'config' / 'sim.yaml')
CALIBRATION = ROOT / 'config' / 'calibration' / 'sim_d435.yaml'
DEFAULT_URDF = ROOT / 'src' / 'craik_franka' / 'craik_franka' / 'data' / 'fr3.urdf'
# The robot graph needs the lab's calibration; the tests give it the simulated camera's.
LAB_CALIBRATION = 'config/calibration/sim_d435.yaml'
ROBOT = {'robot_ip': '172.16.0.2', 'calibration': LAB_CALIBRATION}


def write(tmp_path: Path, text: str, name: str = 'g.yaml') -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def required(graph: str) -> dict[str, str]:
    """Values for the arguments a shipped graph requires (or needs for its default camera)."""
    bag = {'bag': A_FILE}
    return {'robot': {**ROBOT, **bag}, 'replay': bag}.get(graph, {})


# ---- the shipped graphs ------------------------------------------------------------------------

def test_the_three_graphs_are_described():
    assert available_graphs(ROOT) == ['replay', 'robot', 'sim']


@pytest.mark.parametrize('graph', ['sim', 'robot', 'replay'])
def test_every_argument_combination_resolves_to_unique_nodes(graph):
    description = load_graph(graph, ROOT)
    combos = list(description.choice_combinations())
    assert combos
    for combo in combos:
        resolved = description.resolve({**required(graph), **combo}, ROOT)
        names = resolved.node_names
        assert len(names) == len(set(names)), (combo, names)
        for node in resolved.nodes:
            for entry in node.parameters:
                assert not isinstance(entry, Path) or entry.is_file()


def test_sim_graph_is_built_from_sim_yaml():
    nodes = sim_graph('127.0.1.7', planner={'backend': 'oracle'}, sim={'rate_hz': 5.0},
                      controller={'gripper_enabled': False})
    assert [(n.package, n.executable, n.node_name) for n in nodes] == [
        ('craik_sim', 'sim', 'sim'),
        ('craik_franka', 'franka_controller', 'franka_controller'),
        ('craik_planner', 'mpc_planner', 'mpc_planner')]   # the planner last (system tests)
    # The map on request (make demo), before the planner.
    assert [n.node_name for n in sim_graph('127.0.1.7', mapping=True)] == [
        'sim', 'franka_controller', 'gaussian_mapper', 'mpc_planner']
    by_name = {n.node_name: n for n in nodes}
    assert by_name['sim'].parameters == [ROOT / 'config' / 'sim.yaml',
                                         {'hostname': '127.0.1.7'}]
    assert by_name['sim'].overrides == {'rate_hz': 5.0}
    assert by_name['franka_controller'].parameters[1] == {'robot_ip': '127.0.1.7'}
    assert by_name['franka_controller'].overrides == {'gripper_enabled': False}
    assert by_name['mpc_planner'].parameters[1] == {'runtime': 'onnxruntime'}
    assert by_name['mpc_planner'].overrides == {'backend': 'oracle'}


def test_sim_rviz_only_on_request():
    assert 'rviz' not in resolve_graph('sim', {}, ROOT).node_names
    rviz = resolve_graph('sim', {'rviz': 'true'}, ROOT).node('rviz')
    assert (rviz.package, rviz.executable) == ('rviz2', 'rviz2')
    assert rviz.arguments == ('-d', str(ROOT / 'config' / 'rviz' / 'craik.rviz'))


def test_robot_graph_publishes_the_fr3_description_and_the_calibrated_camera():
    graph = resolve_graph('robot', ROBOT, ROOT)
    rsp = graph.node('robot_state_publisher')
    assert (rsp.package, rsp.executable) == ('robot_state_publisher', 'robot_state_publisher')
    assert rsp.parameter_values() == {'robot_description': DEFAULT_URDF.read_text()}
    tf = graph.node('camera_tf')
    assert (tf.package, tf.executable) == ('tf2_ros', 'static_transform_publisher')
    calibration = load_calibration(CALIBRATION)
    args = dict(zip(tf.arguments[::2], tf.arguments[1::2], strict=True))
    assert [float(args[f'--{k}']) for k in ('x', 'y', 'z')] == list(calibration.translation)
    assert [float(args[f'--{k}']) for k in ('qx', 'qy', 'qz', 'qw')] == \
        list(calibration.rotation_xyzw)
    assert args['--frame-id'] == 'fr3_link0'
    assert args['--child-frame-id'] == 'camera_color_optical_frame'
    # The planner's camera model is the same file.
    assert graph.node('mpc_planner').parameter_values()['camera_calibration'] == str(CALIBRATION)


def test_robot_graph_static_transform_follows_the_calibration_argument(tmp_path):
    moved = load_calibration(CALIBRATION).with_pose(
        [0.9, -0.2, 0.75], load_calibration(CALIBRATION).rotation_matrix)
    save_calibration(moved, tmp_path / 'lab.yaml')
    graph = resolve_graph('robot', {**ROBOT, 'calibration': str(tmp_path / 'lab.yaml')}, ROOT)
    args = graph.node('camera_tf').arguments
    assert args[:6] == ('--x', '0.9', '--y', '-0.2', '--z', '0.75')
    assert graph.node('mpc_planner').parameter_values()['camera_calibration'] == \
        str(tmp_path / 'lab.yaml')
    with pytest.raises(LaunchArgumentError, match='calibration.*does not exist'):
        resolve_graph('robot', {**ROBOT, 'calibration': str(tmp_path / 'none.yaml')}, ROOT)


def test_robot_graph_description_argument(tmp_path):
    urdf = tmp_path / 'fr3.urdf'
    urdf.write_text('<robot name="fr3"/>')
    graph = resolve_graph('robot', {**ROBOT, 'description': str(urdf)}, ROOT)
    assert graph.node('robot_state_publisher').parameter_values() == {
        'robot_description': '<robot name="fr3"/>'}


def test_robot_graph_controller_enforces_realtime_and_camera_choices():
    graph = resolve_graph('robot', ROBOT, ROOT)
    controller = graph.node('franka_controller').parameter_values()
    assert controller['robot_ip'] == '172.16.0.2'
    assert controller['realtime_config'] == 'enforce'
    assert graph.node('mpc_planner').parameter_values()['runtime'] == 'tensorrt'
    driver = graph.node('camera')
    assert (driver.package, driver.executable, driver.namespace) == (
        'realsense2_camera', 'realsense2_camera_node', '/camera')
    assert driver.parameter_values()['align_depth.enable'] is True
    assert 'realsense' not in graph.node_names

    craik = resolve_graph('robot', {**ROBOT, 'camera': 'craik'}, ROOT)
    assert 'camera' not in craik.node_names
    assert craik.node('realsense').parameter_values()['rosbag_filename'] == ''

    bag = resolve_graph('robot', {**ROBOT, 'camera': 'bag', 'bag': A_FILE}, ROOT)
    assert bag.node('realsense').parameter_values()['rosbag_filename'] == \
        A_FILE
    with pytest.raises(LaunchArgumentError, match='needs argument bag.*camera == bag'):
        resolve_graph('robot', {**ROBOT, 'camera': 'bag'}, ROOT)

    none = resolve_graph('robot', {**ROBOT, 'camera': 'none'}, ROOT)
    assert not {'camera', 'realsense'} & set(none.node_names)


def test_robot_ip_is_required_on_the_robot():
    with pytest.raises(LaunchArgumentError, match='argument robot_ip is required'):
        resolve_graph('robot', {}, ROOT)


def test_the_robot_graph_needs_the_labs_calibration():
    # No default: the simulated camera's file would make the planner, the map and the camera
    # transform use a camera that is not where the lab's is.
    with pytest.raises(LaunchArgumentError, match='needs argument calibration'):
        resolve_graph('robot', {'robot_ip': '172.16.0.2'}, ROOT)
    none = resolve_graph('robot', {'robot_ip': '172.16.0.2', 'camera': 'none',
                                   'mapping': 'false', 'calibration': LAB_CALIBRATION}, ROOT)
    assert 'mpc_planner' in none.node_names


def test_replay_never_runs_a_robot_controller():
    description = load_graph('replay', ROOT)
    for combo in description.choice_combinations():
        graph = description.resolve({**required('replay'), **combo}, ROOT)
        assert 'franka_controller' not in graph.node_names, combo
        assert all(n.package != 'craik_franka' for n in graph.nodes), combo
        assert 'mpc_planner' in graph.node_names
    # Not even through an argument: the description declares no robot address.
    assert 'robot_ip' not in description.arguments
    assert all(n.package != 'craik_franka' for n in description.nodes)


def test_replay_plays_the_bag_with_the_realsense_node():
    graph = resolve_graph('replay', {'bag': A_FILE}, ROOT)
    assert graph.node('realsense').parameter_values()['rosbag_filename'] == \
        A_FILE
    assert 'realsense' not in resolve_graph('replay', {'camera': 'none'}, ROOT).node_names
    with pytest.raises(LaunchArgumentError, match='needs argument bag'):
        resolve_graph('replay', {}, ROOT)


def test_params_file_applies_on_top_of_every_node(tmp_path):
    extra = write(tmp_path, """\
        mpc_planner:
          ros__parameters:
            num_samples: 64
        /**:
          ros__parameters:
            use_sim_time: true
        """, 'extra.yaml')
    graph = resolve_graph('sim', {'params_file': str(extra)}, ROOT)
    planner = graph.node('mpc_planner')
    assert planner.parameters[-1] == extra
    assert planner.parameter_values()['num_samples'] == 64
    assert graph.node('sim').parameter_values()['use_sim_time'] is True
    assert 'num_samples' not in graph.node('sim').parameter_values()
    with pytest.raises(LaunchArgumentError, match='params_file.*does not exist'):
        resolve_graph('sim', {'params_file': str(tmp_path / 'missing.yaml')}, ROOT)


def test_relative_paths_given_are_relative_to_the_current_directory(tmp_path):
    (tmp_path / 'extra.yaml').write_text('{}')
    graph = load_graph('sim', ROOT).resolve({'params_file': 'extra.yaml'}, ROOT, cwd=tmp_path)
    assert graph.arguments['params_file'] == str(tmp_path / 'extra.yaml')
    assert graph.node('sim').parameters[-1] == tmp_path / 'extra.yaml'
    # Defaults (and the description's own files) are relative to the workspace root.
    replay = load_graph('replay', ROOT).resolve({'bag': A_FILE}, ROOT, cwd=tmp_path)
    assert replay.arguments['calibration'] == 'config/calibration/sim_d435.yaml'
    assert replay.node('mpc_planner').parameters[0] == ROOT / 'config' / 'mpc_planner.yaml'
    assert replay.node('mpc_planner').parameter_values()['camera_calibration'] == \
        str(CALIBRATION)


def test_namespace_keeps_the_nodes_parameters():
    # ROS matches `<node>:` blocks of a parameters file against the fully qualified name: a
    # namespaced node would silently get none of config/<node>.yaml. The blocks are read for it.
    graph = resolve_graph('robot', {**ROBOT, 'namespace': 'lab'}, ROOT)
    controller = graph.node('franka_controller')
    assert controller.fully_qualified_name == '/lab/franka_controller'
    assert all(isinstance(p, dict) for p in controller.parameters)
    values = controller.parameter_values()
    assert values['workspace_min'] == [0.2, -0.45, 0.02]       # from config/franka_controller.yaml
    assert values['realtime_config'] == 'enforce'              # the graph's override still wins
    assert graph.node('camera').namespace == '/lab/camera'
    spec = NodeSpec.from_resolved(controller)
    assert spec.namespace == '/lab'


def test_graph_nodes_gives_the_processes_of_any_graph():
    specs = graph_nodes('robot', {**ROBOT, 'camera': 'craik', 'rviz': 'true'}, ROOT)
    assert [s.node_name for s in specs] == [
        'realsense', 'robot_state_publisher', 'camera_tf', 'franka_controller', 'gaussian_mapper',
        'mpc_planner',
        'rviz']


# ---- arguments and conditions ------------------------------------------------------------------

TOY = """\
    format_version: 1
    arguments:
      mapping: {type: bool, default: true}
      camera: {default: driver, choices: [driver, craik]}
      robot_ip: {}
      label: {default: x}
    nodes:
      - {name: always, package: pkg_a, executable: a}
      - name: gaussian_mapper
        package: craik_mapping
        executable: gaussian_mapper
        parameters: [{enabled: $(var mapping), label: 'at $(var robot_ip)'}]
        condition: mapping
      - {name: no_mapping, package: pkg_a, executable: a, condition: not mapping}
      - {name: driver, package: pkg_a, executable: a, condition: camera == driver}
      - {name: not_driver, package: pkg_a, executable: a, condition: camera != driver}
      - {name: both, package: pkg_a, executable: a, condition: mapping and camera == craik}
    """


@pytest.fixture
def toy(tmp_path):
    return load_graph(write(tmp_path, TOY))


def test_a_node_switched_by_a_bool_argument(toy):
    on = toy.resolve({'robot_ip': '10.0.0.1'})
    assert on.node_names == ['always', 'gaussian_mapper', 'driver']
    assert on.node('gaussian_mapper').parameters == ({'enabled': True, 'label': 'at 10.0.0.1'},)
    off = toy.resolve({'robot_ip': '10.0.0.1', 'mapping': 'False'})   # case-insensitive
    assert off.arguments['mapping'] == 'false'
    assert off.node_names == ['always', 'no_mapping', 'driver']


def test_choice_conditions(toy):
    craik = toy.resolve({'robot_ip': '1', 'camera': 'craik'})
    assert craik.node_names == ['always', 'gaussian_mapper', 'not_driver', 'both']
    assert toy.resolve({'robot_ip': '1', 'camera': 'craik', 'mapping': 'false'}).node_names == [
        'always', 'no_mapping', 'not_driver']


def test_bad_argument_values_are_refused_by_name(toy):
    with pytest.raises(LaunchArgumentError, match=r"camera='usb' is not one of driver, craik"):
        toy.resolve({'robot_ip': '1', 'camera': 'usb'})
    with pytest.raises(LaunchArgumentError, match=r"mapping='yes' is not one of true, false"):
        toy.resolve({'robot_ip': '1', 'mapping': 'yes'})
    with pytest.raises(LaunchArgumentError, match='has no argument robotip'):
        toy.resolve({'robotip': '1'})
    with pytest.raises(LaunchArgumentError, match='argument robot_ip is required'):
        toy.resolve({})


def test_parse_assignments():
    assert parse_assignments(['a:=1', 'b:=', 'c:=x:=y']) == {'a': '1', 'b': '', 'c': 'x:=y'}
    with pytest.raises(LaunchArgumentError, match="expected NAME:=VALUE, got 'a=1'"):
        parse_assignments(['a=1'])


# ---- malformed descriptions: specific errors naming the file and the field ----------------------

GOOD_NODE = '{name: n, package: p, executable: e}'


@pytest.mark.parametrize(('text', 'message'), [
    ('- just a list', 'top level must be a mapping'),
    ('format_version: 2\nnodes: [' + GOOD_NODE + ']', 'format_version: expected 1, got 2'),
    ('format_version: 1\nnode: [' + GOOD_NODE + ']', r'unknown field\(s\) node'),
    ('format_version: 1\nnodes: []', 'needs at least one node'),
    ('format_version: 1\nnodes: {n: 1}', 'nodes must be a list'),
    ('format_version: 1\nnodes: [{name: n, executable: e}]', r'nodes\[0\]: missing field package'),
    ('format_version: 1\nnodes: [{name: 2n, package: p, executable: e}]',
     r'nodes\[0\].name must be a name'),
    ('format_version: 1\nnodes: [{name: n, package: p, executable: e, params: []}]',
     r'nodes\[0\] \(n\): unknown field\(s\) params'),
    ('format_version: 1\nnodes: [{name: n, package: p, executable: e, arguments: [$(var x)]}]',
     r'nodes\[0\] \(n\).arguments\[0\]: \$\(var x\) names no declared argument'),
    ('format_version: 1\nnodes: [{name: n, package: p, executable: e, arguments: [$(env X)]}]',
     r'unknown substitution \$\(env ...\)'),
    ('format_version: 1\narguments: {x: {}}\nnodes: [{name: n, package: p, executable: e, '
     'arguments: ["$(var x"]}]', r'unterminated \$\(var ...\)'),
    ('format_version: 1\nnodes: [{name: n, package: p, executable: e, '
     'parameters: [{a: [{b: 1}]}]}]', r'parameters\[0\].a: a parameter is a scalar'),
    ('format_version: 1\nnodes: [{name: n, package: p, executable: e, condition: cam == x}]',
     r'condition: cam is not a declared argument'),
    ('format_version: 1\narguments: {cam: {default: a, choices: [a, b]}}\n'
     'nodes: [{name: n, package: p, executable: e, condition: cam == c}]',
     r"condition: 'c' is not a choice of cam \(a, b\)"),
    ('format_version: 1\narguments: {cam: {default: a}}\n'
     'nodes: [{name: n, package: p, executable: e, condition: cam}]',
     r'"cam" needs a bool argument; cam is a string'),
    ('format_version: 1\narguments: {cam: {default: a}}\n'
     'nodes: [{name: n, package: p, executable: e, condition: cam = a}]',
     r"condition: cannot read 'cam = a'"),
    ('format_version: 1\narguments: {cam: {default: c, choices: [a, b]}}\nnodes: [' + GOOD_NODE
     + ']', r"arguments.cam.default 'c' is not one of its choices"),
    ('format_version: 1\narguments: {cam: {type: int}}\nnodes: [' + GOOD_NODE + ']',
     r"arguments.cam.type: 'int' is not one of string, bool, path"),
    ('format_version: 1\narguments: {cam: {default: a, choise: [a]}}\nnodes: [' + GOOD_NODE
     + ']', r'arguments.cam: unknown field\(s\) choise'),
    ('format_version: 1\nnodes: [' + GOOD_NODE + ', ' + GOOD_NODE + ']',
     'more than one unconditional node is named n'),
    ('format_version: 1\nnodes: [{name: n, package: p, executable: e, requires: [bag]}]',
     'requires: bag is not a declared argument'),
    ('format_version: 1\nnodes: [{name: n, package: p, executable: e}', 'not valid YAML'),
])
def test_malformed_description_is_refused_with_file_and_field(tmp_path, text, message):
    path = write(tmp_path, text, 'broken.yaml')
    with pytest.raises(GraphDescriptionError, match=message) as err:
        load_graph(path)
    assert str(err.value).startswith(str(path))


def test_unknown_graph_names_the_known_ones():
    with pytest.raises(GraphDescriptionError, match=r'no graph .nope.*graphs: replay, robot, sim'):
        load_graph('nope', ROOT)


def test_missing_parameters_file_is_named(tmp_path):
    path = write(tmp_path, """\
        format_version: 1
        nodes: [{name: n, package: p, executable: e, parameters: [config/none.yaml]}]
        """)
    with pytest.raises(LaunchArgumentError, match=r'node n: parameters file .*config/none.yaml'):
        load_graph(path).resolve({}, tmp_path)


def test_xacro_without_xacro_installed_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))   # no xacro executable on it
    xacro = tmp_path / 'fr3.urdf.xacro'
    xacro.write_text('<robot/>')
    with pytest.raises(LaunchArgumentError, match='xacro executable is not installed'):
        resolve_graph('robot', {**ROBOT, 'description': str(xacro)}, ROOT)


# ---- node command lines ------------------------------------------------------------------------

def test_inline_parameters_become_a_parameters_file_for_any_node_name(tmp_path, monkeypatch):
    import yaml

    monkeypatch.setattr('craik_bringup.graph.executable', lambda p, e: Path('/bin') / e)
    spec = NodeSpec('p', 'exe', 'n', overrides={'empty': '', 'text_number': '1.0'},
                    parameters=[tmp_path / 'a.yaml', {'robot_description': '<a>\n</a>'}],
                    namespace='/lab', remappings=[('/x', '/y')], arguments=['--flag'])
    cmd = spec.command(tmp_path, tmp_path / 'params')
    assert cmd[:8] == ['/bin/exe', '--flag', '--ros-args', '-r', '__node:=n', '-r', '__ns:=/lab',
                       '-r']
    assert cmd[8] == '/x:=/y'
    files = [cmd[i + 1] for i, word in enumerate(cmd) if word == '--params-file']
    assert files[0] == str(tmp_path / 'a.yaml')
    assert yaml.safe_load(Path(files[1]).read_text()) == {
        '/**': {'ros__parameters': {'robot_description': '<a>\n</a>'}}}
    # Strings that YAML would read as something else stay strings.
    assert cmd[-4:] == ['-p', "empty:=''", '-p', "text_number:='1.0'"]
