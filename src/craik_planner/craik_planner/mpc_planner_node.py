"""`mpc_planner` node: the /planner/reach_goal action server (thin rclpy layer).

Each step: take the latest synchronised colour + depth + robot state (stale ones are refused),
encode, plan within the budget (craik_planner.mpc), stream the first action to
franka_controller as an absolute /franka/target, publish feedback, the imagined final frame and
the planned end-effector path. Steps are paced at `step_period` and the next plan starts
`planning_budget` before the current motion ends, so the arm keeps moving between steps.

One thread owns the world model (a single-worker executor); ROS callbacks only copy messages.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
import threading
import time
from typing import Any

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, PoseStamped
import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.service_introspection import ServiceIntrospectionState
from sensor_msgs.msg import Image, JointState
from visualization_msgs.msg import Marker, MarkerArray

from craik_interfaces.action import ReachGoal
from craik_interfaces.msg import CartesianTarget, ControllerStatus, GroundTruth
from craik_perception.image_conversion import decode_image
from craik_planner.action_space import CommandLimits, step_target
from craik_planner.backends import OracleBackend, WorldModelBackend
from craik_planner.goal_validation import GoalDefaults, GoalRejectedError, validate_goal
from craik_planner.mpc import MpcConfig, MpcEpisode, Observation, planned_ee_path
from craik_planner.planning import PlannerConfig

COLOR_TOPIC = '/camera/camera/color/image_raw'
DEPTH_TOPIC = '/camera/camera/aligned_depth_to_color/image_raw'
GRIPPER_MAX_WIDTH_M = 0.08
CAMERA_POSE_TOPIC = '/calibration/camera_pose'
ARM_JOINT_NAMES = tuple(f'fr3_joint{i}' for i in range(1, 8))
Result = ReachGoal.Result

# name -> (default, description, range or None). The YAML block is config/mpc_planner.yaml.
PARAMETERS: dict[str, tuple[Any, str, tuple[float, float] | None]] = {
    'backend': ('world_model', "'world_model' (learned, the default) or 'oracle' (simulator "
                'ground truth; evaluation only)', None),
    'model_dir': ('models/craik_wm_geo', 'exported world model directory (ONNX + manifest)',
                  None),
    'runtime': ('onnxruntime', "world-model runtime: 'onnxruntime', 'torch' or 'tensorrt'",
                None),
    'runtime_threads': (0, 'CPU threads of the runtime (0 = library default)', (0, 64)),
    'oracle_task': ('reach', "oracle only: 'reach' or 'push'", None),
    'method': ('cem', "planner: 'cem', 'mppi' or 'random' (random shooting baseline)", None),
    'num_samples': (256, 'action sequences scored per planner iteration', (2, 65536)),
    'horizon': (8, 'planned actions per sequence', (1, 64)),
    'max_iterations': (4, 'planner iterations per step (anytime: fewer if the budget ends)',
                       (1, 100)),
    'num_elites': (32, 'CEM elites', (1, 65535)),
    'planning_budget': (0.25, 'planning time per step, s', (0.01, 10.0)),
    'step_period': (0.5, 'time between executed actions, s (craik_sim STEP_DURATION_S)',
                    (0.05, 10.0)),
    'energy_tolerance': (0.0415, 'world model: goal reached when the energy of the current '
                         'observation is at most this (0 in a goal uses it); depends on the '
                         'model: measure it with `craik calibrate`', (1e-6, 1e3)),
    'oracle_energy_tolerance': (0.01, 'oracle: reached distance, m', (1e-4, 1.0)),
    'max_steps': (40, 'default step limit of a goal (0 in a goal uses it)', (1, 10000)),
    'goal_timeout': (120.0, 'default wall-clock limit of a goal, s', (1.0, 3600.0)),
    'max_observation_age': (0.5, 'observations older than this are refused, s', (0.01, 10.0)),
    'action_introspection': (True, "publish each ReachGoal request and result with its contents "
                             "on the action's _service_event topics (what `craik record` keeps "
                             'for `craik replay-plan`)', None),
    'max_target_age': (1.0, 'a plan whose observation is older than this when its target would '
                       'be sent is dropped (the arm holds; the next step observes afresh), s',
                       (0.05, 10.0)),
    'workspace_min': ([0.2, -0.45, 0.02], "lower corner of the TCP box targets are kept in "
                      "(m, fr3_link0; franka_controller's workspace_min)", None),
    'workspace_max': ([0.75, 0.45, 0.75], "upper corner of that box (franka_controller's "
                      'workspace_max)', None),
    'observation_wait': (5.0, 'how long to wait for a fresh observation before failing the '
                         'goal, s', (0.1, 60.0)),
    'dynamics_factor': (0.0, 'dynamics factor sent with each target (0 = controller default)',
                        (0.0, 1.0)),
    'seed': (0, 'planner random seed (each goal re-seeds with it)', (0, 2**31 - 1)),
    'camera_calibration': ('', 'camera calibration YAML (intrinsics + the camera pose in '
                           'fr3_link0) for world models that read object state from depth; '
                           "'' = config/calibration/sim_d435.yaml", None),
    'camera_pose_topic': (CAMERA_POSE_TOPIC, 'latched geometry_msgs/PoseStamped that updates '
                          "the calibrated camera pose (the sim publishes the episode's); '' = "
                          'the file only', None),
    'hold_gripper': (True, 'keep the gripper open or closed as it is instead of planning it '
                     '(reach and push never change it)', None),
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


@dataclass
class _Latest:
    """Most recent sensor messages, copied out of the callbacks under a lock."""

    # The last few frames of each stream: colour and aligned depth arrive as separate messages,
    # so the newest colour frame's depth may still be on its way (a pair is taken from here).
    colors: deque[Image] = field(default_factory=lambda: deque(maxlen=4))
    depths: deque[Image] = field(default_factory=lambda: deque(maxlen=4))
    # Joint states of the last second or so: the arm is masked where it was when the frame was
    # taken, not where it is now (it moves ~1 cm in the 0.1 s a frame is old).
    joint_history: deque[JointState] = field(default_factory=lambda: deque(maxlen=256))
    ee: PoseStamped | None = None
    status: ControllerStatus | None = None
    ground_truth: GroundTruth | None = None


def _stamp_s(msg: Any) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


# Colour and depth frames count as one observation when their stamps are this close (s).
PAIR_TOLERANCE_S = 0.5 / 15.0


def _newest_pair(colors: list[Image], depths: list[Image]) -> tuple[Image, Image] | None:
    """The newest colour frame with a depth frame of (nearly) the same stamp, and that depth."""
    for color in reversed(colors):
        t = _stamp_s(color)
        best = min(depths, key=lambda d: abs(_stamp_s(d) - t), default=None)
        if best is not None and abs(_stamp_s(best) - t) <= PAIR_TOLERANCE_S:
            return color, best
    return None


class MpcPlannerNode(Node):
    """ReachGoal action server: closed-loop goal-image MPC on the world model."""

    def __init__(self) -> None:
        super().__init__('mpc_planner')
        for name, (default, description, bounds) in PARAMETERS.items():
            self.declare_parameter(name, default, _descriptor(description, bounds, default))
        self._latest = _Latest()
        self._lock = threading.Lock()
        self._backend: WorldModelBackend | OracleBackend | None = None
        self._camera: Any = None  # object_state.CameraModel (geometric world models)
        self._camera_pose_stamp: float | None = None  # of the last /calibration/camera_pose
        # One thread owns the model: every encode / plan / decode runs on it.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix='world_model')
        self._active: ServerGoalHandle | None = None
        self._preempted: set[int] = set()
        self._goal_lock = threading.Lock()
        self._sensors = MutuallyExclusiveCallbackGroup()
        self._actions = ReentrantCallbackGroup()

    # --- configure / shutdown ----------------------------------------------------------------

    def p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def configure(self) -> None:
        """Load the backend (model files, runtime sessions) and create the ROS interfaces."""
        backend = self.p('backend')
        if backend == 'world_model':
            self._backend = self._model_thread.submit(
                WorldModelBackend.load, self.p('model_dir'), self.p('runtime'),
                self.p('runtime_threads')).result()
        elif backend == 'oracle':
            if self.p('oracle_task') not in ('reach', 'push'):
                raise ValueError(f"oracle_task must be 'reach' or 'push', "
                                 f"not {self.p('oracle_task')!r}")
            self._backend = OracleBackend(self.p('oracle_task'), self._ground_truth_state)
            self.create_subscription(GroundTruth, '/sim/ground_truth', self._on_ground_truth,
                                     10, callback_group=self._sensors)
        else:
            raise ValueError(f"backend must be 'world_model' or 'oracle', not {backend!r}")
        if isinstance(self._backend, WorldModelBackend) and self._backend.geometric:
            self._configure_camera(self._backend)
        PlannerConfig(**self._planner_kwargs())   # fail at start-up on a bad combination
        self._command_limits = CommandLimits(
            np.array(self.p('workspace_min'), dtype=np.float64),
            np.array(self.p('workspace_max'), dtype=np.float64))
        sensor_qos = qos_profile_sensor_data
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Image, COLOR_TOPIC, self._on_color, sensor_qos,
                                 callback_group=self._sensors)
        self.create_subscription(Image, DEPTH_TOPIC, self._on_depth, sensor_qos,
                                 callback_group=self._sensors)
        self.create_subscription(PoseStamped, '/franka/ee_pose', self._on_ee, reliable,
                                 callback_group=self._sensors)
        self.create_subscription(JointState, '/joint_states', self._on_joints, reliable,
                                 callback_group=self._sensors)
        self.create_subscription(ControllerStatus, '/franka/status', self._on_status, reliable,
                                 callback_group=self._sensors)
        self._target_pub = self.create_publisher(CartesianTarget, '/franka/target', reliable)
        self._imagined_pub = self.create_publisher(Image, '/planner/imagined_goal', reliable)
        self._markers_pub = self.create_publisher(MarkerArray, '/planner/plan_markers', reliable)
        self._server = ActionServer(
            self, ReachGoal, '/planner/reach_goal', execute_callback=self._execute,
            goal_callback=lambda _: GoalResponse.ACCEPT,
            handle_accepted_callback=self._on_accepted,
            cancel_callback=lambda _: CancelResponse.ACCEPT, callback_group=self._actions)
        if self.p('action_introspection'):
            # The goals (goal image included) on the action's service-event topics, so that a
            # `craik record` of a session holds them and `craik replay-plan` can replan it.
            self._server.configure_introspection(
                self.get_clock(), reliable, ServiceIntrospectionState.CONTENTS)
        self.get_logger().info(f'mpc_planner ready: backend {backend}, method '
                               f"{self.p('method')}, {self.p('num_samples')} samples x horizon "
                               f"{self.p('horizon')}, budget {self.p('planning_budget')} s")

    def _configure_camera(self, backend: WorldModelBackend) -> None:
        """The calibrated camera from the file; the pose topic (when set) updates its pose."""
        from craik_sim.calibration import default_calibration_path, load_calibration
        from craik_world_model.object_state import CameraModel

        path = self.p('camera_calibration') or str(default_calibration_path())
        calibration = load_calibration(path)
        if calibration.parent_frame != 'fr3_link0':
            # The object state reads the camera as fixed in the base frame; a wrist camera's
            # pose would have to follow the arm (the mapper's camera_pose_source: wrist does).
            raise ValueError(f'{path}: the camera is calibrated in {calibration.parent_frame!r}; '
                             'the planner needs a fixed camera calibrated in fr3_link0')
        self._camera = CameraModel.from_calibration(calibration)
        self._model_thread.submit(backend.set_camera, self._camera).result()
        self.get_logger().info(f'camera calibration {path}: camera at '
                               f'{np.round(calibration.translation, 3).tolist()} m')
        topic = self.p('camera_pose_topic')
        if topic:
            latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.create_subscription(PoseStamped, topic, self._on_camera_pose, latched,
                                     callback_group=self._sensors)

    def _on_camera_pose(self, msg: PoseStamped) -> None:
        from dataclasses import replace

        from craik_sim.calibration import quat_xyzw_to_matrix

        if msg.header.frame_id not in ('', 'fr3_link0'):
            self.get_logger().warning(f'camera pose in frame {msg.header.frame_id!r} ignored '
                                      '(expected fr3_link0)')
            return
        q = msg.pose.orientation
        quat = np.array([q.x, q.y, q.z, q.w])
        position = np.array([msg.pose.position.x, msg.pose.position.y, msg.pose.position.z])
        if not (np.all(np.isfinite(quat)) and np.all(np.isfinite(position))
                and abs(np.linalg.norm(quat) - 1.0) < 1e-3):
            self.get_logger().warning('camera pose with a non-unit or non-finite value ignored')
            return
        pose = np.eye(4)
        pose[:3, :3] = quat_xyzw_to_matrix(quat)
        pose[:3, 3] = position
        backend = self._backend
        if isinstance(backend, WorldModelBackend):
            self._camera = replace(self._camera, world_from_camera=pose)
            self._model_thread.submit(backend.set_camera, self._camera)
            with self._lock:
                self._camera_pose_stamp = _stamp_s(msg)

    def _await_camera_pose(self, goal_stamp: float) -> None:
        """Where a camera pose topic is in use, wait (up to observation_wait) for a pose at
        least as new as the goal image: a goal rendered just after the camera moved (the sim's
        reset publishes the new pose right before it returns the goal) must be read through
        that pose, not the previous one. A camera that never publishes (the lab robot's
        calibration file) is not waited for."""
        if goal_stamp <= 0.0:
            return
        deadline = time.monotonic() + self.p('observation_wait')
        while time.monotonic() < deadline:
            with self._lock:
                stamp = self._camera_pose_stamp
            if stamp is None or stamp >= goal_stamp - 1e-6:
                return
            time.sleep(0.01)
        self.get_logger().warning('no camera pose as new as the goal image arrived within '
                                  'observation_wait; planning with the last one')

    def shutdown(self) -> None:
        self._model_thread.shutdown(wait=True, cancel_futures=True)
        self._backend = None

    def _planner_kwargs(self) -> dict[str, Any]:
        return {'method': self.p('method'), 'num_samples': self.p('num_samples'),
                    'horizon': self.p('horizon'), 'max_iterations': self.p('max_iterations'),
                    'num_elites': self.p('num_elites')}

    # --- sensor callbacks (copy only) ----------------------------------------------------------

    def _on_color(self, msg: Image) -> None:
        with self._lock:
            self._latest.colors.append(msg)

    def _on_depth(self, msg: Image) -> None:
        with self._lock:
            self._latest.depths.append(msg)

    def _on_ee(self, msg: PoseStamped) -> None:
        with self._lock:
            self._latest.ee = msg

    def _on_joints(self, msg: JointState) -> None:
        with self._lock:
            self._latest.joint_history.append(msg)

    def _on_status(self, msg: ControllerStatus) -> None:
        with self._lock:
            self._latest.status = msg

    def _on_ground_truth(self, msg: GroundTruth) -> None:
        with self._lock:
            self._latest.ground_truth = msg

    def _ground_truth_state(self) -> dict[str, np.ndarray]:
        deadline = time.monotonic() + self.p('observation_wait')
        while True:
            with self._lock:
                gt = self._latest.ground_truth
            if gt is not None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError('no /sim/ground_truth received within observation_wait (the '
                                   'oracle backend needs the sim node)')
            time.sleep(0.01)
        p = gt.ee_pose.position
        cube = np.zeros(3)
        if gt.goal_object in gt.object_names:
            q = gt.object_poses[list(gt.object_names).index(gt.goal_object)].position
            cube = np.array([q.x, q.y, q.z])
        g = gt.goal_position
        return {'ee': np.array([p.x, p.y, p.z]), 'cube': cube, 'goal': np.array([g.x, g.y, g.z])}

    # --- observation ---------------------------------------------------------------------------

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _observation(self) -> Observation | str:
        """The latest synchronised observation, or the reason there is none."""
        with self._lock:
            colors, depths = list(self._latest.colors), list(self._latest.depths)
            history, ee = list(self._latest.joint_history), self._latest.ee
        # The newest colour frame with its depth; else the newest colour frame alone.
        color, depth = _newest_pair(colors, depths) or (colors[-1] if colors else None,
                                                        depths[-1] if depths else None)
        if color is None:
            return f'no camera frame received yet on {COLOR_TOPIC}'
        # The joint state closest in time to the frame (the latest one for the gripper state
        # would do; the arm mask needs the frame's).
        joints = min(history, key=lambda j: abs(_stamp_s(j) - _stamp_s(color)), default=None)
        if ee is None:
            return 'no end-effector pose received yet on /franka/ee_pose'
        now = self._now_s()
        max_age = self.p('max_observation_age')
        for what, msg in (('colour frame', color), ('end-effector pose', ee)):
            age = now - _stamp_s(msg)
            if age > max_age:
                return f'the latest {what} is {age:.2f} s old (max_observation_age {max_age} s)'
        rgb = decode_image(color.encoding, color.width, color.height, color.step, color.data,
                           expected_encodings=('rgb8', 'bgr8'), copy=True)
        if color.encoding == 'bgr8':
            rgb = np.ascontiguousarray(rgb[..., ::-1])
        depth_m = None
        if depth is not None and abs(_stamp_s(depth) - _stamp_s(color)) <= PAIR_TOLERANCE_S:
            raw = decode_image(depth.encoding, depth.width, depth.height, depth.step,
                               depth.data, expected_encodings=('16UC1',))
            depth_m = raw.astype(np.float32) * 1e-3
        gripper = 0.0
        q = None
        if joints is not None:
            named = dict(zip(joints.name, joints.position, strict=False))
            widths = [pos for name, pos in named.items() if 'finger' in name]
            if widths:
                gripper = float(np.clip(1.0 - sum(widths) / GRIPPER_MAX_WIDTH_M, 0.0, 1.0))
            if all(n in named for n in ARM_JOINT_NAMES) and \
                    abs(_stamp_s(joints) - _stamp_s(color)) <= max_age:
                q = np.array([named[n] for n in ARM_JOINT_NAMES], dtype=np.float64)
        p = ee.pose.position
        return Observation(rgb=rgb, depth_m=depth_m, ee_position=np.array([p.x, p.y, p.z]),
                           gripper=gripper, stamp_s=_stamp_s(color), joint_positions=q)

    def _fresh_observation(self, not_before: float, deadline: float) -> Observation | str:
        reason = 'no observation'
        backend = self._backend
        geometric = isinstance(backend, WorldModelBackend) and backend.geometric
        while time.monotonic() < deadline:
            obs = self._observation()
            if isinstance(obs, Observation) and obs.stamp_s >= not_before:
                if not geometric:
                    return obs
                # Object state comes from depth and the arm mask from the joints: wait for an
                # observation that has both rather than fail on one frame whose depth is late.
                if obs.depth_m is not None and obs.joint_positions is not None:
                    return obs
                reason = ('no depth frame matching the colour frame' if obs.depth_m is None
                          else 'no recent /joint_states with fr3_joint1..7')
            else:
                reason = obs if isinstance(obs, str) else \
                    'waiting for a frame newer than the step'
            time.sleep(0.01)
        return reason

    def _robot_fault(self) -> str | None:
        with self._lock:
            status = self._latest.status
        if status is None:
            return None
        if status.state in (ControllerStatus.STATE_DISCONNECTED, ControllerStatus.STATE_FAULTED):
            return f'franka_controller is not ready: {status.fault_reason or status.last_error}'
        return None

    # --- goals -----------------------------------------------------------------------------------

    def _on_accepted(self, goal_handle: ServerGoalHandle) -> None:
        # One goal at a time: a newer goal preempts the running one, which ends PREEMPTED.
        with self._goal_lock:
            if self._active is not None and self._active.is_active:
                self._preempted.add(id(self._active))
            self._active = goal_handle
        goal_handle.execute()

    def _ee_now(self, obs: Observation) -> np.ndarray:
        """The latest measured TCP position (the observation's if no newer pose arrived)."""
        with self._lock:
            ee = self._latest.ee
        if ee is None:
            return obs.ee_position
        p = ee.pose.position
        return np.array([p.x, p.y, p.z])

    def _hold(self) -> None:
        """Stop streaming and pin the target to where the arm is (the controller holds).

        Only the robot's own pose is used: a late camera frame must never keep the arm moving.
        Without any pose the controller still holds once the stream goes stale.
        """
        with self._lock:
            ee = self._latest.ee
        if ee is not None:
            p = ee.pose.position
            self._send_target(np.array([p.x, p.y, p.z]), None)

    def _send_target(self, position: np.ndarray, gripper: float | None) -> None:
        msg = CartesianTarget()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = 'fr3_link0'
        msg.position = Point(x=float(position[0]), y=float(position[1]), z=float(position[2]))
        msg.move_gripper = gripper is not None
        msg.gripper = float(gripper) if gripper is not None else 0.0
        msg.dynamics_factor = float(self.p('dynamics_factor'))
        self._target_pub.publish(msg)

    def _finish(self, goal_handle: ServerGoalHandle, status: int, message: str, steps: int,
                energy: float) -> ReachGoal.Result:
        result = Result(status=status, message=message, steps=steps,
                        final_energy=float(energy) if np.isfinite(energy) else float('nan'))
        if goal_handle.is_active:
            if status == Result.STATUS_REACHED:
                goal_handle.succeed()
            elif status == Result.STATUS_CANCELED and goal_handle.is_cancel_requested:
                goal_handle.canceled()
            else:
                goal_handle.abort()
        # rclpy refuses one call site logging at two severities: one call per severity.
        text = f'goal ended: status {status}, {steps} steps: {message}'
        if status == Result.STATUS_REACHED:
            self.get_logger().info(text)
        else:
            self.get_logger().warning(text)
        return result

    def _execute(self, goal_handle: ServerGoalHandle) -> ReachGoal.Result:
        goal: ReachGoal.Goal = goal_handle.request
        try:
            return self._run_goal(goal_handle, goal)
        except GoalRejectedError as exc:
            return self._finish(goal_handle, Result.STATUS_REJECTED_INPUT, str(exc), 0, np.nan)
        except Exception as exc:  # noqa: BLE001 (the client must get a result, and the arm hold)
            self.get_logger().error(f'planner failed: {type(exc).__name__}: {exc}')
            self._hold()
            return self._finish(goal_handle, Result.STATUS_PLANNER_ERROR,
                                f'{type(exc).__name__}: {exc}', 0, np.nan)
        finally:
            self._preempted.discard(id(goal_handle))

    def _goal_defaults(self) -> GoalDefaults:
        """What a goal's zero tolerance, step count and timeout stand for."""
        tolerance = (self.p('oracle_energy_tolerance') if self.p('backend') == 'oracle'
                     else self.p('energy_tolerance'))
        return GoalDefaults(energy_tolerance=tolerance, max_steps=self.p('max_steps'),
                            timeout_s=self.p('goal_timeout'))

    def _run_goal(self, goal_handle: ServerGoalHandle, goal: ReachGoal.Goal) -> ReachGoal.Result:
        assert self._backend is not None
        backend = self._backend
        valid = validate_goal(goal, self._goal_defaults())
        tolerance, max_steps, timeout = valid.energy_tolerance, valid.max_steps, valid.timeout_s
        rgb, depth = valid.rgb, valid.depth_m
        self._await_camera_pose(_stamp_s(goal.goal_image))
        now = self._observation()
        gripper = now.gripper if isinstance(now, Observation) else 0.0
        try:
            goal_latent = self._model_thread.submit(backend.encode_goal, rgb, depth,
                                                    gripper).result()
        except ValueError as exc:
            raise GoalRejectedError(str(exc)) from None
        planner = PlannerConfig(**self._planner_kwargs())
        episode = MpcEpisode(backend, goal_latent, MpcConfig(
            planner=planner, energy_tolerance=tolerance, max_steps=max_steps,
            timeout_s=timeout, seed=self.p('seed'), hold_gripper=self.p('hold_gripper')))
        start = time.monotonic()
        period, budget = self.p('step_period'), self.p('planning_budget')
        energy = float('nan')
        gripper_closed: bool | None = None
        last_target: np.ndarray | None = None
        next_step = start
        not_before = self._now_s() - self.p('max_observation_age')
        step = 0   # executed steps
        while True:
            # Sleep until the planning slot of this step: the current motion is still running.
            while time.monotonic() < next_step - budget:
                if goal_handle.is_cancel_requested or id(goal_handle) in self._preempted:
                    break
                time.sleep(0.005)
            if goal_handle.is_cancel_requested:
                self._hold()
                return self._finish(goal_handle, Result.STATUS_CANCELED,
                                    'canceled; the arm holds its position', step, energy)
            if id(goal_handle) in self._preempted:
                return self._finish(goal_handle, Result.STATUS_PREEMPTED,
                                    'preempted by a newer goal', step, energy)
            if time.monotonic() - start > timeout:
                self._hold()
                return self._finish(goal_handle, Result.STATUS_TIMEOUT,
                                    f'timeout after {timeout:.1f} s', step, energy)
            fault = self._robot_fault()
            if fault is not None:
                return self._finish(goal_handle, Result.STATUS_ROBOT_FAULT, fault, step, energy)
            obs = self._fresh_observation(not_before,
                                          time.monotonic() + self.p('observation_wait'))
            if isinstance(obs, str):
                self._hold()
                return self._finish(goal_handle, Result.STATUS_ROBOT_FAULT,
                                    f'no fresh observation: {obs}', step, energy)
            deadline = max(next_step, time.monotonic() + 0.5 * budget)
            outcome = self._model_thread.submit(self._plan_step, episode, obs, deadline,
                                                tolerance).result()
            energy = outcome.current_energy
            if outcome.reached:
                self._hold()
                return self._finish(goal_handle, Result.STATUS_REACHED,
                                    f'energy {energy:.4f} <= tolerance {tolerance:.4f}', step,
                                    energy)
            if step == max_steps:
                self._hold()
                return self._finish(goal_handle, Result.STATUS_MAX_STEPS,
                                    f'{max_steps} steps without reaching the goal (energy '
                                    f'{energy:.4f}, tolerance {tolerance:.4f})', step, energy)
            age = self._now_s() - obs.stamp_s
            if age > self.p('max_target_age'):
                # Planning outlasted the view it started from (a loaded machine, a camera that
                # stopped mid-step): acting on it could move the arm into what changed since.
                self.get_logger().warning(
                    f'step {step + 1}: plan dropped, its observation is {age:.2f} s old '
                    f"(max_target_age {self.p('max_target_age')} s); observing again",
                    throttle_duration_sec=2.0)
                not_before = self._now_s()
                next_step = time.monotonic()
                continue
            if gripper_closed is None:
                gripper_closed = obs.gripper >= 0.5
            # The plan -> target mapping (chaining, box and step limits, gripper hysteresis).
            sent = step_target(outcome.action, obs.ee_position, self._ee_now(obs), last_target,
                               gripper_closed, self._command_limits)
            last_target, gripper_closed, action = sent.target, sent.gripper_closed, sent.action
            if sent.notes:
                self.get_logger().info(f'step {step + 1}: target limited '
                                       f'({", ".join(sent.notes)})', throttle_duration_sec=2.0)
            self._send_target(last_target, sent.gripper)
            not_before = self._now_s()
            next_step = max(next_step + period, time.monotonic())
            feedback = ReachGoal.Feedback(step=step + 1, best_energy=float(outcome.plan.energy),
                                          planning_time=float(outcome.planning_time_s))
            feedback.commanded_action = [float(a) for a in action]
            goal_handle.publish_feedback(feedback)
            self._publish_plan(obs, outcome)
            step += 1

    def _plan_step(self, episode: MpcEpisode, obs: Observation, deadline: float,
                   tolerance: float) -> Any:
        z0 = episode.backend.encode_observation(obs)
        outcome = episode.step(z0, deadline=deadline, energy_tolerance=tolerance,
                               gripper=obs.gripper)
        if outcome.plan is not None and self._imagined_pub.get_subscription_count() > 0:
            imagined = episode.backend.imagine(z0, episode.goal, outcome.plan.actions)
            if imagined is not None:
                img = Image(height=imagined.shape[0], width=imagined.shape[1], encoding='rgb8',
                            step=3 * imagined.shape[1])
                img.header.stamp = self.get_clock().now().to_msg()
                img.header.frame_id = 'camera_color_optical_frame'
                img.data = np.ascontiguousarray(imagined).tobytes()
                self._imagined_pub.publish(img)
        return outcome

    def _publish_plan(self, obs: Observation, outcome: Any) -> None:
        path = planned_ee_path(obs.ee_position, outcome.plan.actions)
        marker = Marker(ns='planned_ee_path', id=0, type=Marker.LINE_STRIP,
                        action=Marker.ADD)
        marker.header.frame_id = 'fr3_link0'
        marker.header.stamp = self.get_clock().now().to_msg()
        marker.scale.x = 0.005
        marker.color.r, marker.color.g, marker.color.b, marker.color.a = 0.1, 0.8, 0.2, 1.0
        marker.pose.orientation.w = 1.0
        marker.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in path]
        marker.lifetime = Duration(sec=2)
        self._markers_pub.publish(MarkerArray(markers=[marker]))


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = MpcPlannerNode()
    try:
        node.configure()
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
