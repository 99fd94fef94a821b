"""Oracle rollout energies on privileged simulator state (an evaluation baseline, never used on
the robot).

The evaluation compares the learned world model with an MPC that plans on ground truth: the
state is the end-effector position and the cube positions read from the simulator, and the
rollout is a small analytic model of the same action space. It answers "how well could this
planner do with a perfect observation and a decent model?", which bounds what the learned model
can be expected to reach.

State vector layout (``[S]``, float64): ``[ee_x, ee_y, ee_z, cube_x, cube_y, cube_z]``; the
goal uses the same layout (for ``reach`` only the end effector matters, for ``push`` only the
cube).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from craik_world_model.object_energy import object_energy

FloatArray = npt.NDArray[np.floating]

STATE_DIM = 6
EE = slice(0, 3)
CUBE = slice(3, 6)
# Weights of the object and approach terms for push (energies in metres).
PUSH_OBJECT_WEIGHT = 1.0
PUSH_APPROACH_WEIGHT = 0.5


@dataclass(frozen=True)
class PushModel:
    """Quasi-static planar pushing of one cube by the closed fingers.

    The fingertips act as a disc of ``finger_radius`` in the table plane, the cube as a disc of
    ``cube_radius``; whenever the fingertips are low enough to touch the cube and the discs
    overlap after a move, the cube is pushed out along the line between their centres. Good
    to a few millimetres for straight pushes, which is what an oracle baseline needs.
    """

    cube_half_size: float = 0.025    # m
    finger_radius: float = 0.015     # m
    # TCP below cube_z + this can touch the cube, m (the fingertips reach ~1.5 cm above the
    # cube's top: higher, in the simulator, they pass over it).
    contact_height: float = 0.04
    substeps: int = 5                # subdivisions of each action (avoids tunnelling)

    @property
    def contact_distance(self) -> float:
        # Circumscribed-ish disc of the square cube: between inscribed and circumscribed radius.
        return self.finger_radius + 1.2 * self.cube_half_size


def rollout_states(state: FloatArray, actions: FloatArray,
                   model: PushModel) -> npt.NDArray[np.float64]:
    """Propagate ``state [S]`` through ``actions [N, H, A]``: states after each step
    ``[N, H, S]``."""
    actions = np.asarray(actions, dtype=np.float64)
    n, horizon = actions.shape[:2]
    ee = np.tile(np.asarray(state, dtype=np.float64)[EE], (n, 1))       # [N, 3]
    cube = np.tile(np.asarray(state, dtype=np.float64)[CUBE], (n, 1))   # [N, 3]
    trajectory = np.empty((n, horizon, STATE_DIM))
    for h in range(horizon):
        step = actions[:, h, :3] / model.substeps                        # [N, 3]
        for _ in range(model.substeps):
            ee = ee + step
            offset = cube[:, :2] - ee[:, :2]                             # [N, 2]
            dist = np.linalg.norm(offset, axis=1)                        # [N]
            touching = (ee[:, 2] < cube[:, 2] + model.contact_height) & \
                       (dist < model.contact_distance)
            direction = offset / np.maximum(dist, 1e-9)[:, None]
            pushed = ee[:, :2] + direction * model.contact_distance
            cube[:, :2] = np.where(touching[:, None], pushed, cube[:, :2])
        trajectory[:, h, EE] = ee
        trajectory[:, h, CUBE] = cube
    return trajectory


class OracleEnergy:
    """Energies for ``task`` over the state layout above, in metres.

    Called as ``rollout_energy(state [S], goal [S], actions [N, H, A]) -> [N]``: the distance to
    the goal averaged over every step of the imagined trajectory, not only the last (with a
    final-state energy all ways of spreading a displacement over the horizon score the same,
    and the executed first step would cover only a fraction of the way). For ``push`` the
    energy is the learned model's object energy
    (:func:`craik_world_model.object_energy.object_energy`, weights ``PUSH_OBJECT_WEIGHT`` and
    ``PUSH_APPROACH_WEIGHT``) on the true TCP and cube positions: cube-to-goal distance plus the
    approach term that brings the fingers down behind the cube without landing on it.
    """

    def __init__(self, task: Literal['reach', 'push'], model: PushModel | None = None) -> None:
        if task not in ('reach', 'push'):
            raise ValueError(f"oracle_energy: unknown task {task!r} (expected 'reach' or "
                             "'push')")
        self.task = task
        self.push_model = model or PushModel()

    def __call__(self, state: FloatArray, goal: FloatArray,
                 actions: FloatArray) -> npt.NDArray[np.float64]:
        return self.states_energy(rollout_states(state, actions, self.push_model), goal)

    def state_energy(self, state: FloatArray, goal: FloatArray) -> float:
        """Energy of being in ``state [S]`` now."""
        return float(self.states_energy(np.asarray(state, dtype=np.float64)[None, None], goal)[0])

    def states_energy(self, states: FloatArray, goal: FloatArray) -> npt.NDArray[np.float64]:
        """Mean energy of state trajectories ``[N, H, S]`` -> ``[N]``."""
        goal = np.asarray(goal, dtype=np.float64)
        if self.task == 'reach':
            return np.linalg.norm(states[..., EE] - goal[EE], axis=-1).mean(axis=1)
        t = torch.from_numpy(np.asarray(states, dtype=np.float64))
        energies = object_energy(t[..., EE], t[..., None, 3:5],
                                 torch.from_numpy(goal[None, 3:5]),
                                 PUSH_OBJECT_WEIGHT, PUSH_APPROACH_WEIGHT)   # [N, H]
        return energies.mean(dim=1).numpy()


def oracle_energy(task: Literal['reach', 'push'],
                  model: PushModel | None = None) -> OracleEnergy:
    """The rollout energy of the oracle for ``task`` (see :class:`OracleEnergy`)."""
    return OracleEnergy(task, model)
