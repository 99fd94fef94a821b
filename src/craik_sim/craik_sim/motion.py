"""Action space, step timing and the Cartesian motion profile franky executes.

An action is (dx, dy, dz, gripper): an end-effector displacement in fr3_link0 (metres, each
|d| <= MAX_STEP_M) plus a gripper command (0 open .. 1 closed); orientation is held with the
gripper pointing down. One step lasts STEP_DURATION_S.

Why 0.5 s: franky moves a CartesianMotion along a time-optimal jerk-limited (Ruckig) profile under
the robot's Cartesian limits (FR3 via franky 2.0: 1.7 m/s, 13 m/s^2, 6500 m/s^3) scaled by the
relative dynamics factor, with the axes phase-synchronised (the longest axis sets the duration;
measured on franky-sim: a 5 cm move along one axis and a (5, 5, 5) cm diagonal both take
~0.44 s). With DEFAULT_DYNAMICS_FACTOR = 0.1 the largest action (5 cm on an axis) needs 0.427 s
of profile plus ~15 ms of motion start/finish, so 0.5 s covers every action with margin and the
robot is at rest at each step boundary. At a factor of 0.2 franky-sim's IK tracking failed in our
probe (a 5 cm x-move ended 2.4 cm low), and 0.05 would need 0.8 s per step.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

STEP_DURATION_S = 0.5
DEFAULT_DYNAMICS_FACTOR = 0.1
MAX_STEP_M = 0.05
ACTION_DIM = 4  # dx, dy, dz, gripper
# franky 2.0's Cartesian translation limits for the FR3 (Robot.translation_*_limit).
FRANKY_TRANSLATION_VELOCITY = 1.7
FRANKY_TRANSLATION_ACCELERATION = 13.0
FRANKY_TRANSLATION_JERK = 6500.0
# Gripper opening speed (m/s of width): franky-sim caps each finger at 0.05 m/s.
GRIPPER_SPEED_M_S = 0.1
# franky-sim/libfranka start and finish a motion over a few control cycles.
MOTION_START_DELAY_S = 0.005
# The TCP orientation held by every action: gripper pointing down, hand x along base x
# (franky's O_T_EE at the home pose).
DOWN_ROTATION = np.diag([1.0, -1.0, -1.0])


class ActionError(ValueError):
    """An action is malformed or outside the action space (the message says which component)."""


def validate_action(action: np.ndarray | list[float] | tuple[float, ...]) -> np.ndarray:
    """Check an action [4] and return it as float64; raises ActionError (never clips)."""
    a = np.asarray(action, dtype=float)
    if a.shape != (ACTION_DIM,):
        raise ActionError(f'action must have shape ({ACTION_DIM},) = (dx, dy, dz, gripper), got '
                          f'{a.shape}')
    if not np.all(np.isfinite(a)):
        raise ActionError(f'action has non-finite components: {a.tolist()}')
    over = np.abs(a[:3]) > MAX_STEP_M + 1e-9
    if np.any(over):
        axes = ', '.join('xyz'[i] for i in np.flatnonzero(over))
        raise ActionError(f'displacement along {axes} exceeds {MAX_STEP_M} m: {a[:3].tolist()}')
    if not 0.0 <= a[3] <= 1.0:
        raise ActionError(f'gripper command must be in [0, 1] (0 open, 1 closed), got {a[3]}')
    return a


@dataclass(frozen=True)
class Limits:
    velocity: float
    acceleration: float
    jerk: float

    @staticmethod
    def franky(dynamics_factor: float = DEFAULT_DYNAMICS_FACTOR) -> Limits:
        if not 0.0 < dynamics_factor <= 1.0:
            raise ValueError(f'dynamics_factor must be in (0, 1], got {dynamics_factor}')
        return Limits(FRANKY_TRANSLATION_VELOCITY * dynamics_factor,
                      FRANKY_TRANSLATION_ACCELERATION * dynamics_factor,
                      FRANKY_TRANSLATION_JERK * dynamics_factor)


def _accel_phase(v_peak: float, lim: Limits) -> tuple[float, float, float]:
    """(jerk time, constant-acceleration time, distance) to go from rest to v_peak."""
    tj = lim.acceleration / lim.jerk
    if v_peak < lim.acceleration * tj:  # the acceleration limit is never reached
        tj = math.sqrt(v_peak / lim.jerk)
        ta = 0.0
    else:
        ta = v_peak / lim.acceleration - tj
    return tj, ta, v_peak * (2 * tj + ta) / 2


def profile_phases(distance: float, lim: Limits) -> tuple[float, float, float]:
    """Rest-to-rest time-optimal jerk-limited profile: (jerk time, const-acc time, cruise time)."""
    distance = abs(distance)
    if distance <= 0.0:
        return 0.0, 0.0, 0.0
    tj, ta, d_acc = _accel_phase(lim.velocity, lim)
    if 2 * d_acc <= distance:
        return tj, ta, (distance - 2 * d_acc) / lim.velocity
    lo, hi = 0.0, lim.velocity
    for _ in range(60):  # the peak velocity that covers exactly `distance`
        mid = (lo + hi) / 2
        if 2 * _accel_phase(mid, lim)[2] < distance:
            lo = mid
        else:
            hi = mid
    tj, ta, _ = _accel_phase(lo, lim)
    return tj, ta, 0.0


def motion_duration(displacement: np.ndarray, lim: Limits) -> float:
    """Duration of franky's phase-synchronised motion for a displacement [3] (longest axis)."""
    tj, ta, tv = profile_phases(float(np.max(np.abs(displacement))), lim)
    return 2 * (2 * tj + ta) + tv


def profile_fraction(t: np.ndarray, distance: float, lim: Limits) -> np.ndarray:
    """Normalised progress s(t) in [0, 1] of the jerk-limited profile at times t (seconds)."""
    t = np.asarray(t, dtype=float)
    tj, ta, tv = profile_phases(distance, lim)
    total = 2 * (2 * tj + ta) + tv
    if total <= 0.0:
        return np.ones_like(t)
    # Integrate the piecewise-constant jerk finely (1e-4 s), then sample.
    dt = 1e-4
    grid = np.arange(0.0, total + dt, dt)
    bounds = np.cumsum([tj, ta, tj, tv, tj, ta, tj])
    jerk_sign = np.array([1, 0, -1, 0, -1, 0, 1], dtype=float)
    seg = np.minimum(np.searchsorted(bounds, grid, side='right'), 6)
    jerk = jerk_sign[seg] * lim.jerk
    acc = np.cumsum(jerk) * dt
    vel = np.cumsum(acc) * dt
    pos = np.cumsum(vel) * dt
    pos /= pos[-1] if pos[-1] > 0 else 1.0
    return np.clip(np.interp(t, grid, pos, left=0.0, right=1.0), 0.0, 1.0)
