"""Generated motion commands, streamed targets and command sequences against the controller, and
an independent check of everything that would reach franky.

Shared by test_command_fuzzing.py (CI) and bench/fuzz_goals.py (any count; its JSON is
bench/results/fuzzing.json). Three targets:

* :func:`check_envelope`: one command (relative / absolute / streamed; NaN, inf, huge, tiny,
  gripper, dynamics factor; see command_strategies.py) against ``SafetyEnvelope.check`` with the
  real Fr3Kinematics, from arm states all over the workspace (IK solutions with the held
  orientation), tilted, at or beyond the joint limits, broken (NaN) or missing;
* :func:`check_stream`: one /franka/target message's header and fields (frames, stamps unset,
  negative, a second of nanoseconds, stale or from the future) through ``streamed_command``,
  what the node does before the envelope, then the envelope;
* :func:`SessionHarness.run`: sequences of commands, streamed targets, cancels, holds, monitor
  ticks, gripper jobs, arm drift, reflexes, lost connections, reconnections and recoveries
  through the real RobotSession, with franky.Robot / franky.Gripper replaced by the recorders
  of fake_franky at the very last call boundary (``Robot.move``), the only place a recorder
  stands in for the real thing.

Every accepted command is checked by :func:`assert_within_envelope`, written from the envelope's
contract (its module docstring and EnvelopeConfig), not from its code: finite, inside the
workspace box, within the per-command step of the measured TCP, the hand near the held
orientation, the current joints within their limits, and every point of the straight path
(spaced at most ik_path_step) reachable with the held orientation within the joint limits minus
joint_limit_margin, the joint path continuous, the returned solution at the target. Every
rejection carries a Reason other than NONE and a message; where the contract decides the
reason before inverse kinematics, it must be that reason. Any violation counts as an
out-of-envelope command.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import functools
import math
from typing import Any

from command_strategies import SPECIAL, anything
from command_strategies import commands as arbitrary_commands
from fake_franky import HELD, FakeGripper, FakeRobot, RecordedMove
import franky
from hypothesis import strategies as st
import numpy as np

from craik_franka.config import FrankaControllerConfig
from craik_franka.envelope import (
    AcceptedCommand,
    ArmState,
    EnvelopeConfig,
    Mode,
    MotionCommand,
    Reason,
    Rejection,
    SafetyEnvelope,
    streamed_command,
)
from craik_franka.kinematics import (
    HELD_ORIENTATION_XYZW,
    HOME_JOINT_POSITIONS,
    Fr3Kinematics,
    quaternion_to_matrix,
    rotation_angle,
)
from craik_franka.robot_session import MotionHandle, Outcome, RobotSession

# Examples per CI run (test_command_fuzzing.py); the bench scales them.
CI_EXAMPLES = {'envelope': 2500, 'stream': 1200, 'session': 500}
CONFIG = FrankaControllerConfig(robot_ip='fake')
ENVELOPE = CONFIG.envelope_config()
KIN = FakeRobot.kin     # one pinocchio model for the fake robot and the checks
HELD_ROTATION = quaternion_to_matrix(HELD_ORIENTATION_XYZW)
HOME_Q = np.array(HOME_JOINT_POSITIONS)
# Largest joint change between two neighbouring path points (ik_path_step apart) that still
# counts as one continuous joint path; a jump beyond it is a switch of IK branch.
MAX_JOINT_JUMP = 0.5
NOW_NS = 1_764_000_000 * 10**9    # the node clock in the stream fuzzing (late 2025)


@functools.cache
def envelope() -> SafetyEnvelope:
    return SafetyEnvelope(ENVELOPE, KIN)


# ---- the independent check ----------------------------------------------------------------------

def _step_limit(cfg: EnvelopeConfig, mode: int) -> float:
    return cfg.max_absolute_step_per_axis if mode == Mode.ABSOLUTE else cfg.max_step_per_axis


def assert_within_envelope(cfg: EnvelopeConfig, kin: Fr3Kinematics, q: np.ndarray,
                           ee: np.ndarray, rotation: np.ndarray, mode: int,
                           target: np.ndarray, joint_solution: np.ndarray | None = None) -> None:
    """Raise AssertionError unless moving from (q, ee, rotation) to ``target`` is inside the
    envelope as EnvelopeConfig states it."""
    target = np.asarray(target, dtype=float)
    assert target.shape == (3,) and np.all(np.isfinite(target)), f'target {target}'
    assert np.all(target >= np.array(cfg.workspace_min)), f'target {target} below the box'
    assert np.all(target <= np.array(cfg.workspace_max)), f'target {target} above the box'
    step = np.abs(target - ee)
    assert np.all(step <= _step_limit(cfg, mode) + 1e-12), \
        f'step {step} from {ee} to {target} ({Mode(mode).name})'
    assert rotation_angle(rotation, HELD_ROTATION) <= cfg.max_orientation_error, \
        'the hand was too far from the held orientation to move'
    assert kin.within_limits(q, 0.0), f'moved from joints {q} outside the joint limits'
    if joint_solution is not None:
        assert kin.within_limits(joint_solution, cfg.joint_limit_margin)
        position, rot = kin.fk(joint_solution)
        assert np.linalg.norm(position - target) <= 2 * cfg.ik_position_tolerance
        assert rotation_angle(rot, HELD_ROTATION) <= 2e-3
    n = max(1, math.ceil(float(np.linalg.norm(target - ee)) / cfg.ik_path_step))
    seed = q
    for i in range(1, n + 1):
        point = ee + (target - ee) * (i / n)
        sol = kin.ik(point, HELD_ROTATION, seed, margin=cfg.joint_limit_margin,
                     position_tolerance=cfg.ik_position_tolerance)
        assert sol.success, f'{point} on the path to {target} has no IK solution within the ' \
                            f'joint limits minus {cfg.joint_limit_margin} rad'
        jump = float(np.max(np.abs(sol.q - seed)))
        assert jump <= MAX_JOINT_JUMP, f'the joint path jumps {jump:.3f} rad at {point}'
        seed = sol.q


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def expected_reason(cfg: EnvelopeConfig, command: MotionCommand,
                    state: ArmState | None) -> Reason | None:
    """The reason the contract (the envelope's checks 1-7, in order) gives before any inverse
    kinematics; None when only the joint limits and reachability remain to decide."""
    try:
        target = [_number(v) for v in command.target]
    except TypeError:
        return Reason.NON_FINITE
    gripper = None if command.gripper is None else _number(command.gripper)
    factor = _number(command.dynamics_factor)
    if (len(target) != 3 or any(v is None or not math.isfinite(v) for v in target)
            or (command.gripper is not None and (gripper is None or not math.isfinite(gripper)))
            or factor is None or not math.isfinite(factor)):
        return Reason.NON_FINITE
    if command.mode not in (0, 1, 2):
        return Reason.INVALID_MODE
    if gripper is not None and not 0.0 <= gripper <= 1.0:
        return Reason.GRIPPER_OUT_OF_RANGE
    if factor != 0.0 and not 0.0 < factor <= cfg.max_dynamics_factor:
        return Reason.DYNAMICS_FACTOR_OUT_OF_RANGE
    if state is None:
        return Reason.STATE_UNAVAILABLE
    q, ee, rot = (np.asarray(a, dtype=float) for a in (state.q, state.ee_position,
                                                       state.ee_rotation))
    if q.shape != (7,) or ee.shape != (3,) or rot.shape != (3, 3) or not (
            np.all(np.isfinite(q)) and np.all(np.isfinite(ee)) and np.all(np.isfinite(rot))):
        return Reason.STATE_UNAVAILABLE
    t = np.array(target)
    if command.mode == Mode.RELATIVE:
        displacement, position = t, ee + t
    else:
        displacement, position = t - ee, t
    if np.any(np.abs(displacement) > _step_limit(cfg, command.mode)):
        return Reason.STEP_TOO_LARGE
    if np.any(position < np.array(cfg.workspace_min)) or np.any(
            position > np.array(cfg.workspace_max)):
        return Reason.OUTSIDE_WORKSPACE
    if rotation_angle(rot, HELD_ROTATION) > cfg.max_orientation_error:
        return Reason.ORIENTATION_MISMATCH
    return None


def check_rejection(rejection: Rejection) -> str:
    assert isinstance(rejection.reason, Reason) and rejection.reason != Reason.NONE, rejection
    assert rejection.message.strip(), f'{rejection.reason.name} without a message'
    return rejection.reason.name


def check_command(command: MotionCommand, state: ArmState | None) -> str:
    """One command through the envelope; 'accepted' or the rejection's reason name."""
    cfg = ENVELOPE
    result = envelope().check(command, state)
    expected = expected_reason(cfg, command, state)
    if isinstance(result, Rejection):
        name = check_rejection(result)
        if expected is not None:
            assert result.reason == expected, f'{result} (the contract says {expected.name})'
        else:
            assert result.reason in (Reason.JOINT_LIMITS, Reason.UNREACHABLE), str(result)
        return name
    assert isinstance(result, AcceptedCommand)
    assert expected is None, f'accepted what the contract refuses ({expected.name}): {command}'
    assert state is not None
    # Nothing clipped: the target is exactly what was asked for.
    asked = np.array(command.target, dtype=float)
    if command.mode == Mode.RELATIVE:
        assert np.array_equal(result.displacement, asked)
    else:
        assert np.array_equal(result.target_position, asked)
    assert result.orientation_xyzw == HELD_ORIENTATION_XYZW
    assert command.gripper is None or result.gripper == float(command.gripper)
    assert 0.0 < result.dynamics_factor <= cfg.max_dynamics_factor
    assert_within_envelope(cfg, KIN, np.asarray(state.q), np.asarray(state.ee_position),
                           np.asarray(state.ee_rotation), command.mode, result.target_position,
                           result.joint_solution)
    return 'accepted'


# ---- arm states and commands ------------------------------------------------------------------

@functools.cache
def state_pool() -> tuple[ArmState, ...]:
    """Arm states with the held orientation across (and just outside) the workspace box: IK
    solutions within the joint limits, from home."""
    states = [ArmState(HOME_Q.copy(), *KIN.fk(HOME_Q))]
    for x in (0.22, 0.4, 0.55, 0.73):
        for y in (-0.43, -0.15, 0.15, 0.43):
            for z in (0.03, 0.25, 0.5, 0.74, 0.8):
                sol = KIN.ik(np.array([x, y, z]), HELD_ROTATION, HOME_Q, margin=0.0)
                if sol.success:
                    states.append(ArmState(sol.q, *KIN.fk(sol.q)))
    return tuple(states)


def _rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    s = math.sin(angle / 2.0)
    return quaternion_to_matrix((axis[0] * s, axis[1] * s, axis[2] * s, math.cos(angle / 2.0)))


@st.composite
def arm_states(draw: st.DrawFn) -> ArmState | None:
    """A measured arm state: from the pool, tilted, at or past a joint limit, broken, absent."""
    pool = state_pool()
    base = pool[draw(st.integers(0, len(pool) - 1))]
    kind = draw(st.sampled_from(['pool'] * 6 + ['tilted', 'joint_limit', 'broken', 'none']))
    if kind == 'none':
        return None
    if kind == 'tilted':
        axis = np.array([draw(st.floats(-1.0, 1.0)) for _ in range(3)]) + [0.0, 0.0, 1e-3]
        tilt = _rotation_about(axis, draw(st.sampled_from([0.2, 0.34, 0.36, 0.8])))
        return ArmState(base.q, base.ee_position, base.ee_rotation @ tilt)
    if kind == 'joint_limit':
        q = base.q.copy()
        j = draw(st.integers(0, 6))
        edge = draw(st.sampled_from([KIN.lower[j], KIN.upper[j]]))
        q[j] = edge + draw(st.sampled_from([-0.01, 0.0, 0.01, 0.04, -0.04]))
        return ArmState(q, *KIN.fk(q))
    if kind == 'broken':
        which = draw(st.sampled_from(['q', 'ee', 'rotation', 'shape']))
        bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        if which == 'q':
            return ArmState(np.where(np.arange(7) == 3, bad, base.q), base.ee_position,
                            base.ee_rotation)
        if which == 'ee':
            return ArmState(base.q, np.array([base.ee_position[0], bad, 0.3]), base.ee_rotation)
        if which == 'rotation':
            return ArmState(base.q, base.ee_position, np.full((3, 3), bad))
        return ArmState(base.q[:6], base.ee_position, base.ee_rotation)
    return base


_OFFSET = {Mode.RELATIVE: 0.06, Mode.STREAMED: 0.06, Mode.ABSOLUTE: 0.3}
_OFFSET_KIND = st.sampled_from(['within'] * 6 + ['beyond', 'edge'])


@st.composite
def offsets(draw: st.DrawFn, mode: Mode) -> list[float]:
    reach = _OFFSET[mode]
    edge = _step_limit(ENVELOPE, mode)
    # Within the step limit most of the time (so that the box and the path decide), else just
    # beyond it, or exactly on it.
    kinds = [draw(_OFFSET_KIND) for _ in range(3)]
    return [draw(st.floats(-edge, edge) if kind == 'within' else st.floats(-reach, reach)
                 if kind == 'beyond' else st.sampled_from(
                     [0.0, -0.0, 5e-324, edge, -edge, edge + 1e-9, -edge - 1e-9]))
            for kind in kinds]


@st.composite
def near_commands(draw: st.DrawFn, ee: np.ndarray) -> MotionCommand:
    """A command around the TCP position ``ee`` (near every limit), sometimes with one field
    poisoned (NaN, inf, huge, tiny)."""
    mode = draw(st.sampled_from([Mode.RELATIVE, Mode.ABSOLUTE, Mode.STREAMED]))
    offset = draw(offsets(mode))
    target = list(offset) if mode == Mode.RELATIVE else [
        float(e) + o for e, o in zip(ee, offset, strict=True)]
    gripper = draw(st.one_of(st.none(), st.floats(-0.05, 1.05), st.sampled_from([0.0, 1.0])))
    factor = draw(st.one_of(st.just(0.0), st.floats(-0.05, 0.35)))
    if draw(st.integers(0, 4)) == 0:
        which = draw(st.integers(0, 4))
        value = draw(anything)
        if which < 3:
            target[which] = value
        elif which == 3:
            gripper = value
        else:
            factor = value
    return MotionCommand(int(mode), tuple(target), gripper, factor)


@st.composite
def command_cases(draw: st.DrawFn) -> tuple[MotionCommand, ArmState | None]:
    """(command, arm state) for the envelope."""
    state = draw(arm_states())
    ee = state.ee_position if state is not None and np.shape(state.ee_position) == (3,) \
        and np.all(np.isfinite(state.ee_position)) else np.array([0.55, 0.0, 0.52])
    # (st.one_of drops repeated branches, so weights are drawn explicitly.)
    near = draw(st.sampled_from([True, True, True, False]))
    return draw(near_commands(ee) if near else arbitrary_commands), state


# ---- streamed targets -----------------------------------------------------------------------

# Valid frames 6 times in 11.
FRAMES = ('', '', 'fr3_link0', 'fr3_link0', 'fr3_link0', 'fr3_link0',
          'camera_color_optical_frame', '/fr3_link0', 'FR3_LINK0', 'fr3_link0 ', 'fr3_link8')


@dataclass(frozen=True)
class StreamSpec:
    """The fields of one craik_interfaces/CartesianTarget and the node's clock."""

    frame_id: str
    stamp_sec: int
    stamp_nanosec: int
    now_ns: int
    stream_timeout: float
    offset: tuple[float, ...]         # from the arm's TCP (the target is absolute)
    gripper: float | None
    dynamics_factor: float


@st.composite
def stream_specs(draw: st.DrawFn) -> StreamSpec:
    timeout = draw(st.sampled_from([CONFIG.stream_timeout, 0.05, 10.0]))
    kind = draw(st.sampled_from(['fresh'] * 4 + ['edge', 'stale', 'future', 'unset',
                                                 'negative', 'nanosec', 'any']))
    now = NOW_NS
    if kind in ('fresh', 'edge', 'stale', 'future'):
        age = {'fresh': draw(st.floats(0.0, timeout)),
               'edge': draw(st.sampled_from([timeout, -timeout, timeout + 1e-6])),
               'stale': draw(st.floats(timeout + 1e-3, 1e6)),
               'future': -draw(st.floats(timeout + 1e-3, 1e6))}[kind]
        stamp = now - int(age * 1e9)
        sec, nanosec = divmod(stamp, 10**9)
    elif kind == 'unset':
        sec, nanosec = 0, 0
    elif kind == 'negative':
        sec, nanosec = draw(st.integers(-2**31, -1)), draw(st.integers(0, 2**32 - 1))
    elif kind == 'nanosec':
        sec, nanosec = now // 10**9, draw(st.integers(10**9, 2**32 - 1))
    else:
        sec, nanosec = draw(st.integers(-2**31, 2**31 - 1)), draw(st.integers(0, 2**32 - 1))
    offset = tuple(draw(offsets(Mode.STREAMED)))
    if draw(st.integers(0, 5)) == 0:
        offset = tuple(draw(anything) if i == draw(st.integers(0, 2)) else v
                       for i, v in enumerate(offset))
    gripper = draw(st.one_of(st.none(), st.floats(-0.05, 1.05), st.sampled_from(SPECIAL)))
    factor = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.35), st.sampled_from(SPECIAL)))
    return StreamSpec(draw(st.sampled_from(FRAMES)), sec, nanosec, now, timeout, offset,
                      gripper, factor)


