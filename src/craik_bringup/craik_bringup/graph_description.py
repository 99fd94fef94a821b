"""Graph descriptions: ``config/graphs/<graph>.yaml``, the one source of every launcher.

Each of craik's node graphs (``sim``, ``robot``, ``replay``) is described once, as YAML: its
launch arguments, and its nodes with their package, executable, parameter files, inline
parameters, remappings, command-line arguments and an optional condition on the arguments.
``launch/<graph>.launch.py`` (ros2 launch, lab robot), ``craik launch <graph>`` and
``craik_bringup.graph.sim_graph`` (``craik eval``, ``craik demo``, the system tests) all resolve
the same file with :meth:`GraphDescription.resolve`, so the graphs cannot drift apart.

This module is ROS-free (PyYAML only). A malformed file raises :class:`GraphDescriptionError`
naming the file and the field; a bad argument value raises :class:`LaunchArgumentError` naming
the argument. The format (version 1)::

    format_version: 1
    description: one line for `craik launch --list`
    arguments:                        # launch arguments (all values are strings)
      robot_ip:
        description: FCI address of the FR3
        # no default: required
      camera:
        default: driver
        choices: [driver, craik]
      rviz:
        type: bool                    # true | false
        default: false
      params_file:
        type: path                    # checked when used; a relative default is relative to
        default: ''                   # the workspace root, a value given to the current dir
    overlay_parameters:               # applied to every node after its own parameters
      - $(var params_file)            # ('' entries are dropped)
    nodes:
      - name: franka_controller       # ROS node name; also the log file's name
        package: craik_franka
        executable: franka_controller
        namespace: ''                 # below the `namespace` argument, if the graph has one
        parameters:                   # in order, later entries win
          - config/franka_controller.yaml       # a file (relative to the workspace root)
          - {robot_ip: $(var robot_ip)}         # inline parameters
        remappings: {/from: /to}
        arguments: [--flag, $(var x)] # before --ros-args
        condition: camera == craik    # NAME == V, NAME != V, NAME / not NAME (bool), `and`
        requires: [bag]               # arguments that must be non-empty when the node runs

An argument named ``namespace`` puts every node below it (a node's own ``namespace`` is
relative to it unless it starts with '/').

Substitutions in strings: ``$(var NAME)`` (an argument's value; a ``path`` argument gives an
absolute path), ``$(root)`` (the workspace root), ``$(calibration FILE FIELD)`` (a field of a
camera calibration file, craik_sim.calibration: x y z qx qy qz qw parent_frame child_frame),
``$(file-contents FILE)`` (a file's text; a ``.xacro`` file is expanded with ``xacro``).
Substitutions nest (``$(calibration $(var calibration) x)``). An inline parameter that is exactly
``$(var NAME)`` of a bool argument becomes a bool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
import itertools
import os
from pathlib import Path
import re
import shutil
import subprocess
from typing import Any

import yaml

FORMAT_VERSION = 1
GRAPHS_DIR = Path('config') / 'graphs'
ARGUMENT_TYPES = ('string', 'bool', 'path')
BOOL_VALUES = ('true', 'false')
CALIBRATION_FIELDS = ('x', 'y', 'z', 'qx', 'qy', 'qz', 'qw', 'parent_frame', 'child_frame')
SUBSTITUTIONS = {'var': 1, 'root': 0, 'calibration': 2, 'file-contents': 1}
# ROS 2 names: a letter or underscore, then letters, digits, underscores.
_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
_TOP_KEYS = {'format_version', 'description', 'arguments', 'overlay_parameters', 'nodes'}
_ARGUMENT_KEYS = {'default', 'description', 'choices', 'type'}
_NODE_KEYS = {'name', 'package', 'executable', 'namespace', 'parameters', 'remappings',
              'arguments', 'condition', 'requires', 'description'}


class GraphDescriptionError(ValueError):
    """A graph description is malformed; the message names the file and the field."""


class LaunchArgumentError(GraphDescriptionError):
    """A launch argument's value is missing or invalid, or a file it names is unusable."""


