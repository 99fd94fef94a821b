"""The connection to one FR3 (franky Robot + Gripper): motions, state, faults, reconnection.

RobotSession is the only code that talks to franky. It is ROS-free and runs identically against
a real FR3 and against franky-sim (same libfranka protocol); only `robot_ip` differs.

Threads
    * the monitor thread connects (with exponential backoff), polls the running asynchronous
      motion for errors (`join_motion(timeout=0)`, so an error surfaces within one monitor period,
      not at the next command), reads the robot state, finishes command handles, enforces goal
      timeouts and detects faults that happen while the arm is idle;
    * the gripper thread runs gripper commands one at a time (the newest target wins) and reads
      the finger width.
Every call on the franky Robot happens under one lock.

Motions
    Every command is checked by the SafetyEnvelope; an accepted one becomes an absolute Cartesian
    motion with the held orientation, started asynchronously. A new motion preempts the running
    one inside franky (Ruckig re-plans from the current velocity: no stop-and-go). Hold (cancel,
    stale stream, timeout) commands the braking point along the current velocity, so the arm
    decelerates without turning back, then stays there.

Faults
    * connection lost (libfranka NetworkException, e.g. UDP timeout when the robot is gone):
      the running handle ends ROBOT_FAULT, the session is DISCONNECTED and reconnects with
      backoff; commands are rejected (NOT_CONNECTED) until it is back;
    * control errors (ControlException: reflexes, limit violations; CommandException: refused
      commands): the running handle ends ROBOT_FAULT with libfranka's text; the RecoveryPolicy
      decides whether `recover_from_errors` runs (whitelisted errors, bounded rate); otherwise the
      session is FAULTED and rejects commands (ROBOT_FAULTED) until `recover()` is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import enum
import itertools
import logging
import math
import threading
import time
from typing import Any

import franky
import numpy as np

from craik_franka.config import FrankaControllerConfig
from craik_franka.envelope import (
    AcceptedCommand,
    ArmState,
    MotionCommand,
    Reason,
    Rejection,
    SafetyEnvelope,
)
from craik_franka.faults import Backoff, Fault, FaultKind, RecoveryPolicy, error_names
from craik_franka.kinematics import HELD_ORIENTATION_XYZW, Fr3Kinematics

_log = logging.getLogger('craik_franka.robot_session')
_SETTLED_SPEED = 0.005  # m/s: below this the TCP counts as at rest


class SessionState(enum.IntEnum):
    """Connection/fault state (values match ControllerStatus.STATE_*)."""

    DISCONNECTED = 0
    IDLE = 1
    MOVING = 2
    RECOVERING = 3
    FAULTED = 4


class Outcome(enum.IntEnum):
    """How a command ended (values match MoveEndEffector.Result.STATUS_*)."""

    SUCCEEDED = 0
    REJECTED = 1
    PREEMPTED = 2
    CANCELED = 3
    ROBOT_FAULT = 4
    NOT_REACHED = 5
    TIMEOUT = 6


class ErrorCode(enum.IntEnum):
    """Kind of the last error (values match ControllerStatus.ERROR_*)."""

    NONE = 0
    CONNECTION_LOST = 1
    CONTROL = 2
    COMMAND_REJECTED = 3
    RECOVERY_FAILED = 4
    CONFIGURATION = 5
    GRIPPER = 6
    INTERNAL = 7


_ERROR_OF_FAULT = {
    FaultKind.CONNECTION_LOST: ErrorCode.CONNECTION_LOST,
    FaultKind.CONTROL: ErrorCode.CONTROL,
    FaultKind.COMMAND_REJECTED: ErrorCode.COMMAND_REJECTED,
    FaultKind.USER_STOPPED: ErrorCode.CONTROL,
    FaultKind.CONFIGURATION: ErrorCode.CONFIGURATION,
    FaultKind.GRIPPER: ErrorCode.GRIPPER,
    FaultKind.INTERNAL: ErrorCode.INTERNAL,
}


@dataclass(frozen=True)
class ErrorRecord:
    code: ErrorCode
    message: str
    wall_time: float  # time.time() when it happened


@dataclass(frozen=True)
class Reading:
    """One robot state read, as numpy arrays (franky types stay inside this module)."""

    q: np.ndarray  # [7]
    dq: np.ndarray  # [7]
    ee_position: np.ndarray  # [3] measured TCP position: FK of the measured joints
    ee_rotation: np.ndarray  # [3, 3]
    commanded_position: np.ndarray  # [3] O_T_EE_d
    commanded_velocity: np.ndarray  # [3] O_dP_EE_d linear
    ee_velocity: np.ndarray  # [3] measured: J(q) dq
    robot_time: float  # robot clock (s): motion timing follows it (franky-sim may run slower)
    robot_mode: str  # libfranka RobotMode name (Idle, Move, Reflex, UserStopped, ...)
    errors: tuple[str, ...]  # current libfranka error flags


@dataclass(frozen=True)
class Snapshot:
    """What the session knows now; safe to read from any thread."""

    stamp: float  # monotonic time of the state read
    state: SessionState
    connected: bool
    moving: bool
    reading: Reading | None
    gripper_available: bool
    gripper_width: float  # metres, NaN when unknown
    active_source: str
    target: np.ndarray | None  # [3] commanded target of the running command
    last_error: ErrorRecord | None
    fault_reason: str
    recoveries: int
    reconnects: int
    rejected_commands: int
    last_rejection: str

    @property
    def ready(self) -> bool:
        return self.connected and self.state in (SessionState.IDLE, SessionState.MOVING)


class MotionHandle:
    """One accepted command; ends exactly once with an Outcome and a message."""

    def __init__(self, handle_id: int, source: str, target: np.ndarray,
                 gripper_width: float | None, started: float, started_robot: float) -> None:
        self.id = handle_id
        self.source = source
        self.target = target  # [3] commanded absolute position
        self.motion_target = target  # [3] where the robot is headed (the braking point on hold)
        self.gripper_width = gripper_width
        self.gripper_seq = 0  # gripper job this handle waits for (0: none)
        self.started = started  # monotonic wall-clock time
        self.started_robot = started_robot  # robot clock
        self.outcome: Outcome | None = None
        self.message = ''
        self.end_position: np.ndarray | None = None
        self._stop_outcome: Outcome | None = None  # CANCELED/TIMEOUT once a hold was commanded
        self._stop_message = ''
        self._trajectory_done = False
        self._settle_deadline: float | None = None
        self._done = threading.Event()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the handle ended (True) or the timeout passed (False)."""
        return self._done.wait(timeout)

    def _finish(self, outcome: Outcome, message: str, position: np.ndarray | None) -> None:
        if self._done.is_set():
            return
        self.outcome = outcome
        self.message = message
        self.end_position = None if position is None else np.array(position)
        self._done.set()


