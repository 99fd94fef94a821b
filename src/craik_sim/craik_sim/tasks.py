"""The task suite: seeded, reproducible `reach` and `push` episodes and their success checks.

An episode is defined by (task, seed, variation options): `sample_episode` draws everything
(cube layout, goal, appearance) from `numpy.random.SeedSequence([seed, task index])`, with
separate child streams for the layout, the goal and the appearance, so turning a variation on
changes how the scene looks but not where things are. The same episode reproduces bit for bit in
the fast environment and in the `sim` node.

- reach: move the gripper (TCP) to the goal position shown in the goal image; success when the
  TCP is within SUCCESS_THRESHOLD_M of it. The gripper starts open.
- push: push the target cube (cube 0) to its goal position; success when the cube centre is
  within SUCCESS_THRESHOLD_M of it. The gripper starts closed. The goal image shows the cube at
  its goal and the closed gripper just behind it (where a push that got it there ends).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import mujoco
import numpy as np

from craik_sim.calibration import CameraCalibration
from craik_sim.kinematics import TcpIK
from craik_sim.motion import DOWN_ROTATION
from craik_sim.scene import (
    CUBE_REGION,
    FLOOR_Z,
    GRIPPER_MAX_WIDTH_M,
    HOME_Q,
    HOME_TCP,
    PARKING,
    GroundTruth,
    SceneConfig,
    SceneHandles,
    VariationConfig,
    set_free_body,
)

TASK_NAMES = ('reach', 'push')
SUCCESS_THRESHOLD_M = 0.03
MAX_SEED = 2**32 - 1
# Reach goals: TCP positions inside the reachable, camera-visible workspace (fr3_link0).
REACH_REGION = ((0.35, 0.65), (-0.2, 0.2), (0.08, 0.3))
REACH_MIN_DISTANCE_M = 0.08
PUSH_DISTANCE_M = (0.06, 0.12)
PUSH_TCP_HEIGHT_M = 0.03
# Workspace the actions may move the TCP in (clipped and reported by the environments).
WORKSPACE = ((0.25, 0.75), (-0.35, 0.35), (0.02, 0.45))


class UnknownTaskError(ValueError):
    """The task name is not one of TASK_NAMES."""


class InvalidSeedError(ValueError):
    """The seed is not an integer in [0, MAX_SEED]."""


def validate_task(task: object) -> str:
    if not isinstance(task, str) or task not in TASK_NAMES:
        raise UnknownTaskError(f'unknown task {task!r}; known tasks: {", ".join(TASK_NAMES)}')
    return task


def validate_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidSeedError(f'seed must be an integer, got {type(seed).__name__} {seed!r}')
    if not 0 <= int(seed) <= MAX_SEED:
        raise InvalidSeedError(f'seed must be in [0, {MAX_SEED}], got {seed}')
    return int(seed)


@dataclass(frozen=True)
class Appearance:
    """Per-episode look of the scene (defaults when no variation is on)."""

    cube_rgba: np.ndarray  # [N, 4]
    cube_size_m: np.ndarray  # [N] edge lengths
    light_diffuse_scale: float = 1.0
    light_dir_offset: np.ndarray = field(default_factory=lambda: np.zeros(2))  # [2]
    ambient: float = 0.05
    camera: CameraCalibration | None = None  # None: the calibrated pose
    table_tint: np.ndarray | None = None  # [3] multiplies the table's texture (None: as built)
    table_repeat: float | None = None  # texture repeats across the table (None: as built)

    def to_metadata(self) -> dict[str, object]:
        """What this episode's draws were (JSON-friendly; stored with collected episodes)."""
        return {
            'cube_rgba': self.cube_rgba.tolist(), 'cube_size_m': self.cube_size_m.tolist(),
            'light_diffuse_scale': self.light_diffuse_scale,
            'light_dir_offset': np.asarray(self.light_dir_offset).tolist(),
            'ambient': self.ambient,
            'camera': None if self.camera is None else {
                'translation': list(self.camera.translation),
                'rotation_xyzw': list(self.camera.rotation_xyzw)},
            'table_tint': None if self.table_tint is None else self.table_tint.tolist(),
            'table_repeat': self.table_repeat,
        }


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything that defines one episode's initial state and goal."""

    task: str
    seed: int
    variation: VariationConfig
    home_q: np.ndarray  # [7]
    initial_gripper_width_m: float
    cube_pos: np.ndarray  # [N, 3]
    cube_yaw: np.ndarray  # [N]
    distractor_pos: np.ndarray  # [K, 3] (parked when inactive)
    distractor_active: np.ndarray  # [K] bool
    appearance: Appearance
    goal_tcp_pos: np.ndarray  # [3] TCP in the goal state
    goal_gripper_width_m: float
    goal_cube_pos: np.ndarray  # [N, 3] cubes in the goal state
    target_cube: int  # -1 for reach

    def to_metadata(self) -> dict[str, object]:
        """JSON-friendly summary (stored with collected episodes)."""
        return {
            'task': self.task, 'seed': self.seed,
            'variation': {k: (list(v) if isinstance(v, tuple) else v)
                          for k, v in vars(self.variation).items()},
            'goal_tcp_pos': self.goal_tcp_pos.tolist(),
            'goal_cube_pos': self.goal_cube_pos.tolist(),
            'target_cube': self.target_cube,
            'success_threshold_m': SUCCESS_THRESHOLD_M,
            'appearance': self.appearance.to_metadata(),
        }


