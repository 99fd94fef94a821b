"""Plan-output fuzzing: what the planner would send for broken world-model outputs.

Misbehaving backends (NaN, inf, 1e308, subnormal, constant, integer, wrongly sized energies; NaN
state energies and latents) drive the real MPC episode (CEM, MPPI, random shooting), and every
planned action goes through ``step_target``, the node's plan -> /franka/target mapping, with an
arm that lags, overshoots or starts outside the workspace; ``step_target`` is also fed arbitrary
actions and poses directly. Nothing non-finite or out of range is ever sent, every change to a
target is reported, and every refusal has a reason (plan_fuzzing.py has the details).
Derandomized: CI runs the same examples every time.
"""

import math

from hypothesis import HealthCheck, event, given, settings
import numpy as np
from plan_fuzzing import (
    CI_EXAMPLES,
    LIMITS,
    check_episode,
    check_step_target,
    episode_specs,
    step_specs,
)
import pytest

from craik_planner.action_space import step_target
from craik_planner.planning import PlannerConfig, plan


def fuzz(name: str) -> settings:
    return settings(max_examples=CI_EXAMPLES[name], deadline=None, derandomize=True,
                    database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.timeout(300)
@fuzz('plan_to_target')
@given(spec=episode_specs())
def test_broken_world_model_outputs_never_become_an_out_of_range_target(spec):
    for outcome in check_episode(spec):
        event(outcome)


@pytest.mark.timeout(300)
@fuzz('step_target')
@given(spec=step_specs())
def test_any_action_maps_to_a_valid_target_or_a_reasoned_refusal(spec):
    event(check_step_target(spec))


@pytest.mark.parametrize('method', ['cem', 'mppi', 'random'])
@pytest.mark.parametrize('fill', [math.nan, math.inf])
def test_a_model_that_scores_nothing_stops_the_plan_with_a_reason(method, fill):
    """Found by the fuzzing: MPPI failed with numpy's 'zero-size array to reduction operation',
    CEM and random shooting returned the unscored warm-start mean as the plan."""
    config = PlannerConfig(method=method, num_samples=8, horizon=2, num_elites=2)
    with pytest.raises(ValueError, match='no finite energy for any of the'):
        plan(lambda z0, goal, a: np.full(a.shape[0], fill), np.zeros(1), np.zeros(1), config,
             np.random.default_rng(0))


def test_mppi_stays_finite_with_energies_near_the_float64_range():
    """Found by the fuzzing: energies of +-1.7e308 overflowed MPPI's shift and spread into a
    NaN mean (and the next plan into a bounds error)."""
    config = PlannerConfig(method='mppi', num_samples=16, horizon=3, max_iterations=3,
                           num_elites=2)
    rng = np.random.default_rng(0)

    def huge(z0, goal, actions):
        return rng.choice([-1.7e308, 1.7e308], actions.shape[0])

    result = plan(huge, np.zeros(1), np.zeros(1), config, np.random.default_rng(1))
    assert np.all(np.isfinite(result.mean)) and np.all(np.isfinite(result.actions))


@pytest.mark.parametrize('action,ee', [
    ([math.nan, 0.0, 0.0, 0.0], [0.5, 0.0, 0.3]),
    ([0.01, math.inf, 0.0, 0.0], [0.5, 0.0, 0.3]),
    ([0.01, 0.0, 0.0, 0.0], [math.nan, 0.0, 0.3]),
])
def test_non_finite_actions_or_poses_are_never_sent(action, ee):
    """Found by the fuzzing: np.clip passes NaN through, so limit_target turned a NaN action or
    pose into a NaN target."""
    with pytest.raises(ValueError, match='finite'):
        step_target(np.array(action), np.array(ee), np.array(ee), None, False, LIMITS)


def test_an_arm_more_than_a_step_outside_the_box_gets_no_target():
    """Found by the fuzzing: from 0.2 m above the box the 'limited' target was still 0.15 m
    above it (the controller refuses it as OUTSIDE_WORKSPACE)."""
    ee = np.array([0.5, 0.0, 0.95])
    with pytest.raises(ValueError, match='outside the workspace box'):
        step_target(np.zeros(4), ee, ee, None, False, LIMITS)
    near = np.array([0.5, 0.0, 0.75 + 0.03])   # within a step: brought back inside
    sent = step_target(np.zeros(4), near, near, None, False, LIMITS)
    assert sent.target[2] < 0.75 and sent.notes
