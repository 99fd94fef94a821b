"""config/rviz/craik.rviz subscribes only to topics the graph publishes, with their types.

rviz2 cannot run here, so its configuration is checked two ways:

1. Statically: the config is parsed (the YAML rviz2 writes), every display's subscription is
   extracted with the message type its display class reads, and each must be published with
   that type by the graph. What the graph publishes is read from the nodes' code (every
   ``create_publisher(Type, topic, ...)`` in ``src/*/craik_*/*_node.py``, topic constants
   resolved), plus the third-party publishers named in ``EXTERNAL_PUBLISHERS`` (with the reason
   each is not craik code). Topics of the Gaussian map come from the ``gaussian_mapper`` node's
   code once it exists in src/craik_mapping; until then from the architecture contract's topic
   table (shared/ARCHITECTURE.md, beside the checkout), which also has to agree with the code on
   every topic both name.
2. In the running simulated graph (``craik_bringup.graph.sim_graph``): every topic the config
   subscribes to is advertised with the right type and a QoS the display's subscription can
   connect to, except those of nodes the sim graph does not run (``NOT_IN_SIM_GRAPH``, each
   with its reason). Mapping topics are checked once a node named ``gaussian_mapper`` is in the
   sim graph's node list, and skipped (with that reason) before.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
import functools
from pathlib import Path
import re
import time

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RVIZ = ROOT / 'config' / 'rviz' / 'craik.rviz'
ARCHITECTURE = ROOT.parent / 'shared' / 'ARCHITECTURE.md'
FIXED_FRAME = 'fr3_link0'     # REP 103/105 robot base, ARCHITECTURE.md "Graph and names"

# The message type each rviz2 display class subscribes to on its `Topic`.
DISPLAY_TYPES = {
    'rviz_default_plugins/Image': 'sensor_msgs/msg/Image',
    'rviz_default_plugins/PointCloud2': 'sensor_msgs/msg/PointCloud2',
    'rviz_default_plugins/MarkerArray': 'visualization_msgs/msg/MarkerArray',
    'rviz_default_plugins/Marker': 'visualization_msgs/msg/Marker',
    'rviz_default_plugins/Path': 'nav_msgs/msg/Path',
    'rviz_default_plugins/Pose': 'geometry_msgs/msg/PoseStamped',
    'rviz_default_plugins/Camera': 'sensor_msgs/msg/Image',
}
# Display classes that subscribe to nothing of their own.
NO_TOPIC = {'rviz_common/Group', 'rviz_default_plugins/Grid', 'rviz_default_plugins/Axes'}
TF_TOPICS = (('/tf', 'tf2_msgs/msg/TFMessage'), ('/tf_static', 'tf2_msgs/msg/TFMessage'))

GRAPHS = ROOT / 'config' / 'graphs'      # the graph descriptions launch/*.launch.py start
# Topics published by ROS packages rather than craik's nodes: topic -> (type, packages).
EXTERNAL_PUBLISHERS = {
    '/robot_description': ('std_msgs/msg/String', ('robot_state_publisher',)),
    '/tf': ('tf2_msgs/msg/TFMessage', ('robot_state_publisher',)),
    '/tf_static': ('tf2_msgs/msg/TFMessage', ('robot_state_publisher', 'tf2_ros')),
}
EXTERNAL_REASON = (
    'published by robot_state_publisher (the FR3 URDF and its links) and tf2_ros '
    'static_transform_publisher (the calibrated camera), ROS packages that only the robot graph '
    '(config/graphs/robot.yaml) starts: in simulation craik computes kinematics itself '
    '(pinocchio) and nothing publishes /tf')
# Topics the system test does not expect from the simulated graph, and why.
NOT_IN_SIM_GRAPH = dict.fromkeys(EXTERNAL_PUBLISHERS, EXTERNAL_REASON)

MAPPER_NODE = 'gaussian_mapper'
MAPPING_PREFIX = '/mapping/'


def is_mapping(topic: str) -> bool:
    return topic.startswith(MAPPING_PREFIX)


# ---- the rviz2 config ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Subscription:
    display: str          # the display's Name (groups joined with '/')
    display_class: str
    topic: str
    msg_type: str
    reliability: str      # 'Reliable' | 'Best Effort'
    durability: str       # 'Volatile' | 'Transient Local'


def _topic_subscription(path: str, cls: str, topic: object, msg_type: str) -> Subscription:
    assert isinstance(topic, dict) and topic.get('Value'), \
        f'{path} ({cls}) has no topic: rviz2 writes `Topic: {{Value: /name, ...QoS}}`'
    name = str(topic['Value'])
    assert name.startswith('/'), f'{path}: topic {name!r} is not absolute'
    return Subscription(path, cls, name, msg_type,
                        str(topic.get('Reliability Policy', 'Reliable')),
                        str(topic.get('Durability Policy', 'Volatile')))


def display_subscriptions(displays: list[dict], prefix: str = '') -> Iterator[Subscription]:
    for display in displays:
        cls, name = display['Class'], display['Name']
        path = f'{prefix}{name}'
        if cls == 'rviz_common/Group':
            yield from display_subscriptions(display.get('Displays') or [], f'{path}/')
        elif cls == 'rviz_default_plugins/RobotModel':
            assert display.get('Description Source') == 'Topic', \
                f'{path}: the URDF comes from /robot_description, not a file of one machine'
            yield _topic_subscription(path, cls, display['Description Topic'],
                                      'std_msgs/msg/String')
        elif cls == 'rviz_default_plugins/TF':
            for topic, msg_type in TF_TOPICS:
                yield Subscription(path, cls, topic, msg_type, 'Reliable', 'Volatile')
        elif cls in DISPLAY_TYPES:
            yield _topic_subscription(path, cls, display.get('Topic'), DISPLAY_TYPES[cls])
        else:
            assert cls in NO_TOPIC, (f'{path}: display class {cls} is not known to this test: '
                                     'add its message type to DISPLAY_TYPES')


@functools.cache
def rviz_config() -> dict:
    return yaml.safe_load(RVIZ.read_text(encoding='utf-8'))


def subscriptions() -> list[Subscription]:
    return list(display_subscriptions(rviz_config()['Visualization Manager']['Displays']))


# ---- what the graph publishes, from the nodes' code ---------------------------------------------

@dataclass(frozen=True)
class Publisher:
    topic: str
    msg_type: str
    node: str | None      # the node's default name, where the code gives it
    source: str           # file:line


def _msg_imports(tree: ast.Module) -> dict[str, str]:
    """Local name -> 'pkg/msg/Type' of `from pkg.msg import Type [as Name]`."""
    out = {}
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.module.endswith('.msg'):
            for alias in stmt.names:
                out[alias.asname or alias.name] = f'{stmt.module.replace(".", "/")}/{alias.name}'
    return out


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module- and class-level `NAME = 'text'` assignments."""
    out = {}
    bodies = [tree.body] + [c.body for c in tree.body if isinstance(c, ast.ClassDef)]
    for body in bodies:
        for stmt in body:
            if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, str)):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        out[target.id] = stmt.value.value
    return out


