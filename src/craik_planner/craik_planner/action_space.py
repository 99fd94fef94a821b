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
GRIPPER_OPEN = 0.0
GRIPPER_CLOSED = 1.0


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
