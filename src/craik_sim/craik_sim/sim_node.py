"""`sim` node: the franky-sim FR3 server + the simulated RealSense D435 (thin rclpy layer).

The robot is reachable by franky at `hostname` (127.0.0.1) exactly like a real FR3. Publishes the
realsense2_camera topics (align_depth on, default namespace), /sim/ground_truth (evaluation only)
and serves /sim/reset_episode. All simulation logic lives in craik_sim.sim_runtime.
"""

from __future__ import annotations

from dataclasses import fields
import os
import sys
import traceback

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped
import numpy as np
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from craik_interfaces.msg import GroundTruth as GroundTruthMsg
from craik_interfaces.srv import ResetEpisode
from craik_perception.dds_profile import apply_large_data_profile
from craik_sim.calibration import CameraCalibration
from craik_sim.render import depth_to_millimetres
from craik_sim.scene import SceneConfig, VariationConfig
from craik_sim.sim_runtime import Frame, SimConfig, SimRuntime
from craik_sim.tasks import InvalidSeedError, UnknownTaskError

COLOR_TOPIC = '/camera/camera/color/image_raw'
COLOR_INFO_TOPIC = '/camera/camera/color/camera_info'
DEPTH_TOPIC = '/camera/camera/aligned_depth_to_color/image_raw'
DEPTH_INFO_TOPIC = '/camera/camera/aligned_depth_to_color/camera_info'
GROUND_TRUTH_TOPIC = '/sim/ground_truth'
RESET_SERVICE = '/sim/reset_episode'
# The camera's calibrated pose (the episode's, when the camera-pose variation moves it): latched,
# so a planner that starts later still gets it. On the lab robot the calibration file says it.
CAMERA_POSE_TOPIC = '/calibration/camera_pose'

# name -> (default, description, range); the YAML block is config/sim.yaml.
PARAMETERS: dict[str, tuple[object, str, tuple[float, float] | None]] = {
    'hostname': ('127.0.0.1', 'loopback address the simulated FR3 binds (franky connects here)',
                 None),
    'rate_hz': (15.0, 'camera publish rate (Hz)', (0.1, 60.0)),
    'calibration_path': ('', 'camera calibration YAML; empty = config/calibration/sim_d435.yaml',
                         None),
    'cube_count': (2, 'number of cubes on the table', (0, 6)),
    'cube_size_m': (0.05, 'cube edge length (m)', (0.02, 0.08)),
    'cube_mass_kg': (0.1, 'cube mass (kg)', (0.01, 2.0)),
    'cube_friction': (0.8, 'cube sliding friction coefficient', (0.05, 2.0)),
    'shadows': (False, 'render shadow maps (slow on CPUs)', None),
    'msaa_samples': (0, 'MSAA samples of the camera renderer', (0, 8)),
    'initial_task': ('reach', 'episode at start-up: task', None),
    'initial_seed': (0, 'episode at start-up: seed', (0, 2**31 - 1)),
    'vary_lighting': (False, 'default variation: lighting', None),
    'vary_cube_colours': (False, 'default variation: cube colours', None),
    'vary_cube_sizes': (False, 'default variation: cube sizes', None),
    'vary_camera_pose': (False, 'default variation: camera pose jitter', None),
    'distractors': (0, 'default variation: distractor objects on the table', (0, 3)),
    'vary_table': (False, 'default variation: table colour and texture scale', None),
    'settle_s': (0.3, 'simulated time to settle after a reset (s)', (0.0, 5.0)),
    'realtime_factor': (1.0, 'simulation speed relative to wall-clock time', (0.1, 10.0)),
    # Changeable while running (ros2 param set /sim camera_enabled false): the fault-injection
    # tests stop the camera mid-goal with it, as an unplugged cable would.
    'camera_enabled': (True, 'publish the camera topics; false stops them while the simulation '
                       'runs on (a camera dropout)', None),
}


