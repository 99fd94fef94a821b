"""Simulated RGB-D sequences for the mapping tests and benchmarks.

A scripted push in craik_sim's fast environment (MuJoCo, the lab's scene and calibrated camera,
no franky needed): the TCP moves above the target cube, lowers behind it and pushes it 12 cm
towards its goal, so the sequence has a moving arm and a moved object. Each frame carries what
the gaussian_mapper node receives (colour, aligned depth, joint positions, gripper width, the
camera) and the privileged ground truth the tests check against (cube positions).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import mujoco
import numpy as np

from craik_sim.calibration import CameraCalibration
from craik_sim.fast_env import FastEnv, FastEnvConfig

PUSH_HEIGHT_M = 0.03     # TCP height over the table while pushing
APPROACH_HEIGHT_M = 0.15
BEHIND_M = 0.07          # start this far behind the cube centre, against the push direction
PUSH_DISTANCE_M = 0.12
STEP_M = 0.04            # each scripted action moves at most this far per axis


@dataclass(frozen=True)
class SimFrame:
    """One frame of a simulated sequence."""

    rgb: np.ndarray          # [H, W, 3] uint8
    depth_m: np.ndarray      # [H, W] float32, 0 = no return
    q: np.ndarray            # [7] arm joints, rad
    gripper_width_m: float
    intrinsics: np.ndarray   # [3, 3] of this resolution
    world_from_camera: np.ndarray  # [4, 4] optical frame -> fr3_link0
    cube_pos: np.ndarray     # [N, 3] ground truth
    time_s: float
    robot_surface: np.ndarray  # [M, 3] ground truth: the robot's mesh vertices, fr3_link0


def robot_surface(env: FastEnv) -> np.ndarray:
    """``[M, 3]``: vertices of every robot mesh geom at the current state (fr3_link0; the
    scene's world frame is the robot base)."""
    m, d = env.model, env.data
    out = []
    for g in env.handles.robot_geoms:
        mesh = int(m.geom_dataid[g])
        if m.geom_type[g] != mujoco.mjtGeom.mjGEOM_MESH or mesh < 0:
            continue
        start, count = int(m.mesh_vertadr[mesh]), int(m.mesh_vertnum[mesh])
        local = m.mesh_vert[start:start + count]
        rot = d.geom_xmat[g].reshape(3, 3)
        out.append(local @ rot.T + d.geom_xpos[g])
    return np.concatenate(out) if out else np.zeros((0, 3))


def _frame(env: FastEnv) -> SimFrame:
    obs = env.observe()
    cam: CameraCalibration = env.observation_camera
    gt = env.ground_truth()
    assert obs.rgb is not None and obs.depth_m is not None
    return SimFrame(obs.rgb, obs.depth_m.astype(np.float32), obs.q.copy(), obs.gripper_width_m,
                    cam.intrinsics.matrix, cam.parent_from_camera, gt.cube_pos.copy(),
                    obs.time_s, robot_surface(env))


def _moves(start: np.ndarray, goal: np.ndarray) -> Iterator[np.ndarray]:
    """Displacements of at most STEP_M per axis from ``start`` to ``goal``."""
    delta = goal - start
    steps = max(1, int(np.ceil(np.max(np.abs(delta)) / STEP_M)))
    for _ in range(steps):
        yield delta / steps


def push_sequence(seed: int, width: int = 640, height: int = 480,
                  calibration: CameraCalibration | None = None,
                  hold_frames: int = 4) -> list[SimFrame]:
    """Frames of a scripted push of episode ``seed``'s target cube (push task, nominal scene):
    one frame after the reset, one after every scripted action, and ``hold_frames`` more with
    the arm holding still at the end (a camera keeps streaming)."""
    config = FastEnvConfig(image_width=width, image_height=height)
    with FastEnv(config, calibration) as env:
        env.reset('push', seed)
        spec = env.spec
        cube = env.ground_truth().cube_pos[spec.target_cube]
        direction = spec.goal_cube_pos[spec.target_cube][:2] - cube[:2]
        direction /= max(1e-9, float(np.linalg.norm(direction)))
        behind = np.array([*(cube[:2] - BEHIND_M * direction), 0.0])
        waypoints = [np.array([behind[0], behind[1], APPROACH_HEIGHT_M]),
                     np.array([behind[0], behind[1], PUSH_HEIGHT_M]),
                     np.array([*(behind[:2] + PUSH_DISTANCE_M * direction), PUSH_HEIGHT_M]),
                     np.array([*(behind[:2] + PUSH_DISTANCE_M * direction), APPROACH_HEIGHT_M])]
        frames = [_frame(env)]
        tcp = env.ground_truth().ee_pos.copy()
        for waypoint in waypoints:
            for move in _moves(tcp, waypoint):
                env.step(np.array([*move, 1.0]))
                frames.append(_frame(env))
            tcp = waypoint
        for _ in range(hold_frames):
            env.step(np.array([0.0, 0.0, 0.0, 1.0]))
            frames.append(_frame(env))
        return frames
