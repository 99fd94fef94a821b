"""The MPC episode core with the oracle backend acting on its own analytic world."""

import numpy as np
import pytest

from craik_planner.mpc import MpcConfig, MpcEpisode, Observation, planned_ee_path
from craik_planner.oracle import PushModel, oracle_energy, rollout_states
from craik_planner.planning import PlannerConfig


class StateBackend:
    """Latents are simulator states; energies come from the oracle model."""

    name = 'oracle'

    def __init__(self, task):
        self._energy = oracle_energy(task)
        self.task = task

    def encode_goal(self, rgb, depth_m):
        raise AssertionError('not used here')

    def encode_observation(self, observation: Observation):
        raise AssertionError('not used here')

    def rollout_energy(self, z0, goal, actions):
        return self._energy(z0, goal, actions)

    def state_energy(self, z, goal):
        return self._energy.state_energy(z, goal)


def test_reach_episode_reaches_and_then_stops_moving():
    backend = StateBackend('reach')
    state = np.array([0.45, 0.1, 0.3, 0.6, 0.0, 0.025])
    goal = np.array([0.35, -0.05, 0.2, 0, 0, 0])
    episode = MpcEpisode(backend, goal, MpcConfig(
        planner=PlannerConfig(horizon=5, max_iterations=4), energy_tolerance=0.01, seed=3))
    for _ in range(20):
        outcome = episode.step(state)
        if outcome.reached:
            break
        state = rollout_states(state, outcome.action[None, None], PushModel())[0, -1]
    assert outcome.reached
    assert np.linalg.norm(state[:3] - goal[:3]) <= 0.01
    np.testing.assert_array_equal(outcome.action, np.zeros(4))
    assert episode.steps >= 4      # 0.21 m at <= 0.05 m per axis per step


@pytest.mark.parametrize('gripper, held', [(0.9, 1.0), (0.1, 0.0)])
def test_the_gripper_is_held_in_the_plan_and_the_executed_action(gripper, held):
    """An opened gripper would straddle the cube it should push: the planner keeps it as it
    is (rounded to open or closed), in what it scores and in what it sends."""
    seen = []
    backend = StateBackend('push')
    energy = backend.rollout_energy

    def recording(z0, goal, actions):
        seen.append(np.asarray(actions)[..., 3].copy())
        return energy(z0, goal, actions)

    backend.rollout_energy = recording
    state = np.array([0.45, 0.0, 0.1, 0.5, 0.0, 0.025])
    goal = np.array([0, 0, 0, 0.5, 0.1, 0.025])
    episode = MpcEpisode(backend, goal, MpcConfig(
        planner=PlannerConfig(horizon=4, max_iterations=2), seed=0))
    outcome = episode.step(state, gripper=gripper)
    assert outcome.action[3] == held and np.all(outcome.plan.actions[:, 3] == held)
    assert all(np.all(s == held) for s in seen)
    # Without the gripper's state the gripper is planned like any other dimension.
    free = MpcEpisode(backend, goal, MpcConfig(
        planner=PlannerConfig(horizon=4, max_iterations=2), seed=0)).step(state)
    assert len(np.unique(free.plan.actions[:, 3])) > 1


def test_same_seed_gives_the_same_actions():
    backend = StateBackend('reach')
    state = np.array([0.45, 0.1, 0.3, 0.6, 0.0, 0.025])
    goal = np.array([0.35, -0.05, 0.2, 0, 0, 0])
    config = MpcConfig(planner=PlannerConfig(horizon=4, max_iterations=2), seed=11)
    a = MpcEpisode(backend, goal, config).step(state).action
    b = MpcEpisode(backend, goal, config).step(state).action
    np.testing.assert_array_equal(a, b)


def test_nan_latents_are_rejected():
    backend = StateBackend('reach')
    with pytest.raises(ValueError, match='goal latent'):
        MpcEpisode(backend, np.full(6, np.nan), MpcConfig())
    episode = MpcEpisode(backend, np.zeros(6), MpcConfig())
    with pytest.raises(ValueError, match='observation latent'):
        episode.step(np.array([0.4, 0.0, np.inf, 0, 0, 0]))


def test_invalid_mpc_config_names_the_field():
    with pytest.raises(ValueError, match='energy_tolerance'):
        MpcConfig(energy_tolerance=float('nan'))
    with pytest.raises(ValueError, match='max_steps'):
        MpcConfig(max_steps=0)


def test_planned_path_accumulates_displacements():
    path = planned_ee_path(np.array([0.4, 0.0, 0.3]),
                           np.array([[0.01, 0, 0, 1], [0.01, 0.02, -0.01, 1]]))
    np.testing.assert_allclose(path, [[0.4, 0, 0.3], [0.41, 0, 0.3], [0.42, 0.02, 0.29]])


class RefiningBackend(StateBackend):
    """Knows the goal better after its first observation (like the world model's estimator
    once it has seen a goal object whole)."""

    def __init__(self, task, better_goal):
        super().__init__(task)
        self.better_goal = better_goal

    def updated_goal(self, goal):
        return self.better_goal


def test_a_goal_the_backend_updates_is_planned_towards_from_that_step_on():
    state = np.array([0.45, 0.1, 0.3, 0.6, 0.0, 0.025])
    first, better = np.array([0.3, 0.1, 0.3, 0, 0, 0]), np.array([0.45, 0.1, 0.2, 0, 0, 0])
    episode = MpcEpisode(RefiningBackend('reach', better), first, MpcConfig(
        planner=PlannerConfig(horizon=5, max_iterations=4), energy_tolerance=0.01, seed=3))
    outcome = episode.step(state)
    np.testing.assert_array_equal(episode.goal, better)
    assert outcome.action[2] < -0.01 and abs(outcome.action[0]) < 0.02  # down, not along -x
    episode.backend.better_goal = np.full(6, np.nan)
    with pytest.raises(ValueError, match='updated the goal'):
        episode.step(state)
