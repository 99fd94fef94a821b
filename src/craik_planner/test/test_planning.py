"""The planner on analytic energies, where the optimum is known."""

from itertools import pairwise
import time

import numpy as np
import pytest

from craik_planner.action_space import ActionBounds
from craik_planner.planning import (
    PlannerConfig,
    initial_distribution,
    plan,
    shift_warm_start,
)

H, A = 8, 4
RNG_SEED = 7


def bowl(target: np.ndarray):
    """Quadratic bowl around ``target`` [H, A], in units of the action half-range."""
    scale = ActionBounds().half_range

    def rollout_energy(z0, goal, actions):
        return (((actions - target) / scale) ** 2).sum(axis=(1, 2))
    return rollout_energy


@pytest.fixture
def target():
    rng = np.random.default_rng(0)
    b = ActionBounds()
    return b.center + 0.6 * b.half_range * rng.uniform(-1, 1, size=(H, A))


@pytest.mark.parametrize('method', ['cem', 'mppi'])
def test_converges_on_quadratic_bowl(method, target):
    config = PlannerConfig(method=method, num_samples=256, horizon=H, max_iterations=30)
    result = plan(bowl(target), np.zeros(1), np.zeros(1), config, np.random.default_rng(1))
    cold_energy = bowl(target)(None, None, initial_distribution(config, ActionBounds()).mean[None])
    assert result.energy < 0.01 * cold_energy[0]
    np.testing.assert_allclose(result.actions[:, :3], target[:, :3], atol=0.01)
    # Anytime: the best energy never gets worse from one iteration to the next.
    assert all(b <= a for a, b in pairwise(result.energy_history))


@pytest.mark.parametrize('method', ['cem', 'mppi'])
def test_every_proposed_action_is_inside_the_bounds(method):
    bounds = ActionBounds()
    outside = np.tile(bounds.high * 3.0, (H, 1))   # optimum far outside the box
    seen = []

    def recording_energy(z0, goal, actions):
        seen.append(actions.copy())
        return bowl(outside)(z0, goal, actions)

    config = PlannerConfig(method=method, horizon=H, max_iterations=20)
    result = plan(recording_energy, np.zeros(1), np.zeros(1), config, np.random.default_rng(2))
    assert all(bounds.contains(batch) for batch in seen)
    assert bounds.contains(result.actions) and bounds.contains(result.mean)
    # The search presses against the upper bound, where the bowl is lowest inside the box.
    corner = np.tile(bounds.high, (H, 1))
    # The executed first action goes (nearly) all the way towards the unreachable optimum.
    assert np.all(result.actions[0] >= bounds.center + 0.8 * bounds.half_range)
    assert result.energy <= 1.05 * bowl(outside)(None, None, corner[None])[0]


def test_deadline_stops_before_overrunning(target):
    calls = []

    def slow_energy(z0, goal, actions):
        calls.append(1)
        time.sleep(0.05)
        return bowl(target)(z0, goal, actions)

    config = PlannerConfig(horizon=H, max_iterations=100, time_budget_s=0.22)
    result = plan(slow_energy, np.zeros(1), np.zeros(1), config, np.random.default_rng(3))
    assert result.deadline_hit
    # Each iteration costs >= 50 ms, so a 220 ms budget leaves room for at most 5 of them.
    assert 1 <= result.iterations <= 5
    assert len(calls) == result.iterations
    assert np.isfinite(result.energy)


def test_absolute_deadline_in_the_past_still_returns_an_evaluated_plan(target):
    config = PlannerConfig(horizon=H, max_iterations=20)
    result = plan(bowl(target), np.zeros(1), np.zeros(1), config, np.random.default_rng(4),
                  deadline=time.monotonic() - 1.0)
    assert result.iterations == 1 and result.deadline_hit
    assert np.isfinite(result.energy)