def _node_name(tree: ast.Module) -> str | None:
    """The name a node file gives `super().__init__(name)`: a literal, a string constant or a
    parameter default."""
    constants = _string_constants(tree)
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef) or func.name != '__init__':
            continue
        defaults = dict(zip([a.arg for a in func.args.args][-len(func.args.defaults):],
                            func.args.defaults, strict=True)) if func.args.defaults else {}
        for call in ast.walk(func):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr == '__init__' and call.args):
                arg = call.args[0]
                if isinstance(arg, ast.Name) and arg.id in defaults:
                    arg = defaults[arg.id]
                if isinstance(arg, ast.Name) and arg.id in constants:
                    return constants[arg.id]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    return arg.value
    return None


def publishers_in(path: Path) -> tuple[list[Publisher], list[str]]:
    """The publishers a node file creates, and those whose topic is computed (unresolved)."""
    tree = ast.parse(path.read_text(encoding='utf-8'), str(path))
    imports, constants, node = _msg_imports(tree), _string_constants(tree), _node_name(tree)
    found, unresolved = [], []
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == 'create_publisher' and len(call.args) >= 2):
            continue
        where = f'{path.relative_to(ROOT)}:{call.lineno}'
        type_arg, topic_arg = call.args[0], call.args[1]
        msg_type = imports.get(type_arg.id) if isinstance(type_arg, ast.Name) else None
        topic = None
        if isinstance(topic_arg, ast.Constant) and isinstance(topic_arg.value, str):
            topic = topic_arg.value
        elif isinstance(topic_arg, ast.Name):
            topic = constants.get(topic_arg.id)
        elif isinstance(topic_arg, ast.Attribute):      # self.TOPIC, Class.TOPIC
            topic = constants.get(topic_arg.attr)
        if topic is None or msg_type is None:
            unresolved.append(f'{where}: {ast.unparse(call)}')
            continue
        found.append(Publisher(topic, msg_type, node, where))
    return found, unresolved


