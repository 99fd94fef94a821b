"""Safety envelope: the check every end-effector command passes before it may reach the robot.

A command is accepted unchanged or rejected with a reason code and a text naming the offending
values; nothing is clipped. Checks, in order:
    1. every number is finite (target, gripper, dynamics factor, and the robot state used);
    2. the mode is known;
    3. the gripper target is within 0 (open) ... 1 (closed);
    4. the dynamics factor is 0 (use the default) or within (0, max_dynamics_factor];
    5. the displacement from the current TCP position is at most the per-command limit on every
       axis (max_step_per_axis for relative and streamed commands, max_absolute_step_per_axis for
       absolute goals);
    6. the target is inside the workspace box;
    7. the current TCP orientation is close to the held orientation (otherwise the first motion
       would swing the hand around);
    8. inverse kinematics finds a solution within the joint limits (minus a margin) for points
       spaced at most ik_path_step along the straight path, warm-started from the current joints.

Streamed targets (/franka/target) are first checked by :func:`streamed_command`: the frame and
the stamp (STALE, WRONG_FRAME); what passes becomes a STREAMED command for the checks above.

The reason codes are the REASON_* constants of craik_interfaces/action/MoveEndEffector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import enum
import math

import numpy as np

from craik_franka.kinematics import (
    BASE_FRAME,
    HELD_ORIENTATION_XYZW,
    Fr3Kinematics,
    quaternion_to_matrix,
    rotation_angle,
)


class Mode(enum.IntEnum):
    """How a command's target is given (RELATIVE/ABSOLUTE match MoveEndEffector.MODE_*)."""

    RELATIVE = 0  # displacement from the current TCP position (the planner's action space)
    ABSOLUTE = 1  # absolute position in fr3_link0 (action goals)
    STREAMED = 2  # absolute position from the /franka/target stream: step-limited like RELATIVE


class Reason(enum.IntEnum):
    """Why a command was rejected (values match MoveEndEffector.Result.REASON_*)."""

    NONE = 0
    NON_FINITE = 1
    INVALID_MODE = 2
    STEP_TOO_LARGE = 3
    OUTSIDE_WORKSPACE = 4
    UNREACHABLE = 5
    JOINT_LIMITS = 6
    GRIPPER_OUT_OF_RANGE = 7
    DYNAMICS_FACTOR_OUT_OF_RANGE = 8
    ORIENTATION_MISMATCH = 9
    STATE_UNAVAILABLE = 10
    NOT_CONNECTED = 11
    ROBOT_FAULTED = 12
    GRIPPER_UNAVAILABLE = 13
    STALE = 14
    WRONG_FRAME = 15


Vector3 = tuple[float, float, float]


@dataclass(frozen=True)
class EnvelopeConfig:
    """Limits of the safety envelope (SI units: metres, radians)."""

    workspace_min: Vector3 = (0.20, -0.45, 0.02)
    workspace_max: Vector3 = (0.75, 0.45, 0.75)
    max_step_per_axis: float = 0.05
    max_absolute_step_per_axis: float = 0.25
    default_dynamics_factor: float = 0.1
    max_dynamics_factor: float = 0.3
    max_orientation_error: float = 0.35
    joint_limit_margin: float = 0.05
    ik_path_step: float = 0.01
    ik_position_tolerance: float = 1e-4

    def __post_init__(self) -> None:
        for name in ('workspace_min', 'workspace_max'):
            value = getattr(self, name)
            if len(value) != 3 or not all(math.isfinite(v) for v in value):
                raise ValueError(f'{name}: need 3 finite numbers, got {value!r}')
        if not all(lo < hi for lo, hi in zip(self.workspace_min, self.workspace_max, strict=True)):
            raise ValueError(f'workspace_min: {self.workspace_min} must be below workspace_max '
                             f'{self.workspace_max} on every axis')
        positive = ('max_step_per_axis', 'max_absolute_step_per_axis', 'default_dynamics_factor',
                    'max_dynamics_factor', 'max_orientation_error', 'ik_path_step',
                    'ik_position_tolerance')
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f'{name}: must be a positive finite number, got {value!r}')
        if self.max_dynamics_factor > 1.0:
            raise ValueError(f'max_dynamics_factor: at most 1, got {self.max_dynamics_factor}')
        if self.default_dynamics_factor > self.max_dynamics_factor:
            raise ValueError(f'default_dynamics_factor: {self.default_dynamics_factor} exceeds '
                             f'max_dynamics_factor {self.max_dynamics_factor}')
        if not (0.0 <= self.joint_limit_margin < 0.5):
            raise ValueError(f'joint_limit_margin: must be in [0, 0.5) rad, '
                             f'got {self.joint_limit_margin!r}')


@dataclass(frozen=True)
class MotionCommand:
    """An end-effector command as it arrives (nothing validated yet)."""

    mode: int
    target: tuple[float, ...]  # [3] displacement (RELATIVE) or position (ABSOLUTE, STREAMED)
    gripper: float | None = None  # 0 open ... 1 closed; None leaves the gripper unchanged
    dynamics_factor: float = 0.0  # 0: the default


