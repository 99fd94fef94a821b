"""craik on the lab robot: camera, franka_controller and mpc_planner.

    ros2 launch launch/craik_robot.launch.py robot_ip:=172.16.0.2 camera:=driver

`camera:=driver` starts Intel's realsense2_camera with aligned depth (its default namespace
gives exactly the topics craik uses); `camera:=craik` starts craik_perception's `realsense`
node instead; `camera:=none` expects the camera to be running already. Parameters come from
config/<node>.yaml, as in simulation (craik_bringup.graph starts the same nodes there).
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import LaunchConfigurationEquals
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

CONFIG = Path(__file__).resolve().parent.parent / 'config'


def generate_launch_description() -> LaunchDescription:
    robot_ip = LaunchConfiguration('robot_ip')
    runtime = LaunchConfiguration('runtime')
    return LaunchDescription([
        DeclareLaunchArgument('robot_ip', description='FCI address of the FR3'),
        DeclareLaunchArgument('camera', default_value='driver',
                              choices=['driver', 'craik', 'none']),
        DeclareLaunchArgument('runtime', default_value='tensorrt',
                              choices=['tensorrt', 'onnxruntime', 'torch']),
        Node(package='realsense2_camera', executable='realsense2_camera_node',
             namespace='camera', name='camera',
             parameters=[{'align_depth.enable': True, 'rgb_camera.color_profile': '640x480x15',
                          'depth_module.depth_profile': '640x480x15'}],
             condition=LaunchConfigurationEquals('camera', 'driver')),
        Node(package='craik_perception', executable='realsense', name='realsense',
             parameters=[str(CONFIG / 'realsense.yaml')],
             condition=LaunchConfigurationEquals('camera', 'craik')),
        Node(package='craik_franka', executable='franka_controller', name='franka_controller',
             parameters=[str(CONFIG / 'franka_controller.yaml'),
                         {'robot_ip': robot_ip, 'realtime_config': 'enforce'}]),
        Node(package='craik_planner', executable='mpc_planner', name='mpc_planner',
             parameters=[str(CONFIG / 'mpc_planner.yaml'), {'runtime': runtime}]),
    ])
