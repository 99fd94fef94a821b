"""A toy RGB-D world for tests, smoke runs and benchmarks (not a simulator).

A fixed camera looks down at a table; the "gripper" is a square whose image position follows the
end effector's x/y, whose size and depth follow its height, and whose colour follows the gripper
state; a cube sits where the episode put it and is pushed along when the gripper touches it at
table height. Frames can be rendered at any size (e.g. 64x48 to exercise resizing).
"""

from __future__ import annotations

import numpy as np

from craik_world_model.data import EpisodeArrays

WORKSPACE_LO = np.array([0.35, -0.25, 0.02])
WORKSPACE_HI = np.array([0.75, 0.25, 0.40])
CAMERA_HEIGHT_M = 1.2


def _pixel(xy: np.ndarray, width: int, height: int) -> tuple[float, float]:
    u = (xy[1] - WORKSPACE_LO[1]) / (WORKSPACE_HI[1] - WORKSPACE_LO[1]) * (width - 1)
    v = (xy[0] - WORKSPACE_LO[0]) / (WORKSPACE_HI[0] - WORKSPACE_LO[0]) * (height - 1)
    return float(u), float(v)


def render(ee: np.ndarray, gripper: float, cube: np.ndarray, width: int, height: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 [H, W, 3], depth float32 [H, W] metres) of one state."""
    vv, uu = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.empty((height, width, 3), dtype=np.float32)
    rgb[..., 0] = 0.55 + 0.15 * uu / max(width - 1, 1)
    rgb[..., 1] = 0.50 + 0.10 * vv / max(height - 1, 1)
    rgb[..., 2] = 0.45
    depth = np.full((height, width), CAMERA_HEIGHT_M, dtype=np.float32)
    scale = min(width, height) / 64.0
    cu, cv = _pixel(cube, width, height)
    half = 5.0 * scale
    mask = (np.abs(uu - cu) <= half) & (np.abs(vv - cv) <= half)
    rgb[mask] = (0.85, 0.15, 0.12)
    depth[mask] = CAMERA_HEIGHT_M - 0.05
    gu, gv = _pixel(ee, width, height)
    half = (4.0 + 6.0 * (ee[2] - WORKSPACE_LO[2]) / (WORKSPACE_HI[2] - WORKSPACE_LO[2])) * scale
    mask = (np.abs(uu - gu) <= half) & (np.abs(vv - gv) <= half)
    rgb[mask] = (0.1, 0.2 + 0.6 * gripper, 0.9 - 0.6 * gripper)
    depth[mask] = CAMERA_HEIGHT_M - ee[2]
    # A missing return in one corner, like a RealSense hole.
    depth[: max(1, height // 16), : max(1, width // 16)] = 0.0
    return np.round(rgb * 255.0).astype(np.uint8), depth


def episode(seed: int, steps: int = 24, width: int = 64, height: int = 64,
            name: str | None = None) -> EpisodeArrays:
    """One toy episode with random actions in the action bounds; its goal image is its last
    frame."""
    rng = np.random.default_rng(seed)
    ee = rng.uniform(WORKSPACE_LO, WORKSPACE_HI)
    cube = np.array([rng.uniform(0.4, 0.7), rng.uniform(-0.2, 0.2), 0.025])
    gripper = 0.0
    actions = np.zeros((steps, 4), dtype=np.float32)
    rgb = np.zeros((steps + 1, height, width, 3), dtype=np.uint8)
    depth = np.zeros((steps + 1, height, width), dtype=np.float32)
    proprio = np.zeros((steps + 1, 4), dtype=np.float32)
    objects = np.zeros((steps + 1, 1, 2), dtype=np.float32)
    for t in range(steps + 1):
        rgb[t], depth[t] = render(ee, gripper, cube, width, height)
        proprio[t] = (*ee, gripper)
        objects[t, 0] = cube[:2]
        if t == steps:
            break
        a = np.concatenate([rng.uniform(-0.05, 0.05, 3), [float(rng.random() < 0.5)]])
        actions[t] = a
        new_ee = np.clip(ee + a[:3], WORKSPACE_LO, WORKSPACE_HI)
        if new_ee[2] < 0.08 and np.abs(new_ee[:2] - cube[:2]).max() < 0.04:
            cube[:2] += new_ee[:2] - ee[:2]
        ee = new_ee
        gripper = float(a[3])
    # Its goal image is where it ended (as the simulator's push goal shows the pushed cube).
    return EpisodeArrays(name or f'synthetic/{seed:05d}', rgb, depth, proprio, actions, objects,
                         goal_rgb=rgb[-1].copy(), goal_objects=objects[-1].copy())


def episodes(count: int, steps: int = 24, width: int = 64, height: int = 64,
             seed: int = 0) -> list[EpisodeArrays]:
    """``count`` toy episodes (seeds ``seed .. seed + count - 1``)."""
    return [episode(seed + i, steps, width, height) for i in range(count)]
