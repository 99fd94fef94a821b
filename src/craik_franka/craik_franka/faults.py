"""Robot faults: classification, the automatic-recovery policy and the reconnection backoff.

libfranka reports motion errors as exceptions whose text lists the error flags that fired, e.g.
``libfranka: Move command aborted: motion aborted by reflex! ["cartesian_reflex"]``. Only faults
whose every flag is on a whitelist are recovered automatically (``recover_from_errors``), and only
at a bounded rate; everything else leaves the controller faulted until an operator recovers it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
import enum
import math
import re
import time

# libfranka's error flags (franka/errors.h), in wire order.
LIBFRANKA_ERRORS = (
    'joint_position_limits_violation', 'cartesian_position_limits_violation',
    'self_collision_avoidance_violation', 'joint_velocity_violation',
    'cartesian_velocity_violation', 'force_control_safety_violation', 'joint_reflex',
    'cartesian_reflex', 'max_goal_pose_deviation_violation', 'max_path_pose_deviation_violation',
    'cartesian_velocity_profile_safety_violation',
    'joint_position_motion_generator_start_pose_invalid',
    'joint_motion_generator_position_limits_violation',
    'joint_motion_generator_velocity_limits_violation',
    'joint_motion_generator_velocity_discontinuity',
    'joint_motion_generator_acceleration_discontinuity',
    'cartesian_position_motion_generator_start_pose_invalid',
    'cartesian_motion_generator_elbow_limit_violation',
    'cartesian_motion_generator_velocity_limits_violation',
    'cartesian_motion_generator_velocity_discontinuity',
    'cartesian_motion_generator_acceleration_discontinuity',
    'cartesian_motion_generator_elbow_sign_inconsistent',
    'cartesian_motion_generator_start_elbow_invalid',
    'cartesian_motion_generator_joint_position_limits_violation',
    'cartesian_motion_generator_joint_velocity_limits_violation',
    'cartesian_motion_generator_joint_velocity_discontinuity',
    'cartesian_motion_generator_joint_acceleration_discontinuity',
    'cartesian_position_motion_generator_invalid_frame',
    'force_controller_desired_force_tolerance_violation', 'controller_torque_discontinuity',
    'start_elbow_sign_inconsistent', 'communication_constraints_violation',
    'power_limit_violation', 'joint_p2p_insufficient_torque_for_planning',
    'tau_j_range_violation', 'instability_detected', 'joint_move_in_wrong_direction',
    'cartesian_spline_motion_generator_violation',
    'joint_via_motion_generator_planning_joint_limit_violation',
    'base_acceleration_initialization_timeout', 'base_acceleration_invalid_reading',
)

# Errors after which an automatic recovery is safe: the robot stopped itself (a contact or
# collision reflex, a timing hiccup of the control link, a generator discontinuity) and recovery
# only clears the error; the controller then holds position. Limit violations, self-collision,
# power-limit, instability and unknown errors need a person to look at the robot first.
DEFAULT_RECOVERABLE_ERRORS = (
    'joint_reflex',
    'cartesian_reflex',
    'communication_constraints_violation',
    'max_goal_pose_deviation_violation',
    'max_path_pose_deviation_violation',
    'cartesian_motion_generator_velocity_discontinuity',
    'cartesian_motion_generator_acceleration_discontinuity',
    'cartesian_motion_generator_joint_velocity_discontinuity',
    'cartesian_motion_generator_joint_acceleration_discontinuity',
    'cartesian_motion_generator_velocity_limits_violation',
    'cartesian_motion_generator_joint_velocity_limits_violation',
    'joint_motion_generator_velocity_discontinuity',
    'joint_motion_generator_acceleration_discontinuity',
    'controller_torque_discontinuity',
)

_ERROR_NAME = re.compile(r'[a-z][a-z0-9_]+')


class FaultKind(enum.Enum):
    """What went wrong, as far as the controller's reaction is concerned."""

    CONNECTION_LOST = 'connection_lost'  # network/UDP timeout or refused connection
    CONTROL = 'control'  # libfranka aborted a motion (reflex, limit, discontinuity, ...)
    COMMAND_REJECTED = 'command_rejected'  # the robot refused a command
    USER_STOPPED = 'user_stopped'  # the external enabling/stop device is pressed
    CONFIGURATION = 'configuration'  # robot setup does not match the controller's model
    GRIPPER = 'gripper'  # a gripper command failed
    INTERNAL = 'internal'  # an unexpected exception (a bug)


