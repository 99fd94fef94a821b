"""Receding-horizon control toward one goal, without ROS.

An :class:`MpcEpisode` holds what persists between the steps of one goal: the encoded goal, the
previous plan (warm start) and the seeded random generator. Each :meth:`MpcEpisode.step` takes
the encoded current observation, checks whether the goal is reached, plans within a deadline and
returns the action to execute. What produces latents and energies is a :class:`PlanningBackend`:
the learned world model on the robot, or the oracle on privileged simulator state in the
evaluation. The node wraps this with message translation, timing and the controller.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import time
from typing import Protocol

import numpy as np
import numpy.typing as npt

from craik_planner.action_space import GRIPPER_CLOSED, GRIPPER_INDEX, GRIPPER_OPEN, ActionBounds
from craik_planner.planning import (
    FloatArray,
    PlannerConfig,
    PlanResult,
    RolloutEnergy,
    plan,
    shift_warm_start,
)


@dataclass(frozen=True)
class Observation:
    """One synchronised observation, already decoded from messages."""

    rgb: npt.NDArray[np.uint8]                  # [H, W, 3] rgb8
    depth_m: npt.NDArray[np.float32] | None     # [H, W] metres, 0 = no return; None if absent
    ee_position: npt.NDArray[np.float64]        # [3] end effector in fr3_link0, m
    gripper: float                              # 0 open ... 1 closed
    stamp_s: float                              # capture time, s (ROS time)
    joint_positions: npt.NDArray[np.float64] | None = None  # [7] fr3_joint1..7, rad


class PlanningBackend(Protocol):
    """What the MPC needs from a model: latents, batched rollout energies, and pictures.

    A backend may also have ``updated_goal(goal) -> goal``: :class:`MpcEpisode` calls it before
    every step, after the step's observation was encoded (a goal it knows better by now).
    """

    name: str

    def encode_goal(self, rgb: npt.NDArray[np.uint8],
                    depth_m: npt.NDArray[np.float32] | None, gripper: float = 0.0
                    ) -> FloatArray:
        """Goal latent ``[D]`` from the goal image (and optional depth); ``gripper``: the
        gripper's state now (0 open ... 1 closed)."""
        ...

    def encode_observation(self, observation: Observation) -> FloatArray:
        """Current latent ``[D]``."""
        ...

    def rollout_energy(self, z0: FloatArray, goal: FloatArray,
                       actions: npt.NDArray[np.float32]) -> FloatArray:
        """Energies ``[N]`` of ``actions [N, H, A]`` rolled out from ``z0`` against ``goal``."""
        ...

    def state_energy(self, z: FloatArray, goal: FloatArray) -> float:
        """Energy of being at ``z`` now (no action): the reached check compares it."""
        ...

    def imagine(self, z0: FloatArray, goal: FloatArray,
                actions: FloatArray) -> npt.NDArray[np.uint8] | None:
        """Decoded final frame ``[S, S, 3]`` of one plan ``[H, A]``; None for a backend that
        cannot picture its rollouts (the oracle)."""
        ...


@dataclass(frozen=True)
class MpcConfig:
    """Per-goal limits around the planner."""

    planner: PlannerConfig = field(default_factory=PlannerConfig)
    energy_tolerance: float = 0.1    # reached when the current energy is at most this
    max_steps: int = 40
    timeout_s: float = 180.0
    seed: int = 0
    # Keep the gripper as it is (open or closed) instead of planning it. The tasks served here
    # (reach, push) never change it, and the energies barely see the fingers' opening (a few
    # pixels at 64x64), so a planned gripper follows the sampling noise: opened fingers
    # straddle the cube they should push and carry it off.
    hold_gripper: bool = True

    def __post_init__(self) -> None:
        if not (np.isfinite(self.energy_tolerance) and self.energy_tolerance > 0.0):
            raise ValueError(f'MpcConfig.energy_tolerance must be > 0, '
                             f'got {self.energy_tolerance}')
        if self.max_steps < 1:
            raise ValueError(f'MpcConfig.max_steps must be >= 1, got {self.max_steps}')
        if not (np.isfinite(self.timeout_s) and self.timeout_s > 0.0):
            raise ValueError(f'MpcConfig.timeout_s must be > 0, got {self.timeout_s}')


@dataclass(frozen=True)
class StepOutcome:
    """Decision of one MPC step."""

    reached: bool                 # the current observation already satisfies the goal
    current_energy: float         # energy of the observation itself
    action: FloatArray            # [A] to execute now (zeros when reached)
    plan: PlanResult | None       # None when reached (nothing planned)
    planning_time_s: float