def _sample_positions(rng: np.random.Generator, count: int, min_dist: float,
                      avoid: list[np.ndarray], margin: float = 0.03) -> np.ndarray:
    out: list[np.ndarray] = []
    for _ in range(count):
        for _attempt in range(1000):
            p = np.array([rng.uniform(CUBE_REGION[0][0] + margin, CUBE_REGION[0][1] - margin),
                          rng.uniform(CUBE_REGION[1][0] + margin, CUBE_REGION[1][1] - margin)])
            if all(np.linalg.norm(p - q[:2]) >= min_dist for q in out + avoid):
                out.append(np.array([p[0], p[1], 0.0]))
                break
        else:
            raise RuntimeError('could not place the objects apart; reduce cube_count')
    return np.array(out).reshape(-1, 3)


def _sample_appearance(rng: np.random.Generator, scene: SceneConfig, v: VariationConfig,
                       calibration: CameraCalibration) -> Appearance:
    n = scene.cube_count
    rgba = np.array([(*scene.cube_colours[i], 1.0) for i in range(n)]).reshape(-1, 4)
    sizes = np.full(n, scene.cube_size_m)
    # Draw every stream regardless of the switches so that each option is independent.
    colour_draw = rng.uniform(size=(n, 3))
    size_draw = rng.uniform(*v.cube_size_range_m, size=n)
    light_draw = (rng.uniform(*v.light_scale_range), rng.uniform(*v.light_direction_range, size=2),
                  rng.uniform(*v.ambient_range))
    cam_t = np.clip(rng.normal(0.0, 1.0, size=3), -2, 2)
    cam_axis = rng.normal(size=3)
    cam_angle = float(np.clip(rng.normal(), -2, 2))
    if v.cube_colours:
        for i in range(n):
            hue, sat, val = colour_draw[i, 0], 0.5 + 0.5 * colour_draw[i, 1], \
                0.45 + 0.55 * colour_draw[i, 2]
            rgba[i, :3] = _hsv_to_rgb(hue, sat, val)
    if v.cube_sizes:
        sizes = size_draw
    camera = None
    if v.camera_jitter:
        axis = cam_axis / np.linalg.norm(cam_axis)
        angle = cam_angle * v.camera_jitter_rad
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rot = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
        camera = calibration.with_pose(np.asarray(calibration.translation)
                                       + cam_t * v.camera_jitter_m,
                                       rot @ calibration.rotation_matrix)
    # Drawn last, so the streams above are those of earlier releases (same episodes).
    table_draw = (rng.uniform(*v.table_tint_range, size=3), rng.uniform(*v.table_repeat_range))
    tint = table_draw[0] if v.table_texture else None
    repeat = float(table_draw[1]) if v.table_texture else None
    if v.lighting:
        return Appearance(rgba, sizes, float(light_draw[0]), np.asarray(light_draw[1]),
                          float(light_draw[2]), camera, tint, repeat)
    return Appearance(rgba, sizes, camera=camera, table_tint=tint, table_repeat=repeat)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def sample_episode(task: str, seed: int, scene: SceneConfig, calibration: CameraCalibration,
                   variation: VariationConfig | None = None) -> EpisodeSpec:
    """Draw the episode (task, seed, variation); raises UnknownTaskError / InvalidSeedError."""
    task = validate_task(task)
    seed = validate_seed(seed)
    variation = variation or VariationConfig()
    if variation.distractors > scene.max_distractors:
        from craik_sim.scene import SceneError
        raise SceneError(f"variation.distractors={variation.distractors} exceeds the scene's "
                         f'max_distractors={scene.max_distractors}')
    layout_ss, goal_ss, look_ss = np.random.SeedSequence(
        [seed, TASK_NAMES.index(task)]).spawn(3)
    layout, goal_rng = np.random.default_rng(layout_ss), np.random.default_rng(goal_ss)
    appearance = _sample_appearance(np.random.default_rng(look_ss), scene, variation,
                                    calibration)

    n = scene.cube_count
    sizes = appearance.cube_size_m
    cube_xy = _sample_positions(layout, n, min_dist=0.09, avoid=[])
    cube_pos = cube_xy + np.concatenate([np.zeros((n, 2)), sizes[:, None] / 2], axis=1) \
        if n else cube_xy
    cube_yaw = layout.uniform(-math.pi / 4, math.pi / 4, size=n)

    k = scene.max_distractors
    n_active = variation.distractors
    active = np.arange(k) < n_active
    placed = _sample_positions(layout, n_active, 0.09, list(cube_pos)) if n_active else \
        np.zeros((0, 3))
    distractor_pos = np.array([(*PARKING, FLOOR_Z - 1.0 - 0.3 * i) for i in range(k)]).reshape(
        -1, 3)
    for i in range(n_active):
        distractor_pos[i] = placed[i] + np.array([0.0, 0.0, 0.035])

    goal_cube = cube_pos.copy()
    if task == 'reach':
        home = np.asarray(HOME_TCP)
        for _ in range(1000):
            goal = np.array([goal_rng.uniform(*r) for r in REACH_REGION])
            if np.linalg.norm(goal - home) >= REACH_MIN_DISTANCE_M:
                break
        return EpisodeSpec(task, seed, variation, np.array(HOME_Q), GRIPPER_MAX_WIDTH_M,
                           cube_pos, cube_yaw, distractor_pos, active, appearance, goal,
                           GRIPPER_MAX_WIDTH_M, goal_cube, -1)

    if n == 0:
        raise ValueError('the push task needs at least one cube (cube_count >= 1)')
    target = 0
    others = [cube_pos[i] for i in range(n) if i != target] + list(placed)
    margin = 0.02
    for _ in range(1000):
        angle = goal_rng.uniform(-math.pi, math.pi)
        direction = np.array([math.cos(angle), math.sin(angle), 0.0])
        dist = goal_rng.uniform(*PUSH_DISTANCE_M)
        g = cube_pos[target] + direction * dist
        inside = (CUBE_REGION[0][0] + margin <= g[0] <= CUBE_REGION[0][1] - margin
                  and CUBE_REGION[1][0] + margin <= g[1] <= CUBE_REGION[1][1] - margin)
        clear = all(np.linalg.norm((g - o)[:2]) >= 0.09 for o in others)
        if inside and clear:
            break
    goal_cube[target] = g
    behind = g - direction * (sizes[target] / 2 + 0.025)
    goal_tcp = np.array([behind[0], behind[1], PUSH_TCP_HEIGHT_M])
    return EpisodeSpec(task, seed, variation, np.array(HOME_Q), 0.0, cube_pos, cube_yaw,
                       distractor_pos, active, appearance, goal_tcp, 0.0, goal_cube, target)