def stream_command(spec: StreamSpec, ee: np.ndarray) -> MotionCommand | Rejection:
    """What the node makes of the message (franka_controller_node._on_target)."""
    position = tuple(float(e) + _as_float(o) for e, o in zip(ee, spec.offset, strict=True))
    return streamed_command(spec.frame_id, spec.stamp_sec, spec.stamp_nanosec, spec.now_ns,
                            spec.stream_timeout, position, spec.gripper, spec.dynamics_factor)


def _as_float(value: Any) -> float:
    # A message field is a float64: an integer beyond it is what the sender could not send.
    try:
        return float(value)
    except OverflowError:
        return math.inf


def check_stream(spec: StreamSpec, state: ArmState) -> str:
    """One streamed target: the header check, then (if it passes) the envelope."""
    result = stream_command(spec, state.ee_position)
    stamp_ok = (spec.stamp_sec, spec.stamp_nanosec) != (0, 0) and spec.stamp_sec >= 0 \
        and spec.stamp_nanosec < 10**9
    age_s = (spec.now_ns - spec.stamp_sec * 10**9 - spec.stamp_nanosec) * 1e-9
    if spec.frame_id not in ('', 'fr3_link0'):
        assert isinstance(result, Rejection) and result.reason == Reason.WRONG_FRAME, result
    elif not stamp_ok or abs(age_s) > spec.stream_timeout:
        assert isinstance(result, Rejection) and result.reason == Reason.STALE, result
    else:
        assert isinstance(result, MotionCommand) and result.mode == Mode.STREAMED, result
        return f'stream header ok, then {check_command(result, state)}'
    return f'stream {check_rejection(result)}'