@dataclass(frozen=True)
class ArmState:
    """The measured robot state a command is checked against."""

    q: np.ndarray  # [7] joint positions
    ee_position: np.ndarray  # [3] TCP position in fr3_link0
    ee_rotation: np.ndarray  # [3, 3] TCP rotation in fr3_link0


@dataclass(frozen=True)
class AcceptedCommand:
    """A command that passed the envelope: everything the robot needs, nothing clipped."""

    target_position: np.ndarray  # [3] absolute TCP position in fr3_link0
    orientation_xyzw: tuple[float, float, float, float]
    displacement: np.ndarray  # [3] target - current position
    gripper: float | None
    dynamics_factor: float
    joint_solution: np.ndarray  # [7] IK solution at the target (within limits)


@dataclass(frozen=True)
class Rejection:
    """A refused command: a reason code and a text for humans."""

    reason: Reason
    message: str = field(default='')

    def __str__(self) -> str:
        return f'{self.reason.name}: {self.message}'


_NANOSECONDS_PER_SECOND = 1_000_000_000


def streamed_command(frame_id: str, stamp_sec: int, stamp_nanosec: int, now_ns: int,
                     stream_timeout: float, position: tuple[float, ...],
                     gripper: float | None, dynamics_factor: float) -> MotionCommand | Rejection:
    """A streamed target (craik_interfaces/CartesianTarget) as a STREAMED command, or why not.

    ``stamp_sec``/``stamp_nanosec``: the header stamp (builtin_interfaces/Time); ``now_ns``: the
    node's clock now, in nanoseconds. Refused before the envelope: a frame other than '' or
    fr3_link0 (WRONG_FRAME); a stamp that is unset, not a valid time (negative seconds,
    nanoseconds of a second or more) or more than ``stream_timeout`` seconds from now, in
    either direction (STALE). Everything else is the envelope's to check.
    """
    if frame_id not in ('', BASE_FRAME):
        return Rejection(Reason.WRONG_FRAME, f'frame_id {frame_id!r} is not {BASE_FRAME}')
    if stamp_sec == 0 and stamp_nanosec == 0:
        return Rejection(Reason.STALE, 'header.stamp is not set')
    if stamp_sec < 0 or not 0 <= stamp_nanosec < _NANOSECONDS_PER_SECOND:
        # rclpy's Time.from_msg raises on these: that exception, in a subscription callback,
        # took the whole node down.
        return Rejection(Reason.STALE, f'header.stamp (sec {stamp_sec}, nanosec '
                         f'{stamp_nanosec}) is not a valid time')
    age = (now_ns - (stamp_sec * _NANOSECONDS_PER_SECOND + stamp_nanosec)) * 1e-9
    if abs(age) > stream_timeout:
        return Rejection(Reason.STALE, f'target is {age:.3f} s old (stream_timeout '
                         f'{stream_timeout:g} s)')
    return MotionCommand(int(Mode.STREAMED), tuple(position), gripper, dynamics_factor)


def _fmt(values: np.ndarray | tuple[float, ...]) -> str:
    return '(' + ', '.join(f'{float(v):.4g}' for v in values) + ')'