# ---- substitutions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Substitution:
    """``$(name arg ...)``; each argument is itself a template (substitutions nest)."""

    name: str
    args: tuple[Template, ...]


Template = tuple[str | Substitution, ...]


def parse_template(text: str, where: str) -> Template:
    """Split ``text`` into literal pieces and :class:`Substitution` s; raises
    :class:`GraphDescriptionError` (prefixed with ``where``) on a syntax error."""
    parts, _ = _parse_parts(text, 0, where, inside=False)
    return parts


def _parse_parts(text: str, pos: int, where: str, inside: bool) -> tuple[Template, int]:
    # inside=True: one argument of a substitution, ending at whitespace or ')'.
    parts: list[str | Substitution] = []
    literal: list[str] = []
    while pos < len(text):
        if text.startswith('$(', pos):
            if literal:
                parts.append(''.join(literal))
                literal = []
            sub, pos = _parse_substitution(text, pos + 2, where)
            parts.append(sub)
            continue
        char = text[pos]
        if inside and (char == ')' or char.isspace()):
            break
        literal.append(char)
        pos += 1
    if literal:
        parts.append(''.join(literal))
    return tuple(parts), pos


def _parse_substitution(text: str, pos: int, where: str) -> tuple[Substitution, int]:
    match = re.compile(r'[a-z][a-z-]*').match(text, pos)
    if match is None:
        raise GraphDescriptionError(f'{where}: expected a substitution name after "$(" in '
                                    f'{text!r}')
    name = match.group()
    if name not in SUBSTITUTIONS:
        raise GraphDescriptionError(f'{where}: unknown substitution $({name} ...) in {text!r} '
                                    f'(known: {", ".join(SUBSTITUTIONS)})')
    pos = match.end()
    args: list[Template] = []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            raise GraphDescriptionError(f'{where}: unterminated $({name} ...) in {text!r}')
        if text[pos] == ')':
            pos += 1
            break
        arg, pos = _parse_parts(text, pos, where, inside=True)
        args.append(arg)
    if len(args) != SUBSTITUTIONS[name]:
        raise GraphDescriptionError(f'{where}: $({name} ...) takes {SUBSTITUTIONS[name]} '
                                    f'argument(s), got {len(args)} in {text!r}')
    return Substitution(name, tuple(args)), pos


def _substitutions(template: Template) -> Iterable[Substitution]:
    for part in template:
        if isinstance(part, Substitution):
            yield part
            for arg in part.args:
                yield from _substitutions(arg)


# ---- the description --------------------------------------------------------------------------

@dataclass(frozen=True)
class ArgumentSpec:
    """One launch argument: ``default`` None means required."""

    name: str
    default: str | None = None
    description: str = ''
    choices: tuple[str, ...] | None = None
    type: str = 'string'

    def check(self, value: str, graph: str) -> str:
        """``value`` normalised (bools lower-case); raises :class:`LaunchArgumentError`."""
        if self.type == 'bool':
            value = value.strip().lower()
        if self.choices is not None and value not in self.choices:
            raise LaunchArgumentError(
                f'graph {graph}: argument {self.name}={value!r} is not one of '
                f'{", ".join(self.choices)}')
        return value


@dataclass(frozen=True)
class Clause:
    """``argument == value`` (``negate``: ``!=``)."""

    argument: str
    value: str
    negate: bool = False

    def holds(self, values: Mapping[str, str]) -> bool:
        return (values[self.argument] == self.value) != self.negate


@dataclass(frozen=True)
class Condition:
    """All clauses hold (``a == x and b``); ``text`` is the YAML as written."""

    clauses: tuple[Clause, ...]
    text: str

    def holds(self, values: Mapping[str, str]) -> bool:
        return all(clause.holds(values) for clause in self.clauses)


@dataclass(frozen=True)
class NodeDescription:
    """One node entry of a graph description (strings still hold their substitutions)."""

    name: str
    package: str
    executable: str
    namespace: str = ''
    # In order, later entries win: a file path (template) or inline parameters.
    parameters: tuple[str | dict[str, Any], ...] = ()
    remappings: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()
    condition: Condition | None = None
    requires: tuple[str, ...] = ()
    description: str = ''