def declare_parameters(node: Node) -> SimConfig:
    """Declare the node's parameters (with descriptions and ranges) and build its config."""
    values = {}
    for name, (default, description, bounds) in PARAMETERS.items():
        descriptor = ParameterDescriptor(description=description)
        if bounds is not None and isinstance(default, float):
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(bounds[0]), to_value=float(bounds[1]), step=0.0)]
        elif bounds is not None and isinstance(default, int) and not isinstance(default, bool):
            descriptor.integer_range = [IntegerRange(
                from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
        values[name] = node.declare_parameter(name, default, descriptor).value
    scene = SceneConfig(cube_count=values['cube_count'], cube_size_m=values['cube_size_m'],
                        cube_mass_kg=values['cube_mass_kg'],
                        cube_friction=values['cube_friction'], shadows=values['shadows'])
    variation = VariationConfig(lighting=values['vary_lighting'],
                                cube_colours=values['vary_cube_colours'],
                                cube_sizes=values['vary_cube_sizes'],
                                camera_jitter=values['vary_camera_pose'],
                                distractors=values['distractors'],
                                table_texture=values['vary_table'])
    names = {f.name for f in fields(SimConfig)} - {'scene', 'variation'}
    return SimConfig(scene=scene, variation=variation,
                     **{k: v for k, v in values.items() if k in names})


def camera_info(camera: CameraCalibration, header: Header) -> CameraInfo:
    k = camera.intrinsics
    msg = CameraInfo(header=header, width=k.width, height=k.height)
    msg.distortion_model = k.distortion_model if k.distortion_model != 'none' else 'plumb_bob'
    msg.d = [float(c) for c in k.distortion_coeffs] or [0.0] * 5
    msg.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def image_msg(array: np.ndarray, encoding: str, header: Header) -> Image:
    msg = Image(header=header, height=array.shape[0], width=array.shape[1], encoding=encoding)
    msg.is_bigendian = 0
    msg.step = int(array.strides[0])
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def _point(v: np.ndarray) -> Point:
    return Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _pose(pos: np.ndarray, quat_xyzw: np.ndarray) -> Pose:
    pose = Pose()
    pose.position = _point(pos)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (
        float(q) for q in quat_xyzw)
    return pose


def _stamp(wall_time: float) -> Time:
    sec = int(wall_time)
    return Time(sec=sec, nanosec=int((wall_time - sec) * 1e9))


class SimNode(Node):
    """Publishes the simulated camera and ground truth; resets episodes on request."""

    def __init__(self) -> None:
        super().__init__('sim')
        self.config = declare_parameters(self)
        self.runtime: SimRuntime | None = None
        self._color_pub = self.create_publisher(Image, COLOR_TOPIC, qos_profile_sensor_data)
        self._color_info_pub = self.create_publisher(CameraInfo, COLOR_INFO_TOPIC,
                                                     qos_profile_sensor_data)
        self._depth_pub = self.create_publisher(Image, DEPTH_TOPIC, qos_profile_sensor_data)
        self._depth_info_pub = self.create_publisher(CameraInfo, DEPTH_INFO_TOPIC,
                                                     qos_profile_sensor_data)
        self._gt_pub = self.create_publisher(
            GroundTruthMsg, GROUND_TRUTH_TOPIC,
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self._reset_srv = self.create_service(ResetEpisode, RESET_SERVICE, self._on_reset)
        self._camera_pose_pub = self.create_publisher(
            PoseStamped, CAMERA_POSE_TOPIC,
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self._published_camera: CameraCalibration | None = None
        self._camera_enabled = bool(self.get_parameter('camera_enabled').value)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        # Only camera_enabled takes effect at run time; the others shape the scene at start-up.
        for param in parameters:
            if param.name == 'camera_enabled':
                if param.type_ != Parameter.Type.BOOL:
                    return SetParametersResult(successful=False,
                                               reason='camera_enabled must be a bool')
            elif param.name in PARAMETERS:
                return SetParametersResult(
                    successful=False, reason=f'{param.name} is read at start-up only; restart '
                    'the node to change it')
        for param in parameters:
            if param.name == 'camera_enabled' and bool(param.value) != self._camera_enabled:
                self._camera_enabled = bool(param.value)
                self.get_logger().warning(
                    'camera ' + ('resumed' if self._camera_enabled else
                                 'stopped (camera_enabled false): no frames are published'))
        return SetParametersResult(successful=True)

    def configure(self) -> None:
        """Start the simulated robot and camera (heavy: builds the scene, binds sockets)."""
        self.runtime = SimRuntime(self.config, on_frame=self._publish_frame)
        self.runtime.start()
        self.get_logger().info(
            f'simulated FR3 at {self.config.hostname}; camera {COLOR_TOPIC} at '
            f'{self.config.rate_hz} Hz; episode {self.config.initial_task}/'
            f'{self.config.initial_seed}')

    def shutdown(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None

    def _publish_frame(self, frame: Frame) -> None:
        if not self.context.ok():
            return  # shutting down (a signal ended the context before the camera thread stopped)
        header = Header(stamp=_stamp(frame.wall_time), frame_id=frame.camera.child_frame)
        self._publish_camera_pose(frame.camera, header.stamp)
        if self._camera_enabled:
            info = camera_info(frame.camera, header)
            self._color_pub.publish(image_msg(frame.rgb, 'rgb8', header))
            self._depth_pub.publish(image_msg(depth_to_millimetres(frame.depth_m), '16UC1',
                                              header))
            self._color_info_pub.publish(info)
            self._depth_info_pub.publish(info)
        gt, spec = frame.ground_truth, frame.spec
        msg = GroundTruthMsg(header=Header(stamp=header.stamp, frame_id='fr3_link0'))
        msg.sim_time = gt.time_s
        msg.ee_pose = _pose(gt.ee_pos, gt.ee_quat_xyzw)
        msg.gripper_width = gt.gripper_width_m
        msg.joint_positions = [float(v) for v in gt.q]
        msg.object_names = [f'cube{i}' for i in range(len(gt.cube_pos))]
        msg.object_poses = [_pose(p, q) for p, q in zip(gt.cube_pos, gt.cube_quat_xyzw,
                                                        strict=True)]
        msg.task, msg.seed = spec.task, spec.seed
        if spec.task == 'reach':
            msg.goal_position = _point(spec.goal_tcp_pos)
        else:
            msg.goal_position = _point(spec.goal_cube_pos[spec.target_cube])
            msg.goal_object = f'cube{spec.target_cube}'
        msg.distance, msg.success = frame.distance_m, frame.success
        self._gt_pub.publish(msg)

    def _publish_camera_pose(self, camera: CameraCalibration, stamp: Time,
                             always: bool = False) -> None:
        if camera == self._published_camera and not always:
            return
        pose = PoseStamped(header=Header(stamp=stamp, frame_id=camera.parent_frame))
        pose.pose = _pose(np.asarray(camera.translation), np.asarray(camera.rotation_xyzw))
        self._camera_pose_pub.publish(pose)
        self._published_camera = camera

    def _on_reset(self, request: ResetEpisode.Request,
                  response: ResetEpisode.Response) -> ResetEpisode.Response:
        if self.runtime is None:
            response.success, response.message = False, 'the simulation is not running'
            return response
        try:
            variation = VariationConfig(lighting=request.vary_lighting,
                                        cube_colours=request.vary_cube_colours,
                                        cube_sizes=request.vary_cube_sizes,
                                        camera_jitter=request.vary_camera_pose,
                                        distractors=int(request.distractors),
                                        table_texture=request.vary_table)
            goal = self.runtime.reset_episode(request.task, int(request.seed), variation)
        except (UnknownTaskError, InvalidSeedError, ValueError, TimeoutError) as err:
            response.success = False
            response.message = f'{type(err).__name__}: {err}'
            self.get_logger().warning(f'reset rejected: {response.message}')
            return response
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=goal.camera.child_frame)
        # Before the reply, so a goal sent on it is planned with the episode's camera pose.
        # Every reset, moved or not: a planner waits for a pose as new as the goal image.
        self._publish_camera_pose(goal.camera, header.stamp, always=True)
        response.success = True
        response.message = f'episode {goal.spec.task}/{goal.spec.seed}'
        response.goal_image = image_msg(goal.rgb, 'rgb8', header)
        response.goal_depth = image_msg(depth_to_millimetres(goal.depth_m), '16UC1', header)
        response.camera_info = camera_info(goal.camera, header)
        response.goal_ee_position = _point(goal.spec.goal_tcp_pos)
        if goal.spec.target_cube >= 0:
            response.goal_object_position = _point(
                goal.spec.goal_cube_pos[goal.spec.target_cube])
        return response


def main(args: list[str] | None = None) -> int:
    """Console script ``sim``.

    Returns 0 when stopped by SIGINT or SIGTERM, also while it is still starting, and 1 when the
    simulation fails.
    """
    # The simulated camera publishes 640x480 frames like the realsense node, so it needs the same
    # Fast DDS profile: with the default shared-memory segment a subscriber in another process
    # (planner, mapper) loses about half of them (bench/results/camera.json).
    dds_note = apply_large_data_profile(os.environ)
    rclpy.init(args=args)
    # From here on rclpy's handlers turn SIGINT and SIGTERM into a shutdown of the context, with
    # no KeyboardInterrupt: configure() (seconds of scene building) runs to its end, and rclpy
    # calls made after the signal fail because the context is gone. An error raised once the
    # context is shut down is therefore that requested stop, not a failure.
    node: SimNode | None = None
    executor: rclpy.executors.SingleThreadedExecutor | None = None
    try:
        # Before configure(), so that a signal during it is seen by spin() at once.
        executor = rclpy.executors.SingleThreadedExecutor()
        node = SimNode()
        node.get_logger().info(dds_note)
        executor.add_node(node)
        node.configure()
        executor.spin()  # until the context is shut down
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as err:  # noqa: BLE001 (reported, then a clean shutdown)
        if rclpy.ok():
            # The type and traceback: some failures (franky-sim, MuJoCo) carry an empty message.
            message = f'sim failed: {type(err).__name__}: {err}\n{traceback.format_exc()}'
            if node is not None:
                node.get_logger().error(message)
            else:
                print(message, file=sys.stderr)
            return 1
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.shutdown()  # stops the camera and physics threads and releases the sockets
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())

__all__ = ['SimNode', 'main', 'Parameter']
