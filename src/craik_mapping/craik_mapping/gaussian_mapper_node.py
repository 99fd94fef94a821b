"""`gaussian_mapper` node: the streaming Gaussian map of the scene (thin rclpy layer).

Subscribes to the camera (colour, aligned depth, camera info) and /joint_states; integrates
keyframes into a craik_mapping.GaussianMap with the robot masked out by its kinematics; refines
the map when a CUDA device is there; publishes the map as a PointCloud2 and renders it from the
planning camera about once a second; serves /mapping/save and /mapping/reset.

Threads: callbacks only copy messages (the newest colour + depth pair waits in a one-slot
mailbox; a pair replaced before the map thread took it counts as dropped, nothing queues up);
one map thread owns the map and does all integration, refinement, rendering, publishing, and
the service requests, which it takes between frames.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import math
import os
from pathlib import Path
import queue
import threading
import time
from typing import Any

from geometry_msgs.msg import PoseStamped
import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2, PointField
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from craik_interfaces.srv import SaveMap
from craik_perception.dds_profile import apply_large_data_profile
from craik_perception.ros_image import image_to_array, stamp_to_ns, to_image

COLOR_TOPIC = '/camera/camera/color/image_raw'
COLOR_INFO_TOPIC = '/camera/camera/color/camera_info'
DEPTH_TOPIC = '/camera/camera/aligned_depth_to_color/image_raw'
CAMERA_POSE_TOPIC = '/calibration/camera_pose'
GAUSSIANS_TOPIC = '/mapping/gaussians'
RENDER_COLOR_TOPIC = '/mapping/render/color'
RENDER_DEPTH_TOPIC = '/mapping/render/depth'
ARM_JOINT_NAMES = tuple(f'fr3_joint{i}' for i in range(1, 8))
FINGER_JOINT_NAMES = ('fr3_finger_joint1', 'fr3_finger_joint2')
WORLD_FRAME = 'fr3_link0'
CAMERA_FRAME = 'camera_color_optical_frame'
# Colour and depth frames are one observation when their stamps are this close (s).
PAIR_TOLERANCE_S = 0.5 / 15.0
POSE_SOURCES = ('calibration', 'topic', 'wrist')

# name -> (default, description, range or None). The YAML block is config/gaussian_mapper.yaml.
PARAMETERS: dict[str, tuple[Any, str, tuple[float, float] | None]] = {
    'calibration_path': ('', "camera calibration YAML; '' = config/calibration/sim_d435.yaml",
                         None),
    'camera_pose_source': ('calibration', "'calibration': fixed camera at the file's pose; "
                           "'topic': the latched PoseStamped on camera_pose_topic (the sim "
                           "publishes each episode's camera); 'wrist': a hand camera, FK of "
                           '/joint_states times the file pose (parent frame fr3_hand)', None),
    'camera_pose_topic': (CAMERA_POSE_TOPIC, 'camera pose updates for camera_pose_source '
                          "'topic'", None),
    'device': ('auto', "'auto' (CUDA when available), 'cpu' or 'cuda'", None),
    'voxel_size': (0.006, 'one Gaussian per occupied voxel of this size, m', (0.001, 0.2)),
    'max_gaussians': (300_000, 'memory bound; past it the longest-unseen Gaussians go',
                      (1000, 50_000_000)),
    'min_depth': (0.1, 'depth below this is ignored, m', (0.0, 10.0)),
    'max_depth': (3.0, 'depth above this is not integrated (still clears space), m',
                  (0.1, 20.0)),
    'keyframe_min_interval': (0.5, 'at most one keyframe per this many seconds', (0.0, 60.0)),
    'keyframe_max_interval': (2.0, 'a keyframe at least this often, s', (0.05, 600.0)),
    'keyframe_joint_motion': (0.02, 'or sooner when a joint moved this much, rad',
                              (0.0, 3.2)),
    'keyframe_translation': (0.02, 'or when the camera moved this much, m', (0.0, 10.0)),
    'keyframe_rotation': (0.035, 'or turned this much, rad', (0.0, 3.2)),
    'arm_margin': (0.02, 'clearance around the robot capsules that is masked, m', (0.0, 0.2)),
    'arm_dilate_px': (2, 'the robot mask is grown by this many pixels', (0, 32)),
    'refine_iterations': (-1, 'refinement steps after each keyframe; -1 = 20 on CUDA and 0 on '
                          'the CPU (the CPU renderer is too slow to refine live)', (-1, 10000)),
    'refine_window': (8, 'keyframes refinement optimises over', (1, 256)),
    'publish_period': (1.0, 'map cloud and render period, s', (0.05, 60.0)),
    'render_width': (160, 'width of the render from the planning camera, px', (8, 1920)),
    'render_height': (120, 'height of the render from the planning camera, px', (8, 1080)),
    'cloud_max_points': (200_000, 'the published cloud holds at most this many Gaussians '
                         '(the most opaque)', (1, 50_000_000)),
    'map_directory': ('', "relative save paths are under this directory; '' = the working "
                      'directory', None),
    'nice': (10, 'CPU niceness added to this process: the map is best effort, the controller, '
             'the planner (and the simulator) must not wait for it', (0, 19)),
}


def _descriptor(description: str, bounds: tuple[float, float] | None,
                default: Any) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=description)
    if bounds is not None and isinstance(default, float):
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(bounds[0]), to_value=float(bounds[1]), step=0.0)]
    elif bounds is not None and isinstance(default, int):
        descriptor.integer_range = [IntegerRange(
            from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
    return descriptor


def _stamp_s(msg: Any) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


def cloud_message(means: np.ndarray, colours: np.ndarray, scales: np.ndarray,
                  opacities: np.ndarray, header: Any) -> PointCloud2:
    """PointCloud2 with fields x y z rgb (packed float, rviz2's convention) scale opacity;
    ``means [N, 3]`` m, ``colours [N, 3]`` in [0, 1], ``scales [N]`` m (largest axis)."""
    n = len(means)
    rgb8 = np.clip(np.rint(colours * 255.0), 0, 255).astype(np.uint32)
    packed = ((rgb8[:, 0] << 16) | (rgb8[:, 1] << 8) | rgb8[:, 2]).view(np.float32)
    table = np.empty((n, 6), dtype=np.float32)
    table[:, :3] = means
    table[:, 3] = packed
    table[:, 4] = scales
    table[:, 5] = opacities
    msg = PointCloud2()
    msg.header = header
    msg.height, msg.width = 1, n
    msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, name in enumerate(('x', 'y', 'z', 'rgb', 'scale', 'opacity'))]
    msg.is_bigendian = False
    msg.point_step, msg.row_step = 24, 24 * n
    msg.is_dense = True
    msg.data = table.tobytes()
    return msg


def lower_priority(increment: int) -> None:
    """Add ``increment`` to the niceness of every thread of this process (Linux keeps one
    per thread: the DDS threads rclpy started, which take the images, are included; threads
    started later inherit it). Nothing in the map is time-critical."""
    if increment <= 0:
        return
    tasks = Path('/proc/self/task')
    threads = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    for tid in threads:
        try:
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, current + increment))
        except (ProcessLookupError, PermissionError):
            continue  # a thread that ended meanwhile


@dataclass
class _Mailbox:
    """What the callbacks hand to the map thread (under the node's lock)."""

    colors: deque[Image] = field(default_factory=lambda: deque(maxlen=4))
    joints: deque[JointState] = field(default_factory=lambda: deque(maxlen=256))
    pending: tuple[Image, Image] | None = None
    info: CameraInfo | None = None
    received: int = 0
    dropped: int = 0
    rejected: int = 0


class GaussianMapperNode(Node):
    """Integrates the camera into a Gaussian map and publishes it."""

    def __init__(self) -> None:
        super().__init__('gaussian_mapper')
        for name, (default, description, bounds) in PARAMETERS.items():
            self.declare_parameter(name, default, _descriptor(description, bounds, default))
        self._box = _Mailbox()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._requests: queue.Queue[tuple[str, Any, dict[str, Any], threading.Event]] = \
            queue.Queue()
        self._running = False
        self._thread: threading.Thread | None = None
        self._map: Any = None
        self._refiner: Any = None
        self._robot: Any = None
        self._camera: Any = None        # CameraCalibration (native resolution)
        self._integrated = 0
        self._map_stamp: Any = None  # stamp of the last integrated frame (the map's "as of")
        # Bumped whenever the map or the planning camera changes; the published messages are
        # rebuilt only then (between changes the same cloud and render are sent again).
        self._version = 0
        self._published: tuple[int, PointCloud2, Image, Image] | None = None
        self._last_keyframe: tuple[float, np.ndarray, np.ndarray] | None = None

    def p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def configure(self) -> None:
        """Load the calibration and robot model, allocate the map, start the map thread."""
        import torch

        from craik_mapping.arm_mask import RobotShape
        from craik_mapping.gaussian_map import GaussianMap, MapConfig
        from craik_mapping.refine import RefineConfig, Refiner
        from craik_sim.calibration import default_calibration_path, load_calibration

        source = self.p('camera_pose_source')
        if source not in POSE_SOURCES:
            raise ValueError(f'camera_pose_source must be one of {POSE_SOURCES}, got {source!r}')
        if self.p('min_depth') >= self.p('max_depth'):
            raise ValueError('min_depth must be < max_depth')
        if self.p('keyframe_min_interval') > self.p('keyframe_max_interval'):
            raise ValueError('keyframe_min_interval must be <= keyframe_max_interval')
        device = self.p('device')
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        elif device not in ('cpu', 'cuda') or (device == 'cuda' and
                                               not torch.cuda.is_available()):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda' (with CUDA), got "
                             f'{self.p("device")!r}')
        path = self.p('calibration_path') or str(default_calibration_path())
        self._camera = load_calibration(path)
        if source == 'wrist' and self._camera.parent_frame != 'fr3_hand':
            raise ValueError(f"camera_pose_source 'wrist' needs a calibration whose parent "
                             f'frame is fr3_hand, {path} has {self._camera.parent_frame!r}')
        lower_priority(self.p('nice'))
        if device == 'cpu':
            # One core: on a two-core machine the simulator and the planner need the other.
            torch.set_num_threads(1)
        config = MapConfig(voxel_m=self.p('voxel_size'), min_depth_m=self.p('min_depth'),
                           max_depth_m=self.p('max_depth'),
                           max_gaussians=self.p('max_gaussians'))
        self._map = GaussianMap(config, device)
        self._refiner = Refiner(self._map, RefineConfig(window=self.p('refine_window'),
                                                        render_scale=0.5))
        self._robot = RobotShape()
        iterations = self.p('refine_iterations')
        self._refine_iterations = (20 if device == 'cuda' else 0) if iterations < 0 \
            else iterations

        sensors = MutuallyExclusiveCallbackGroup()
        services = ReentrantCallbackGroup()
        self.create_subscription(Image, COLOR_TOPIC, self._on_color, qos_profile_sensor_data,
                                 callback_group=sensors)
        self.create_subscription(Image, DEPTH_TOPIC, self._on_depth, qos_profile_sensor_data,
                                 callback_group=sensors)
        self.create_subscription(CameraInfo, COLOR_INFO_TOPIC, self._on_info,
                                 qos_profile_sensor_data, callback_group=sensors)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(JointState, '/joint_states', self._on_joints, reliable,
                                 callback_group=sensors)
        if source == 'topic' and self.p('camera_pose_topic'):
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.create_subscription(PoseStamped, self.p('camera_pose_topic'),
                                     self._on_camera_pose, latched, callback_group=sensors)
        self._cloud_pub = self.create_publisher(PointCloud2, GAUSSIANS_TOPIC, 1)
        self._render_color_pub = self.create_publisher(Image, RENDER_COLOR_TOPIC, 1)
        self._render_depth_pub = self.create_publisher(Image, RENDER_DEPTH_TOPIC, 1)
        self.create_service(SaveMap, '/mapping/save', self._on_save, callback_group=services)
        self.create_service(Trigger, '/mapping/reset', self._on_reset, callback_group=services)
        self._running = True
        self._thread = threading.Thread(target=self._map_loop, name='gaussian_map', daemon=True)
        self._thread.start()
        self.get_logger().info(
            f'mapping on {device} (voxel {config.voxel_m * 1000:.0f} mm, at most '
            f'{config.max_gaussians} Gaussians, refinement {self._refine_iterations} steps per '
            f'keyframe), camera pose from {source}')

    def shutdown(self) -> None:
        """Stop the map thread and release the map."""
        self._running = False
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._map = self._refiner = None

    # --- callbacks: copy only -----------------------------------------------------------------

    def _on_color(self, msg: Image) -> None:
        with self._lock:
            self._box.colors.append(msg)

    def _on_depth(self, msg: Image) -> None:
        with self._lock:
            box = self._box
            t = _stamp_s(msg)
            color = min(box.colors, key=lambda c: abs(_stamp_s(c) - t), default=None)
            if color is None or abs(_stamp_s(color) - t) > PAIR_TOLERANCE_S:
                return
            box.received += 1
            if box.pending is not None:
                box.dropped += 1
            box.pending = (color, msg)
        self._wake.set()

    def _on_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._box.info = msg

    def _on_joints(self, msg: JointState) -> None:
        with self._lock:
            self._box.joints.append(msg)

    def _on_camera_pose(self, msg: PoseStamped) -> None:
        from craik_sim.calibration import quat_xyzw_to_matrix

        q, t = msg.pose.orientation, msg.pose.position
        quat = np.array([q.x, q.y, q.z, q.w])
        position = np.array([t.x, t.y, t.z])
        if msg.header.frame_id not in ('', WORLD_FRAME) or not np.all(np.isfinite(quat)) or \
                not np.all(np.isfinite(position)) or abs(np.linalg.norm(quat) - 1.0) > 1e-3:
            self.get_logger().warning('camera pose ignored: needs frame fr3_link0 and a finite '
                                      'unit quaternion')
            return
        self._requests.put(('pose', (position, quat_xyzw_to_matrix(quat)), {},
                            threading.Event()))
        self._wake.set()

    def _on_save(self, request: SaveMap.Request, response: SaveMap.Response
                 ) -> SaveMap.Response:
        reply = self._ask('save', request.path)
        response.success = bool(reply.get('success'))
        response.message = str(reply.get('message', ''))
        response.saved_path = str(reply.get('saved_path', ''))
        response.gaussian_count = int(reply.get('count', 0))
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        reply = self._ask('reset', None)
        response.success = bool(reply.get('success'))
        response.message = str(reply.get('message', ''))
        return response

    def _ask(self, kind: str, payload: Any, timeout_s: float = 30.0) -> dict[str, Any]:
        reply: dict[str, Any] = {}
        done = threading.Event()
        self._requests.put((kind, payload, reply, done))
        self._wake.set()
        if not done.wait(timeout_s):
            return {'success': False, 'message': f'the map thread did not answer in {timeout_s} s'}
        return reply

    # --- the map thread -----------------------------------------------------------------------

    def _map_loop(self) -> None:
        next_publish = time.monotonic()
        last_report = time.monotonic()
        while self._running:
            self._wake.wait(timeout=0.1)
            self._wake.clear()
            self._serve_requests()
            with self._lock:
                pending, self._box.pending = self._box.pending, None
            if pending is not None:
                try:
                    self._process(*pending)
                except Exception as exc:  # a bad frame must not stop the map
                    with self._lock:
                        self._box.rejected += 1
                    self.get_logger().warning(f'frame rejected: {exc}',
                                              throttle_duration_sec=5.0)
            now = time.monotonic()
            if now >= next_publish:
                next_publish = now + self.p('publish_period')
                try:
                    self._publish()
                except Exception as exc:  # a failed publish must not stop the map thread
                    self.get_logger().error(f'publishing the map failed: {exc!r}',
                                            throttle_duration_sec=5.0)
            if now - last_report > 10.0:
                last_report = now
                with self._lock:
                    box = self._box
                    counts = (box.received, box.dropped, box.rejected)
                self.get_logger().info(
                    f'{len(self._map)} Gaussians, {self._integrated} keyframes; frames received '
                    f'{counts[0]}, dropped (map busy) {counts[1]}, rejected {counts[2]}')

    def _serve_requests(self) -> None:
        from craik_mapping.gaussian_map import MappingError
        from craik_mapping.ply import save_ply

        while True:
            try:
                kind, payload, reply, done = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                if kind == 'pose':
                    position, rotation = payload
                    self._camera = self._camera.with_pose(position, rotation)
                    self._version += 1
                elif kind == 'reset':
                    self._map.clear()
                    self._map_stamp = None
                    self._version += 1
                    self._refiner.clear()
                    self._last_keyframe = None
                    reply.update(success=True, message='map cleared')
                elif kind == 'save':
                    path = self._save_path(str(payload))
                    saved = save_ply(self._map, path)
                    reply.update(success=True, message=f'saved {len(self._map)} Gaussians',
                                 saved_path=str(saved), count=len(self._map))
                    self.get_logger().info(f'map saved to {saved} ({len(self._map)} Gaussians)')
            except (MappingError, OSError, ValueError) as exc:
                reply.update(success=False, message=str(exc))
            finally:
                done.set()

    def _save_path(self, text: str) -> Path:
        from craik_mapping.gaussian_map import MappingError

        if not text or '\x00' in text:
            raise MappingError('path is empty or contains a NUL byte')
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path(self.p('map_directory') or Path.cwd()).expanduser() / path
        return path

    def _frame_joints(self, stamp: float) -> tuple[np.ndarray, float] | None:
        """Arm joints [7] and gripper width (m) closest in time to ``stamp``."""
        with self._lock:
            history = list(self._box.joints)
        msg = min(history, key=lambda j: abs(_stamp_s(j) - stamp), default=None)
        if msg is None:
            return None
        index = {name: i for i, name in enumerate(msg.name)}
        if not all(name in index for name in ARM_JOINT_NAMES):
            return None
        q = np.array([msg.position[index[name]] for name in ARM_JOINT_NAMES])
        fingers = [msg.position[index[n]] for n in FINGER_JOINT_NAMES if n in index]
        # Unknown opening: assume open (the larger finger mask).
        width = float(sum(fingers)) if len(fingers) == 2 else 0.08
        if not (np.all(np.isfinite(q)) and math.isfinite(width)):
            return None
        return q, min(max(width, 0.0), 0.08)

    def _process(self, color: Image, depth: Image) -> None:
        from craik_mapping.arm_mask import arm_pixel_mask, remove_robot
        from craik_mapping.gaussian_map import check_frame

        stamp = _stamp_s(color)
        joints = self._frame_joints(stamp)
        if joints is None:
            raise ValueError('no /joint_states with fr3_joint1..7 yet: the robot cannot be '
                             'masked, the frame is not integrated')
        q, width = joints
        pose = self._camera_pose(q)
        if not self._is_keyframe(stamp, q, pose):
            return
        rgb = image_to_array(color, expected_encodings=('rgb8', 'bgr8'))
        if color.encoding == 'bgr8':
            rgb = rgb[..., ::-1]
        raw = image_to_array(depth, expected_encodings=('16UC1', 'mono16', '32FC1'))
        depth_m = raw.astype(np.float32) * (1.0 if depth.encoding == '32FC1'
                                            else self._camera.depth_scale)
        depth_m[~np.isfinite(depth_m)] = 0.0  # 32FC1 drivers mark holes with NaN
        k = self._intrinsics(rgb.shape[1], rgb.shape[0])
        capsules = self._robot.capsules(q, width)
        mask = arm_pixel_mask(depth_m, k, pose, capsules, self.p('arm_margin'),
                              self.p('arm_dilate_px'))
        frame = check_frame(rgb, depth_m, k, pose, mask, self._map.config, self._map.device)
        self._map.integrate_frame(frame)
        remove_robot(self._map, capsules)
        self._integrated += 1
        self._version += 1
        self._map_stamp = color.header.stamp
        self._last_keyframe = (stamp, q, pose)
        if self._refine_iterations > 0:
            self._refiner.add_keyframe(frame)
            self._refiner.refine(self._refine_iterations, seed=self._integrated)

    def _camera_pose(self, q: np.ndarray) -> np.ndarray:
        """fr3_link0 <- camera optical frame, for the frame's joint positions ``q``."""
        if self.p('camera_pose_source') != 'wrist':
            return np.asarray(self._camera.parent_from_camera)
        import pinocchio as pin

        arm = self._robot.arm
        pin.framesForwardKinematics(arm._model, arm._data, q)
        hand = arm._data.oMf[arm._model.getFrameId('fr3_hand')]
        world_from_hand = np.eye(4)
        world_from_hand[:3, :3] = hand.rotation
        world_from_hand[:3, 3] = hand.translation
        return world_from_hand @ np.asarray(self._camera.parent_from_camera)

    def _intrinsics(self, width: int, height: int) -> np.ndarray:
        with self._lock:
            info = self._box.info
        if info is not None and info.width == width and info.height == height and \
                info.k[0] > 0:
            return np.array(info.k, dtype=float).reshape(3, 3)
        return np.asarray(self._camera.intrinsics.scaled(width, height).matrix)

    def _is_keyframe(self, stamp: float, q: np.ndarray, pose: np.ndarray) -> bool:
        if self._last_keyframe is None:
            return True
        t0, q0, pose0 = self._last_keyframe
        age = stamp - t0
        if age < self.p('keyframe_min_interval'):
            return False
        if age >= self.p('keyframe_max_interval'):
            return True
        moved = float(np.max(np.abs(q - q0))) >= self.p('keyframe_joint_motion')
        shift = float(np.linalg.norm(pose[:3, 3] - pose0[:3, 3]))
        turn = math.acos(max(-1.0, min(1.0, (np.trace(pose0[:3, :3].T @ pose[:3, :3]) - 1) / 2)))
        return moved or shift >= self.p('keyframe_translation') or \
            turn >= self.p('keyframe_rotation')

    def _publish(self) -> None:
        if self._published is None or self._published[0] != self._version:
            self._published = (self._version, *self._messages())
        _, cloud, colour, depth = self._published
        self._cloud_pub.publish(cloud)
        self._render_color_pub.publish(colour)
        self._render_depth_pub.publish(depth)

    def _messages(self) -> tuple[PointCloud2, Image, Image]:
        """The map cloud and its render from the planning camera, as messages."""
        import torch

        from craik_mapping.render import render

        gmap = self._map
        # Stamped with the last integrated frame: a client sees which frames the map holds.
        header_stamp = self._map_stamp or self.get_clock().now().to_msg()
        n = len(gmap)
        with torch.no_grad():
            keep = torch.arange(n, device=gmap.device)
            if n > self.p('cloud_max_points'):
                keep = torch.argsort(gmap.opacity_logits, descending=True)[
                    :self.p('cloud_max_points')]
            cloud = cloud_message(gmap.means[keep].cpu().numpy(),
                                  gmap.colours()[keep].cpu().numpy(),
                                  gmap.scales()[keep].max(dim=1).values.cpu().numpy(),
                                  gmap.opacities()[keep].cpu().numpy(),
                                  Header(stamp=header_stamp, frame_id=WORLD_FRAME))
        w, h = self.p('render_width'), self.p('render_height')
        k = np.asarray(self._camera.intrinsics.scaled(w, h).matrix)
        view = render(gmap, k, np.asarray(self._camera.parent_from_camera), w, h)
        stamp_ns = stamp_to_ns(header_stamp)
        return (cloud, to_image(view.colour_uint8(), 'rgb8', CAMERA_FRAME, stamp_ns),
                to_image(view.depth_m(), '32FC1', CAMERA_FRAME, stamp_ns))


def main(args: list[str] | None = None) -> None:
    """Console script ``gaussian_mapper``."""
    # The map cloud is ~1 MB per message: the camera's large-data profile keeps Fast DDS from
    # losing it on the way to rviz2 and other subscribers on this machine.
    dds_note = apply_large_data_profile(os.environ)
    rclpy.init(args=args)
    node = GaussianMapperNode()
    node.get_logger().info(dds_note)
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    try:
        node.configure()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()



if __name__ == '__main__':
    main()