@dataclass(frozen=True)
class ResolvedNode:
    """A node of a resolved graph: everything a launcher needs, substitutions done.

    ``parameters`` are absolute file paths and inline dicts, in order (later entries win);
    ``namespace`` is absolute ('' for the root namespace).
    """

    name: str
    package: str
    executable: str
    namespace: str = ''
    parameters: tuple[Path | dict[str, Any], ...] = ()
    remappings: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()

    @property
    def fully_qualified_name(self) -> str:
        return f'{self.namespace}/{self.name}'

    def parameter_values(self) -> dict[str, Any]:
        """The node's parameters as they end up (files read, later entries winning); for
        tests and `craik launch --dry-run`."""
        merged: dict[str, Any] = {}
        for entry in self.parameters:
            merged.update(entry if isinstance(entry, dict)
                          else parameters_for_node(entry, self.name, self.fully_qualified_name))
        return merged

    def launch_kwargs(self, cwd: Path | None = None, params_dir: Path | None = None
                      ) -> dict[str, Any]:
        """Keyword arguments of ``launch_ros.actions.Node`` for this node (plain data).

        With ``params_dir``, inline parameters are written there as parameters files
        (:func:`write_parameters_file`), as `craik launch` does: launch_ros reads a string in a
        parameter dict as YAML, so a URDF, '' or '1.0' would fail or change type.
        """
        parameters: list[str | dict[str, Any]] = []
        for i, entry in enumerate(self.parameters):
            if isinstance(entry, Path):
                parameters.append(str(entry))
            elif params_dir is not None:
                path = params_dir / f'{self.name}.{i}.yaml'
                write_parameters_file(path, entry)
                parameters.append(str(path))
            else:
                parameters.append(dict(entry))
        kwargs: dict[str, Any] = {
            'package': self.package, 'executable': self.executable, 'name': self.name,
            'parameters': parameters,
            'remappings': list(self.remappings), 'arguments': list(self.arguments),
            'output': 'screen', 'emulate_tty': True,
        }
        if self.namespace:
            kwargs['namespace'] = self.namespace
        if cwd is not None:
            kwargs['cwd'] = str(cwd)
        return kwargs


@dataclass(frozen=True)
class ResolvedGraph:
    """A graph with its arguments' values and the nodes whose conditions hold."""

    name: str
    arguments: dict[str, str]
    nodes: tuple[ResolvedNode, ...]

    def node(self, name: str) -> ResolvedNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f'graph {self.name} has no node {name!r} with these arguments '
                       f'(nodes: {", ".join(n.name for n in self.nodes)})')

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]


