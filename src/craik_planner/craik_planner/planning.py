"""Sampling-based trajectory optimisation over a rollout-energy callable.

The planner is a pure function: :func:`plan` takes a ``rollout_energy(z0, goal, actions)``
callable (the world model's batched H-step rollout scored against a goal; or an oracle on
simulator state; or an analytic function in tests), a config, a random generator and an optional
warm start, and returns the best action sequence it found. It keeps no state between calls; the
caller warm-starts the next step with :func:`shift_warm_start`.

Two optimisers share one loop:

- CEM: refit a diagonal Gaussian to the lowest-energy ``num_elites`` samples.
- MPPI: move the mean to the softmin-weighted average of all samples (temperature relative
  to the spread of the batch's energies).
- random: random shooting, the baseline: ``num_samples`` sequences drawn uniformly inside the
  bounds, scored once, the best kept (no refit, no warm start).

Both are anytime: every iteration evaluates the current mean along with the samples, the best
sequence evaluated so far is kept, and the loop stops before an iteration that would overrun the
deadline. At least one iteration always runs, so there is always an evaluated plan to return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import math
import time
from typing import Literal

import numpy as np
import numpy.typing as npt

from craik_planner.action_space import ActionBounds

FloatArray = npt.NDArray[np.floating]
# (z0 [D], goal [D], actions [N, H, A] float32) -> energies [N]
RolloutEnergy = Callable[[FloatArray, FloatArray, npt.NDArray[np.float32]], FloatArray]


@dataclass(frozen=True)
class PlannerConfig:
    """Parameters of one planning call. Durations in seconds; std as a fraction of half-range."""

    method: Literal['cem', 'mppi', 'random'] = 'cem'
    num_samples: int = 256           # N sequences evaluated per iteration (incl. the mean)
    horizon: int = 8                 # H actions per sequence
    max_iterations: int = 6
    num_elites: int = 32             # CEM
    temperature: float = 0.5         # MPPI, relative to the std of each batch's energies
    init_std: float = 0.5            # initial std, fraction of each dimension's half-range
    min_std: float = 0.02            # converged when every std is below this (same units)
    momentum: float = 0.1            # weight of the old mean/std in each refit
    time_budget_s: float | None = None   # anytime deadline per call (None: no deadline)
    stop_energy: float | None = None     # stop as soon as a plan reaches this energy
    convergence_tol: float = 0.0     # stop when best energy improves by less than this

    def __post_init__(self) -> None:
        if self.method not in ('cem', 'mppi', 'random'):
            raise ValueError("PlannerConfig.method must be 'cem', 'mppi' or 'random', not "
                             f'{self.method!r}')
        if self.num_samples < 2:
            raise ValueError(f'PlannerConfig.num_samples must be >= 2, got {self.num_samples}')
        if self.horizon < 1:
            raise ValueError(f'PlannerConfig.horizon must be >= 1, got {self.horizon}')
        if self.max_iterations < 1:
            raise ValueError(f'PlannerConfig.max_iterations must be >= 1, '
                             f'got {self.max_iterations}')
        if not 1 <= self.num_elites < self.num_samples:
            raise ValueError(f'PlannerConfig.num_elites must be in [1, num_samples), '
                             f'got {self.num_elites}')
        if not self.temperature > 0.0:
            raise ValueError(f'PlannerConfig.temperature must be > 0, got {self.temperature}')
        if not 0.0 < self.min_std <= self.init_std:
            raise ValueError(f'PlannerConfig needs 0 < min_std <= init_std, got '
                             f'{self.min_std}, {self.init_std}')
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f'PlannerConfig.momentum must be in [0, 1), got {self.momentum}')
        if self.time_budget_s is not None and not self.time_budget_s > 0.0:
            raise ValueError(f'PlannerConfig.time_budget_s must be > 0, got {self.time_budget_s}')
        if self.convergence_tol < 0.0:
            raise ValueError(f'PlannerConfig.convergence_tol must be >= 0, '
                             f'got {self.convergence_tol}')


@dataclass(frozen=True)
class WarmStart:
    """Sampling distribution to start from: mean and std of each action, ``[H, A]``."""

    mean: FloatArray
    std: FloatArray


@dataclass(frozen=True)
class PlanResult:
    """Outcome of one planning call."""

    actions: FloatArray        # [H, A] best sequence evaluated; actions[0] is executed
    energy: float              # its energy
    mean: FloatArray           # [H, A] final sampling mean (warm start of the next step)
    std: FloatArray            # [H, A] final sampling std
    iterations: int
    evaluations: int           # sequences scored
    elapsed_s: float
    deadline_hit: bool         # stopped early because the next iteration would overrun
    energy_history: tuple[float, ...]   # best energy after each iteration


def initial_distribution(config: PlannerConfig, bounds: ActionBounds) -> WarmStart:
    """Cold start: centred in the bounds (no motion for symmetric bounds), wide std."""
    mean = np.tile(bounds.center, (config.horizon, 1))
    std = np.tile(bounds.half_range * config.init_std, (config.horizon, 1))
    return WarmStart(mean, std)


def shift_warm_start(previous: PlanResult, config: PlannerConfig,
                     bounds: ActionBounds) -> WarmStart:
    """Warm start for the next step: the previous mean shifted by the executed action.

    The last action is repeated for the displacement-free tail; the std is reset to the
    initial width so that the planner can still react to what the executed step changed.
    """
    prev = np.asarray(previous.mean, dtype=np.float64)
    if prev.shape != (config.horizon, bounds.dim):
        # Horizon changed between calls: nothing useful to carry over.
        return initial_distribution(config, bounds)
    mean = np.concatenate([prev[1:], prev[-1:]], axis=0)
    std = np.tile(bounds.half_range * config.init_std, (config.horizon, 1))
    return WarmStart(mean, std)


def _check_energies(energies: FloatArray, n: int) -> npt.NDArray[np.float64]:
    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    if e.shape[0] != n:
        raise ValueError(f'rollout_energy returned {e.shape[0]} energies for {n} sequences')
    # A NaN energy (model blow-up) must never win the argmin: rank it last.
    return np.where(np.isfinite(e), e, np.inf)


def _mppi_weights(energies: npt.NDArray[np.float64], temperature: float
                  ) -> npt.NDArray[np.float64]:
    """Softmin weights ``[N]`` of a batch's energies (non-finite ones ranked ``inf``).

    The temperature is relative to the batch's spread, so the same setting works for latent
    distances and metric errors alike; that makes the weights invariant to scaling the
    energies, which are therefore divided by their largest magnitude first: energies near the
    float64 range (1e308) would otherwise overflow the shift and the spread into NaN weights.
    Without any finite energy every sequence weighs the same.
    """
    finite = np.isfinite(energies)
    if not finite.any():
        return np.full(energies.shape, 1.0 / energies.size)
    scale = float(np.max(np.abs(energies[finite])))
    e = energies / scale if scale > 0.0 else energies
    shifted = np.where(finite, e - e[finite].min(), np.inf)
    spread = float(np.std(e[finite])) if finite.sum() > 1 else 1.0
    weights = np.exp(-shifted / (temperature * max(spread, 1e-12)))
    return weights / weights.sum()


def plan(rollout_energy: RolloutEnergy, z0: FloatArray, goal: FloatArray,
         config: PlannerConfig, rng: np.random.Generator,
         bounds: ActionBounds | None = None, warm_start: WarmStart | None = None,
         deadline: float | None = None) -> PlanResult:
    """Optimise an action sequence ``[H, A]`` to minimise ``rollout_energy(z0, goal, .)``.

    Args:
        rollout_energy: batched scorer, ``actions [N, H, A] float32 -> energies [N]``.
        z0, goal: passed through unchanged (current and goal latents, or states).
        config: optimiser parameters.
        rng: source of all randomness (seeded generator -> deterministic plans).
        bounds: action bounds (default: ARCHITECTURE's action space).
        warm_start: distribution to start from (see :func:`shift_warm_start`).
        deadline: absolute ``time.monotonic()`` deadline; combined with ``time_budget_s``.

    Returns:
        The best evaluated sequence, always inside ``bounds``.

    Raises:
        ValueError: ``rollout_energy`` returned the wrong number of energies, or not a single
            finite one in the whole call (there is no best sequence to return).
    """
    bounds = bounds or ActionBounds()
    start = time.monotonic()
    if config.time_budget_s is not None:
        budget_deadline = start + config.time_budget_s
        deadline = budget_deadline if deadline is None else min(deadline, budget_deadline)
    dist = warm_start or initial_distribution(config, bounds)
    shape = (config.horizon, bounds.dim)
    if dist.mean.shape != shape or dist.std.shape != shape:
        raise ValueError(f'warm start must be {shape}, got mean {dist.mean.shape} and std '
                         f'{dist.std.shape}')
    mean = np.clip(np.asarray(dist.mean, dtype=np.float64), bounds.low, bounds.high)
    std = np.asarray(dist.std, dtype=np.float64)
    min_std = bounds.half_range * config.min_std   # [A]

    best_actions = mean.copy()
    best_energy = math.inf
    history: list[float] = []
    evaluations = 0
    deadline_hit = False
    iteration_time = 0.0
    n = config.num_samples
    for iteration in range(config.max_iterations):
        now = time.monotonic()
        if iteration > 0 and deadline is not None and now + iteration_time > deadline:
            deadline_hit = True
            break
        if config.method == 'random':
            samples = rng.uniform(bounds.low, bounds.high, size=(n - 1, *shape))
        else:
            noise = rng.standard_normal((n - 1, *shape))
            samples = np.clip(mean + std * noise, bounds.low, bounds.high)   # [N-1, H, A]
        candidates = np.concatenate([mean[None], samples], axis=0)     # [N, H, A]
        energies = _check_energies(
            rollout_energy(z0, goal, candidates.astype(np.float32)), n)
        evaluations += n
        i_best = int(np.argmin(energies))
        previous_best = best_energy
        if energies[i_best] < best_energy:
            best_energy = float(energies[i_best])
            best_actions = candidates[i_best].copy()
        history.append(best_energy)

        if config.method == 'random':
            break
        if config.method == 'cem':
            elites = candidates[np.argsort(energies, kind='stable')[:config.num_elites]]
            new_mean = elites.mean(axis=0)
            new_std = elites.std(axis=0)
        else:
            weights = _mppi_weights(energies, config.temperature)
            new_mean = np.einsum('n,nha->ha', weights, candidates)
            new_std = np.sqrt(np.einsum('n,nha->ha', weights, (candidates - new_mean) ** 2))
        mean = config.momentum * mean + (1.0 - config.momentum) * new_mean
        std = np.maximum(config.momentum * std + (1.0 - config.momentum) * new_std, min_std)
        iteration_time = time.monotonic() - now

        if config.stop_energy is not None and best_energy <= config.stop_energy:
            break
        if iteration > 0 and previous_best - best_energy < config.convergence_tol:
            break
        if np.all(std <= min_std * (1.0 + 1e-9)):
            break

    if not math.isfinite(best_energy):
        # Nothing was scored: executing the (warm-start) mean would move the arm on no
        # information at all.
        raise ValueError(f'rollout_energy returned no finite energy for any of the '
                         f'{evaluations} sequences evaluated (a model blow-up?)')
    return PlanResult(actions=best_actions, energy=best_energy, mean=mean, std=std,
                      iterations=len(history), evaluations=evaluations,
                      elapsed_s=time.monotonic() - start, deadline_hit=deadline_hit,
                      energy_history=tuple(history))
