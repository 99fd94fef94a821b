"""The planner's output side under fuzzing: broken world-model outputs and arbitrary actions must
never become a non-finite or out-of-range controller target.

Shared by test_plan_output_fuzzing.py (CI) and bench/fuzz_goals.py. Two targets:

* :func:`check_episode`: a few MPC steps (the real :class:`craik_planner.mpc.MpcEpisode`, CEM /
  MPPI / random shooting) on a backend whose energies are NaN, inf, -inf, 1e308, subnormal,
  constant, integers, of the wrong length, or sane, whose state energy may be NaN or inf and
  whose latents may be NaN; each planned action goes through
  :func:`craik_planner.action_space.step_target`, the node's mapping from plan to
  /franka/target, with an arm that lags behind, overshoots or starts outside the box.
* :func:`check_step_target`: that mapping alone, on arbitrary actions (NaN, inf, 1e300, wrong
  length), poses and previous targets.

Either a step ends with an exception whose message says why (the node then ends the goal and
holds the arm) or the target is finite, inside the workspace box (with its margin) and within the
per-command step of the measured pose, every change reported; a gripper command is open or
closed. Anything else fails.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

from hypothesis import strategies as st
import numpy as np

from craik_planner.action_space import (
    ACTION_DIM,
    BOX_MARGIN_M,
    GRIPPER_CLOSED,
    GRIPPER_OPEN,
    ActionBounds,
    CommandLimits,
    StepTarget,
    step_target,
)
from craik_planner.mpc import MpcConfig, MpcEpisode
from craik_planner.planning import PlannerConfig

# Examples per CI run (test_plan_output_fuzzing.py); the bench scales them.
CI_EXAMPLES = {'plan_to_target': 800, 'step_target': 2000}
# franka_controller's workspace box (config/franka_controller.yaml = mpc_planner.yaml).
WORKSPACE_MIN = (0.2, -0.45, 0.02)
WORKSPACE_MAX = (0.75, 0.45, 0.75)
LIMITS = CommandLimits(np.array(WORKSPACE_MIN), np.array(WORKSPACE_MAX))
BOUNDS = ActionBounds()
SPECIAL = (0.0, -0.0, 5e-324, 1e-300, 0.048, -0.048, 0.05, 0.0500001, 1.0, 1e300, -1e300,
           math.inf, -math.inf, math.nan, 1.7976931348623157e308)
ENERGY_MODES = ('finite', 'finite', 'finite', 'some_nan', 'all_nan', 'some_inf', 'all_inf',
                'neg_inf', 'huge', 'tiny', 'constant', 'wrong_length', 'integers', 'column')
STATE_MODES = ('above', 'above', 'above', 'above', 'below', 'nan', 'inf', 'huge', 'nan_latent')
# What the exceptions say, reduced to a reason for the tallies (first match wins).
REASONS = (
    ('no finite energy', 'no finite rollout energy'),
    ('non-finite energy', 'non-finite state energy'),
    ('energies for', 'wrong number of energies'),
    ('latent contains NaN', 'non-finite latent'),
    ('outside the workspace box', 'arm more than a step outside the box'),
    ('finite values', 'non-finite or malformed action'),
    ('is not finite', 'non-finite pose or target'),
    ('must be [3]', 'malformed pose'),
)


def reason_of(exc: BaseException) -> str:
    """The reason an exception gives, one of REASONS; anything else (a message nobody wrote
    for this case, e.g. numpy's own, or the MPC's 'action outside the bounds' bug check)
    fails."""
    message = str(exc)
    for fragment, reason in REASONS:
        if fragment in message:
            return reason
    raise AssertionError(f'unexpected {type(exc).__name__}: {message!r}') from exc


def check_sent(sent: StepTarget, base_target: np.ndarray, ee_now: np.ndarray,
               limits: CommandLimits = LIMITS) -> str:
    """The target is one the controller accepts, and every change to it was reported."""
    t = sent.target
    assert t.shape == (3,) and np.all(np.isfinite(t)), f'target {t}'
    assert np.all(t >= limits.workspace_min + BOX_MARGIN_M - 1e-12), f'target {t} below the box'
    assert np.all(t <= limits.workspace_max - BOX_MARGIN_M + 1e-12), f'target {t} above the box'
    step = np.abs(t - ee_now)
    assert np.all(step <= limits.max_step_m + 1e-12), f'step {step} from {ee_now} to {t}'
    assert sent.gripper in (None, GRIPPER_OPEN, GRIPPER_CLOSED), sent.gripper
    assert sent.action.shape == (ACTION_DIM,) and np.all(np.isfinite(sent.action))
    changed = not np.array_equal(t, base_target)
    assert changed == bool(sent.notes), f'target changed {changed} but notes {sent.notes}'
    return 'sent (limited, reported)' if changed else 'sent unchanged'


# ---- the plan -> target path ----------------------------------------------------------------

class FuzzBackend:
    """A planning backend that misbehaves on purpose, one mode per call (cycled)."""

    name = 'fuzz'

    def __init__(self, seed: int, energy_modes: list[str], state_modes: list[str]) -> None:
        self.rng = np.random.default_rng(seed)
        self.energy_modes = energy_modes
        self.state_modes = state_modes
        self.calls = 0
        self.state_calls = 0

    def rollout_energy(self, z0: Any, goal: Any, actions: np.ndarray) -> Any:
        # What the planner hands the model is inside the action bounds, always.
        assert actions.dtype == np.float32 and actions.ndim == 3
        assert BOUNDS.contains(actions), 'the planner sampled actions outside the bounds'
        mode = self.energy_modes[self.calls % len(self.energy_modes)]
        self.calls += 1
        n, rng = actions.shape[0], self.rng
        e = rng.uniform(0.0, 1.0, n)
        if mode == 'some_nan':
            e[rng.random(n) < 0.5] = np.nan
        elif mode == 'all_nan':
            e[:] = np.nan
        elif mode == 'some_inf':
            e[rng.random(n) < 0.5] = np.inf
        elif mode == 'all_inf':
            e[:] = np.inf
        elif mode == 'neg_inf':
            e[rng.random(n) < 0.2] = -np.inf
        elif mode == 'huge':
            e = rng.choice([-1.7e308, 1.7e308, 1e308, -1e300], n)
        elif mode == 'tiny':
            e = rng.choice([5e-324, 0.0, -5e-324, 1e-310], n)
        elif mode == 'constant':
            e[:] = 0.25
        elif mode == 'wrong_length':
            e = rng.uniform(0.0, 1.0, n + rng.choice([-1, 1]))
        elif mode == 'integers':
            return rng.integers(-5, 5, n)
        elif mode == 'column':
            return e[:, None]
        return e

    def state_energy(self, z: Any, goal: Any) -> float:
        mode = self.state_modes[self.state_calls % len(self.state_modes)]
        self.state_calls += 1
        return {'above': 1.0, 'below': 0.0, 'nan': math.nan, 'inf': math.inf,
                'huge': 1e308, 'nan_latent': 1.0}[mode]

    def latent(self) -> np.ndarray:
        """The next observation latent (NaN when the next state mode says so)."""
        mode = self.state_modes[self.state_calls % len(self.state_modes)]
        z = self.rng.normal(size=2)
        return np.full(2, np.nan) if mode == 'nan_latent' else z

    def encode_goal(self, *args: Any) -> np.ndarray:
        raise AssertionError('not used')

    def encode_observation(self, *args: Any) -> np.ndarray:
        raise AssertionError('not used')


_COORD_MARGIN = st.floats(-0.3, 0.3)


@st.composite
def positions(draw: st.DrawFn, anything: bool = False) -> np.ndarray:
    """A TCP position: inside the box, near a face (inside or out), far outside; with
    ``anything`` also non-finite or huge."""
    kind = draw(st.sampled_from(['inside', 'inside', 'face', 'outside'] + (
        ['anything'] if anything else [])))
    lo, hi = np.array(WORKSPACE_MIN), np.array(WORKSPACE_MAX)
    if kind == 'anything':
        return np.array([draw(st.one_of(st.floats(), st.sampled_from(SPECIAL)))
                         for _ in range(3)])
    u = np.array([draw(st.floats(0.0, 1.0)) for _ in range(3)])
    p = lo + u * (hi - lo)
    if kind == 'face':
        axis = draw(st.integers(0, 2))
        side = draw(st.sampled_from([lo, hi]))
        p[axis] = side[axis] + draw(st.floats(-0.06, 0.06))
    elif kind == 'outside':
        p = p + np.array([draw(_COORD_MARGIN) for _ in range(3)])
    return p


@dataclass(frozen=True)
class EpisodeSpec:
    """One fuzzed episode: planner, backend behaviour, the arm's start and how it follows."""

    method: str
    seed: int
    hold_gripper: bool
    energy_modes: list[str]
    state_modes: list[str]
    start: np.ndarray      # [3] TCP at the start
    follow: list[float]    # per step: fraction of the way to the target the arm gets
    gripper: float         # the gripper's state at the start


