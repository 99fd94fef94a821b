"""craik on a recording: the camera's stream replayed into mpc_planner, never a robot controller.

    ros2 launch launch/replay.launch.py bag:=recordings/scene.db3

`camera:=bag` (default) plays the librealsense recording `bag:=` with craik_perception's
`realsense` node; `camera:=none` leaves the camera topics to another player.

The graph (nodes, parameter files, remappings, arguments and their conditions) is
config/graphs/replay.yaml, the same file `craik launch replay` starts without ros2 launch; this
file only turns it into launch actions (craik_bringup.launch_description builds the plain data,
`ros2 launch launch/replay.launch.py --show-args` lists the arguments).
"""

from pathlib import Path
import tempfile

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from craik_bringup.launch_description import build, declare

GRAPH = 'replay'
ROOT = Path(__file__).resolve().parent.parent


def _nodes(context):
    # The argument values are known only here, at launch time: the generator resolves the
    # description's conditions and substitutions exactly as `craik launch` does, and writes
    # inline parameters to files (launch_ros would re-read a string parameter as YAML).
    params_dir = Path(tempfile.mkdtemp(prefix=f'craik-{GRAPH}-params-'))
    return [Node(**kwargs)
            for kwargs in build(GRAPH, context.launch_configurations, ROOT, params_dir)]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *(DeclareLaunchArgument(**kwargs) for kwargs in declare(GRAPH, ROOT)),
        OpaqueFunction(function=_nodes),
    ])