@dataclass(frozen=True)
class Fault:
    """A fault with the text the robot gave and the libfranka error flags it names."""

    kind: FaultKind
    message: str
    errors: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.message


def error_names(text: str) -> tuple[str, ...]:
    """The libfranka error flag names mentioned in a text (exception message, Errors repr)."""
    known = set(LIBFRANKA_ERRORS)
    seen: list[str] = []
    for word in _ERROR_NAME.findall(text):
        if word in known and word not in seen:
            seen.append(word)
    return tuple(seen)


@dataclass(frozen=True)
class RecoveryPolicyConfig:
    """When automatic error recovery is allowed."""

    recoverable_errors: tuple[str, ...] = DEFAULT_RECOVERABLE_ERRORS
    max_recoveries: int = 3  # within `window` seconds
    window: float = 60.0
    min_interval: float = 1.0  # seconds between two automatic recoveries

    def __post_init__(self) -> None:
        unknown = [e for e in self.recoverable_errors if e not in LIBFRANKA_ERRORS]
        if unknown:
            raise ValueError(f'recoverable_errors: unknown libfranka errors {unknown}')
        if self.max_recoveries < 0:
            raise ValueError(f'max_recoveries: must be >= 0, got {self.max_recoveries}')
        for name in ('window', 'min_interval'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f'{name}: must be a finite number >= 0, got {value!r}')


@dataclass(frozen=True)
class RecoveryDecision:
    allowed: bool
    reason: str


class RecoveryPolicy:
    """Decides whether a fault may be recovered automatically, and bounds the rate."""

    def __init__(self, config: RecoveryPolicyConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._history: deque[float] = deque()

    def decide(self, fault: Fault) -> RecoveryDecision:
        """Whether `fault` may be recovered now (does not record an attempt)."""
        cfg = self.config
        if fault.kind not in (FaultKind.CONTROL, FaultKind.COMMAND_REJECTED):
            return RecoveryDecision(False, f'{fault.kind.value} faults are not recovered '
                                    'automatically')
        if not fault.errors:
            return RecoveryDecision(False,
                                    'the robot reported no error flags to judge the fault by')
        blocked = [e for e in fault.errors if e not in cfg.recoverable_errors]
        if blocked:
            return RecoveryDecision(False, f'not whitelisted for automatic recovery: {blocked}')
        now = self._clock()
        while self._history and now - self._history[0] > cfg.window:
            self._history.popleft()
        if len(self._history) >= cfg.max_recoveries:
            return RecoveryDecision(False, f'{len(self._history)} automatic recoveries in the '
                                    f'last {cfg.window:g} s (limit {cfg.max_recoveries})')
        if self._history and now - self._history[-1] < cfg.min_interval:
            return RecoveryDecision(False, f'last automatic recovery was '
                                    f'{now - self._history[-1]:.2f} s ago (minimum interval '
                                    f'{cfg.min_interval:g} s)')
        return RecoveryDecision(True, f'whitelisted errors {list(fault.errors)}')

    def record(self) -> None:
        """Count an automatic recovery attempt now."""
        self._history.append(self._clock())

    def reset(self) -> None:
        """Forget past attempts (after an operator recovered the robot)."""
        self._history.clear()


class Backoff:
    """Exponential reconnection backoff: initial, initial*factor, ... capped at maximum."""

    def __init__(self, initial: float, maximum: float, factor: float = 2.0) -> None:
        if not (0.0 < initial <= maximum) or factor < 1.0:
            raise ValueError(f'Backoff: need 0 < initial <= maximum and factor >= 1, got '
                             f'{initial}, {maximum}, {factor}')
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def next_delay(self) -> float:
        """The delay before the next attempt (grows with every call)."""
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay

    def reset(self) -> None:
        self._next = self.initial