class SafetyEnvelope:
    """Checks commands against workspace, step, gripper, dynamics and reachability limits."""

    def __init__(self, config: EnvelopeConfig, kinematics: Fr3Kinematics) -> None:
        self.config = config
        self.kinematics = kinematics
        self._held_rotation = quaternion_to_matrix(HELD_ORIENTATION_XYZW)
        self._box_min = np.array(config.workspace_min, dtype=float)
        self._box_max = np.array(config.workspace_max, dtype=float)

    @property
    def held_rotation(self) -> np.ndarray:
        """Rotation matrix [3, 3] of the held TCP orientation."""
        return self._held_rotation.copy()

    def in_workspace(self, position: np.ndarray) -> bool:
        """Whether a position [3] is finite and inside the workspace box."""
        p = np.asarray(position, dtype=float)
        return bool(p.shape == (3,) and np.all(np.isfinite(p))
                    and np.all(p >= self._box_min) and np.all(p <= self._box_max))

    def step_limit(self, mode: Mode) -> float:
        """Per-axis displacement limit for commands of this mode."""
        if mode == Mode.ABSOLUTE:
            return self.config.max_absolute_step_per_axis
        return self.config.max_step_per_axis

    def check(self, command: MotionCommand, state: ArmState | None) -> AcceptedCommand | Rejection:
        """Accept the command as given, or say why not."""
        cfg = self.config
        try:
            target = np.array(command.target, dtype=float).reshape(-1)
            gripper = None if command.gripper is None else float(command.gripper)
            factor = float(command.dynamics_factor)
        except (TypeError, ValueError, OverflowError) as exc:
            return Rejection(Reason.NON_FINITE, f'command fields are not numbers: {exc}')
        if target.shape != (3,):
            return Rejection(Reason.NON_FINITE, f'target needs 3 components, got {target.size}')
        if not np.all(np.isfinite(target)):
            return Rejection(Reason.NON_FINITE, f'target {_fmt(target)} is not finite')
        if gripper is not None and not math.isfinite(gripper):
            return Rejection(Reason.NON_FINITE, f'gripper {gripper} is not finite')
        if not math.isfinite(factor):
            return Rejection(Reason.NON_FINITE, f'dynamics_factor {factor} is not finite')
        try:
            mode = Mode(command.mode)
        except ValueError:
            return Rejection(Reason.INVALID_MODE, f'mode {command.mode!r} is not one of '
                             f'{[m.value for m in Mode]}')
        if gripper is not None and not (0.0 <= gripper <= 1.0):
            return Rejection(Reason.GRIPPER_OUT_OF_RANGE,
                             f'gripper {gripper:.4g} is outside 0 (open) ... 1 (closed)')
        if factor == 0.0:
            factor = cfg.default_dynamics_factor
        elif not (0.0 < factor <= cfg.max_dynamics_factor):
            return Rejection(Reason.DYNAMICS_FACTOR_OUT_OF_RANGE,
                             f'dynamics_factor {factor:.4g} is outside (0, '
                             f'{cfg.max_dynamics_factor:.4g}] (0 selects the default '
                             f'{cfg.default_dynamics_factor:.4g})')
        if state is None:
            return Rejection(Reason.STATE_UNAVAILABLE,
                             'no robot state to check the command against')
        q = np.asarray(state.q, dtype=float)
        current = np.asarray(state.ee_position, dtype=float)
        rotation = np.asarray(state.ee_rotation, dtype=float)
        if (q.shape != (7,) or current.shape != (3,) or rotation.shape != (3, 3)
                or not (np.all(np.isfinite(q)) and np.all(np.isfinite(current))
                        and np.all(np.isfinite(rotation)))):
            return Rejection(Reason.STATE_UNAVAILABLE,
                             'the robot state is incomplete or not finite')

        if mode == Mode.RELATIVE:
            displacement = target
            position = current + displacement
        else:
            displacement = target - current
            position = target  # exactly as asked (current + (target - current) may round)
        limit = self.step_limit(mode)
        too_far = np.abs(displacement) > limit
        if np.any(too_far):
            axes = ''.join(a for a, bad in zip('xyz', too_far, strict=True) if bad)
            return Rejection(Reason.STEP_TOO_LARGE,
                             f'displacement {_fmt(displacement)} m exceeds {limit:.4g} m on '
                             f'axis {axes} ({mode.name.lower()} command)')
        if not self.in_workspace(position):
            return Rejection(Reason.OUTSIDE_WORKSPACE,
                             f'target {_fmt(position)} m is outside the workspace box '
                             f'{_fmt(self._box_min)} .. {_fmt(self._box_max)}')
        tilt = rotation_angle(rotation, self._held_rotation)
        if tilt > cfg.max_orientation_error:
            return Rejection(Reason.ORIENTATION_MISMATCH,
                             f'the hand is {tilt:.3f} rad from the held orientation (limit '
                             f'{cfg.max_orientation_error:.3f}); move it to the home orientation')
        reach = self._check_path(q, current, position)
        if isinstance(reach, Rejection):
            return reach
        return AcceptedCommand(target_position=position, orientation_xyzw=HELD_ORIENTATION_XYZW,
                               displacement=displacement, gripper=gripper,
                               dynamics_factor=factor, joint_solution=reach)

    def _check_path(self, q: np.ndarray, start: np.ndarray,
                    goal: np.ndarray) -> np.ndarray | Rejection:
        cfg = self.config
        kin = self.kinematics
        if not kin.within_limits(q, 0.0):
            return Rejection(Reason.JOINT_LIMITS, f'the current joints {_fmt(q)} are outside the '
                             'FR3 joint limits')
        length = float(np.linalg.norm(goal - start))
        n = max(1, math.ceil(length / cfg.ik_path_step))
        seed = q
        for i in range(1, n + 1):
            point = start + (goal - start) * (i / n)
            sol = kin.ik(point, self._held_rotation, seed, margin=cfg.joint_limit_margin,
                         position_tolerance=cfg.ik_position_tolerance)
            if sol.success:
                seed = sol.q
                continue
            free = kin.ik(point, self._held_rotation, seed, margin=None,
                          position_tolerance=cfg.ik_position_tolerance)
            if free.success:
                return Rejection(Reason.JOINT_LIMITS,
                                 f'{_fmt(point)} m on the path to {_fmt(goal)} m is reachable '
                                 f'only beyond the joint limits minus '
                                 f'{cfg.joint_limit_margin:.3g} rad')
            return Rejection(Reason.UNREACHABLE,
                             f'no inverse-kinematics solution for {_fmt(point)} m on the path to '
                             f'{_fmt(goal)} m (residual {sol.position_error:.3g} m, '
                             f'{sol.rotation_error:.3g} rad)')
        return seed