@st.composite
def episode_specs(draw: st.DrawFn) -> EpisodeSpec:
    return EpisodeSpec(
        method=draw(st.sampled_from(['cem', 'mppi', 'random'])),
        seed=draw(st.integers(0, 2**32 - 1)),
        hold_gripper=draw(st.booleans()),
        energy_modes=draw(st.lists(st.sampled_from(ENERGY_MODES), min_size=1, max_size=6)),
        state_modes=draw(st.lists(st.sampled_from(STATE_MODES), min_size=1, max_size=6)),
        start=draw(positions()),
        follow=draw(st.lists(st.sampled_from([0.0, 0.3, 1.0, 1.2, -0.5]), min_size=1,
                             max_size=5)),
        gripper=draw(st.sampled_from([0.0, 0.4, 0.6, 1.0])))


def check_episode(spec: EpisodeSpec) -> list[str]:
    """Run the episode's steps; the outcome of each (what was sent, or why nothing was)."""
    backend = FuzzBackend(spec.seed, spec.energy_modes, spec.state_modes)
    planner = PlannerConfig(method=spec.method, num_samples=16, horizon=3, max_iterations=3,
                            num_elites=4)
    episode = MpcEpisode(backend, np.zeros(2), MpcConfig(
        planner=planner, energy_tolerance=0.1, seed=spec.seed, hold_gripper=spec.hold_gripper))
    rng = np.random.default_rng(spec.seed)
    ee_now = spec.start.copy()
    observed = ee_now.copy()
    last_target: np.ndarray | None = None
    closed = spec.gripper >= 0.5
    outcomes: list[str] = []
    for follow in spec.follow:
        try:
            outcome = episode.step(backend.latent(), gripper=spec.gripper)
        except (ValueError, RuntimeError) as exc:     # the node: PLANNER_ERROR, arm held
            outcomes.append(f'planner error: {reason_of(exc)}')
            break
        if outcome.reached:                           # the node: REACHED, arm held
            outcomes.append('reached')
            break
        assert BOUNDS.contains(outcome.action), outcome.action
        assert outcome.plan is not None and math.isfinite(outcome.plan.energy)
        base = (last_target if last_target is not None and np.all(
            np.abs(last_target + outcome.action[:3] - observed) <= LIMITS.max_step_m)
            else observed) + outcome.action[:3]
        try:
            sent = step_target(outcome.action, observed, ee_now, last_target, closed, LIMITS)
        except ValueError as exc:                     # the node: PLANNER_ERROR, arm held
            outcomes.append(f'not sent: {reason_of(exc)}')
            break
        outcomes.append(check_sent(sent, base, ee_now))
        last_target, closed = sent.target, sent.gripper_closed
        # The next observation shows the arm where it was; it then moves part of the way.
        observed = ee_now.copy()
        ee_now = ee_now + follow * (sent.target - ee_now) + rng.normal(0.0, 0.002, 3)
    return outcomes