def node_files() -> list[Path]:
    return sorted(p for p in ROOT.glob('src/*/craik_*/*_node.py'))


@functools.cache
def code_publishers() -> tuple[tuple[Publisher, ...], tuple[str, ...]]:
    found, unresolved = [], []
    for path in node_files():
        pubs, computed = publishers_in(path)
        found += pubs
        unresolved += computed
    return tuple(found), tuple(unresolved)


def mapper_code_exists() -> bool:
    return any(_node_name(ast.parse(p.read_text(encoding='utf-8'))) == MAPPER_NODE
               for p in ROOT.glob('src/*/craik_*/*_node.py'))


# ---- the architecture contract's topic table ----------------------------------------------------

def _full_type(short: str) -> str:
    pkg, _, name = short.partition('/')
    return short if name.startswith('msg/') else f'{pkg}/msg/{name}'


@functools.cache
def contract_topics() -> dict[str, str] | None:
    """topic -> type from the `| topic | type | notes |` table; None without the file."""
    if not ARCHITECTURE.exists():
        return None
    out = {}
    for line in ARCHITECTURE.read_text(encoding='utf-8').splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) >= 2 and cells[0].startswith('/') and re.fullmatch(r'\w+/\w+', cells[1]):
            for topic in cells[0].split(','):
                out[topic.strip()] = _full_type(cells[1])
    return out


# ---- static checks ------------------------------------------------------------------------------

def test_the_config_is_an_rviz2_config_in_the_robot_base_frame():
    config = rviz_config()
    assert {'Panels', 'Visualization Manager', 'Window Geometry'} <= set(config)
    manager = config['Visualization Manager']
    assert manager['Global Options']['Fixed Frame'] == FIXED_FRAME
    assert manager['Views']['Current']['Class'].startswith('rviz_default_plugins/')
    assert all(p['Class'].startswith('rviz_common/') for p in config['Panels'])
    classes = [s.display_class for s in subscriptions()]
    for cls in ('rviz_default_plugins/RobotModel', 'rviz_default_plugins/TF',
                'rviz_default_plugins/Image', 'rviz_default_plugins/PointCloud2',
                'rviz_default_plugins/MarkerArray'):
        assert cls in classes, f'no {cls} display'
    names = [s.display for s in subscriptions() if s.display_class != 'rviz_default_plugins/TF']
    assert len(names) == len(set(names)), f'display names repeat: {names}'
    for sub in subscriptions():
        assert sub.reliability in ('Reliable', 'Best Effort'), sub
        assert sub.durability in ('Volatile', 'Transient Local'), sub


def test_the_config_shows_the_camera_map_and_plan():
    topics = {s.topic: s.msg_type for s in subscriptions()}
    # The names this config is for (they are checked against the code below).
    for topic, msg_type in (('/camera/camera/color/image_raw', 'sensor_msgs/msg/Image'),
                            ('/planner/imagined_goal', 'sensor_msgs/msg/Image'),
                            ('/planner/plan_markers', 'visualization_msgs/msg/MarkerArray'),
                            ('/mapping/gaussians', 'sensor_msgs/msg/PointCloud2'),
                            ('/mapping/render/color', 'sensor_msgs/msg/Image'),
                            ('/robot_description', 'std_msgs/msg/String')):
        assert topics.get(topic) == msg_type, f'no display of {topic} as {msg_type}'
    # The Gaussian map is coloured by its rgb field.
    cloud = [d for g in rviz_config()['Visualization Manager']['Displays']
             for d in g.get('Displays', [g]) if d['Class'] == 'rviz_default_plugins/PointCloud2']
    assert cloud[0]['Color Transformer'] == 'RGB8'
    assert cloud[0]['Position Transformer'] == 'XYZ'


def test_the_node_code_is_read():
    publishers, _ = code_publishers()
    found = {(p.topic, p.msg_type) for p in publishers}
    # Parsing works on the nodes that exist (else every check below would be vacuous).
    assert ('/planner/plan_markers', 'visualization_msgs/msg/MarkerArray') in found
    assert ('/camera/camera/color/image_raw', 'sensor_msgs/msg/Image') in found
    assert ('/joint_states', 'sensor_msgs/msg/JointState') in found
    assert {p.node for p in publishers} >= {'sim', 'franka_controller', 'mpc_planner'}