def evaluate(spec: EpisodeSpec, gt: GroundTruth) -> tuple[bool, float]:
    """(success, distance in metres) of the ground truth against the episode's goal."""
    if spec.task == 'reach':
        dist = float(np.linalg.norm(gt.ee_pos - spec.goal_tcp_pos))
    else:
        dist = float(np.linalg.norm(gt.cube_pos[spec.target_cube]
                                    - spec.goal_cube_pos[spec.target_cube]))
    return dist < SUCCESS_THRESHOLD_M, dist


def clip_to_workspace(position: np.ndarray) -> tuple[np.ndarray, bool]:
    """Clip a TCP target into WORKSPACE; returns (clipped position, whether it was clipped)."""
    lo = np.array([r[0] for r in WORKSPACE])
    hi = np.array([r[1] for r in WORKSPACE])
    clipped = np.clip(position, lo, hi)
    return clipped, bool(np.any(np.abs(clipped - position) > 1e-12))


# --- applying an episode to a compiled model --------------------------------------------------

@dataclass(frozen=True)
class SceneDefaults:
    """Model values that episodes change, captured right after compiling (to restore them)."""

    geom_rgba: np.ndarray
    geom_size: np.ndarray
    geom_rbound: np.ndarray
    geom_aabb: np.ndarray
    body_inertia: np.ndarray
    light_diffuse: np.ndarray
    light_dir: np.ndarray
    headlight_ambient: np.ndarray
    cam_pos: np.ndarray
    cam_quat: np.ndarray
    mat_rgba: np.ndarray | None = None
    mat_texrepeat: np.ndarray | None = None

    @staticmethod
    def capture(model: mujoco.MjModel) -> SceneDefaults:
        return SceneDefaults(model.geom_rgba.copy(), model.geom_size.copy(),
                             model.geom_rbound.copy(), model.geom_aabb.copy(),
                             model.body_inertia.copy(), model.light_diffuse.copy(),
                             model.light_dir.copy(), model.vis.headlight.ambient.copy(),
                             model.cam_pos.copy(), model.cam_quat.copy(),
                             model.mat_rgba.copy(), model.mat_texrepeat.copy())