# ---- step_target alone ----------------------------------------------------------------------

_ANY_FLOAT = st.one_of(st.floats(), st.sampled_from(SPECIAL))


@dataclass(frozen=True)
class StepSpec:
    """Inputs of one step_target call."""

    action: np.ndarray
    observed: np.ndarray
    ee_now: np.ndarray
    last_target: np.ndarray | None
    gripper_closed: bool


@st.composite
def step_specs(draw: st.DrawFn) -> StepSpec:
    kind = draw(st.sampled_from(['in_bounds', 'in_bounds', 'poisoned', 'anything', 'length']))
    if kind == 'length':
        action = np.array([draw(st.floats(-0.05, 0.05))
                           for _ in range(draw(st.sampled_from([0, 1, 3, 5, 8])))])
    elif kind == 'anything':
        action = np.array([draw(_ANY_FLOAT) for _ in range(ACTION_DIM)])
    else:
        action = np.array([draw(st.floats(-0.05, 0.05)) for _ in range(3)]
                          + [draw(st.floats(0.0, 1.0))])
        if kind == 'poisoned':
            action[draw(st.integers(0, ACTION_DIM - 1))] = draw(_ANY_FLOAT)
    ee_now = draw(positions(anything=True))
    observed = draw(st.one_of(st.just(ee_now), positions(anything=True)))
    last = draw(st.one_of(st.none(), st.just(ee_now), positions(anything=True)))
    return StepSpec(action, observed, ee_now, last, draw(st.booleans()))


def check_step_target(spec: StepSpec) -> str:
    """One mapping call: a reasoned ValueError, or a target the controller accepts; never a
    refusal when the inputs are finite and the arm is within a step of the box."""
    try:
        sent = step_target(spec.action, spec.observed, spec.ee_now, spec.last_target,
                           spec.gripper_closed, LIMITS)
    except ValueError as exc:
        finite = (spec.action.shape == (ACTION_DIM,) and np.all(np.isfinite(spec.action))
                  and np.all(np.isfinite(spec.ee_now)))
        lo = LIMITS.workspace_min + BOX_MARGIN_M - LIMITS.max_step_m
        hi = LIMITS.workspace_max - BOX_MARGIN_M + LIMITS.max_step_m
        near = bool(np.all(spec.ee_now >= lo + 1e-9) and np.all(spec.ee_now <= hi - 1e-9))
        assert not (finite and np.all(np.isfinite(spec.observed)) and near), \
            f'refused a valid step: {exc}'
        return f'not sent: {reason_of(exc)}'
    a = spec.action
    base = spec.observed
    with np.errstate(over='ignore', invalid='ignore'):
        if spec.last_target is not None and np.all(
                np.abs(spec.last_target + a[:3] - spec.observed) <= LIMITS.max_step_m):
            base = spec.last_target
    return check_sent(sent, base + a[:3], spec.ee_now)
