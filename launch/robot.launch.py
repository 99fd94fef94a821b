"""craik on the lab robot: camera, franka_controller, mpc_planner, /tf and rviz2 on request.

    ros2 launch launch/robot.launch.py robot_ip:=172.16.0.2 camera:=driver

`camera:=driver` starts Intel's realsense2_camera with aligned depth (its default namespace
gives exactly the topics craik uses), `camera:=craik` craik_perception's `realsense` node,
`camera:=bag bag:=FILE` that node playing a librealsense recording, `camera:=none` expects
the camera to be running already. robot_state_publisher publishes the FR3's /tf from
`description:=` (default: craik_franka's FR3 URDF; a .xacro file is expanded with xacro) and
a static transform places the camera from `calibration:=` (config/calibration/).

The graph (nodes, parameter files, remappings, arguments and their conditions) is
config/graphs/robot.yaml, the same file `craik launch robot` starts without ros2 launch; this
file only turns it into launch actions (craik_bringup.launch_description builds the plain data,
`ros2 launch launch/robot.launch.py --show-args` lists the arguments).
"""

from pathlib import Path
import tempfile

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from craik_bringup.launch_description import build, declare

GRAPH = 'robot'
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