@st.composite
def stream_cases(draw: st.DrawFn) -> tuple[StreamSpec, ArmState]:
    pool = state_pool()
    return draw(stream_specs()), pool[draw(st.integers(0, len(pool) - 1))]


# ---- RobotSession with franky recorded --------------------------------------------------------

FAULT_TEXTS = (
    'libfranka: Move command aborted: motion aborted by reflex! ["cartesian_reflex"]',
    'libfranka: Move command aborted: motion aborted by reflex! '
    '["joint_position_limits_violation"]',
    'libfranka: Move command preempted!',
)
_POSITION_NEAR = st.tuples(*[st.floats(-0.3, 0.3)] * 3)

_COMMAND_OPS = st.one_of(
    st.tuples(st.just('near'), st.sampled_from([Mode.RELATIVE, Mode.ABSOLUTE, Mode.STREAMED]),
              st.integers(0, 2**32 - 1), st.sampled_from(['action', 'stream'])),
    st.tuples(st.just('near'), st.sampled_from([Mode.RELATIVE, Mode.STREAMED]),
              st.integers(0, 2**32 - 1), st.sampled_from(['action', 'stream'])),
    st.tuples(st.just('submit'), arbitrary_commands, st.sampled_from(['action', 'stream'])),
    st.tuples(st.just('stream'), stream_specs()))
