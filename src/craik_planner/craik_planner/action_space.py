"""The action space of ARCHITECTURE.md: one planner step executes one action.

An action is ``[dx, dy, dz, gripper]``: a Cartesian end-effector displacement in ``fr3_link0``
(metres, each at most 0.05 in magnitude) and a gripper command (0 open ... 1 closed);
orientation is held.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

ACTION_DIM = 4
MAX_DISPLACEMENT_M = 0.05
GRIPPER_INDEX = 3  # where the gripper command is in an action
GRIPPER_OPEN = 0.0
GRIPPER_CLOSED = 1.0
# The gripper is commanded open/closed only when the planned command crosses these.
GRIPPER_CLOSE_ABOVE = 0.75
GRIPPER_OPEN_BELOW = 0.25


def _default_low() -> npt.NDArray[np.float64]:
    return np.array([-MAX_DISPLACEMENT_M] * 3 + [GRIPPER_OPEN])


def _default_high() -> npt.NDArray[np.float64]:
    return np.array([MAX_DISPLACEMENT_M] * 3 + [GRIPPER_CLOSED])


@dataclass(frozen=True)
class ActionBounds:
    """Per-dimension bounds of one action; the planner never proposes anything outside them."""

    low: npt.NDArray[np.float64] = field(default_factory=_default_low)    # [A]
    high: npt.NDArray[np.float64] = field(default_factory=_default_high)  # [A]

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float64)
        high = np.asarray(self.high, dtype=np.float64)
        if low.shape != high.shape or low.ndim != 1:
            raise ValueError(f'ActionBounds: low {low.shape} and high {high.shape} must be '
                             'equal-length vectors')
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError('ActionBounds: bounds must be finite')
        if np.any(low >= high):
            raise ValueError(f'ActionBounds: every low must be < high (low={low}, high={high})')
        object.__setattr__(self, 'low', low)
        object.__setattr__(self, 'high', high)

    @property
    def dim(self) -> int:
        return int(self.low.shape[0])

    @property
    def center(self) -> npt.NDArray[np.float64]:
        return (self.low + self.high) / 2.0

    @property
    def half_range(self) -> npt.NDArray[np.float64]:
        return (self.high - self.low) / 2.0

    def contains(self, actions: npt.ArrayLike) -> bool:
        """True when every action in ``actions`` (``[..., A]``) lies inside the bounds."""
        a = np.asarray(actions)
        # Compare in the array's own precision: float32(0.05) is 7e-10 above float64 0.05.
        dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64
        low, high = self.low.astype(dtype), self.high.astype(dtype)
        return bool(np.all(np.isfinite(a)) and np.all(a >= low) and np.all(a <= high))


# Kept below the controller's per-command limit (franka_controller max_step_per_axis, 0.05 m):
# the arm moves between the observation a step is planned on and the moment the controller
# measures the displacement, and a target exactly at the limit is then rejected.
STEP_MARGIN_M = 0.002
# Kept this far inside the controller's workspace box: the controller checks a streamed target
# from its own measured pose, and a target exactly on a face came out 20 um outside it (seen:
# z = 0.01998 against 0.02 m, rejected).
BOX_MARGIN_M = 0.001


@dataclass(frozen=True)
class CommandLimits:
    """What the controller accepts: a TCP box and a per-command displacement per axis (m)."""

    workspace_min: npt.NDArray[np.float64]   # [3]
    workspace_max: npt.NDArray[np.float64]   # [3]
    max_step_m: float = MAX_DISPLACEMENT_M - STEP_MARGIN_M

    def __post_init__(self) -> None:
        lo = np.asarray(self.workspace_min, dtype=np.float64)
        hi = np.asarray(self.workspace_max, dtype=np.float64)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(np.isfinite(lo)) \
                or not np.all(np.isfinite(hi)) or np.any(lo + 2 * BOX_MARGIN_M >= hi):
            raise ValueError(f'CommandLimits: workspace_min {lo} must be below workspace_max '
                             f'{hi} on every axis (3 finite values each)')
        if not 0.0 < self.max_step_m <= MAX_DISPLACEMENT_M:
            raise ValueError(f'CommandLimits: max_step_m must be in (0, {MAX_DISPLACEMENT_M}]')
        object.__setattr__(self, 'workspace_min', lo)
        object.__setattr__(self, 'workspace_max', hi)


def limit_target(target: npt.ArrayLike, ee_position: npt.ArrayLike, limits: CommandLimits
                 ) -> tuple[npt.NDArray[np.float64], list[str]]:
    """Bring a TCP target into the controller's box and step limit from ``ee_position``.

    Returns the target to send and what was changed (empty when nothing was): the caller reports
    it, so no change goes unsaid. The step limit is applied last (the arm is never asked to
    jump), so a target far outside the box approaches it over several steps.

    Raises ValueError for a non-finite or malformed target or position, and for an arm more
    than one step outside the box (no target within a step of it is inside).
    """
    t = np.asarray(target, dtype=np.float64)
    ee = np.asarray(ee_position, dtype=np.float64)
    if t.shape != (3,) or ee.shape != (3,):
        raise ValueError(f'limit_target: target {t.shape} and ee_position {ee.shape} must be '
                         '[3] positions')
    # np.clip passes NaN through: a non-finite plan or pose must never become a target.
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(ee))):
        raise ValueError(f'limit_target: target {t} or TCP position {ee} is not finite')
    notes: list[str] = []
    lo, hi = limits.workspace_min + BOX_MARGIN_M, limits.workspace_max - BOX_MARGIN_M
    boxed = np.clip(t, lo, hi)
    if np.any(boxed != t):
        notes.append(f'workspace box on {_axes(boxed != t)}')
    delta = boxed - ee
    over = np.abs(delta) > limits.max_step_m
    # Axes within the step keep the target exactly (ee + (boxed - ee) may round).
    limited = np.where(over, ee + np.clip(delta, -limits.max_step_m, limits.max_step_m), boxed)
    stepped = limited != boxed
    if not (np.all(limited >= lo) and np.all(limited <= hi)):
        # The arm is more than one step outside the box: every target within a step of it is
        # outside too, and the controller would refuse it.
        raise ValueError(f'the TCP at ({", ".join(f"{v:.4g}" for v in ee)}) m is more than '
                         f'{limits.max_step_m:.3f} m outside the workspace box '
                         f'{limits.workspace_min.tolist()} .. {limits.workspace_max.tolist()} m '
                         'on some axis: no target within one step is inside it; move the arm '
                         'into the box first')
    if np.any(stepped):
        notes.append(f'step limit {limits.max_step_m:.3f} m on {_axes(stepped)}')
    return limited, notes


@dataclass(frozen=True)
class StepTarget:
    """What the planner streams for one executed action, and what it reports of it."""

    target: npt.NDArray[np.float64]   # [3] absolute TCP target for /franka/target (fr3_link0)
    gripper: float | None             # GRIPPER_OPEN / GRIPPER_CLOSED to move it; None: leave it
    gripper_closed: bool              # the gripper state after this step (hysteresis memory)
    action: npt.NDArray[np.float64]   # [A] the action as executed (limited displacement)
    notes: list[str]                  # what limit_target changed (empty: nothing)


def step_target(action: npt.ArrayLike, observed_ee: npt.ArrayLike, ee_now: npt.ArrayLike,
                last_target: npt.ArrayLike | None, gripper_closed: bool,
                limits: CommandLimits) -> StepTarget:
    """Map one planned action to the controller target the planner sends.

    ``observed_ee``: the TCP position of the observation the action was planned on;
    ``ee_now``: the latest measured TCP position (what the controller checks the step from);
    ``last_target``: the previous step's target (None on the first step). The displacement is
    chained from the previous target, as franky chains relative motions (and as the training
    data was collected), unless the arm is too far behind it for the controller's per-command
    limit; then it starts from where the arm was observed. The gripper is commanded only when
    the planned value crosses GRIPPER_CLOSE_ABOVE / GRIPPER_OPEN_BELOW (hysteresis: a plan
    hovering around 0.5 must not toggle it every step).

    Raises ValueError for an action that is not ``[A]`` finite values, a non-finite position, or
    an arm too far outside the box to be given any valid target (see :func:`limit_target`).
    """
    a = np.array(action, dtype=np.float64).reshape(-1)
    if a.shape != (ACTION_DIM,) or not np.all(np.isfinite(a)):
        raise ValueError(f'step_target: the action must be {ACTION_DIM} finite values, got {a}')
    observed = np.asarray(observed_ee, dtype=np.float64)
    command: float | None = None
    if a[GRIPPER_INDEX] >= GRIPPER_CLOSE_ABOVE and not gripper_closed:
        command, gripper_closed = GRIPPER_CLOSED, True
    elif a[GRIPPER_INDEX] <= GRIPPER_OPEN_BELOW and gripper_closed:
        command, gripper_closed = GRIPPER_OPEN, False
    base = observed
    if last_target is not None:
        last = np.asarray(last_target, dtype=np.float64)
        with np.errstate(over='ignore', invalid='ignore'):   # a NaN/huge one never chains
            chained = bool(np.all(np.abs(last + a[:3] - observed) <= limits.max_step_m))
        if chained:
            base = last
    # Never send what the controller would reject: the planner samples displacements, not
    # positions, so a plan may point out of the box (pushing down onto the table).
    target, notes = limit_target(base + a[:3], ee_now, limits)
    if notes:
        a[:3] = target - base
    return StepTarget(target, command, gripper_closed, a, notes)


def _axes(mask: npt.NDArray[np.bool_]) -> str:
    """'xz' for a ``[3]`` mask that is true on x and z."""
    return ''.join(a for a, on in zip('xyz', mask, strict=True) if on)
