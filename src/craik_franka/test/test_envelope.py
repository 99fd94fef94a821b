"""Safety envelope: every rejection has its reason; accepted commands are never altered.

The property-based tests throw arbitrary commands (NaN, inf, huge, tiny, negative zero, invalid
modes) at the envelope and check that whatever it accepts is inside every limit, exactly as asked.
"""

import math

from command_strategies import commands
from hypothesis import HealthCheck, event, given, settings
import numpy as np
import pytest

from craik_franka.envelope import (
    AcceptedCommand,
    ArmState,
    EnvelopeConfig,
    Mode,
    MotionCommand,
    Reason,
    Rejection,
    SafetyEnvelope,
)
from craik_franka.kinematics import (
    HOME_JOINT_POSITIONS,
    Fr3Kinematics,
    quaternion_to_matrix,
    rotation_angle,
)

CONFIG = EnvelopeConfig()


@pytest.fixture(scope='module')
def kin() -> Fr3Kinematics:
    return Fr3Kinematics()


@pytest.fixture(scope='module')
def envelope(kin) -> SafetyEnvelope:
    return SafetyEnvelope(CONFIG, kin)


@pytest.fixture(scope='module')
def home(kin) -> ArmState:
    q = np.array(HOME_JOINT_POSITIONS)
    position, rotation = kin.fk(q)
    return ArmState(q, position, rotation)


def rejected(result, reason: Reason) -> str:
    assert isinstance(result, Rejection), f'expected {reason.name}, got {result}'
    assert result.reason == reason, str(result)
    assert result.message
    return result.message


def test_relative_steps_up_to_the_limit_are_accepted_unchanged(envelope, home):
    for d in [(0.05, 0.0, 0.0), (0.0, -0.05, 0.0), (0.0, 0.0, -0.05), (0.05, 0.05, -0.05),
              (0.0, 0.0, 0.0), (1e-12, -1e-300, 5e-324)]:
        result = envelope.check(MotionCommand(Mode.RELATIVE, d, gripper=0.5), home)
        assert isinstance(result, AcceptedCommand), str(result)
        assert np.array_equal(result.displacement, np.array(d))
        assert np.array_equal(result.target_position, home.ee_position + np.array(d))
        assert result.gripper == 0.5
        assert result.dynamics_factor == CONFIG.default_dynamics_factor


def test_step_above_the_limit_is_rejected_not_clipped(envelope, home):
    message = rejected(envelope.check(MotionCommand(Mode.RELATIVE, (0.0, 0.0500001, 0.0)), home),
                       Reason.STEP_TOO_LARGE)
    assert 'axis y' in message
    rejected(envelope.check(MotionCommand(Mode.STREAMED, tuple(home.ee_position + [0.06, 0, 0])),
                            home), Reason.STEP_TOO_LARGE)
    # Absolute goals have their own (larger) limit.
    far = tuple(home.ee_position + [0.0, 0.2, -0.2])
    assert isinstance(envelope.check(MotionCommand(Mode.ABSOLUTE, far), home), AcceptedCommand)
    rejected(envelope.check(MotionCommand(Mode.ABSOLUTE, tuple(home.ee_position + [0.3, 0, 0])),
                            home), Reason.STEP_TOO_LARGE)


@pytest.mark.parametrize('field,value', [
    ('target', (math.nan, 0.0, 0.0)), ('target', (0.0, math.inf, 0.0)),
    ('target', (0.0, 0.0, -math.inf)), ('gripper', math.nan), ('gripper', math.inf),
    ('dynamics_factor', math.nan), ('dynamics_factor', -math.inf)])
def test_non_finite_fields_are_rejected(envelope, home, field, value):
    kwargs = {'mode': Mode.RELATIVE, 'target': (0.0, 0.0, 0.01), field: value}
    rejected(envelope.check(MotionCommand(**kwargs), home), Reason.NON_FINITE)


def test_malformed_targets_are_rejected(envelope, home):
    rejected(envelope.check(MotionCommand(Mode.RELATIVE, (0.0, 0.0)), home), Reason.NON_FINITE)
    rejected(envelope.check(MotionCommand(Mode.RELATIVE, ('a', 0.0, 0.0)), home),
             Reason.NON_FINITE)
    rejected(envelope.check(MotionCommand(7, (0.0, 0.0, 0.0)), home), Reason.INVALID_MODE)


@pytest.mark.parametrize('gripper', [-1e-9, 1.0000001, -5.0, 1e300])
def test_gripper_out_of_range(envelope, home, gripper):
    rejected(envelope.check(MotionCommand(Mode.RELATIVE, (0, 0, 0), gripper=gripper), home),
             Reason.GRIPPER_OUT_OF_RANGE)


def test_gripper_bounds_are_inclusive(envelope, home):
    for gripper in (0.0, 1.0, -0.0):
        assert isinstance(envelope.check(MotionCommand(Mode.RELATIVE, (0, 0, 0), gripper=gripper),
                                         home), AcceptedCommand)


def test_dynamics_factor_range(envelope, home):
    ok = envelope.check(MotionCommand(Mode.RELATIVE, (0, 0, 0.01), dynamics_factor=0.3), home)
    assert isinstance(ok, AcceptedCommand) and ok.dynamics_factor == 0.3
    for bad in (0.30001, -0.1, 1.0, 1e6):
        rejected(envelope.check(MotionCommand(Mode.RELATIVE, (0, 0, 0.01), dynamics_factor=bad),
                                home), Reason.DYNAMICS_FACTOR_OUT_OF_RANGE)


