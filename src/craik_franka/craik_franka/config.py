"""Parameters of franka_controller: one typed dataclass, declared once.

Every field carries its description and allowed range in its metadata; the node declares its ROS
parameters from these fields (descriptors with ranges) and config/franka_controller.yaml sets them.
Nothing is left at a library default: dynamics factors, Cartesian velocity/acceleration/jerk
limits and collision thresholds are all sent to the robot explicitly on every connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
import math
from typing import Any

from craik_franka.envelope import EnvelopeConfig
from craik_franka.faults import DEFAULT_RECOVERABLE_ERRORS, RecoveryPolicyConfig

# libfranka's recommended collision behaviour (setDefaultBehavior in the examples).
_TORQUE_THRESHOLDS = (20.0, 20.0, 18.0, 18.0, 16.0, 14.0, 12.0)
_FORCE_THRESHOLDS = (20.0, 20.0, 20.0, 25.0, 25.0, 25.0)


def _param(default: Any, description: str, low: float | None = None, high: float | None = None,
           choices: tuple[str, ...] | None = None, length: int | None = None) -> Any:
    meta = {'description': description, 'range': (low, high) if low is not None else None,
            'choices': choices, 'length': length}
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FrankaControllerConfig:
    """All parameters of the franka_controller node (SI units: m, rad, s, N, Nm)."""

    # ---- connection ----
    robot_ip: str = _param('127.0.0.1', 'FCI address of the FR3; franky-sim listens on loopback')
    realtime_config: str = _param(
        'ignore', 'libfranka realtime check: enforce needs a PREEMPT_RT kernel (lab robot)',
        choices=('ignore', 'enforce'))
    urdf_path: str = _param('', 'FR3 URDF for kinematics; empty uses the copy shipped with '
                            'craik_franka')
    gripper_enabled: bool = _param(True, 'connect to the Franka Hand (franky Gripper)')
    reconnect_backoff_initial: float = _param(
        0.5, 'first delay before reconnecting after a lost connection (doubles each try)',
        0.05, 10.0)
    reconnect_backoff_max: float = _param(5.0, 'longest delay between reconnection attempts',
                                          0.1, 60.0)
    state_timeout: float = _param(
        0.3, 'during a motion, no new robot state for this long counts as a lost connection '
        "(libfranka's own receive timeout is 1 s)", 0.05, 1.0)
    # ---- timing ----
    monitor_rate: float = _param(
        200.0, 'rate at which motion errors are polled and the robot state is read (Hz)',
        20.0, 1000.0)
    state_rate: float = _param(50.0, 'rate of /joint_states and /franka/ee_pose (Hz)', 1.0, 500.0)
    status_rate: float = _param(10.0, 'rate of /franka/status (Hz)', 1.0, 100.0)
    feedback_rate: float = _param(20.0, 'rate of MoveEndEffector feedback (Hz)', 1.0, 100.0)
    gripper_poll_rate: float = _param(10.0, 'rate at which the gripper width is read (Hz)',
                                      1.0, 100.0)
    # ---- dynamics ----
    default_dynamics_factor: float = _param(
        0.1, 'fraction of the Cartesian limits below used when a command gives 0', 0.01, 1.0)
    max_dynamics_factor: float = _param(
        0.3, 'largest dynamics factor a command may ask for (larger ones are rejected)',
        0.01, 1.0)
    hold_dynamics_factor: float = _param(
        0.3, 'dynamics factor of the deceleration on cancel, stale stream or timeout', 0.01, 1.0)
    translation_velocity_limit: float = _param(
        1.0, 'Cartesian translation velocity limit before the dynamics factor (m/s)', 0.01, 1.7)
    translation_acceleration_limit: float = _param(
        5.0, 'Cartesian translation acceleration limit (m/s^2)', 0.1, 13.0)
    translation_jerk_limit: float = _param(
        2000.0, 'Cartesian translation jerk limit (m/s^3)', 10.0, 6500.0)
    rotation_velocity_limit: float = _param(1.5, 'rotation velocity limit (rad/s)', 0.01, 2.5)
    rotation_acceleration_limit: float = _param(10.0, 'rotation acceleration limit (rad/s^2)',
                                                0.1, 25.0)
    rotation_jerk_limit: float = _param(5000.0, 'rotation jerk limit (rad/s^3)', 10.0, 12500.0)
    elbow_velocity_limit: float = _param(1.5, 'elbow velocity limit (rad/s)', 0.01, 2.175)
    elbow_acceleration_limit: float = _param(5.0, 'elbow acceleration limit (rad/s^2)', 0.1, 10.0)
    elbow_jerk_limit: float = _param(2500.0, 'elbow jerk limit (rad/s^3)', 10.0, 5000.0)
    # ---- collision behaviour (libfranka setCollisionBehavior) ----
    contact_torque_thresholds: tuple[float, ...] = _param(
        _TORQUE_THRESHOLDS, 'per-joint torque above which contact is flagged (Nm)', 1.0, 100.0,
        length=7)
    collision_torque_thresholds: tuple[float, ...] = _param(
        _TORQUE_THRESHOLDS, 'per-joint torque above which the robot stops with a reflex (Nm)',
        1.0, 100.0, length=7)
    contact_force_thresholds: tuple[float, ...] = _param(
        _FORCE_THRESHOLDS, 'Cartesian force/torque (x y z R P Y) above which contact is flagged '
        '(N, Nm)', 1.0, 100.0, length=6)
    collision_force_thresholds: tuple[float, ...] = _param(
        _FORCE_THRESHOLDS, 'Cartesian force/torque above which the robot stops with a reflex '
        '(N, Nm)', 1.0, 100.0, length=6)
    # ---- safety envelope ----
    workspace_min: tuple[float, ...] = _param(
        (0.20, -0.45, 0.02), 'lower corner of the TCP workspace box in fr3_link0 (m)', -1.5, 1.5,
        length=3)
    workspace_max: tuple[float, ...] = _param(
        (0.75, 0.45, 0.75), 'upper corner of the TCP workspace box in fr3_link0 (m)', -1.5, 1.5,
        length=3)
    max_step_per_axis: float = _param(
        0.05, 'largest displacement per axis of a relative goal or streamed target (m)',
        0.001, 0.1)
    max_absolute_step_per_axis: float = _param(
        0.25, 'largest displacement per axis of an absolute goal (m)', 0.001, 0.5)
    max_orientation_error: float = _param(
        0.35, 'largest angle between the current and the held hand orientation that still '
        'allows motion (rad)', 0.01, 3.14)
    joint_limit_margin: float = _param(
        0.05, 'IK solutions must stay this far inside the joint limits (rad)', 0.0, 0.3)
    ik_path_step: float = _param(0.01, 'spacing of the IK checks along the path (m)', 0.001, 0.05)
    # ---- goals ----
    goal_tolerance: float = _param(0.003, 'distance to the target that counts as reached (m)',
                                   0.0002, 0.05)
    goal_timeout: float = _param(10.0, 'longest a goal may take before the arm is stopped (s, '
                                 'robot clock)',
                                 0.5, 120.0)
    settle_timeout: float = _param(
        1.0, 'after the trajectory ends, how long to wait for the TCP to settle within '
        'goal_tolerance (s, robot clock)', 0.0, 10.0)
    stream_timeout: float = _param(
        0.5, 'a streamed target older than this is rejected; without a fresh one for this long '
        'the arm stops and holds (s)', 0.05, 10.0)
    # ---- faults ----
    recoverable_errors: tuple[str, ...] = _param(
        DEFAULT_RECOVERABLE_ERRORS, 'libfranka errors recovered automatically (all flags of a '
        'fault must be listed)')
    max_auto_recoveries: int = _param(3, 'automatic recoveries allowed per recovery_window',
                                      0, 100)
    recovery_window: float = _param(60.0, 'window for max_auto_recoveries (s)', 0.0, 3600.0)
    recovery_min_interval: float = _param(1.0, 'minimum time between automatic recoveries (s)',
                                          0.0, 60.0)
    # ---- gripper ----
    gripper_speed: float = _param(0.05, 'finger speed (m/s)', 0.001, 0.1)
    gripper_force: float = _param(20.0, 'grasping force when closing (N)', 1.0, 70.0)
    gripper_max_width: float = _param(0.08, 'opening width for gripper = 0 (m); capped by the '
                                      "hand's own maximum", 0.01, 0.08)
    gripper_deadband: float = _param(
        0.002, 'width changes below this are not sent to the hand (m)', 0.0, 0.01)
    gripper_timeout: float = _param(10.0, 'longest a gripper command may take (s)', 0.5, 60.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if meta.get('choices') and value not in meta['choices']:
                raise ValueError(f'{f.name}: {value!r} is not one of {meta["choices"]}')
            items = value if isinstance(value, tuple) else (value,)
            if meta.get('length') is not None and len(items) != meta['length']:
                raise ValueError(f'{f.name}: needs {meta["length"]} values, got {len(items)}')
            if meta.get('range') is not None:
                low, high = meta['range']
                for v in items:
                    if isinstance(v, bool) or not isinstance(v, (int, float)):
                        raise ValueError(f'{f.name}: {v!r} is not a number')
                    if not (math.isfinite(v) and low <= v <= high):
                        raise ValueError(f'{f.name}: {v!r} is outside [{low}, {high}]')
        if self.reconnect_backoff_initial > self.reconnect_backoff_max:
            raise ValueError('reconnect_backoff_initial: exceeds reconnect_backoff_max')
        if self.hold_dynamics_factor < self.max_dynamics_factor:
            # The stop must be able to brake whatever a command was allowed to start.
            raise ValueError('hold_dynamics_factor: must be at least max_dynamics_factor')
        self.envelope_config()  # cross-field checks of the envelope (raises ValueError)
        self.recovery_config()

    def envelope_config(self) -> EnvelopeConfig:
        return EnvelopeConfig(
            workspace_min=(self.workspace_min[0], self.workspace_min[1], self.workspace_min[2]),
            workspace_max=(self.workspace_max[0], self.workspace_max[1], self.workspace_max[2]),
            max_step_per_axis=self.max_step_per_axis,
            max_absolute_step_per_axis=self.max_absolute_step_per_axis,
            default_dynamics_factor=self.default_dynamics_factor,
            max_dynamics_factor=self.max_dynamics_factor,
            max_orientation_error=self.max_orientation_error,
            joint_limit_margin=self.joint_limit_margin,
            ik_path_step=self.ik_path_step)

    def recovery_config(self) -> RecoveryPolicyConfig:
        return RecoveryPolicyConfig(recoverable_errors=tuple(self.recoverable_errors),
                                    max_recoveries=self.max_auto_recoveries,
                                    window=self.recovery_window,
                                    min_interval=self.recovery_min_interval)


def parameter_specs() -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, default, metadata) of every parameter, in declaration order."""
    return [(f.name, f.default, dict(f.metadata)) for f in fields(FrankaControllerConfig)]