@dataclass(frozen=True)
class GraphDescription:
    """A loaded, validated ``config/graphs/<name>.yaml``."""

    name: str
    source: Path
    description: str
    arguments: dict[str, ArgumentSpec]
    nodes: tuple[NodeDescription, ...]
    overlay_parameters: tuple[str, ...] = ()
    # Parsed templates of every string, keyed by the string (parsing is pure).
    _templates: dict[str, Template] = field(default_factory=dict, compare=False, repr=False)

    def argument_values(self, values: Mapping[str, str], cwd: Path | None = None
                        ) -> dict[str, str]:
        """Defaults filled in, every value checked; raises :class:`LaunchArgumentError`.

        A relative ``path`` given in ``values`` is made absolute against ``cwd`` (default: the
        current directory), as a shell user means it; a default stays relative to the
        workspace root.
        """
        unknown = sorted(set(values) - set(self.arguments))
        if unknown:
            raise LaunchArgumentError(
                f'graph {self.name} has no argument {", ".join(unknown)} (its arguments: '
                f'{", ".join(self.arguments)})')
        resolved: dict[str, str] = {}
        for name, spec in self.arguments.items():
            if name in values:
                value = values[name]
            elif spec.default is not None:
                value = spec.default
            else:
                why = f' ({spec.description})' if spec.description else ''
                raise LaunchArgumentError(
                    f'graph {self.name}: argument {name} is required{why}; give it as '
                    f'{name}:=VALUE')
            value = spec.check(str(value), self.name)
            if spec.type == 'path' and name in values and value:
                value = str(_under(cwd or Path.cwd(), value))
            resolved[name] = value
        return resolved

    def resolve(self, values: Mapping[str, str] | None = None,
                root: Path | None = None, cwd: Path | None = None) -> ResolvedGraph:
        """The nodes present for these argument values, with every substitution done.

        ``root`` is the workspace root (default: $CRAIK_ROOT, else the current directory):
        relative paths in the description and in argument defaults are relative to it; a
        relative path argument given in ``values`` is relative to ``cwd`` (default: the current
        directory). Raises :class:`LaunchArgumentError` for a bad or missing argument or a file
        that an argument names but that cannot be used.
        """
        root = (root or Path(os.environ.get('CRAIK_ROOT', Path.cwd()))).resolve()
        args = self.argument_values(values or {}, cwd)
        graph_namespace = _absolute_namespace(args.get('namespace', ''))
        nodes: list[ResolvedNode] = []
        for entry in self.nodes:
            if entry.condition is not None and not entry.condition.holds(args):
                continue
            where = f'graph {self.name}, node {entry.name}'
            for name in entry.requires:
                if not args[name]:
                    spec = self.arguments[name]
                    raise LaunchArgumentError(
                        f'{where}: needs argument {name}'
                        + (f' ({spec.description})' if spec.description else '')
                        + (f' when {entry.condition.text}' if entry.condition else '')
                        + f'; give it as {name}:=VALUE')
            resolver = _Resolver(self, args, root, where)
            namespace = _join_namespace(graph_namespace, resolver.text(entry.namespace))
            fqn = f'{namespace}/{entry.name}'
            parameters: list[Path | dict[str, Any]] = []
            for item in (*entry.parameters, *self.overlay_parameters):
                if isinstance(item, dict):
                    parameters.append({key: resolver.value(value)
                                       for key, value in item.items()})
                    continue
                text = resolver.text(item)
                if not text:
                    continue   # e.g. $(var params_file) left empty
                path = _under(root, text)
                if not path.is_file():
                    raise LaunchArgumentError(f'{where}: parameters file {path} not found')
                # A namespaced node does not match the `<node>:` blocks of a parameters file
                # (ROS matches the fully qualified name), so its blocks are read here instead of
                # being silently ignored by the node.
                parameters.append(parameters_for_node(path, entry.name, fqn) if namespace
                                  else path)
            nodes.append(ResolvedNode(
                name=entry.name, package=entry.package, executable=entry.executable,
                namespace=namespace, parameters=tuple(parameters),
                remappings=tuple((resolver.text(a), resolver.text(b))
                                 for a, b in entry.remappings),
                arguments=tuple(resolver.text(a) for a in entry.arguments)))
        names = [n.name for n in nodes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise GraphDescriptionError(
                f'{self.source}: with {args} the nodes {", ".join(duplicates)} appear more than '
                'once (make their conditions exclusive)')
        return ResolvedGraph(self.name, args, tuple(nodes))

    def choice_combinations(self) -> Iterable[dict[str, str]]:
        """Every combination of the choice (and bool) arguments' values, other arguments left
        out; for tests that check a property under all of them."""
        names = [n for n, s in self.arguments.items() if s.choices is not None]
        for combo in itertools.product(*(self.arguments[n].choices or () for n in names)):
            yield dict(zip(names, combo, strict=True))


class _Resolver:
    """Substitutes templates for one node with one set of argument values."""

    def __init__(self, graph: GraphDescription, args: Mapping[str, str], root: Path,
                 where: str) -> None:
        self.graph, self.args, self.root, self.where = graph, args, root, where

    def template(self, text: str) -> Template:
        cached = self.graph._templates.get(text)
        return cached if cached is not None else parse_template(text, self.where)

    def text(self, text: str) -> str:
        return self._render(self.template(text))

    def value(self, value: Any) -> Any:
        """An inline parameter: strings substituted; exactly ``$(var B)`` of a bool is a bool."""
        if not isinstance(value, str):
            return value
        parts = self.template(value)
        if len(parts) == 1 and isinstance(parts[0], Substitution) and parts[0].name == 'var':
            name = self._render(parts[0].args[0])
            if self.graph.arguments[name].type == 'bool':
                return self.args[name] == 'true'
        return self._render(parts)

    def _render(self, template: Template) -> str:
        return ''.join(p if isinstance(p, str) else self._apply(p) for p in template)

    def _apply(self, sub: Substitution) -> str:
        args = [self._render(a) for a in sub.args]
        if sub.name == 'root':
            return str(self.root)
        if sub.name == 'var':
            return self._var(args[0])
        if sub.name == 'calibration':
            return _calibration_field(_under(self.root, args[0]), args[1], self.where)
        return _file_contents(_under(self.root, args[0]), self.where)

    def _var(self, name: str) -> str:
        value = self.args[name]
        if self.graph.arguments[name].type != 'path' or not value:
            return value
        path = _under(self.root, value)
        if not path.exists():
            raise LaunchArgumentError(f'{self.where}: argument {name}={value!r}: {path} does '
                                      'not exist')
        return str(path)


def _under(root: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else root / path


def _absolute_namespace(text: str) -> str:
    text = text.strip().strip('/')
    return f'/{text}' if text else ''


def _join_namespace(outer: str, inner: str) -> str:
    if inner.startswith('/'):
        return _absolute_namespace(inner)
    return outer + _absolute_namespace(inner)


def _calibration_field(path: Path, name: str, where: str) -> str:
    from craik_sim.calibration import CalibrationError, load_calibration

    if name not in CALIBRATION_FIELDS:
        raise GraphDescriptionError(f'{where}: $(calibration FILE {name}): the field is one of '
                                    f'{", ".join(CALIBRATION_FIELDS)}')
    try:
        calibration = load_calibration(path)
    except CalibrationError as err:
        raise LaunchArgumentError(f'{where}: {err}') from None
    values: dict[str, float | str] = dict(zip(('x', 'y', 'z'), calibration.translation,
                                              strict=True))
    values.update(zip(('qx', 'qy', 'qz', 'qw'), calibration.rotation_xyzw, strict=True))
    values.update(parent_frame=calibration.parent_frame, child_frame=calibration.child_frame)
    value = values[name]
    return repr(float(value)) if isinstance(value, float) else str(value)


def _file_contents(path: Path, where: str) -> str:
    if not path.is_file():
        raise LaunchArgumentError(f'{where}: {path} not found')
    if path.suffix != '.xacro':
        return path.read_text()
    xacro = shutil.which('xacro')
    if xacro is None:
        distro = os.environ.get('ROS_DISTRO', '<distro>')
        raise LaunchArgumentError(
            f'{where}: {path} is a xacro file and the xacro executable is not installed '
            f'(install ros-{distro}-xacro, or pass an expanded URDF)')
    run = subprocess.run([xacro, str(path)], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise LaunchArgumentError(f'{where}: xacro {path} failed: {run.stderr.strip()}')
    return run.stdout


def write_parameters_file(path: Path, parameters: Mapping[str, Any]) -> None:
    """Write inline parameters as a ROS parameters file for whichever node reads it (``/**``:
    any name, any namespace); YAML keeps each value's type (a string stays a string)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': dict(parameters)}},
                                   sort_keys=False))


def parameters_for_node(path: Path, node_name: str, fully_qualified_name: str
                        ) -> dict[str, Any]:
    """The parameters a ROS parameters file gives one node, as a flat dict (nested keys joined
    with '.'): blocks keyed by the bare node name, by a name or pattern (``/**``, ``*``) that
    matches ``fully_qualified_name``, in file order."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise LaunchArgumentError(f'{path}: not valid YAML ({err})') from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LaunchArgumentError(f'{path}: a parameters file is a mapping of node names')
    merged: dict[str, Any] = {}
    for key, block in data.items():
        if not _key_matches(str(key), node_name, fully_qualified_name):
            continue
        if not isinstance(block, dict) or not isinstance(block.get('ros__parameters'), dict):
            raise LaunchArgumentError(f'{path}: {key}: expected a ros__parameters mapping')
        merged.update(_flatten(block['ros__parameters']))
    return merged


def _key_matches(key: str, node_name: str, fqn: str) -> bool:
    if key == node_name:
        return True
    pattern = key if key.startswith('/') else f'/{key}'
    regex = re.escape(pattern).replace(r'\*\*', '.*').replace(r'\*', '[^/]*')
    return re.fullmatch(regex, fqn) is not None


def _flatten(params: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            flat.update(_flatten(value, f'{name}.'))
        else:
            flat[name] = value
    return flat


# ---- loading ----------------------------------------------------------------------------------

def graphs_dir(root: Path | None = None) -> Path:
    """``config/graphs`` of the workspace ($CRAIK_ROOT, else the current directory)."""
    return (root or Path(os.environ.get('CRAIK_ROOT', Path.cwd()))) / GRAPHS_DIR


def available_graphs(root: Path | None = None) -> list[str]:
    """Names of the graph descriptions in ``config/graphs``."""
    return sorted(p.stem for p in graphs_dir(root).glob('*.yaml'))


def load_graph(graph: str | Path, root: Path | None = None) -> GraphDescription:
    """Load and validate a graph by name (``config/graphs/<name>.yaml``) or path."""
    path = Path(graph)
    if path.suffix not in ('.yaml', '.yml'):
        path = graphs_dir(root) / f'{graph}.yaml'
        if not path.is_file():
            known = ', '.join(available_graphs(root)) or 'none'
            raise GraphDescriptionError(f'no graph {graph!r}: {path} not found (graphs: {known})')
    if not path.is_file():
        raise GraphDescriptionError(f'{path}: graph description not found')
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise GraphDescriptionError(f'{path}: not valid YAML ({err})') from None
    return graph_from_dict(data, path.stem, path)


def graph_from_dict(data: Any, name: str, source: Path) -> GraphDescription:
    """Validate the YAML structure of a graph description (see the module docstring)."""
    fail = _Failer(source)
    mapping = fail.mapping(data, 'top level', _TOP_KEYS)
    if mapping.get('format_version') != FORMAT_VERSION:
        raise fail(f'format_version: expected {FORMAT_VERSION}, got '
                   f'{mapping.get("format_version")!r}')
    arguments: dict[str, ArgumentSpec] = {}
    for arg_name, spec in fail.mapping(mapping.get('arguments') or {}, 'arguments').items():
        arguments[str(arg_name)] = _argument(fail, str(arg_name), spec)
    templates: dict[str, Template] = {}
    checker = _TemplateChecker(fail, arguments, templates)
    overlay = tuple(checker.string(v, f'overlay_parameters[{i}]') for i, v in
                    enumerate(fail.sequence(mapping.get('overlay_parameters') or [],
                                            'overlay_parameters')))
    raw_nodes = fail.sequence(mapping.get('nodes'), 'nodes')
    if not raw_nodes:
        raise fail('nodes: a graph needs at least one node')
    nodes = tuple(_node(fail, checker, arguments, raw, f'nodes[{i}]')
                  for i, raw in enumerate(raw_nodes))
    # Nodes with conditions may share a name (camera:=craik and camera:=bag both run
    # `realsense`); resolve() checks that the present ones are unique.
    unconditional = [n.name for n in nodes if n.condition is None]
    duplicates = sorted({n for n in unconditional if unconditional.count(n) > 1})
    if duplicates:
        raise fail(f'nodes: more than one unconditional node is named {", ".join(duplicates)}')
    return GraphDescription(name=name, source=source,
                            description=str(mapping.get('description', '')),
                            arguments=arguments, nodes=nodes, overlay_parameters=overlay,
                            _templates=templates)


class _Failer:
    """Builds errors that name the file; small type checks on the way."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def __call__(self, message: str) -> GraphDescriptionError:
        return GraphDescriptionError(f'{self.source}: {message}')

    def mapping(self, value: Any, where: str, keys: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self(f'{where} must be a mapping, got {type(value).__name__}')
        if keys is not None:
            unknown = sorted(str(k) for k in value if k not in keys)
            if unknown:
                raise self(f'{where}: unknown field(s) {", ".join(unknown)} (allowed: '
                           f'{", ".join(sorted(keys))})')
        return value

    def sequence(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self(f'{where} must be a list, got {type(value).__name__}')
        return value

    def name(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not _NAME.match(value):
            raise self(f'{where} must be a name of letters, digits and underscores, got '
                       f'{value!r}')
        return value


def _scalar_text(value: Any) -> str | None:
    """A YAML scalar as a launch-argument string (bools lower-case), None otherwise."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _argument(fail: _Failer, name: str, raw: Any) -> ArgumentSpec:
    where = f'arguments.{fail.name(name, "arguments")}'
    spec = fail.mapping(raw if raw is not None else {}, where, _ARGUMENT_KEYS)
    kind = spec.get('type', 'string')
    if kind not in ARGUMENT_TYPES:
        raise fail(f'{where}.type: {kind!r} is not one of {", ".join(ARGUMENT_TYPES)}')
    choices: tuple[str, ...] | None = None
    if 'choices' in spec:
        items = fail.sequence(spec['choices'], f'{where}.choices')
        texts = [_scalar_text(c) for c in items]
        if not texts or any(t is None for t in texts):
            raise fail(f'{where}.choices must be a non-empty list of scalars')
        choices = tuple(t for t in texts if t is not None)
    if kind == 'bool':
        if choices is not None and set(choices) != set(BOOL_VALUES):
            raise fail(f'{where}: a bool argument takes no other choices than true, false')
        choices = BOOL_VALUES
    default: str | None = None
    if 'default' in spec:
        default = _scalar_text(spec['default'])
        if default is None:
            raise fail(f'{where}.default must be a scalar, got {spec["default"]!r}')
        if kind == 'bool':
            default = default.lower()
        if choices is not None and default not in choices:
            raise fail(f'{where}.default {default!r} is not one of its choices '
                       f'{", ".join(choices)}')
    return ArgumentSpec(name=name, default=default,
                        description=str(spec.get('description', '')), choices=choices,
                        type=kind)


class _TemplateChecker:
    """Parses every string once at load time and checks that its $(var ...) are declared."""

    def __init__(self, fail: _Failer, arguments: Mapping[str, ArgumentSpec],
                 templates: dict[str, Template]) -> None:
        self.fail, self.arguments, self.templates = fail, arguments, templates

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(f'{where} must be a string, got {value!r}')
        self.check(value, where)
        return value

    def check(self, text: str, where: str) -> None:
        template = parse_template(text, f'{self.fail.source}: {where}')
        for sub in _substitutions(template):
            if sub.name != 'var':
                continue
            literal = sub.args[0]
            if len(literal) != 1 or not isinstance(literal[0], str):
                raise self.fail(f'{where}: $(var NAME) takes a plain argument name in {text!r}')
            if literal[0] not in self.arguments:
                raise self.fail(f'{where}: $(var {literal[0]}) names no declared argument '
                                f'(arguments: {", ".join(self.arguments) or "none"})')
        self.templates[text] = template


def _node(fail: _Failer, checker: _TemplateChecker, arguments: Mapping[str, ArgumentSpec],
          raw: Any, where: str) -> NodeDescription:
    spec = fail.mapping(raw, where)
    for key in ('name', 'package', 'executable'):
        if key not in spec:
            raise fail(f'{where}: missing field {key}')
    name = fail.name(spec['name'], f'{where}.name')
    where = f'{where} ({name})'
    fail.mapping(spec, where, _NODE_KEYS)
    package = fail.name(spec['package'], f'{where}.package')
    executable = spec['executable']
    if not isinstance(executable, str) or not executable or '/' in executable:
        raise fail(f'{where}.executable must be an executable name, got {executable!r}')
    parameters: list[str | dict[str, Any]] = []
    for i, item in enumerate(fail.sequence(spec.get('parameters') or [],
                                           f'{where}.parameters')):
        item_where = f'{where}.parameters[{i}]'
        if isinstance(item, dict):
            inline = _flatten(item)
            for key, value in inline.items():
                if value is None or (isinstance(value, list) and any(
                        isinstance(v, dict | list) or v is None for v in value)):
                    raise fail(f'{item_where}.{key}: a parameter is a scalar or a flat list, '
                               f'got {value!r}')
                if isinstance(value, str):
                    checker.check(value, f'{item_where}.{key}')
            parameters.append(inline)
        else:
            parameters.append(checker.string(item, item_where))
    remap = fail.mapping(spec.get('remappings') or {}, f'{where}.remappings')
    remappings = tuple((checker.string(str(a), f'{where}.remappings'),
                        checker.string(b, f'{where}.remappings.{a}'))
                       for a, b in remap.items())
    # Scalars are allowed (`--x, 0.5`): a process's arguments are strings either way.
    node_args = tuple(checker.string(_scalar_text(a) or a, f'{where}.arguments[{i}]')
                      for i, a in enumerate(fail.sequence(spec.get('arguments') or [],
                                                          f'{where}.arguments')))
    condition = None
    if spec.get('condition') is not None:
        condition = _condition(fail, arguments, spec['condition'], f'{where}.condition')
    requires = tuple(fail.name(r, f'{where}.requires') for r in
                     fail.sequence(spec.get('requires') or [], f'{where}.requires'))
    for required in requires:
        if required not in arguments:
            raise fail(f'{where}.requires: {required} is not a declared argument')
    return NodeDescription(
        name=name, package=package, executable=executable,
        namespace=checker.string(spec.get('namespace', ''), f'{where}.namespace'),
        parameters=tuple(parameters), remappings=remappings, arguments=node_args,
        condition=condition, requires=requires,
        description=str(spec.get('description', '')))


_CLAUSE = re.compile(r'^(?:(?P<name>\w+)\s*(?P<op>==|!=)\s*(?P<value>\S+)'
                     r'|(?P<not>not\s+)?(?P<flag>\w+))$')


def _condition(fail: _Failer, arguments: Mapping[str, ArgumentSpec], raw: Any,
               where: str) -> Condition:
    if not isinstance(raw, str) or not raw.strip():
        raise fail(f'{where} must be a string such as "camera == driver" or "rviz"')
    clauses: list[Clause] = []
    for text in re.split(r'\s+and\s+', raw.strip()):
        match = _CLAUSE.match(text.strip())
        if match is None:
            raise fail(f'{where}: cannot read {text!r} (NAME == VALUE, NAME != VALUE, NAME or '
                       'not NAME for a bool argument, joined with "and")')
        name = match.group('name') or match.group('flag')
        spec = arguments.get(name)
        if spec is None:
            raise fail(f'{where}: {name} is not a declared argument')
        if match.group('flag'):
            if spec.type != 'bool':
                raise fail(f'{where}: "{text}" needs a bool argument; {name} is a {spec.type} '
                           '(compare it: NAME == VALUE)')
            clauses.append(Clause(name, 'true', negate=bool(match.group('not'))))
            continue
        value = match.group('value')
        if spec.type == 'bool':
            value = value.lower()
        if spec.choices is not None and value not in spec.choices:
            raise fail(f'{where}: {value!r} is not a choice of {name} '
                       f'({", ".join(spec.choices)})')
        clauses.append(Clause(name, value, negate=match.group('op') == '!='))
    return Condition(tuple(clauses), raw.strip())


def resolve_graph(graph: str | Path, values: Mapping[str, str] | None = None,
                  root: Path | None = None) -> ResolvedGraph:
    """:func:`load_graph` then :meth:`GraphDescription.resolve`."""
    return load_graph(graph, root).resolve(values, root)


def parse_assignments(items: Iterable[str],
                      on_error: Callable[[str], None] | None = None) -> dict[str, str]:
    """``['name:=value', ...]`` (ros2 launch's syntax) as a dict; a malformed item raises
    :class:`LaunchArgumentError` (or is passed to ``on_error``)."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(':=')
        if not sep or not _NAME.match(name):
            message = f'expected NAME:=VALUE, got {item!r}'
            if on_error is None:
                raise LaunchArgumentError(message)
            on_error(message)
            continue
        values[name] = value
    return values
