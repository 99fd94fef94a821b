"""What launch/<graph>.launch.py builds, as plain data: the generator the launch files call.

A launch file declares the graph's arguments and, once ros2 launch knows their values, turns
each node of the resolved graph description (config/graphs/<graph>.yaml) into a
``launch_ros.actions.Node``::

    # when the launch description is generated:
    DeclareLaunchArgument(**kwargs) for kwargs in declare('robot', ROOT)
    # in an OpaqueFunction, once the argument values are known:
    Node(**kwargs) for kwargs in build('robot', context.launch_configurations, ROOT, params_dir)

Both return dicts of keyword arguments, so this module needs neither `launch` nor `launch_ros`
(they are not installed on CI machines) and is tested there; `craik launch` resolves the same
description (craik_bringup.launch_command), so both launchers start the same nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from craik_bringup.graph_description import load_graph


def declare(graph: str, root: Path) -> list[dict[str, Any]]:
    """Keyword arguments of ``launch.actions.DeclareLaunchArgument``, one per argument of
    ``config/graphs/<graph>.yaml`` under ``root``; a required argument has no default."""
    declared: list[dict[str, Any]] = []
    for spec in load_graph(graph, root).arguments.values():
        kwargs: dict[str, Any] = {'name': spec.name, 'description': spec.description}
        if spec.default is not None:
            kwargs['default_value'] = spec.default
        if spec.choices is not None:
            kwargs['choices'] = list(spec.choices)
        declared.append(kwargs)
    return declared


def build(graph: str, launch_configurations: Mapping[str, str], root: Path,
          params_dir: Path | None = None) -> list[dict[str, Any]]:
    """Keyword arguments of ``launch_ros.actions.Node``, one per node that the graph runs with
    these argument values (``context.launch_configurations``; configurations that are not the
    graph's own arguments, e.g. set by an including launch file, are ignored). Nodes run with
    the workspace root as their working directory, as under `craik launch`. With
    ``params_dir``, inline parameters are written there as parameters files (the launch files
    pass one: see ResolvedNode.launch_kwargs).

    Raises craik_bringup.graph_description.LaunchArgumentError for a bad argument value.
    """
    description = load_graph(graph, root)
    values = {name: str(value) for name, value in launch_configurations.items()
              if name in description.arguments}
    resolved = description.resolve(values, root)
    return [node.launch_kwargs(cwd=root.resolve(), params_dir=params_dir)
            for node in resolved.nodes]