def _published() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for pub in code_publishers()[0]:
        out.setdefault(pub.topic, set()).add(pub.msg_type)
    return out


def test_every_non_mapping_subscription_is_published_with_its_type():
    published = _published()
    problems = []
    for sub in subscriptions():
        if is_mapping(sub.topic):
            continue
        if sub.topic in EXTERNAL_PUBLISHERS:
            types = {EXTERNAL_PUBLISHERS[sub.topic][0]}
        else:
            types = published.get(sub.topic, set())
        if sub.msg_type not in types:
            problems.append(f'{sub.display} ({sub.display_class}) subscribes to {sub.topic} as '
                            f'{sub.msg_type}; published: {sorted(types) or "nowhere"}')
    computed = '\n  '.join(code_publishers()[1])
    assert not problems, '\n'.join(problems) + (
        f'\n(publishers whose topic this test cannot resolve:\n  {computed})' if computed else '')


def test_mapping_subscriptions_match_the_gaussian_mapper():
    mapping = [s for s in subscriptions() if is_mapping(s.topic)]
    assert mapping, 'the config shows no Gaussian map'
    if mapper_code_exists():
        published, source = _published(), f'the {MAPPER_NODE} node code'
        published = {t: ts for t, ts in published.items() if is_mapping(t)}
    elif contract_topics() is not None:
        published = {t: {ty} for t, ty in contract_topics().items() if is_mapping(t)}
        source = f'{ARCHITECTURE.name} (no {MAPPER_NODE} node in src/craik_mapping yet)'
    else:
        pytest.skip(f'no {MAPPER_NODE} node in src/craik_mapping yet and no {ARCHITECTURE} '
                    'to take the mapping topics from')
    problems = [f'{s.display} subscribes to {s.topic} as {s.msg_type}; {source} has '
                f'{sorted(published.get(s.topic, [])) or "no such topic"}'
                for s in mapping if s.msg_type not in published.get(s.topic, set())]
    computed = '\n  '.join(code_publishers()[1])
    assert not problems, '\n'.join(problems) + (
        f'\n(publishers whose topic this test cannot resolve:\n  {computed})' if computed else '')


def test_the_code_agrees_with_the_architecture_contract():
    contract = contract_topics()
    if contract is None:
        pytest.skip(f'{ARCHITECTURE} is not beside this checkout')
    published = _published()
    problems = [f'{s.topic}: contract {contract[s.topic]}, code {sorted(published[s.topic])}'
                for s in subscriptions()
                if s.topic in contract and s.topic in published
                and contract[s.topic] not in published[s.topic]]
    assert not problems, '\n'.join(problems)


def _graph_nodes(graph: str) -> list[dict]:
    path = GRAPHS / f'{graph}.yaml'
    if not path.exists():
        pytest.skip(f'no graph description {path.relative_to(ROOT)}')
    return yaml.safe_load(path.read_text(encoding='utf-8'))['nodes']


def test_external_publishers_run_in_the_robot_graph_only():
    robot = {n['package'] for n in _graph_nodes('robot')}
    sim = {n['package'] for n in _graph_nodes('sim')}
    for topic, (_, packages, *_) in EXTERNAL_PUBLISHERS.items():
        assert set(packages) <= robot, \
            f'{topic}: the robot graph does not start {sorted(set(packages) - robot)}'
        assert not set(packages) & sim, \
            f'{topic}: the sim graph now starts {sorted(set(packages) & sim)}: drop it from ' \
            'NOT_IN_SIM_GRAPH so the system test checks it'


def test_the_graphs_start_rviz2_with_this_config():
    for graph in ('robot', 'sim'):
        rviz = [n for n in _graph_nodes(graph) if n['package'] == 'rviz2']
        assert rviz, f'config/graphs/{graph}.yaml has no rviz2 node (rviz:=true)'
        args = [str(a) for a in rviz[0].get('arguments', [])]
        assert '-d' in args, args
        config = args[args.index('-d') + 1].replace('$(root)', str(ROOT))
        assert Path(config).resolve() == RVIZ.resolve(), f'{graph}: rviz2 -d {config}'