class _MotionError(Exception):
    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.message)
        self.fault = fault


class _GuardError(Exception):
    """The last gate before franky refused a motion (a bug upstream); nothing was sent."""


class _ConnectionLostError(Exception):
    pass


@dataclass
class _GripperJob:
    seq: int
    width: float


@dataclass
class _GripperState:
    available: bool = False
    width: float = math.nan
    goal: _GripperJob | None = None
    last_goal_width: float | None = None
    issued_seq: int = 0
    done_seq: int = 0
    results: dict[int, tuple[bool, str]] = field(default_factory=dict)


RobotFactory = Callable[..., Any]


class RobotSession:
    """Owns the franky Robot/Gripper of one FR3 and everything that moves it."""

    def __init__(self, config: FrankaControllerConfig, *,
                 kinematics: Fr3Kinematics | None = None,
                 robot_factory: RobotFactory | None = None,
                 gripper_factory: RobotFactory | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.kinematics = kinematics or Fr3Kinematics(config.urdf_path or None)
        self.envelope = SafetyEnvelope(config.envelope_config(), self.kinematics)
        self.policy = RecoveryPolicy(config.recovery_config(), clock)
        self._robot_factory = robot_factory or franky.Robot
        self._gripper_factory = gripper_factory or franky.Gripper
        self._clock = clock
        self._backoff = Backoff(config.reconnect_backoff_initial, config.reconnect_backoff_max)
        # The robot-wide dynamics factor caps everything a motion may ask for.
        self._global_factor = max(config.max_dynamics_factor, config.hold_dynamics_factor)

        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._robot: Any = None
        self._gripper: Any = None
        self._in_motion = False
        self._active: MotionHandle | None = None
        self._ids = itertools.count(1)
        self._state = SessionState.DISCONNECTED
        self._reading: Reading | None = None
        self._reading_stamp = 0.0
        self._last_error: ErrorRecord | None = None
        self._fault_reason = 'not connected yet'
        self._recoveries = 0
        self._reconnects = 0
        self._ever_connected = False
        self._next_connect = 0.0
        self._rejected = 0
        self._last_rejection = ''
        self._stalled = False  # in motion, but no new robot state for state_timeout
        self._last_robot_time = -1.0
        self._last_progress = 0.0
        self._threads: list[threading.Thread] = []

        self._gripper_cv = threading.Condition()
        self._gripper_io = threading.Lock()
        self._g = _GripperState()
        self._gripper_backoff = Backoff(config.reconnect_backoff_initial,
                                        config.reconnect_backoff_max)
        self._next_gripper_try = 0.0
        self._gripper_error = ''

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the monitor and gripper threads; the first connection attempt happens at once."""
        if self._threads:
            return
        self._stop.clear()
        for name, target in (('franka-monitor', self._monitor_loop),
                             ('franka-gripper', self._gripper_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Stop the threads, bring a moving arm to rest and release the connection."""
        with self._lock:
            if self._robot is not None and self._in_motion:
                try:
                    self._command_hold(None, Outcome.CANCELED, 'controller shutting down')
                    self._robot.join_motion(timeout=2.0)
                except Exception as exc:  # noqa: BLE001 (best effort on the way out)
                    _log.warning('stopping the arm on shutdown failed: %s', exc)
            if self._active is not None:
                self._active._finish(Outcome.ROBOT_FAULT, 'controller shut down', None)
                self._active = None
        self._stop.set()
        with self._gripper_cv:
            self._gripper_cv.notify_all()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads.clear()
        with self._lock:
            self._drop_connection()
            self._state = SessionState.DISCONNECTED
            self._fault_reason = 'controller shut down'

    def wait_until_ready(self, timeout: float) -> bool:
        """Block until connected and not faulted (True) or the timeout passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.snapshot().ready:
                return True
            time.sleep(0.01)
        return False

    # ---- queries ------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            active = self._active
            reading = self._reading
            # Moving: a trajectory is running, or the arm still settles onto its end.
            settling = (reading is not None and self._robot is not None
                        and float(np.linalg.norm(reading.ee_velocity)) > _SETTLED_SPEED)
            return Snapshot(
                stamp=self._reading_stamp, state=self._state,
                connected=self._robot is not None and not self._stalled,
                moving=self._in_motion or settling,
                reading=self._reading, gripper_available=self._g.available,
                gripper_width=self._g.width,
                active_source=active.source if active is not None else '',
                target=None if active is None else active.motion_target.copy(),
                last_error=self._last_error, fault_reason=self._fault_reason,
                recoveries=self._recoveries, reconnects=self._reconnects,
                rejected_commands=self._rejected, last_rejection=self._last_rejection)

    @property
    def active(self) -> MotionHandle | None:
        return self._active

    # ---- commands -----------------------------------------------------------------------------

    def submit(self, command: MotionCommand, source: str) -> MotionHandle | Rejection:
        """Check a command and start it, preempting the running one; or say why not.

        A rejected command never disturbs the running one.
        """
        with self._lock:
            rejection = self._refuse_reason(command)
            if rejection is not None:
                return self._count_rejection(rejection)
            try:
                reading = self._read()
            except _ConnectionLostError as exc:
                self._on_connection_lost(str(exc))
                return self._count_rejection(Rejection(Reason.NOT_CONNECTED, self._fault_reason))
            arm = ArmState(reading.q, reading.ee_position, reading.ee_rotation)
            checked = self.envelope.check(command, arm)
            if isinstance(checked, Rejection):
                return self._count_rejection(checked)
            return self._start(checked, source)

    def note_rejection(self, rejection: Rejection) -> None:
        """Count a rejection decided outside the session (e.g. a stale streamed target)."""
        with self._lock:
            self._count_rejection(rejection)

    def cancel(self, handle: MotionHandle) -> None:
        """Decelerate and hold if `handle` is running; it then ends CANCELED."""
        with self._lock:
            if handle is not self._active or handle.done():
                return
            self._stop_motion(handle, Outcome.CANCELED, 'canceled; holding position')

    def hold(self, reason: str) -> None:
        """Decelerate the running command (if any) and hold; it ends CANCELED with `reason`."""
        with self._lock:
            if self._active is not None and not self._active.done():
                self._stop_motion(self._active, Outcome.CANCELED, reason)

    def recover(self) -> tuple[bool, str]:
        """Operator-requested error recovery (clears a FAULTED session)."""
        with self._lock:
            if self._robot is None:
                return False, f'not connected: {self._fault_reason}'
            if self._in_motion:
                return False, 'the arm is moving; nothing to recover'
            try:
                self._robot.recover_from_errors()
                reading = self._read()
                self._check_configuration()
            except _ConnectionLostError as exc:
                self._on_connection_lost(str(exc))
                return False, self._fault_reason
            except _MotionError as exc:
                self._set_faulted(exc.fault, 'recovery failed')
                return False, str(exc.fault)
            except franky.Exception as exc:
                return False, f'recovery failed: {exc}'
            if reading.errors or reading.robot_mode in ('Reflex', 'UserStopped'):
                return False, (f'the robot still reports {list(reading.errors)} in mode '
                               f'{reading.robot_mode}')
            self.policy.reset()
            self._state = SessionState.IDLE
            self._fault_reason = ''
            _log.info('operator recovery succeeded')
            return True, 'recovered'

    # ---- internals: commands ------------------------------------------------------------------

    def _refuse_reason(self, command: MotionCommand) -> Rejection | None:
        if self._robot is None or self._stalled:
            return Rejection(Reason.NOT_CONNECTED, self._fault_reason or 'robot not connected')
        if self._state in (SessionState.FAULTED, SessionState.RECOVERING,
                           SessionState.DISCONNECTED):
            return Rejection(Reason.ROBOT_FAULTED, self._fault_reason or self._state.name)
        if command.gripper is not None and not self._g.available:
            return Rejection(Reason.GRIPPER_UNAVAILABLE,
                             'a gripper target was given but no gripper is connected')
        return None

    def _count_rejection(self, rejection: Rejection) -> Rejection:
        self._rejected += 1
        self._last_rejection = str(rejection)
        return rejection

    def _start(self, accepted: AcceptedCommand, source: str) -> MotionHandle:
        width = None
        if accepted.gripper is not None:
            width = (1.0 - accepted.gripper) * self._max_gripper_width()
        robot_time = self._reading.robot_time if self._reading is not None else 0.0
        handle = MotionHandle(next(self._ids), source, accepted.target_position.copy(), width,
                              self._clock(), robot_time)
        previous = self._active
        try:
            self._move_to(accepted.target_position, accepted.dynamics_factor)
        except _GuardError as exc:
            # Nothing reached the robot; whatever runs keeps running.
            self._record(ErrorCode.INTERNAL, str(exc))
            _log.error('%s', exc)
            handle._finish(Outcome.ROBOT_FAULT, f'internal error: {exc}', self._position())
            return handle
        except _ConnectionLostError as exc:
            handle._finish(Outcome.ROBOT_FAULT, str(exc), self._position())
            self._on_connection_lost(str(exc))  # also aborts the previous command
            return handle
        except _MotionError as exc:
            handle._finish(Outcome.ROBOT_FAULT, f'robot fault: {exc.fault.message}',
                           self._position())
            self._on_motion_error(exc.fault)
            return handle
        if previous is not None and not previous.done():
            previous._finish(Outcome.PREEMPTED, f'preempted by {source} command #{handle.id}',
                             self._position())
        self._active = handle
        self._in_motion = True
        self._state = SessionState.MOVING
        if width is not None:
            handle.gripper_seq = self._request_gripper(width)
        return handle

    def _move_to(self, position: np.ndarray, dynamics_factor: float,
                 velocity_factor: float | None = None) -> None:
        """Start an absolute Cartesian motion (held orientation); the last gate before franky.

        `dynamics_factor` scales the configured limits (it is divided by the robot-wide factor
        set on connect); `velocity_factor`, if given, scales the velocity limit alone further.
        """
        p = np.asarray(position, dtype=float)
        # Defence in depth: whatever called this, nothing outside the box reaches the robot.
        if not self.envelope.in_workspace(p):
            raise _GuardError(f'refused to command {p} outside the workspace')
        factor = dynamics_factor / self._global_factor
        if not (math.isfinite(factor) and 0.0 < factor <= 1.0 + 1e-9):
            raise _GuardError(f'refused dynamics factor {dynamics_factor}')
        factor = min(1.0, factor)
        rdf = franky.RelativeDynamicsFactor(
            factor if velocity_factor is None else factor * velocity_factor, factor, factor)
        motion = franky.CartesianMotion(
            franky.Affine(p, np.array(HELD_ORIENTATION_XYZW)), franky.ReferenceType.Absolute,
            relative_dynamics_factor=rdf)
        try:
            self._robot.move(motion, asynchronous=True)
        except franky.NetworkException as exc:
            raise _ConnectionLostError(f'robot connection lost: {exc}') from exc
        except (franky.ControlException, franky.CommandException,
                franky.RealtimeException) as exc:
            raise _MotionError(self._classify(exc)) from exc

    def _stop_motion(self, handle: MotionHandle, outcome: Outcome, message: str) -> None:
        if self._in_motion and handle._stop_outcome is not None:
            # A hold is already under way. Commanding it again would re-plan the braking point
            # from the current speed each time, ahead of the last one: the stream watchdog,
            # calling this every tick, made the arm run away (seen: 0.14 -> 0.31 m/s, 18 cm past
            # the last target).
            return
        if not self._in_motion:
            handle._finish(outcome, message, self._position())
            if handle is self._active:
                self._active = None
            return
        try:
            self._command_hold(handle, outcome, message)
        except _GuardError as exc:
            # No hold point inside the workspace (the arm is outside it): stop the motion
            # generator outright rather than command anything out there.
            self._record(ErrorCode.INTERNAL, f'hold: {exc}; stopping the motion')
            try:
                self._robot.stop()
            except franky.NetworkException as net:
                self._on_connection_lost(f'robot connection lost: {net}')
            except franky.Exception as err:
                _log.error('stop failed: %s', err)
            handle._stop_outcome, handle._stop_message = outcome, message
        except _ConnectionLostError as exc:
            self._on_connection_lost(str(exc))
        except _MotionError as exc:
            self._on_motion_error(exc.fault)

    def _command_hold(self, handle: MotionHandle | None, outcome: Outcome, message: str) -> None:
        reading = self._read()
        v = reading.commanded_velocity  # Ruckig plans from the commanded state
        speed = float(np.linalg.norm(v))
        cfg = self.config
        factor = cfg.hold_dynamics_factor
        accel = cfg.translation_acceleration_limit * factor
        jerk = cfg.translation_jerk_limit * factor
        # Stop at the braking point along the current velocity (per axis at least v_i^2 / 2a,
        # plus the jerk ramp), so the arm slows down and stays there instead of stopping at the
        # pose where hold was called and turning back. The margin covers a velocity reading
        # that lags the commanded one; the velocity cap keeps the hold from speeding up.
        margin = 1.3
        stop = reading.commanded_position + v * margin * (
            speed / (2.0 * accel) + accel / (2.0 * jerk))
        if handle is not None:
            # Never past where the motion was going: the motion itself would have stopped
            # there, with dynamics no stronger than the hold's.
            low = np.minimum(reading.commanded_position, handle.motion_target)
            high = np.maximum(reading.commanded_position, handle.motion_target)
            stop = np.clip(stop, low, high)
        if not self.envelope.in_workspace(stop):
            stop = reading.commanded_position
        if not self.envelope.in_workspace(stop):
            stop = reading.ee_position
        cap = 1.1 * float(np.max(np.abs(v))) / (cfg.translation_velocity_limit * factor)
        self._move_to(stop, factor, velocity_factor=min(1.0, max(0.02, cap)))
        if handle is not None:
            handle.motion_target = stop
            handle._stop_outcome = outcome
            handle._stop_message = message
            handle._trajectory_done = False
            handle._settle_deadline = None
        self._in_motion = True

    def _max_gripper_width(self) -> float:
        return self.config.gripper_max_width

    def _position(self) -> np.ndarray | None:
        return None if self._reading is None else self._reading.ee_position.copy()

    # ---- internals: robot I/O -----------------------------------------------------------------

    def _read(self) -> Reading:
        try:
            st = self._robot.state
        except franky.NetworkException as exc:
            raise _ConnectionLostError(f'robot connection lost: {exc}') from exc
        reading = self._parse(st)
        self._reading = reading
        self._reading_stamp = self._clock()
        return reading

    def _parse(self, st: Any) -> Reading:
        q = np.array(st.q, dtype=float).reshape(7)
        dq = np.array(st.dq, dtype=float).reshape(7)
        # The measured TCP pose is computed from the measured joints with the same model the
        # envelope uses (the F_T_EE check on connect guarantees it is the robot's EE frame).
        # franky-sim reports O_T_EE from the desired joints, so O_T_EE is not used for it.
        position, rotation = self.kinematics.fk(q)
        jac = self.kinematics.jacobian(q)
        return Reading(
            q=q, dq=dq, ee_position=position, ee_rotation=rotation,
            commanded_position=np.array(st.O_T_EE_d.translation, dtype=float).reshape(3),
            commanded_velocity=np.array(st.O_dP_EE_d.linear, dtype=float).reshape(3),
            ee_velocity=jac[:3] @ dq,
            robot_time=float(st.time.to_sec()),
            robot_mode=str(st.robot_mode.name),
            errors=error_names(str(st.current_errors)))

    def _classify(self, exc: BaseException) -> Fault:
        text = str(exc).replace('\n', '; ')
        names = list(error_names(text))
        if self._robot is not None:
            try:
                for name in error_names(str(self._robot.state.last_motion_errors)):
                    if name not in names:
                        names.append(name)
            except Exception:  # noqa: BLE001 (best effort: the text already has the gist)
                pass
        if isinstance(exc, franky.CommandException):
            return Fault(FaultKind.COMMAND_REJECTED, text, tuple(names))
        if isinstance(exc, franky.ControlException):
            return Fault(FaultKind.CONTROL, text, tuple(names))
        if isinstance(exc, franky.RealtimeException):
            # libfranka checks the kernel when a motion starts, not on connect.
            return Fault(FaultKind.CONFIGURATION, (
                f'libfranka refused to run the motion without realtime scheduling ({text}): '
                'run on a PREEMPT_RT kernel with rtprio and memlock limits for this user (lab '
                'guide, real-time kernel), or set realtime_config: ignore (simulator only)'),
                tuple(names))
        return Fault(FaultKind.INTERNAL, f'{type(exc).__name__}: {text}', tuple(names))

    def _configure(self, robot: Any) -> None:
        """Send every limit and threshold explicitly (never rely on library defaults)."""
        cfg = self.config
        robot.relative_dynamics_factor = self._global_factor
        robot.translation_velocity_limit.set(cfg.translation_velocity_limit)
        robot.translation_acceleration_limit.set(cfg.translation_acceleration_limit)
        robot.translation_jerk_limit.set(cfg.translation_jerk_limit)
        robot.rotation_velocity_limit.set(cfg.rotation_velocity_limit)
        robot.rotation_acceleration_limit.set(cfg.rotation_acceleration_limit)
        robot.rotation_jerk_limit.set(cfg.rotation_jerk_limit)
        robot.elbow_velocity_limit.set(cfg.elbow_velocity_limit)
        robot.elbow_acceleration_limit.set(cfg.elbow_acceleration_limit)
        robot.elbow_jerk_limit.set(cfg.elbow_jerk_limit)
        robot.set_collision_behavior(
            list(cfg.contact_torque_thresholds), list(cfg.collision_torque_thresholds),
            list(cfg.contact_force_thresholds), list(cfg.collision_force_thresholds))

    def _check_configuration(self) -> None:
        """The robot's end-effector frame must be the TCP our kinematics and envelope assume."""
        st = self._robot.state
        f_t_ee = np.array(st.F_T_EE.matrix, dtype=float)
        expected = self.kinematics.flange_to_tcp()
        if not np.allclose(f_t_ee, expected, atol=2e-3):
            raise _MotionError(Fault(
                FaultKind.CONFIGURATION,
                'the robot end-effector frame F_T_EE does not match the Franka Hand TCP of the '
                f'kinematic model (got translation {np.round(f_t_ee[:3, 3], 4).tolist()}, '
                f'expected {np.round(expected[:3, 3], 4).tolist()}); configure the end effector '
                'in Desk or set urdf_path'))

    # ---- internals: monitor -------------------------------------------------------------------

    def _monitor_loop(self) -> None:
        period = 1.0 / self.config.monitor_rate
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if self._robot is None:
                    if self._clock() >= self._next_connect:
                        self._try_connect()
                    else:
                        self._stop.wait(min(0.05, max(0.0, self._next_connect - self._clock())))
                        continue
                else:
                    self._tick()
            except Exception as exc:  # noqa: BLE001 (the monitor must survive anything)
                _log.exception('monitor: unexpected error')
                with self._lock:
                    self._record(ErrorCode.INTERNAL, f'monitor: {type(exc).__name__}: {exc}')
            self._stop.wait(max(0.0, period - (time.monotonic() - started)))

    def _try_connect(self) -> None:
        cfg = self.config
        realtime = (franky.RealtimeConfig.Enforce if cfg.realtime_config == 'enforce'
                    else franky.RealtimeConfig.Ignore)
        try:
            robot = self._robot_factory(cfg.robot_ip, realtime_config=realtime)
            self._configure(robot)
        except Exception as exc:  # noqa: BLE001 (any failure: retry later)
            delay = self._backoff.next_delay()
            with self._lock:
                reason = (f'cannot connect to the robot at {cfg.robot_ip}: {exc}; retrying in '
                          f'{delay:.1f} s')
                if self._fault_reason != reason:
                    _log.warning(reason)
                self._fault_reason = reason
                self._state = SessionState.DISCONNECTED
                self._next_connect = self._clock() + delay
                if self._last_error is None or self._last_error.code != ErrorCode.CONNECTION_LOST:
                    self._record(ErrorCode.CONNECTION_LOST, f'cannot connect: {exc}')
            return
        with self._lock:
            self._robot = robot
            self._backoff.reset()
            if self._ever_connected:
                self._reconnects += 1
            self._ever_connected = True
            self._in_motion = False
            self._state = SessionState.IDLE
            self._fault_reason = ''
            _log.info('connected to the robot at %s', cfg.robot_ip)
            try:
                reading = self._read()
                self._check_configuration()
            except _ConnectionLostError as exc:
                self._on_connection_lost(str(exc))
                return
            except _MotionError as exc:
                self._set_faulted(exc.fault, 'refusing to move')
                return
            if reading.errors or reading.robot_mode in ('Reflex', 'UserStopped'):
                self._on_idle_fault(reading)
        with self._gripper_cv:
            self._next_gripper_try = 0.0  # the gripper thread connects the hand now
            self._gripper_backoff.reset()
            self._gripper_cv.notify_all()

    def _tick(self) -> None:
        with self._lock:
            if self._robot is None:
                return
            finished = False
            try:
                if self._in_motion:
                    finished = bool(self._robot.join_motion(timeout=0.0))
                reading = self._read()
            except franky.NetworkException as exc:
                self._on_connection_lost(f'robot connection lost: {exc}')
                return
            except _ConnectionLostError as exc:
                self._on_connection_lost(str(exc))
                return
            except (franky.ControlException, franky.CommandException,
                    franky.RealtimeException) as exc:
                self._in_motion = False
                self._on_motion_error(self._classify(exc))
                return
            except franky.Exception as exc:
                self._on_connection_lost(f'robot communication failed: {type(exc).__name__}: '
                                         f'{exc}')
                return
            if finished:
                self._in_motion = False
                if self._state == SessionState.MOVING:
                    self._state = SessionState.IDLE
            if self._watch_stall(reading):
                return
            if (not self._in_motion and self._state in (SessionState.IDLE, SessionState.MOVING)
                    and (reading.errors or reading.robot_mode in ('Reflex', 'UserStopped'))):
                self._on_idle_fault(reading)
                return
            handle = self._active
            if handle is not None and not handle.done():
                self._progress(handle, reading, finished)

    def _watch_stall(self, reading: Reading) -> bool:
        """Whether the robot stopped talking during a motion (True: skip the rest of the tick).

        While a motion runs the robot sends a state every millisecond and franky returns the
        newest; libfranka itself gives up only after a 1 s receive timeout. A robot clock that
        stands still for state_timeout already means the link (or the robot) is gone: the
        running command is aborted and commands are refused at once. If states resume instead
        (a stall), the arm is brought to rest, since its command was aborted.
        """
        now = time.monotonic()
        if not self._in_motion or reading.robot_time != self._last_robot_time:
            self._last_robot_time = reading.robot_time
            self._last_progress = now
            if self._stalled:
                self._stalled = False
                self._state = SessionState.MOVING if self._in_motion else SessionState.IDLE
                self._fault_reason = ''
                _log.warning('robot states resumed after a stall')
                if self._in_motion:
                    try:
                        self._command_hold(None, Outcome.CANCELED, 'stall')
                    except (_GuardError, _ConnectionLostError, _MotionError) as exc:
                        _log.error('could not hold after the stall: %s', exc)
            return False
        if not self._stalled and now - self._last_progress > self.config.state_timeout:
            self._stalled = True
            message = (f'robot connection lost: no robot state for '
                       f'{now - self._last_progress:.2f} s during a motion')
            self._record(ErrorCode.CONNECTION_LOST, message)
            self._abort_active(message)
            self._state = SessionState.DISCONNECTED
            self._fault_reason = (f'{message}; reconnecting once the connection times out '
                                  '(or resuming if the robot answers again)')
            _log.error(self._fault_reason)
        return self._stalled

    def _progress(self, handle: MotionHandle, reading: Reading, finished: bool) -> None:
        # Motion timeouts run on the robot clock: the motion itself does, and franky-sim on a
        # loaded machine runs slower than wall-clock time.
        now = reading.robot_time
        if finished or not self._in_motion:
            handle._trajectory_done = True
        if handle._stop_outcome is not None:
            if handle._trajectory_done:
                handle._finish(handle._stop_outcome, handle._stop_message, reading.ee_position)
                self._active = None
            return
        if not handle._trajectory_done:
            if now - handle.started_robot > self.config.goal_timeout:
                self._stop_motion(handle, Outcome.TIMEOUT,
                                  f'not finished within goal_timeout {self.config.goal_timeout:g} '
                                  's; stopped and holding')
            return
        error = float(np.linalg.norm(reading.ee_position - handle.target))
        arm_ok = error <= self.config.goal_tolerance
        if handle._settle_deadline is None:
            handle._settle_deadline = now + self.config.settle_timeout
        gripper = self._gripper_result(handle)
        if arm_ok and gripper is not None:
            ok, text = gripper
            if ok:
                handle._finish(Outcome.SUCCEEDED, f'reached within {error * 1000:.2f} mm'
                               + (f'; {text}' if text else ''), reading.ee_position)
            else:
                handle._finish(Outcome.NOT_REACHED, f'arm reached the target ({error * 1000:.2f} '
                               f'mm) but the gripper failed: {text}', reading.ee_position)
            self._active = None
        elif not arm_ok and now > handle._settle_deadline:
            handle._finish(Outcome.NOT_REACHED,
                           f'the motion ended {error * 1000:.2f} mm from the target (tolerance '
                           f'{self.config.goal_tolerance * 1000:.2f} mm)', reading.ee_position)
            self._active = None
        elif arm_ok and (self._clock() - handle.started
                         > self.config.goal_timeout + self.config.gripper_timeout):
            handle._finish(Outcome.NOT_REACHED, 'the gripper did not finish in time',
                           reading.ee_position)
            self._active = None

    # ---- internals: faults --------------------------------------------------------------------

    def _record(self, code: ErrorCode, message: str) -> None:
        self._last_error = ErrorRecord(code, message, time.time())

    def _abort_active(self, message: str) -> None:
        handle = self._active
        if handle is not None and not handle.done():
            handle._finish(Outcome.ROBOT_FAULT, message, self._position())
        self._active = None

    def _drop_connection(self) -> None:
        self._robot = None
        self._in_motion = False
        self._stalled = False
        with self._gripper_io:
            self._gripper = None
        with self._gripper_cv:
            self._g.available = False
            self._gripper_cv.notify_all()

    def _on_connection_lost(self, message: str) -> None:
        self._drop_connection()
        delay = self._backoff.next_delay()
        self._next_connect = self._clock() + delay
        self._state = SessionState.DISCONNECTED
        self._fault_reason = (f'{message}; reconnecting to {self.config.robot_ip} with backoff '
                              f'(next try in {delay:.1f} s)')
        self._record(ErrorCode.CONNECTION_LOST, message)
        self._abort_active(message)
        _log.error(self._fault_reason)

    def _on_motion_error(self, fault: Fault) -> None:
        self._in_motion = False
        if self._externally_preempted(fault):
            # Another command source took over (a simulator reset, Desk, a second client):
            # the motion ended, but the robot has no error to clear and nothing to recover.
            self._record(_ERROR_OF_FAULT[fault.kind], fault.message)
            self._abort_active(f'motion preempted outside this controller: {fault.message}')
            _log.warning('motion preempted outside this controller: %s', fault.message)
            self._state = SessionState.IDLE
            return
        self._record(_ERROR_OF_FAULT[fault.kind], fault.message)
        self._abort_active(f'robot fault: {fault.message}')
        _log.error('motion aborted: %s', fault.message)
        self._handle_fault(fault)

    def _externally_preempted(self, fault: Fault) -> bool:
        """A 'Move command preempted' with no error flags while the robot is not in reflex."""
        if fault.kind != FaultKind.CONTROL or fault.errors:
            return False
        if 'preempted' not in fault.message.lower():
            return False
        try:
            reading = self._read()
        except Exception:  # noqa: BLE001 (unknown robot state: treat it as a fault)
            return False
        return not reading.errors and reading.robot_mode not in ('Reflex', 'UserStopped')

    def _on_idle_fault(self, reading: Reading) -> None:
        kind = FaultKind.USER_STOPPED if reading.robot_mode == 'UserStopped' else FaultKind.CONTROL
        fault = Fault(kind, f'robot in mode {reading.robot_mode} with errors '
                      f'{list(reading.errors)}', reading.errors)
        self._record(_ERROR_OF_FAULT[kind], fault.message)
        self._abort_active(f'robot fault: {fault.message}')
        _log.error('robot fault while idle: %s', fault.message)
        self._handle_fault(fault)

    def _handle_fault(self, fault: Fault) -> None:
        decision = self.policy.decide(fault)
        if not decision.allowed:
            self._set_faulted(fault, decision.reason)
            return
        self.policy.record()
        self._state = SessionState.RECOVERING
        try:
            self._robot.recover_from_errors()
            reading = self._read()
        except (_ConnectionLostError, franky.NetworkException) as exc:
            self._on_connection_lost(f'robot connection lost during recovery: {exc}')
            return
        except franky.Exception as exc:
            self._record(ErrorCode.RECOVERY_FAILED, f'automatic recovery failed: {exc}')
            self._set_faulted(fault, f'automatic recovery failed: {exc}')
            return
        if reading.errors or reading.robot_mode in ('Reflex', 'UserStopped'):
            self._record(ErrorCode.RECOVERY_FAILED, 'automatic recovery left errors '
                         f'{list(reading.errors)}')
            self._set_faulted(fault, f'automatic recovery left errors {list(reading.errors)}')
            return
        self._recoveries += 1
        self._state = SessionState.IDLE
        self._fault_reason = ''
        _log.warning('recovered automatically from %s (%d so far)', list(fault.errors),
                     self._recoveries)

    def _set_faulted(self, fault: Fault, why: str) -> None:
        self._state = SessionState.FAULTED
        self._fault_reason = (f'{fault.message} ({why}); clear the cause, then call '
                              '/franka/recover')
        if fault.kind == FaultKind.CONFIGURATION:
            self._record(ErrorCode.CONFIGURATION, fault.message)
        _log.error('faulted: %s', self._fault_reason)

    # ---- internals: gripper -------------------------------------------------------------------

    def _request_gripper(self, width: float) -> int:
        with self._gripper_cv:
            g = self._g
            last = g.last_goal_width
            if last is not None and abs(width - last) < self.config.gripper_deadband:
                return g.goal.seq if g.goal is not None else g.done_seq
            seq = (g.goal.seq if g.goal is not None else 0) + 1
            g.goal = _GripperJob(seq, width)
            g.last_goal_width = width
            self._gripper_cv.notify_all()
            return seq

    def _gripper_result(self, handle: MotionHandle) -> tuple[bool, str] | None:
        """(ok, text) once the handle's gripper job is done, None while it runs."""
        if handle.gripper_seq == 0:
            return True, ''
        with self._gripper_cv:
            g = self._g
            if g.done_seq < handle.gripper_seq:
                return None
            # A newer job may have superseded this handle's (it then was preempted anyway).
            later = [s for s in g.results if s >= handle.gripper_seq]
            return g.results[max(later)] if later else (True, '')

    def _gripper_loop(self) -> None:
        period = 1.0 / self.config.gripper_poll_rate
        while not self._stop.is_set():
            with self._gripper_cv:
                self._gripper_cv.wait_for(
                    lambda: self._stop.is_set() or self._gripper_wanted() or (
                        self._g.goal is not None and self._g.goal.seq > self._g.issued_seq),
                    timeout=period)
                job = self._g.goal
                if job is not None and job.seq > self._g.issued_seq:
                    self._g.issued_seq = job.seq
                else:
                    job = None
            if self._stop.is_set():
                return
            if self._gripper is None:
                self._maybe_connect_gripper()
            if job is not None:
                ok, text = self._run_gripper_job(job)
                with self._gripper_cv:
                    self._g.results[job.seq] = (ok, text)
                    self._g.done_seq = max(self._g.done_seq, job.seq)
                    for old in [s for s in self._g.results if s < job.seq - 16]:
                        del self._g.results[old]
                if not ok:
                    with self._lock:
                        self._record(ErrorCode.GRIPPER, text)
                    _log.warning(text)
            else:
                self._read_gripper_width()

    def _gripper_wanted(self) -> bool:
        return (self.config.gripper_enabled and self._gripper is None
                and self._robot is not None and self._clock() >= self._next_gripper_try)

    def _maybe_connect_gripper(self) -> None:
        """Connect the hand while the arm is connected (own backoff; the arm works without)."""
        cfg = self.config
        if not self._gripper_wanted():
            return
        try:
            gripper = self._gripper_factory(cfg.robot_ip)
            width = float(gripper.width)
        except (franky.Exception, franky.GripperException) as exc:
            delay = self._gripper_backoff.next_delay()
            self._next_gripper_try = self._clock() + delay
            text = f'gripper unavailable: {exc}'
            if text != self._gripper_error:
                self._gripper_error = text
                _log.warning('%s; retrying', text)
                with self._lock:
                    self._record(ErrorCode.GRIPPER, text)
            return
        with self._lock:
            if self._robot is None:  # the arm went away meanwhile: connect both again later
                return
            with self._gripper_io:
                self._gripper = gripper
        self._gripper_backoff.reset()
        self._gripper_error = ''
        with self._gripper_cv:
            self._g.available = True
            self._g.width = width
            self._g.last_goal_width = None
        _log.info('gripper connected (width %.1f mm)', width * 1000)

    def _drop_gripper(self, text: str) -> None:
        with self._gripper_io:
            self._gripper = None
        with self._gripper_cv:
            self._g.available = False
            self._g.width = math.nan
        self._next_gripper_try = self._clock() + self._gripper_backoff.next_delay()
        with self._lock:
            if self._robot is None:
                return  # the whole robot is gone; that error is already recorded
            self._record(ErrorCode.GRIPPER, text)
        _log.warning(text)

    def _read_gripper_width(self) -> None:
        with self._gripper_io:
            gripper = self._gripper
            if gripper is None:
                return
            try:
                width = float(gripper.width)
            except (franky.Exception, franky.GripperException) as exc:
                lost = f'gripper connection lost: {exc}'
            else:
                lost = ''
        if lost:
            self._drop_gripper(lost)
            return
        with self._gripper_cv:
            self._g.width = width

    def _run_gripper_job(self, job: _GripperJob) -> tuple[bool, str]:
        cfg = self.config
        with self._gripper_io:
            gripper = self._gripper
            if gripper is None:
                return False, 'gripper unavailable'
            current = self._g.width
            closing = math.isfinite(current) and job.width < current - cfg.gripper_deadband
            try:
                if closing:
                    # grasp() holds an object with the configured force; any width between the
                    # target and fully open counts as done (blocked by an object).
                    future = gripper.grasp_async(job.width, cfg.gripper_speed, cfg.gripper_force,
                                                 0.005, cfg.gripper_max_width)
                else:
                    future = gripper.move_async(job.width, cfg.gripper_speed)
            except (franky.Exception, franky.GripperException) as exc:
                return False, f'gripper command to {job.width * 1000:.1f} mm failed: {exc}'
        deadline = time.monotonic() + cfg.gripper_timeout
        poll = 1.0 / cfg.gripper_poll_rate
        while not future.wait(poll):
            self._read_gripper_width()
            if self._stop.is_set():
                return False, 'controller shutting down'
            if time.monotonic() > deadline:
                return False, (f'gripper did not reach {job.width * 1000:.1f} mm within '
                               f'{cfg.gripper_timeout:g} s')
        try:
            ok = bool(future.get())
        except (franky.Exception, franky.GripperException) as exc:
            return False, f'gripper command to {job.width * 1000:.1f} mm failed: {exc}'
        self._read_gripper_width()
        verb = 'grasp' if closing else 'move'
        if not ok:
            return False, f'gripper {verb} to {job.width * 1000:.1f} mm reported failure'
        return True, f'gripper at {self._g.width * 1000:.1f} mm'
