"""Planning backends: the learned world model, and the oracle on privileged simulator state.

Both satisfy :class:`craik_planner.mpc.PlanningBackend`. The world-model backend wraps any
``craik_world_model`` runtime (onnxruntime, torch, TensorRT). The oracle reads its state from the
simulator's ground truth and exists for evaluation only: it never runs on the robot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from craik_planner.mpc import Observation
from craik_planner.oracle import STATE_DIM, oracle_energy
from craik_planner.planning import FloatArray


class WorldModelBackend:
    """Latents, energies and imagined frames from a ``craik_world_model`` runtime."""

    name = 'world_model'

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    @classmethod
    def load(cls, model_dir: str, runtime: str = 'onnxruntime', threads: int = 0
             ) -> WorldModelBackend:
        """Open an exported model directory with the named runtime backend."""
        from craik_world_model.runtime import load_runtime

        return cls(load_runtime(model_dir, backend=runtime, threads=threads))

    def encode_goal(self, rgb: npt.NDArray[np.uint8],
                    depth_m: npt.NDArray[np.float32] | None) -> FloatArray:
        return np.asarray(self.runtime.encode(rgb, depth_m, None, depth_units='m'))

    def encode_observation(self, observation: Observation) -> FloatArray:
        proprio = np.array([*observation.ee_position, observation.gripper], dtype=np.float32)
        return np.asarray(self.runtime.encode(observation.rgb, observation.depth_m, proprio,
                                              depth_units='m'))

    def rollout_energy(self, z0: FloatArray, goal: FloatArray,
                       actions: npt.NDArray[np.float32]) -> FloatArray:
        return np.asarray(self.runtime.rollout_energy(z0, goal, actions))

    def state_energy(self, z: FloatArray, goal: FloatArray) -> float:
        # The same distance the rollout graph uses (visual latent, and pose when weighted).
        return float(self.runtime.energy(z, goal))

    def imagine(self, z0: FloatArray, goal: FloatArray,
                actions: FloatArray) -> npt.NDArray[np.uint8]:
        """Decoded final frame ``[S, S, 3]`` of one plan ``[H, A]``."""
        _, finals = self.runtime.rollout(z0, goal, np.asarray(actions, np.float32)[None])
        rgb, _ = self.runtime.decode(finals[0])
        return np.asarray(rgb)


class OracleBackend:
    """Plans on ground truth: latents are ``[ee_xyz, target_cube_xyz]`` from the simulator.

    ``ground_truth`` returns the latest privileged state as a dict with ``ee``, ``cube`` and
    ``goal`` positions (``[3]`` each, fr3_link0); the node fills it from /sim/ground_truth.
    """

    name = 'oracle'

    def __init__(self, task: Literal['reach', 'push'],
                 ground_truth: Callable[[], dict[str, FloatArray]]) -> None:
        self.task = task
        self._energy = oracle_energy(task)
        self._ground_truth = ground_truth

    def _state(self) -> npt.NDArray[np.float64]:
        gt = self._ground_truth()
        return np.concatenate([gt['ee'], gt['cube']]).astype(np.float64)

    def encode_goal(self, rgb: npt.NDArray[np.uint8],
                    depth_m: npt.NDArray[np.float32] | None) -> FloatArray:
        goal = np.asarray(self._ground_truth()['goal'], dtype=np.float64)
        latent = np.zeros(STATE_DIM)
        if self.task == 'reach':
            latent[:3] = goal
        else:
            latent[3:] = goal
        return latent

    def encode_observation(self, observation: Observation) -> FloatArray:
        return self._state()

    def rollout_energy(self, z0: FloatArray, goal: FloatArray,
                       actions: npt.NDArray[np.float32]) -> FloatArray:
        return self._energy(z0, goal, actions)

    def state_energy(self, z: FloatArray, goal: FloatArray) -> float:
        return self._energy.state_energy(z, goal)

    def imagine(self, z0: FloatArray, goal: FloatArray,
                actions: FloatArray) -> npt.NDArray[np.uint8] | None:
        return None