def test_the_config_parser_handles_groups_and_rejects_unknown_displays():
    displays = [{'Class': 'rviz_common/Group', 'Name': 'G', 'Displays': [
        {'Class': 'rviz_default_plugins/Image', 'Name': 'I',
         'Topic': {'Value': '/a', 'Reliability Policy': 'Best Effort'}}]}]
    (sub,) = display_subscriptions(displays)
    assert (sub.display, sub.topic, sub.msg_type, sub.reliability) == (
        'G/I', '/a', 'sensor_msgs/msg/Image', 'Best Effort')
    with pytest.raises(AssertionError, match='not known to this test'):
        list(display_subscriptions([{'Class': 'rviz_default_plugins/Odometry', 'Name': 'O'}]))
    with pytest.raises(AssertionError, match='has no topic'):
        list(display_subscriptions([{'Class': 'rviz_default_plugins/Image', 'Name': 'I'}]))


# ---- the running simulated graph ----------------------------------------------------------------

def _compatible(sub: Subscription, qos) -> str | None:
    """Why a publisher with ``qos`` cannot feed ``sub`` (None when it can)."""
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    if sub.reliability == 'Reliable' and qos.reliability == ReliabilityPolicy.BEST_EFFORT:
        return 'the display subscribes reliable, the publisher is best effort'
    if (sub.durability == 'Transient Local'
            and qos.durability == DurabilityPolicy.VOLATILE):
        return 'the display subscribes transient local, the publisher is volatile'
    return None


@dataclass
class GraphTopics:
    node_names: list[str]
    types: dict[str, list[str]]
    problems: list[str]           # QoS mismatches, per topic


@pytest.fixture(scope='module')
def sim_topics(tmp_path_factory, fresh_ros_domain) -> Iterator[GraphTopics]:
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    from craik_bringup.graph import Graph, private_robot_ip, sim_graph

    nodes = sim_graph(private_robot_ip(fresh_ros_domain), mapping=True)
    names = [n.node_name for n in nodes]
    wanted = {s.topic for s in subscriptions() if s.topic not in NOT_IN_SIM_GRAPH
              and (MAPPER_NODE in names or not is_mapping(s.topic))}
    graph = Graph(nodes, tmp_path_factory.mktemp('rviz_graph_logs'), domain_id=fresh_ros_domain)
    context = Context()
    rclpy.init(context=context, domain_id=fresh_ros_domain)
    probe = Node('rviz_config_probe', context=context)
    try:
        graph.start()
        # Until every wanted topic is advertised (about 10-20 s here), at most 120 s.
        deadline = time.monotonic() + 120.0
        while True:
            graph.check_alive()
            types = dict(probe.get_topic_names_and_types())
            if wanted <= set(types) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        problems = []
        for sub in subscriptions():
            for info in probe.get_publishers_info_by_topic(sub.topic):
                why = _compatible(sub, info.qos_profile)
                if why:
                    problems.append(f'{sub.topic} from {info.node_name}: {why}')
        yield GraphTopics(names, types, problems)
    finally:
        probe.destroy_node()
        rclpy.try_shutdown(context=context)
        graph.stop()


def _check(sim: GraphTopics, subs: list[Subscription]) -> None:
    problems = []
    for sub in subs:
        types = sim.types.get(sub.topic)
        if types is None:
            problems.append(f'{sub.display}: nothing in the sim graph '
                            f'({", ".join(sim.node_names)}) publishes {sub.topic}')
        elif sub.msg_type not in types:
            problems.append(f'{sub.display}: {sub.topic} is {types}, the display reads '
                            f'{sub.msg_type}')
    problems += [p for p in sim.problems if any(p.startswith(s.topic + ' ') for s in subs)]
    assert not problems, '\n'.join(problems)


@pytest.mark.slow
def test_the_sim_graph_publishes_what_the_config_shows(sim_topics):
    subs = [s for s in subscriptions() if not is_mapping(s.topic)
            and s.topic not in NOT_IN_SIM_GRAPH]
    assert subs
    _check(sim_topics, subs)
    # The exceptions only excuse absence: where the sim graph does publish one, it must fit.
    present = [s for s in subscriptions() if s.topic in NOT_IN_SIM_GRAPH
               and s.topic in sim_topics.types]
    _check(sim_topics, present)


@pytest.mark.slow
def test_the_sim_graph_publishes_the_gaussian_map(sim_topics):
    if MAPPER_NODE not in sim_topics.node_names:
        pytest.skip(f'the sim graph has no {MAPPER_NODE} node yet '
                    f'({", ".join(sim_topics.node_names)}): mapping topics not checked')
    _check(sim_topics, [s for s in subscriptions() if is_mapping(s.topic)])
