"""Exploration policy for data collection: random motion mixed with pushes aimed at cubes.

Uniformly random 5 cm steps mostly wave the arm in the air above the table; a world model
trained on that never sees a cube move. This policy alternates between
- random segments: smoothly correlated random displacements (a random walk with momentum),
  random gripper; and
- push segments: pick a cube (privileged ground truth), go above a point behind it, descend to
  pushing height, push through it along a random direction, then lift.
The mixture weight and noise are configurable; collect.py reports the resulting fraction of
steps with robot-cube contact.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from craik_sim.motion import MAX_STEP_M
from craik_sim.scene import GroundTruth
from craik_sim.tasks import PUSH_TCP_HEIGHT_M, WORKSPACE


@dataclass(frozen=True)
class ExplorationConfig:
    push_probability: float = 0.6  # chance that a new segment is a push
    random_segment_steps: tuple[int, int] = (3, 8)
    momentum: float = 0.6
    noise_m: float = 0.008  # added to aimed steps
    approach_height_m: float = 0.12

    def __post_init__(self) -> None:
        if not 0.0 <= self.push_probability <= 1.0:
            raise ValueError(f'push_probability must be in [0, 1], got {self.push_probability}')
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f'momentum must be in [0, 1), got {self.momentum}')


def _step_towards(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.clip(target - current, -MAX_STEP_M, MAX_STEP_M)


class ExplorationPolicy:
    """act(ground truth) -> action [4]; deterministic for a given rng."""

    def __init__(self, rng: np.random.Generator, config: ExplorationConfig | None = None):
        self.rng = rng
        self.config = config or ExplorationConfig()
        self._plan: list[np.ndarray] = []  # waypoints (TCP) of the current push
        self._random_left = 0
        self._velocity = np.zeros(3)
        self._gripper = 1.0

    def _new_segment(self, gt: GroundTruth) -> None:
        c = self.config
        if len(gt.cube_pos) and self.rng.uniform() < c.push_probability:
            cube = gt.cube_pos[self.rng.integers(len(gt.cube_pos))]
            angle = self.rng.uniform(-math.pi, math.pi)
            d = np.array([math.cos(angle), math.sin(angle), 0.0])
            half = 0.03
            start = cube - d * (half + 0.05)
            end = cube + d * self.rng.uniform(0.04, 0.12)
            low = PUSH_TCP_HEIGHT_M + self.rng.uniform(-0.005, 0.01)
            self._plan = [np.array([start[0], start[1], c.approach_height_m]),
                          np.array([start[0], start[1], low]),
                          np.array([end[0], end[1], low]),
                          np.array([end[0], end[1], c.approach_height_m])]
            self._gripper = 1.0 if self.rng.uniform() < 0.8 else 0.0
        else:
            self._random_left = int(self.rng.integers(*c.random_segment_steps, endpoint=True))
            self._gripper = float(self.rng.uniform() < 0.5)

    def act(self, gt: GroundTruth) -> np.ndarray:
        c = self.config
        if not self._plan and self._random_left <= 0:
            self._new_segment(gt)
        if self._plan:
            target = self._plan[0]
            step = _step_towards(gt.ee_pos, target)
            if np.linalg.norm(target - gt.ee_pos) < 0.01 + MAX_STEP_M * 0.5:
                self._plan.pop(0)
            step = step + self.rng.normal(0.0, c.noise_m, size=3)
        else:
            self._random_left -= 1
            self._velocity = c.momentum * self._velocity + (1 - c.momentum) * \
                self.rng.uniform(-MAX_STEP_M, MAX_STEP_M, size=3)
            step = self._velocity + self.rng.normal(0.0, 0.01, size=3)
            # Stay inside the workspace (bounce instead of pushing against its walls).
            nxt = gt.ee_pos + step
            lo = np.array([r[0] for r in WORKSPACE]) + 0.02
            hi = np.array([r[1] for r in WORKSPACE]) - 0.02
            hi[2] = 0.3
            outside = (nxt < lo) | (nxt > hi)
            step[outside] *= -1
            self._velocity[outside] *= -1
        step = np.clip(step, -MAX_STEP_M, MAX_STEP_M)
        return np.array([*step, self._gripper])
