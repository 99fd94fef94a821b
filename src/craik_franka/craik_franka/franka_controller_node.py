"""franka_controller: the only node that moves the FR3 (franky; real robot or franky-sim).

Interfaces
    action  /franka/move_ee   craik_interfaces/MoveEndEffector (relative/absolute TCP target,
                               gripper, dynamics factor; preemptible; cancel holds)
    sub     /franka/target    craik_interfaces/CartesianTarget (streamed targets; staleness
                               timeout)
    pub     /joint_states     sensor_msgs/JointState (fr3_joint1..7, fr3_finger_joint1..2)
    pub     /franka/ee_pose   geometry_msgs/PoseStamped (TCP in fr3_link0)
    pub     /franka/status    craik_interfaces/ControllerStatus (steady rate)
    srv     /franka/recover   std_srvs/Trigger (operator error recovery after a fault)

The node only translates messages, parameters and timing; RobotSession does the work.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from builtin_interfaces.msg import Time as TimeMsg
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion
import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from craik_franka.config import FrankaControllerConfig, parameter_specs
from craik_franka.envelope import MotionCommand, Reason, Rejection, streamed_command
from craik_franka.kinematics import ARM_JOINTS, BASE_FRAME, FINGER_JOINTS, matrix_to_quaternion
from craik_franka.robot_session import MotionHandle, Outcome, RobotSession, Snapshot
from craik_interfaces.action import MoveEndEffector
from craik_interfaces.msg import CartesianTarget, ControllerStatus

NODE_NAME = 'franka_controller'


def declare_parameters(node: Node) -> FrankaControllerConfig:
    """Declare every FrankaControllerConfig field as a read-only parameter; return the config."""
    values: dict[str, Any] = {}
    for name, default, meta in parameter_specs():
        descriptor = ParameterDescriptor(description=meta['description'], read_only=True)
        low_high = meta.get('range')
        if meta.get('choices'):
            descriptor.additional_constraints = f'one of {list(meta["choices"])}'
        if low_high is not None and not isinstance(default, tuple):
            low, high = low_high
            if isinstance(default, int) and not isinstance(default, bool):
                descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high),
                                                         step=1)]
            else:
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=float(low), to_value=float(high), step=0.0)]
        elif low_high is not None:
            descriptor.additional_constraints = (f'{meta.get("length")} values, each in '
                                                 f'[{low_high[0]}, {low_high[1]}]')
        value = node.declare_parameter(
            name, list(default) if isinstance(default, tuple) else default, descriptor).value
        values[name] = tuple(value) if isinstance(default, tuple) else value
    return FrankaControllerConfig(**values)


def _point(v: np.ndarray | None) -> Point:
    if v is None:
        return Point()
    return Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))


class _RosLogHandler(logging.Handler):
    """Forwards the library's Python logging to the node's ROS logger."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            self._logger.error(text)
        elif record.levelno >= logging.WARNING:
            self._logger.warning(text)
        else:
            self._logger.info(text)