def apply_episode_model(model: mujoco.MjModel, h: SceneHandles, defaults: SceneDefaults,
                        spec: EpisodeSpec, calibration: CameraCalibration) -> None:
    """Set the episode's appearance, cube sizes and distractor switches in the model.

    Changes geom sizes (physics): call between physics steps only.
    """
    from craik_sim.scene import camera_mujoco_quat
    look = spec.appearance
    model.geom_rgba[:] = defaults.geom_rgba
    model.geom_size[:] = defaults.geom_size
    model.geom_rbound[:] = defaults.geom_rbound
    model.geom_aabb[:] = defaults.geom_aabb
    model.body_inertia[:] = defaults.body_inertia
    for i, g in enumerate(h.cube_geoms):
        half = look.cube_size_m[i] / 2
        model.geom_rgba[g] = look.cube_rgba[i]
        model.geom_size[g] = half
        model.geom_rbound[g] = half * math.sqrt(3)
        model.geom_aabb[g, 3:] = half
        body = h.cube_bodies[i]
        model.body_inertia[body] = model.body_mass[body] * (2 * half) ** 2 / 6
    for i, g in enumerate(h.distractor_geoms):
        on = bool(spec.distractor_active[i])
        model.geom_rgba[g, 3] = 1.0 if on else 0.0
        model.geom_contype[g] = model.geom_conaffinity[g] = 1 if on else 0
        body = model.geom_bodyid[g]
        # MuJoCo 3 filters pairs by the bodies' aggregated contype/conaffinity too, computed at
        # compile time (from the parked, collision-free geoms): without these an active
        # distractor fell through the table within the first step.
        if hasattr(model, 'body_contype'):
            model.body_contype[body] = model.body_conaffinity[body] = 1 if on else 0
        model.body_gravcomp[body] = 0.0 if on else 1.0
    model.light_diffuse[:] = defaults.light_diffuse * look.light_diffuse_scale
    model.light_dir[:] = defaults.light_dir
    if len(h.lights):
        d = defaults.light_dir[0].copy()
        d[:2] += look.light_dir_offset
        model.light_dir[0] = d / np.linalg.norm(d)
    model.vis.headlight.ambient[:] = look.ambient
    if defaults.mat_rgba is not None and defaults.mat_texrepeat is not None:
        model.mat_rgba[:] = defaults.mat_rgba
        model.mat_texrepeat[:] = defaults.mat_texrepeat
        table = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, 'table_top')
        if table >= 0 and look.table_tint is not None:
            model.mat_rgba[table, :3] = np.clip(defaults.mat_rgba[table, :3] * look.table_tint,
                                                0.0, 1.0)
        if table >= 0 and look.table_repeat is not None:
            model.mat_texrepeat[table] = look.table_repeat
    camera = look.camera or calibration
    model.cam_pos[h.camera] = camera.translation
    model.cam_quat[h.camera] = camera_mujoco_quat(camera)


def apply_episode_state(model: mujoco.MjModel, data: mujoco.MjData, h: SceneHandles,
                        spec: EpisodeSpec, goal_q: np.ndarray | None = None) -> None:
    """Put data in the episode's initial state (or its goal state when goal_q is given)."""
    data.qvel[:] = 0.0
    data.qacc[:] = 0.0
    data.qfrc_applied[:] = 0.0
    data.ctrl[:] = 0.0
    data.qpos[h.arm_qpos] = spec.home_q if goal_q is None else goal_q
    width = spec.initial_gripper_width_m if goal_q is None else spec.goal_gripper_width_m
    data.qpos[h.finger_qpos] = width / 2
    cubes = spec.cube_pos if goal_q is None else spec.goal_cube_pos
    for i in range(len(h.cube_qpos)):
        set_free_body(data, h.cube_qpos[i], h.cube_dof[i], cubes[i], float(spec.cube_yaw[i]))
    for i in range(len(h.distractor_qpos)):
        set_free_body(data, h.distractor_qpos[i], h.distractor_dof[i], spec.distractor_pos[i])
    mujoco.mj_forward(model, data)


def goal_configuration(ik: TcpIK, spec: EpisodeSpec) -> np.ndarray:
    """Arm joints [7] of the goal state (TCP at the goal, pointing down)."""
    return ik.solve_or_raise(spec.goal_tcp_pos, DOWN_ROTATION, spec.home_q)
