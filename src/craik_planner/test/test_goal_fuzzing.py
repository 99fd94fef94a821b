"""Goal fuzzing: generated ReachGoal goals through the planner's goal validation.

Every goal (real ``ReachGoal.Goal`` messages, see goal_fuzzing.py for what is generated) is
either accepted with the arrays it carries (finite, right shape and dtype, limits with the
defaults filled in) or rejected with a GoalRejectedError whose message starts with a field that
is invalid; never another exception, never an allocation sized by a declared header. A sample
of the rejected goals also goes through the node's own execute callback, which must end them
STATUS_REJECTED_INPUT with that message. Derandomized: CI runs the same examples every time.
"""

import math
import tracemalloc
from types import SimpleNamespace

from goal_fuzzing import (
    CI_EXAMPLES,
    DEFAULTS,
    NO_DEPTH,
    NODE_CI_EXAMPLES,
    GoalSpec,
    ImageSpec,
    check_goal,
    goal_specs,
)
from hypothesis import HealthCheck, event, given, settings
import numpy as np
import pytest

from craik_perception.image_conversion import MAX_PIXELS
from craik_planner.goal_validation import GoalRejectedError, validate_goal

pytest.importorskip('rclpy')
from craik_interfaces.action import ReachGoal  # noqa: E402 (needs ROS)

FUZZ = settings(max_examples=CI_EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
VALID_IMAGE = ImageSpec('rgb8', 2, 2, 6, bytes(range(12)))


@pytest.mark.timeout(300)
@FUZZ
@given(spec=goal_specs())
def test_every_generated_goal_is_accepted_well_formed_or_rejected_naming_its_field(spec):
    event(check_goal(spec))


def _node_result(goal: ReachGoal.Goal) -> tuple[int, str]:
    """The node's execute callback on a goal, with everything after validation stubbed out."""
    from craik_planner.mpc_planner_node import MpcPlannerNode

    class Node:
        _backend = object()
        _preempted: set[int] = set()
        _run_goal = MpcPlannerNode._run_goal

        def _goal_defaults(self):
            return DEFAULTS

        def _finish(self, handle, status, message, steps, energy):
            return status, message

    return MpcPlannerNode._execute(Node(), SimpleNamespace(request=goal))


@settings(max_examples=NODE_CI_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=goal_specs())
def test_the_node_ends_rejected_goals_with_rejected_input_and_the_reason(spec):
    goal = spec.message()
    try:
        validate_goal(goal, DEFAULTS)
    except GoalRejectedError as exc:
        assert _node_result(goal) == (ReachGoal.Result.STATUS_REJECTED_INPUT, str(exc))
        event('rejected')
    else:
        event('accepted (not run through the node: it would plan)')


@pytest.mark.parametrize('width,height,step', [
    (2**32 - 1, 2**32 - 1, 2**32 - 1),          # the largest header a message can carry
    (10_000, 10_000, 30_000),                   # exactly MAX_PIXELS, consistent step
    (MAX_PIXELS, 1, 3 * MAX_PIXELS),            # one long row
    (1, MAX_PIXELS + 1, 3),                     # one pixel above the limit
])
def test_huge_declared_images_are_rejected_before_any_allocation(width, height, step):
    spec = GoalSpec(ImageSpec('rgb8', width, height, step, b'\x00' * 12), NO_DEPTH,
                    0.0, 0, 0, 0)
    goal = spec.message()
    tracemalloc.start()
    try:
        with pytest.raises(GoalRejectedError, match='^goal_image: '):
            validate_goal(goal, DEFAULTS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f'{peak} bytes allocated for a {width}x{height} header'


@pytest.mark.parametrize('value', [-1.0, -1e-30, 65.536, 3.4e38])
def test_negative_or_implausibly_far_depth_is_rejected(value):
    """Found by the fuzzing: a 32FC1 goal depth of -1 m was accepted (only NaN/inf were)."""
    depth = np.array([[0.5, value], [1.0, 0.0]], dtype='<f4')
    spec = GoalSpec(VALID_IMAGE, ImageSpec('32FC1', 2, 2, 8, depth.tobytes()), 0.0, 0, 0, 0)
    with pytest.raises(GoalRejectedError, match=r'^goal_depth \(32FC1\) has values in'):
        validate_goal(spec.message(), DEFAULTS)


@pytest.mark.parametrize('sec,nanosec', [(-1, 2_000_000_000), (0, 1_000_000_000),
                                         (5, 2**32 - 1)])
def test_a_timeout_with_a_second_or_more_of_nanoseconds_is_rejected(sec, nanosec):
    """Found by the fuzzing: sec = -1, nanosec = 2e9 read as a valid 1 s timeout."""
    spec = GoalSpec(VALID_IMAGE, NO_DEPTH, 0.0, 0, sec, nanosec)
    with pytest.raises(GoalRejectedError, match=r'^timeout\.nanosec must be in \[0, 1e9\)'):
        validate_goal(spec.message(), DEFAULTS)


def test_zero_fields_take_the_defaults_and_limits_are_named():
    valid = validate_goal(GoalSpec(VALID_IMAGE, NO_DEPTH, -0.0, 0, 0, 0).message(), DEFAULTS)
    assert (valid.energy_tolerance, valid.max_steps, valid.timeout_s) == (
        DEFAULTS.energy_tolerance, DEFAULTS.max_steps, DEFAULTS.timeout_s)
    for tolerance in (math.nan, math.inf, -1e-3):
        with pytest.raises(GoalRejectedError, match='^energy_tolerance must be'):
            validate_goal(GoalSpec(VALID_IMAGE, NO_DEPTH, tolerance, 0, 0, 0).message(),
                          DEFAULTS)
    with pytest.raises(GoalRejectedError, match='^timeout must be >= 0'):
        validate_goal(GoalSpec(VALID_IMAGE, NO_DEPTH, 0.0, 0, -1, 500_000_000).message(),
                      DEFAULTS)