@pytest.mark.parametrize('method', ['cem', 'mppi'])
def test_warm_start_reduces_iterations(method):
    # A constant target: after one executed step the shifted plan is still (nearly) optimal.
    b = ActionBounds()
    target = np.tile(b.center + 0.5 * b.half_range * np.array([1.0, -0.6, 0.3, 0.8]), (H, 1))
    energy = bowl(target)
    config = PlannerConfig(method=method, horizon=H, max_iterations=50, stop_energy=0.05)
    cold = plan(energy, np.zeros(1), np.zeros(1), config, np.random.default_rng(5))
    assert cold.energy <= 0.05
    warm = plan(energy, np.zeros(1), np.zeros(1), config, np.random.default_rng(6),
                warm_start=shift_warm_start(cold, config, b))
    assert warm.iterations < cold.iterations
    assert warm.energy <= 0.05


def test_same_seed_same_plan_different_seed_different_plan(target):
    config = PlannerConfig(horizon=H, max_iterations=3)
    energy = bowl(target)
    a = plan(energy, np.zeros(1), np.zeros(1), config, np.random.default_rng(RNG_SEED))
    b = plan(energy, np.zeros(1), np.zeros(1), config, np.random.default_rng(RNG_SEED))
    c = plan(energy, np.zeros(1), np.zeros(1), config, np.random.default_rng(RNG_SEED + 1))
    np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(a.actions, c.actions)


def test_nan_energies_never_win(target):
    def nan_for_most(z0, goal, actions):
        e = bowl(target)(z0, goal, actions)
        e[1:] = np.nan   # only the mean (row 0) gets a real energy
        return e

    config = PlannerConfig(horizon=H, max_iterations=3)
    result = plan(nan_for_most, np.zeros(1), np.zeros(1), config, np.random.default_rng(8))
    assert np.isfinite(result.energy)


def test_wrong_number_of_energies_is_an_error(target):
    config = PlannerConfig(horizon=H, num_samples=16, num_elites=4)
    with pytest.raises(ValueError, match='returned 15 energies for 16 sequences'):
        plan(lambda z0, g, a: np.zeros(len(a) - 1), np.zeros(1), np.zeros(1), config,
             np.random.default_rng(0))


def test_warm_start_with_wrong_shape_is_an_error(target):
    config = PlannerConfig(horizon=H)
    bad = initial_distribution(PlannerConfig(horizon=H + 1), ActionBounds())
    with pytest.raises(ValueError, match='warm start must be'):
        plan(bowl(target), np.zeros(1), np.zeros(1), config, np.random.default_rng(0),
             warm_start=bad)


@pytest.mark.parametrize('kwargs, field', [
    ({'method': 'rrt'}, 'method'),
    ({'num_samples': 1}, 'num_samples'),
    ({'horizon': 0}, 'horizon'),
    ({'num_elites': 256}, 'num_elites'),
    ({'temperature': 0.0}, 'temperature'),
    ({'min_std': 0.9}, 'min_std'),
    ({'time_budget_s': -1.0}, 'time_budget_s'),
])
def test_invalid_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PlannerConfig(**kwargs)


def test_invalid_bounds_are_rejected():
    with pytest.raises(ValueError, match='low must be < high'):
        ActionBounds(low=np.zeros(4), high=np.zeros(4))
    with pytest.raises(ValueError, match='finite'):
        ActionBounds(low=np.full(4, -np.inf), high=np.ones(4))


def test_random_shooting_is_one_uniform_round(target):
    seen = []

    def recording_energy(z0, goal, actions):
        seen.append(actions.copy())
        return bowl(target)(z0, goal, actions)

    config = PlannerConfig(method='random', horizon=H, max_iterations=10)
    result = plan(recording_energy, np.zeros(1), np.zeros(1), config, np.random.default_rng(0))
    assert result.iterations == 1 and len(seen) == 1
    samples = seen[0][1:]
    # Uniform over the box: the spread of each dimension is that of U(low, high).
    b = ActionBounds()
    np.testing.assert_allclose(samples.std(axis=(0, 1)), b.half_range * 2 / np.sqrt(12),
                               rtol=0.1)
    cem = plan(bowl(target), np.zeros(1), np.zeros(1), PlannerConfig(horizon=H),
               np.random.default_rng(0))
    assert cem.energy < result.energy     # what the baseline is there to show
