"""Targets the planner sends are kept inside what franka_controller accepts, and say so."""

import numpy as np
import pytest

from craik_planner.action_space import (
    BOX_MARGIN_M,
    MAX_DISPLACEMENT_M,
    CommandLimits,
    limit_target,
)


def _limits():
    return CommandLimits(np.array([0.2, -0.45, 0.02]), np.array([0.75, 0.45, 0.75]))


def test_targets_inside_every_limit_are_sent_unchanged():
    target, notes = limit_target([0.5, 0.0, 0.2], [0.48, 0.01, 0.21], _limits())
    np.testing.assert_array_equal(target, [0.5, 0.0, 0.2])
    assert notes == []


def test_a_target_below_the_table_is_kept_in_the_box_and_reported():
    target, notes = limit_target([0.45, 0.07, 0.001], [0.45, 0.07, 0.03], _limits())
    # Not on the face: the controller measures from its own pose and refused 0.01998 m.
    np.testing.assert_allclose(target, [0.45, 0.07, 0.02 + BOX_MARGIN_M])
    assert notes == ['workspace box on z']


def test_a_target_on_a_face_of_the_box_is_moved_inside():
    target, notes = limit_target([0.75, 0.0, 0.2], [0.74, 0.0, 0.2], _limits())
    assert target[0] == pytest.approx(0.75 - BOX_MARGIN_M)
    assert notes == ['workspace box on x']


def test_the_step_from_the_measured_pose_stays_below_the_controller_limit():
    limits = _limits()
    # The arm lags 5 mm behind the previous target: a full action from there is too far.
    target, notes = limit_target([0.55, 0.0, 0.2], [0.495, 0.0, 0.2], limits)
    assert np.all(np.abs(target - [0.495, 0.0, 0.2]) <= limits.max_step_m + 1e-12)
    assert limits.max_step_m < MAX_DISPLACEMENT_M
    assert notes and notes[0].startswith('step limit') and notes[0].endswith('on x')


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match='workspace_min'):
        CommandLimits(np.array([0.8, -0.45, 0.02]), np.array([0.75, 0.45, 0.75]))
    with pytest.raises(ValueError, match='max_step_m'):
        CommandLimits(np.array([0.2, -0.45, 0.02]), np.array([0.75, 0.45, 0.75]), 0.2)