class FrankaControllerNode(Node):
    """ROS front end of RobotSession (see the module docstring for the interfaces)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.config = declare_parameters(self)
        self.session: RobotSession | None = None
        self._log_handler: logging.Handler | None = None
        self._stream_lock = threading.Lock()
        self._last_stream_rx: float | None = None
        self._stream_rejections = 0

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._action_group = ReentrantCallbackGroup()
        self._stream_group = MutuallyExclusiveCallbackGroup()
        self._publish_group = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()

        self._joint_pub = self.create_publisher(JointState, '/joint_states', reliable)
        self._pose_pub = self.create_publisher(PoseStamped, '/franka/ee_pose', reliable)
        self._status_pub = self.create_publisher(ControllerStatus, '/franka/status', reliable)
        # Only the newest streamed target matters.
        self._target_sub = self.create_subscription(
            CartesianTarget, '/franka/target', self._on_target,
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE),
            callback_group=self._stream_group)
        self._action = ActionServer(
            self, MoveEndEffector, '/franka/move_ee', execute_callback=self._execute,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=lambda _handle: CancelResponse.ACCEPT,
            callback_group=self._action_group)
        self._recover_srv = self.create_service(Trigger, '/franka/recover', self._on_recover,
                                                callback_group=self._service_group)
        self._state_timer = self.create_timer(1.0 / self.config.state_rate, self._publish_state,
                                              callback_group=self._publish_group)
        self._status_timer = self.create_timer(1.0 / self.config.status_rate,
                                               self._publish_status,
                                               callback_group=self._publish_group)
        self._watchdog = self.create_timer(min(0.05, self.config.stream_timeout / 4.0),
                                           self._check_stream, callback_group=self._stream_group)

    # ---- lifecycle ----------------------------------------------------------------------------

    def configure(self) -> None:
        """Create the robot session and start connecting (reconnects on its own after that)."""
        if self.session is not None:
            return
        self._log_handler = _RosLogHandler(self)
        lib_logger = logging.getLogger('craik_franka')
        lib_logger.addHandler(self._log_handler)
        lib_logger.setLevel(logging.INFO)
        lib_logger.propagate = False
        self.session = RobotSession(self.config)
        self.session.start()
        self.get_logger().info(f'connecting to the robot at {self.config.robot_ip}')

    def shutdown(self) -> None:
        """Stop the arm, release the robot connection and the log bridge."""
        if self.session is not None:
            self.session.close()
            self.session = None
        if self._log_handler is not None:
            logging.getLogger('craik_franka').removeHandler(self._log_handler)
            self._log_handler = None

    # ---- action -------------------------------------------------------------------------------

    def _execute(self, goal_handle: Any) -> MoveEndEffector.Result:
        goal = goal_handle.request
        session = self.session
        if session is None:
            goal_handle.abort()
            return self._rejected_result(Rejection(Reason.NOT_CONNECTED, 'node not configured'))
        command = MotionCommand(
            mode=int(goal.mode), target=(goal.target.x, goal.target.y, goal.target.z),
            gripper=float(goal.gripper) if goal.move_gripper else None,
            dynamics_factor=float(goal.dynamics_factor))
        started = session.submit(command, 'action')
        if isinstance(started, Rejection):
            self.get_logger().warning(f'move_ee goal rejected: {started}')
            goal_handle.abort()
            return self._rejected_result(started)
        handle: MotionHandle = started
        period = 1.0 / self.config.feedback_rate
        cancel_sent = False
        while not handle.wait(period):
            if goal_handle.is_cancel_requested and not cancel_sent:
                session.cancel(handle)
                cancel_sent = True
            snapshot = session.snapshot()
            if snapshot.reading is not None:
                feedback = MoveEndEffector.Feedback()
                feedback.current_pose = self._pose(snapshot)
                feedback.distance_remaining = float(np.linalg.norm(
                    snapshot.reading.ee_position - handle.target))
                goal_handle.publish_feedback(feedback)
        result = self._result(handle)
        if handle.outcome == Outcome.SUCCEEDED:
            goal_handle.succeed()
        elif handle.outcome == Outcome.CANCELED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return result

    def _rejected_result(self, rejection: Rejection) -> MoveEndEffector.Result:
        result = MoveEndEffector.Result()
        result.status = MoveEndEffector.Result.STATUS_REJECTED
        result.reason = int(rejection.reason)
        result.message = rejection.message
        result.position_error = math.nan
        result.gripper_width = math.nan
        if self.session is not None:
            snapshot = self.session.snapshot()
            if snapshot.reading is not None:
                result.reached_pose = self._pose(snapshot)
        return result

    def _result(self, handle: MotionHandle) -> MoveEndEffector.Result:
        assert self.session is not None
        snapshot = self.session.snapshot()
        result = MoveEndEffector.Result()
        result.status = int(handle.outcome if handle.outcome is not None else Outcome.ROBOT_FAULT)
        result.reason = MoveEndEffector.Result.REASON_NONE
        result.message = handle.message
        result.commanded_target = _point(handle.target)
        end = handle.end_position
        if end is None and snapshot.reading is not None:
            end = snapshot.reading.ee_position
        if snapshot.reading is not None:
            result.reached_pose = self._pose(snapshot)
        if end is not None:
            result.reached_pose.pose.position = _point(end)
            result.position_error = float(np.linalg.norm(end - handle.target))
        else:
            result.position_error = math.nan
        result.gripper_width = float(snapshot.gripper_width)
        return result

    # ---- streaming ----------------------------------------------------------------------------

    def _on_target(self, msg: CartesianTarget) -> None:
        session = self.session
        if session is None:
            return
        checked = streamed_command(
            msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec,
            self.get_clock().now().nanoseconds, self.config.stream_timeout,
            (msg.position.x, msg.position.y, msg.position.z),
            float(msg.gripper) if msg.move_gripper else None, float(msg.dynamics_factor))
        if isinstance(checked, Rejection):
            rejection = checked
            session.note_rejection(rejection)
        else:
            started = session.submit(checked, 'stream')
            if not isinstance(started, Rejection):
                with self._stream_lock:
                    self._last_stream_rx = time.monotonic()
                return
            rejection = started
        self._stream_rejections += 1
        self.get_logger().warning(f'streamed target rejected: {rejection}',
                                  throttle_duration_sec=1.0)

    def _check_stream(self) -> None:
        session = self.session
        if session is None:
            return
        active = session.active
        if active is None or active.done() or active.source != 'stream':
            return
        with self._stream_lock:
            last = self._last_stream_rx
        if last is None:
            return
        silence = time.monotonic() - last
        if silence > self.config.stream_timeout:
            session.hold(f'no fresh streamed target for {silence:.2f} s (stream_timeout '
                         f'{self.config.stream_timeout:g} s); holding position')

    # ---- state and status ---------------------------------------------------------------------

    def _pose(self, snapshot: Snapshot) -> PoseStamped:
        msg = PoseStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = BASE_FRAME
        reading = snapshot.reading
        if reading is None:
            return msg
        q = matrix_to_quaternion(reading.ee_rotation)
        msg.pose = Pose(position=_point(reading.ee_position),
                        orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                               w=float(q[3])))
        return msg

    def _publish_state(self) -> None:
        if self.session is None:
            return
        snapshot = self.session.snapshot()
        reading = snapshot.reading
        if not snapshot.connected or reading is None:
            return  # never republish a stale state as if it were current
        stamp = self.get_clock().now().to_msg()
        joints = JointState()
        joints.header.stamp = stamp
        joints.name = list(ARM_JOINTS) + list(FINGER_JOINTS)
        finger = snapshot.gripper_width / 2.0 if math.isfinite(snapshot.gripper_width) else 0.0
        joints.position = [float(v) for v in reading.q] + [finger, finger]
        joints.velocity = [float(v) for v in reading.dq] + [0.0, 0.0]
        self._joint_pub.publish(joints)
        pose = self._pose(snapshot)
        pose.header.stamp = stamp
        self._pose_pub.publish(pose)

    def _publish_status(self) -> None:
        if self.session is None:
            return
        snapshot = self.session.snapshot()
        msg = ControllerStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = BASE_FRAME
        msg.state = int(snapshot.state)
        msg.connected = snapshot.connected
        msg.moving = snapshot.moving
        msg.ready = snapshot.ready
        msg.gripper_available = snapshot.gripper_available
        msg.active_source = snapshot.active_source
        msg.target = _point(snapshot.target)
        if snapshot.reading is not None:
            msg.ee_speed = float(np.linalg.norm(snapshot.reading.ee_velocity))
            if snapshot.target is not None:
                msg.distance_to_target = float(np.linalg.norm(
                    snapshot.reading.ee_position - snapshot.target))
        if snapshot.last_error is not None:
            msg.last_error_code = int(snapshot.last_error.code)
            msg.last_error = snapshot.last_error.message
            seconds = snapshot.last_error.wall_time
            msg.last_error_stamp = TimeMsg(sec=int(seconds),
                                           nanosec=int((seconds % 1.0) * 1e9))
        msg.fault_reason = snapshot.fault_reason
        msg.recoveries = snapshot.recoveries
        msg.reconnects = snapshot.reconnects
        msg.rejected_commands = snapshot.rejected_commands
        msg.last_rejection = snapshot.last_rejection
        self._status_pub.publish(msg)

    # ---- recovery service ---------------------------------------------------------------------

    def _on_recover(self, _request: Trigger.Request, response: Trigger.Response) -> Any:
        if self.session is None:
            response.success, response.message = False, 'node not configured'
            return response
        ok, text = self.session.recover()
        response.success, response.message = ok, text
        (self.get_logger().info if ok else self.get_logger().warning)(f'recover: {text}')
        return response


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = FrankaControllerNode()
    executor = MultiThreadedExecutor(num_threads=6)
    executor.add_node(node)
    try:
        node.configure()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