def test_workspace_box(kin, home):
    envelope = SafetyEnvelope(EnvelopeConfig(workspace_max=(0.75, 0.45, 0.53)), kin)
    rejected(envelope.check(MotionCommand(Mode.RELATIVE, (0.0, 0.0, 0.02)), home),
             Reason.OUTSIDE_WORKSPACE)
    assert isinstance(envelope.check(MotionCommand(Mode.RELATIVE, (0.0, 0.0, 0.008)), home),
                      AcceptedCommand)


def test_unreachable_and_joint_limited_targets(kin, home):
    wide = EnvelopeConfig(workspace_min=(-1.5, -1.5, -0.5), workspace_max=(1.5, 1.5, 1.5),
                          max_absolute_step_per_axis=0.5)
    envelope = SafetyEnvelope(wide, kin)
    rejected(envelope.check(MotionCommand(Mode.ABSOLUTE, (0.95, 0.0, 0.52)), home),
             Reason.UNREACHABLE)
    # Reachable in principle, but only with joints closer than the margin to their limits.
    rejected(envelope.check(MotionCommand(Mode.ABSOLUTE, (0.2, 0.0, 0.3)), home),
             Reason.JOINT_LIMITS)


def test_accepted_commands_carry_an_ik_solution_within_limits(envelope, kin, home):
    goal = tuple(home.ee_position + [0.15, 0.2, -0.2])
    result = envelope.check(MotionCommand(Mode.ABSOLUTE, goal), home)
    assert isinstance(result, AcceptedCommand)
    assert kin.within_limits(result.joint_solution, CONFIG.joint_limit_margin)
    position, rotation = kin.fk(result.joint_solution)
    assert np.linalg.norm(position - result.target_position) < 2e-4


def test_orientation_must_be_near_the_held_one(envelope, home):
    tilt = quaternion_to_matrix((np.sin(0.25), 0.0, 0.0, np.cos(0.25)))  # 0.5 rad about x
    tilted = ArmState(home.q, home.ee_position, home.ee_rotation @ tilt)
    assert rotation_angle(tilted.ee_rotation, home.ee_rotation) == pytest.approx(0.5)
    rejected(envelope.check(MotionCommand(Mode.RELATIVE, (0, 0, 0.01)), tilted),
             Reason.ORIENTATION_MISMATCH)


def test_missing_or_broken_state(envelope, home):
    rejected(envelope.check(MotionCommand(Mode.RELATIVE, (0, 0, 0)), None),
             Reason.STATE_UNAVAILABLE)
    broken = ArmState(np.full(7, np.nan), home.ee_position, home.ee_rotation)
    rejected(envelope.check(MotionCommand(Mode.RELATIVE, (0, 0, 0)), broken),
             Reason.STATE_UNAVAILABLE)


def test_reason_codes_match_the_action_definition():
    from craik_interfaces.action import MoveEndEffector
    for reason in Reason:
        assert getattr(MoveEndEffector.Result, f'REASON_{reason.name}') == reason.value
    assert MoveEndEffector.Goal.MODE_RELATIVE == Mode.RELATIVE
    assert MoveEndEffector.Goal.MODE_ABSOLUTE == Mode.ABSOLUTE


@pytest.mark.parametrize('kwargs,field', [
    ({'workspace_min': (0.8, 0.0, 0.0)}, 'workspace_min'),
    ({'max_step_per_axis': 0.0}, 'max_step_per_axis'),
    ({'max_dynamics_factor': 1.5}, 'max_dynamics_factor'),
    ({'default_dynamics_factor': 0.5}, 'default_dynamics_factor'),
    ({'joint_limit_margin': -0.1}, 'joint_limit_margin'),
    ({'workspace_max': (1.0, math.nan, 1.0)}, 'workspace_max')])
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        EnvelopeConfig(**kwargs)


# ---- property-based ---------------------------------------------------------------------------

def assert_inside_envelope(envelope: SafetyEnvelope, kin: Fr3Kinematics, state: ArmState,
                           command: MotionCommand, result: AcceptedCommand) -> None:
    cfg = envelope.config
    target = result.target_position
    assert target.shape == (3,) and np.all(np.isfinite(target))
    assert np.all(target >= np.array(cfg.workspace_min))
    assert np.all(target <= np.array(cfg.workspace_max))
    limit = envelope.step_limit(Mode(command.mode))
    assert np.all(np.abs(target - state.ee_position) <= limit + 1e-12)
    # Nothing clipped: the target is exactly what was asked for.
    if command.mode == Mode.RELATIVE:
        assert np.array_equal(result.displacement, np.array(command.target, dtype=float))
    else:
        assert np.array_equal(target, np.array(command.target, dtype=float))
    assert result.orientation_xyzw == (1.0, 0.0, 0.0, 0.0)
    assert result.gripper is None or 0.0 <= result.gripper <= 1.0
    assert command.gripper is None or result.gripper == float(command.gripper)
    assert 0.0 < result.dynamics_factor <= cfg.max_dynamics_factor
    assert kin.within_limits(result.joint_solution, cfg.joint_limit_margin)
    position, _ = kin.fk(result.joint_solution)
    assert np.linalg.norm(position - target) < 2e-4


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command=commands)
def test_property_accepted_commands_are_inside_the_envelope(envelope, kin, home, command):
    result = envelope.check(command, home)
    if isinstance(result, Rejection):
        assert result.reason != Reason.NONE and result.message
        event(f'rejected {result.reason.name}')
        return
    event('accepted')
    assert_inside_envelope(envelope, kin, home, command, result)
