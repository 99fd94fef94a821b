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
    """Latents, energies and imagined frames from a ``craik_world_model`` runtime.

    A model with geometric object slots (``object_source: geometry``) also needs the calibrated
    camera (:meth:`set_camera`): its slots and a goal's TCP come from the aligned depth through
    :class:`craik_world_model.object_state.ObjectStateEstimator`, and every observation must
    carry depth and joint positions (the arm is masked by kinematics).
    """

    name = 'world_model'

    def __init__(self, runtime: Any, camera: Any = None) -> None:
        self.runtime = runtime
        self.objects: Any = None
        self.last_goal_tcp: FloatArray | None = None
        self._goal_revision = 0
        if camera is not None:
            self.set_camera(camera)

    @property
    def geometric(self) -> bool:
        """Whether the model's object slots come from depth geometry."""
        return bool(self.runtime.config.presence_dims)

    def set_camera(self, camera: Any) -> None:
        """Use this calibrated camera (``object_state.CameraModel``) from now on."""
        if not self.geometric:
            return
        from craik_world_model.object_state import ObjectStateEstimator

        if self.objects is None:
            self.objects = ObjectStateEstimator(camera)
        else:
            self.objects.camera = camera

    @classmethod
    def load(cls, model_dir: str, runtime: str = 'onnxruntime', threads: int = 0,
             camera: Any = None) -> WorldModelBackend:
        """Open an exported model directory with the named runtime backend."""
        from craik_world_model.runtime import load_runtime

        return cls(load_runtime(model_dir, backend=runtime, threads=threads), camera)

    def _estimator(self) -> Any:
        if self.objects is None:
            raise ValueError('this world model reads object state from depth and needs the '
                             'calibrated camera; none was given (camera calibration file or '
                             '/calibration/camera_pose)')
        return self.objects

    def encode_goal(self, rgb: npt.NDArray[np.uint8],
                    depth_m: npt.NDArray[np.float32] | None,
                    gripper: float = 0.0) -> FloatArray:
        """Goal latent; ``gripper`` (0 open ... 1 closed) sizes the fingers the goal's arm mask
        uses (the planner holds the gripper, so the goal's is the current one)."""
        z = np.asarray(self.runtime.encode(rgb, depth_m, None, depth_units='m'))
        if not self.geometric:
            return z
        if depth_m is None:
            raise ValueError('this world model finds the objects and the TCP a goal shows in '
                             'its aligned depth: send goal_depth with the goal image (an '
                             'RGB-only goal cannot be used)')
        estimator = self._estimator()
        rows, tcp = estimator.goal(rgb, depth_m, _width(gripper))
        self.last_goal_tcp = tcp
        self._goal_revision = estimator.goal_revision
        return np.asarray(self.runtime.with_geometry(z, rows[:, :3], tcp))

    def updated_goal(self, goal: FloatArray) -> FloatArray:
        """``goal`` with the goal's object slots as the estimator knows them now: an object the
        goal image shows partly hidden is placed once an observation has seen it whole
        (``ObjectStateEstimator.goal_revision``); unchanged otherwise."""
        if self.objects is None or self.objects.goal_rows is None or \
                self.objects.goal_revision == self._goal_revision:
            return goal
        self._goal_revision = self.objects.goal_revision
        return np.asarray(self.runtime.with_geometry(goal, self.objects.goal_rows[:, :3]))

    def encode_observation(self, observation: Observation) -> FloatArray:
        proprio = np.array([*observation.ee_position, observation.gripper], dtype=np.float32)
        z = np.asarray(self.runtime.encode(observation.rgb, observation.depth_m, proprio,
                                           depth_units='m'))
        if not self.geometric:
            return z
        if observation.depth_m is None:
            raise ValueError('this world model needs aligned depth with every observation '
                             '(object state from depth): no depth frame matched the colour '
                             'frame (/camera/camera/aligned_depth_to_color/image_raw)')
        if observation.joint_positions is None:
            raise ValueError('this world model needs the arm joint positions with every '
                             'observation (the arm is masked by kinematics): no recent '
                             '/joint_states with fr3_joint1..7')
        rows = self._estimator().observation(observation.rgb, observation.depth_m,
                                             observation.joint_positions,
                                             _width(observation.gripper))
        return np.asarray(self.runtime.with_geometry(z, rows[:, :3]))

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


def _width(gripper: float) -> float:
    """Finger opening (m) of a gripper state 0 (open) ... 1 (closed)."""
    return float(np.clip(1.0 - gripper, 0.0, 1.0)) * 0.08


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
                    depth_m: npt.NDArray[np.float32] | None, gripper: float = 0.0
                    ) -> FloatArray:
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