_OTHER_OPS = st.one_of(
    st.just(('tick',)), st.just(('gripper',)), st.just(('cancel',)), st.just(('hold',)),
    st.tuples(st.just('velocity'), st.tuples(*[st.floats(-3.0, 3.0)] * 3)),
    st.tuples(st.just('drift'), st.tuples(*[st.floats(-0.6, 0.6)] * 7)),
    st.tuples(st.just('fault'), st.sampled_from(FAULT_TEXTS)),
    st.tuples(st.just('fail_move'), st.sampled_from(['network', 'command'])),
    st.just(('netloss',)), st.just(('reconnect',)), st.just(('recover',)),
    st.just(('idle_error',)),
)
# Commands half the time, monitor ticks (which finish them) a sixth; preempting, cancelling,
# holding, faulting and reconnecting the rest (st.one_of drops repeated branches, so the
# weights are drawn explicitly).
_OP_KIND = st.sampled_from(['command'] * 3 + ['tick', 'other', 'other'])


@st.composite
def ops(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(_OP_KIND)
    if kind == 'tick':
        return ('tick',)
    return draw(_COMMAND_OPS if kind == 'command' else _OTHER_OPS)


sequences = st.lists(ops(), min_size=4, max_size=24)


@dataclass
class SessionHarness:
    """A RobotSession on recording fakes, driven op by op from the test thread (no threads of
    its own: the monitor's tick and the gripper's job run when an op says so), so a sequence
    runs the same way every time."""

    robots: list[FakeRobot] = field(default_factory=list)
    grippers: list[FakeGripper] = field(default_factory=list)
    labels: Counter[str] = field(default_factory=Counter)
    commands: int = 0
    now: float = 1000.0

    def __post_init__(self) -> None:
        def robot_factory(hostname: str, **kwargs: object) -> FakeRobot:
            self.robots.append(FakeRobot(hostname, **kwargs))
            return self.robots[-1]

        def gripper_factory(hostname: str) -> FakeGripper:
            self.grippers.append(FakeGripper(hostname))
            return self.grippers[-1]

        self.session = RobotSession(CONFIG, kinematics=KIN, robot_factory=robot_factory,
                                    gripper_factory=gripper_factory, clock=lambda: self.now)
        self._connect()

    def _connect(self) -> None:
        self.session._try_connect()
        self.session._maybe_connect_gripper()

    @property
    def robot(self) -> FakeRobot | None:
        return self.session._robot

    def _moves(self) -> list[tuple[FakeRobot, int]]:
        return [(r, len(r.moves)) for r in self.robots]

    def _new_moves(self, before: list[tuple[FakeRobot, int]]) -> list[RecordedMove]:
        counts = {id(r): n for r, n in before}
        return [m for r in self.robots for m in r.moves[counts.get(id(r), 0):]]

    def close(self) -> None:
        self.session.close()

    # -- one op -----------------------------------------------------------------------------

    def apply(self, op: tuple[Any, ...]) -> str:
        self.now += 0.05
        robot = self.robot
        before = self._moves()
        state = None if robot is None else (robot.q.copy(), *KIN.fk(robot.q))
        stops = robot.stops if robot is not None else 0
        kind = op[0]
        label = kind
        submitted: MotionCommand | None = None
        result: MotionHandle | Rejection | None = None
        if kind in ('near', 'submit', 'stream'):
            self.commands += 1
            ee = state[1] if state is not None else np.array([0.55, 0.0, 0.52])
            if kind == 'near':
                submitted = _near(op[1], op[2], ee)
                source = op[3]
            elif kind == 'submit':
                submitted, source = op[1], op[2]
            else:
                checked = stream_command(op[1], ee)
                source = 'stream'
                if isinstance(checked, Rejection):
                    self.session.note_rejection(checked)
                    result = checked
                else:
                    submitted = checked
            if submitted is not None:
                result = self.session.submit(submitted, source)
            assert result is not None
            if isinstance(result, Rejection):
                label = f'{kind}: rejected {check_rejection(result)}'
                assert not self._new_moves(before), f'a rejected command reached franky: {result}'
            else:
                label = self._check_started(submitted, result, state, before)
        elif kind == 'cancel':
            active = self.session.active
            if active is not None:
                self.session.cancel(active)
        elif kind == 'hold':
            self.session.hold('fuzz: no fresh streamed target')
        elif kind == 'tick':
            self.session._tick()
        elif kind == 'gripper':
            label = self._run_gripper()
        elif kind == 'velocity' and robot is not None:
            robot.commanded_velocity = np.array(op[1])
        elif kind == 'drift' and robot is not None:
            # The arm moved on its own (a push, Desk, a simulator reset): maybe out of the box,
            # tilted or to a joint limit.
            robot.q = np.clip(robot.q + np.array(op[1]), KIN.lower - 0.1, KIN.upper + 0.1)
        elif kind == 'fault' and robot is not None:
            robot.fail_join = franky.ControlException(op[1])
        elif kind == 'fail_move' and robot is not None:
            robot.fail_move = (franky.NetworkException('UDP receive: Timeout')
                               if op[1] == 'network' else franky.CommandException('refused'))
        elif kind == 'netloss' and robot is not None:
            robot.fail_state = franky.NetworkException('libfranka: UDP receive: Timeout')
        elif kind == 'reconnect' and self.session._robot is None:
            self._connect()
        elif kind == 'recover':
            ok, text = self.session.recover()
            assert text, 'recover() without a message'
        elif kind == 'idle_error' and robot is not None:
            robot.current_errors = '["joint_position_limits_violation"]'
            robot.robot_mode = franky.RobotMode.Reflex
        for move in self._new_moves(before):
            self._check_any_move(move)
        if robot is not None and robot.stops > stops:
            label += ' (stop)'
        self.labels[label] += 1
        return label

    def _check_started(self, command: MotionCommand | None, handle: MotionHandle,
                       state: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
                       before: list[tuple[FakeRobot, int]]) -> str:
        assert command is not None and state is not None
        new = self._new_moves(before)
        if not new:
            # Accepted by the envelope, but franky refused or the link dropped: nothing moved.
            assert handle.done() and handle.outcome == Outcome.ROBOT_FAULT, handle.outcome
            return 'accepted, franky failed'
        assert len(new) == 1, f'{len(new)} motions for one command'
        move = new[0]
        assert np.array_equal(move.translation, handle.target)
        q, ee, rotation = state
        assert_within_envelope(ENVELOPE, KIN, q, ee, rotation, command.mode, move.translation)
        if command.gripper is not None:
            job = self.session._g.goal
            assert job is not None and 0.0 <= job.width <= CONFIG.gripper_max_width
        return 'accepted'

    def _check_any_move(self, move: RecordedMove) -> None:
        """What every motion franky is given must be, commands and holds alike."""
        t = move.translation
        assert t.shape == (3,) and np.all(np.isfinite(t)), f'motion to {t}'
        assert np.all(t >= np.array(CONFIG.workspace_min)), f'motion to {t} below the box'
        assert np.all(t <= np.array(CONFIG.workspace_max)), f'motion to {t} above the box'
        assert np.array_equal(move.quaternion, HELD), move.quaternion
        assert move.reference_type == franky.ReferenceType.Absolute
        assert 0.0 < move.relative_dynamics_factor <= 1.0, move.relative_dynamics_factor
        assert move.global_factor == max(CONFIG.max_dynamics_factor,
                                         CONFIG.hold_dynamics_factor)

    def _run_gripper(self) -> str:
        """Run the newest gripper job, as the gripper thread does."""
        g = self.session._g
        job = g.goal
        if job is None or job.seq <= g.issued_seq:
            return 'gripper: nothing to do'
        g.issued_seq = job.seq
        ok, text = self.session._run_gripper_job(job)
        g.results[job.seq] = (ok, text)
        g.done_seq = max(g.done_seq, job.seq)
        assert text, 'a gripper job without a message'
        for gripper in self.grippers:
            for _verb, width in gripper.commands:
                assert 0.0 <= width <= CONFIG.gripper_max_width, f'gripper width {width}'
        return 'gripper: ran' if ok else 'gripper: failed'

    def run(self, ops: list[tuple[Any, ...]]) -> list[str]:
        """Apply the ops, then shut the session down (which may command a last hold)."""
        try:
            labels = [self.apply(op) for op in ops]
        finally:
            before = self._moves()
            self.close()
        for move in self._new_moves(before):
            self._check_any_move(move)
        return labels


def _near(mode: Mode, seed: int, ee: np.ndarray) -> MotionCommand:
    """A plausible command around ``ee`` (drawn when the op runs, from where the arm is)."""
    rng = np.random.default_rng(seed)
    reach = _OFFSET[mode] * 0.9
    offset = rng.uniform(-reach, reach, 3)
    target = offset if mode == Mode.RELATIVE else ee + offset
    gripper = None if rng.random() < 0.5 else float(rng.choice([0.0, 0.5, 1.0, 1.2]))
    factor = float(rng.choice([0.0, 0.0, 0.1, 0.3, 0.31]))
    return MotionCommand(int(mode), tuple(float(v) for v in target), gripper, factor)
