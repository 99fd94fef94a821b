"""The oracle's analytic model behaves like pushing a cube, and planning on it solves tasks."""

import numpy as np
import pytest

from craik_planner.oracle import PushModel, oracle_energy, rollout_states
from craik_planner.planning import PlannerConfig, plan


def _state(ee, cube):
    return np.array([*ee, *cube], dtype=np.float64)


def test_fingers_in_the_air_do_not_move_the_cube():
    state = _state([0.4, -0.1, 0.30], [0.4, 0.0, 0.025])
    actions = np.tile([0.0, 0.05, 0.0, 1.0], (1, 4, 1))          # sweep over the cube
    final = rollout_states(state, actions, PushModel())[0, -1]
    np.testing.assert_allclose(final[3:], state[3:])
    np.testing.assert_allclose(final[:3], state[:3] + [0.0, 0.2, 0.0])


def test_low_fingers_push_the_cube_along_the_motion():
    state = _state([0.4, -0.1, 0.03], [0.4, 0.0, 0.025])
    actions = np.tile([0.0, 0.05, 0.0, 1.0], (1, 4, 1))          # push +y by 20 cm of travel
    final = rollout_states(state, actions, PushModel())[0, -1]
    assert final[4] > 0.05                                       # cube moved along +y
    assert abs(final[3] - 0.4) < 1e-6                            # and stayed on the line
    assert final[4] - final[1] == pytest.approx(PushModel().contact_distance)


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="unknown task 'stack'"):
        oracle_energy('stack')  # type: ignore[arg-type]


@pytest.mark.parametrize('method', ['cem', 'mppi'])
def test_oracle_mpc_pushes_cube_to_goal(method):
    energy = oracle_energy('push')
    state = _state([0.40, -0.08, 0.03], [0.40, 0.0, 0.025])
    goal = _state([0, 0, 0], [0.40, 0.08, 0.025])
    rng = np.random.default_rng(0)
    config = PlannerConfig(method=method, horizon=6, max_iterations=5)
    for _ in range(12):                                          # receding horizon
        result = plan(energy, state, goal, config, rng)
        state = rollout_states(state, result.actions[None, :1], PushModel())[0, -1]
    assert np.linalg.norm(state[3:5] - goal[3:5]) < 0.03         # the task's success radius


def test_oracle_mpc_goes_around_and_down_behind_the_cube_from_above():
    """The task's start: fingers 27 cm above the table, cube 9 cm from its goal. The approach
    term brings them down behind the cube (never onto it) and the push follows."""
    energy = oracle_energy('push')
    state = _state([0.45, 0.0, 0.30], [0.50, 0.0, 0.025])
    goal = _state([0, 0, 0], [0.50, 0.09, 0.025])
    rng = np.random.default_rng(0)
    config = PlannerConfig(horizon=8, max_iterations=4)
    lowest_over_cube = np.inf
    for _ in range(25):
        result = plan(energy, state, goal, config, rng)
        state = rollout_states(state, result.actions[None, :1], PushModel())[0, -1]
        if np.linalg.norm(state[:2] - state[3:5]) < 0.03:
            lowest_over_cube = min(lowest_over_cube, state[2])
        if np.linalg.norm(state[3:5] - goal[3:5]) < 0.01:
            break
    assert np.linalg.norm(state[3:5] - goal[3:5]) < 0.03
    assert lowest_over_cube > 0.08                               # it never landed on the cube