class MpcEpisode:
    """The state of one goal across its steps (warm start, randomness, step count)."""

    def __init__(self, backend: PlanningBackend, goal_latent: FloatArray, config: MpcConfig,
                 bounds: ActionBounds | None = None) -> None:
        goal = np.asarray(goal_latent)
        if not np.all(np.isfinite(goal)):
            raise ValueError('goal latent contains NaN or infinite values')
        self.backend = backend
        self.goal = goal
        self.config = config
        self.bounds = bounds or ActionBounds()
        self.rng = np.random.default_rng(config.seed)
        self.steps = 0
        self._previous: PlanResult | None = None

    def step(self, observation_latent: FloatArray, deadline: float | None = None,
             energy_tolerance: float | None = None, gripper: float | None = None
             ) -> StepOutcome:
        """Plan from the current latent; ``deadline`` is an absolute ``time.monotonic()``;
        ``gripper``: the gripper's state now (0 open ... 1 closed); with ``hold_gripper`` every
        planned and executed gripper command is that state, rounded to open or closed (None:
        the gripper is planned like the other dimensions).

        Raises ValueError for a non-finite latent, a non-finite energy of the current
        observation, or a plan without a single finite rollout energy (a broken model must
        stop the goal, not steer the arm)."""
        start = time.monotonic()
        z0 = np.asarray(observation_latent)
        if not np.all(np.isfinite(z0)):
            raise ValueError('observation latent contains NaN or infinite values')
        # A backend may know the goal better once it has seen the scene (the world model's
        # partly hidden goal objects, completed from an observation that shows them whole).
        updated_goal = getattr(self.backend, 'updated_goal', None)
        if updated_goal is not None:
            goal = np.asarray(updated_goal(self.goal))
            if not np.all(np.isfinite(goal)) or goal.shape != self.goal.shape:
                raise ValueError('the backend updated the goal latent to a non-finite or '
                                 'differently shaped one')
            self.goal = goal
        tolerance = self.config.energy_tolerance if energy_tolerance is None else energy_tolerance
        current = float(self.backend.state_energy(z0, self.goal))
        if not np.isfinite(current):
            # NaN <= tolerance is False: the episode would plan on, never reach, on a broken
            # model; stop it with a reason instead.
            raise ValueError(f'the backend returned a non-finite energy ({current}) for the '
                             'current observation')
        if current <= tolerance:
            return StepOutcome(True, current, np.zeros(self.bounds.dim), None,
                               time.monotonic() - start)
        warm = (shift_warm_start(self._previous, self.config.planner, self.bounds)
                if self._previous is not None else None)
        rollout_energy: RolloutEnergy = self.backend.rollout_energy
        held = None
        if gripper is not None and self.config.hold_gripper:
            held = GRIPPER_CLOSED if gripper >= 0.5 else GRIPPER_OPEN
            rollout_energy = with_gripper_held(rollout_energy, held)
        result = plan(rollout_energy, z0, self.goal, self.config.planner, self.rng,
                      bounds=self.bounds, warm_start=warm, deadline=deadline)
        if held is not None:
            actions = result.actions.copy()
            actions[:, GRIPPER_INDEX] = held
            result = replace(result, actions=actions)
        if not self.bounds.contains(result.actions[0]):
            # plan() samples inside the bounds; anything else is a bug worth stopping for.
            raise RuntimeError(f'planner proposed an action outside the bounds: '
                               f'{result.actions[0]}')
        self._previous = result
        self.steps += 1
        return StepOutcome(False, current, result.actions[0].copy(), result,
                           time.monotonic() - start)


def with_gripper_held(rollout_energy: RolloutEnergy, gripper: float) -> RolloutEnergy:
    """``rollout_energy`` of the sequences with every gripper command set to ``gripper``."""
    def held(z0: FloatArray, goal: FloatArray, actions: npt.NDArray[np.float32]) -> FloatArray:
        fixed = np.array(actions, copy=True)                 # [N, H, A]
        fixed[..., GRIPPER_INDEX] = gripper
        return rollout_energy(z0, goal, fixed)

    return held


def planned_ee_path(ee_position: FloatArray, actions: FloatArray) -> npt.NDArray[np.float64]:
    """End-effector waypoints ``[H + 1, 3]`` of a plan ``[H, A]`` starting at ``ee_position``."""
    steps = np.asarray(actions, dtype=np.float64)[:, :3]
    return np.vstack([ee_position, ee_position + np.cumsum(steps, axis=0)])
