"""The fast headless environment: the `sim` scene stepped directly in MuJoCo, no networking.

Same MJCF (scene.build_scene), camera, action space and step length as the franky-sim server.
One step reproduces what franky does for a relative Cartesian motion by d (from the previously
commanded pose, orientation held): the TCP follows franky's phase-synchronised jerk-limited
profile (motion.py) with the controller's dynamics factor, each waypoint is turned into joint
targets by damped least-squares IK (franky-sim's scheme), and the joints track them with
franky-sim's PD gains (kp 4500/3500/2000, kv 450/350/200) plus gravity and Coriolis
compensation; after the profile the last target is held until STEP_DURATION_S. What makes it
fast: IK and control at 100 Hz instead of 1 kHz, MuJoCo's implicit PD actuators, a 5 ms physics
step. README.md gives
the measured end-point mismatch against franky on franky-sim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from craik_sim.calibration import CameraCalibration, default_calibration_path, load_calibration
from craik_sim.kinematics import TcpIK
from craik_sim.motion import (
    DEFAULT_DYNAMICS_FACTOR,
    DOWN_ROTATION,
    GRIPPER_SPEED_M_S,
    MOTION_START_DELAY_S,
    STEP_DURATION_S,
    Limits,
    profile_fraction,
    validate_action,
)
from craik_sim.render import CameraRenderer
from craik_sim.scene import (
    GRIPPER_MAX_WIDTH_M,
    ROBOT_PREFIX,
    GroundTruth,
    SceneConfig,
    SceneHandles,
    VariationConfig,
    ground_truth,
    robot_cube_contact,
    scene_xml,
)
from craik_sim.tasks import (
    EpisodeSpec,
    SceneDefaults,
    apply_episode_model,
    apply_episode_state,
    clip_to_workspace,
    evaluate,
    goal_configuration,
    sample_episode,
)

# franky-sim's joint PD gains (MUJOCO_DEFAULT_KP / KV) and hand PD per finger.
ARM_KP = (4500.0, 4500.0, 3500.0, 3500.0, 2000.0, 2000.0, 2000.0)
ARM_KV = (450.0, 450.0, 350.0, 350.0, 200.0, 200.0, 200.0)
HAND_KP, HAND_KV, HAND_FORCE = 1000.0, 50.0, 70.0


@dataclass(frozen=True)
class FastEnvConfig:
    """Fast environment settings (validated)."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    calibration_path: str = ''  # '' = config/calibration/sim_d435.yaml
    image_width: int = 64
    image_height: int = 64
    render: bool = True
    physics_timestep_s: float = 0.005
    control_period_s: float = 0.01
    dynamics_factor: float = DEFAULT_DYNAMICS_FACTOR
    step_duration_s: float = STEP_DURATION_S

    def __post_init__(self) -> None:
        if not (8 <= self.image_width <= 1280 and 8 <= self.image_height <= 960):
            raise ValueError(f'image_width/image_height must be in 8..1280 x 8..960, got '
                             f'{self.image_width}x{self.image_height}')
        if not 0.0005 <= self.physics_timestep_s <= 0.005:
            raise ValueError(f'physics_timestep_s must be in [0.0005, 0.005], got '
                             f'{self.physics_timestep_s}')
        ratio = self.control_period_s / self.physics_timestep_s
        if self.control_period_s > 0.02 or abs(ratio - round(ratio)) > 1e-6 or ratio < 1:
            raise ValueError('control_period_s must be a multiple of physics_timestep_s, <= 0.02')
        steps = self.step_duration_s / self.control_period_s
        if abs(steps - round(steps)) > 1e-6:
            raise ValueError('step_duration_s must be a multiple of control_period_s')
        if not 0.0 < self.dynamics_factor <= 1.0:
            raise ValueError(f'dynamics_factor must be in (0, 1], got {self.dynamics_factor}')


@dataclass(frozen=True)
class Observation:
    """What the robot sees and feels after a reset or a step."""

    rgb: np.ndarray | None  # [H, W, 3] uint8 (None when rendering is off)
    depth_m: np.ndarray | None  # [H, W] float32, metres, 0 = no return
    ee_pos: np.ndarray  # [3]
    ee_quat_xyzw: np.ndarray  # [4]
    q: np.ndarray  # [7]
    gripper_width_m: float
    time_s: float


@dataclass(frozen=True)
class StepInfo:
    """What happened during a step (privileged: for data collection and evaluation)."""

    applied_displacement: np.ndarray  # [3] after workspace clipping
    workspace_clipped: bool
    contact: bool  # robot touched a cube during the step
    success: bool
    distance_m: float


class FastEnv:
    """Reset/step API over the scene; one instance per thread (it owns a GL context)."""

    def __init__(self, config: FastEnvConfig | None = None,
                 calibration: CameraCalibration | None = None) -> None:
        self.config = config or FastEnvConfig()
        c = self.config
        self.calibration = calibration or load_calibration(
            Path(c.calibration_path) if c.calibration_path else default_calibration_path())
        self.model = mujoco.MjModel.from_xml_string(scene_xml(c.scene, self.calibration))
        m = self.model
        m.opt.timestep = c.physics_timestep_s
        self.handles = SceneHandles.from_model(m)
        h = self.handles
        # Use the MJCF's position actuators (franky-sim zeroes them and applies torques).
        self._arm_act = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR,
                                                    f'{ROBOT_PREFIX}fr3_joint{i}')
                                  for i in range(1, 8)])
        for act, kp, kv in zip(self._arm_act, ARM_KP, ARM_KV, strict=True):
            m.actuator_gainprm[act, 0] = kp
            m.actuator_biasprm[act, :3] = (0.0, -kp, -kv)
        # The hand actuator pulls the finger tendon (mean finger position): per-finger PD of
        # franky-sim as kp, kv on the tendon (each finger gets half the tendon force).
        self._hand_act = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, f'{ROBOT_PREFIX}hand')
        m.actuator_gainprm[self._hand_act, 0] = 2 * HAND_KP
        m.actuator_biasprm[self._hand_act, :3] = (0.0, -2 * HAND_KP, -2 * HAND_KV)
        m.actuator_forcerange[self._hand_act] = (-2 * HAND_FORCE, 2 * HAND_FORCE)
        m.actuator_ctrlrange[self._hand_act] = (0.0, GRIPPER_MAX_WIDTH_M / 2)
        self.data = mujoco.MjData(m)
        self._defaults = SceneDefaults.capture(m)
        self._ik = TcpIK(m, h)
        self._limits = Limits.franky(c.dynamics_factor)
        self._substeps = int(round(c.control_period_s / c.physics_timestep_s))
        self._ticks = int(round(c.step_duration_s / c.control_period_s))
        self._renderer: CameraRenderer | None = None
        self._render_data = mujoco.MjData(m)
        self._spec: EpisodeSpec | None = None
        self._q_ref = np.zeros(7)
        self._tcp_ref = np.zeros(3)
        self._hand_ref = 0.0
        self.goal_rgb: np.ndarray | None = None
        self.goal_depth_m: np.ndarray | None = None
        self.goal_q: np.ndarray | None = None

    # --- episodes -----------------------------------------------------------------------------

    @property
    def spec(self) -> EpisodeSpec:
        if self._spec is None:
            raise RuntimeError('call reset() first')
        return self._spec

    @property
    def camera(self) -> CameraCalibration:
        """The episode's camera (jittered when that variation is on) at the native resolution."""
        return self.spec.appearance.camera or self.calibration

    @property
    def observation_camera(self) -> CameraCalibration:
        """The camera at the observation resolution (scaled intrinsics)."""
        return self.camera.scaled(self.config.image_width, self.config.image_height)

    def reset(self, task: str, seed: int,
              variation: VariationConfig | None = None) -> Observation:
        """Start episode (task, seed, variation); renders its goal image. Deterministic."""
        spec = sample_episode(task, seed, self.config.scene, self.calibration, variation)
        m, d, h = self.model, self.data, self.handles
        apply_episode_model(m, h, self._defaults, spec, self.calibration)
        self.goal_q = goal_configuration(self._ik, spec)
        mujoco.mj_resetData(m, d)
        apply_episode_state(m, d, h, spec)
        self._spec = spec
        self._q_ref = spec.home_q.copy()
        self._tcp_ref = self._ik.forward(self._q_ref)[0]
        self._hand_ref = spec.initial_gripper_width_m / 2
        d.ctrl[self._arm_act] = self._q_ref
        d.ctrl[self._hand_act] = self._hand_ref
        # Let the cubes settle and the PD loops engage (0.1 s), like the node's settle time.
        for _ in range(int(round(0.1 / self.config.control_period_s))):
            self._control_tick(self._q_ref)
        mujoco.mj_forward(m, d)
        if self.config.render:
            self.goal_rgb, self.goal_depth_m = self.render_state(self.goal_q, goal=True)
        return self.observe()

    def _control_tick(self, q_ref: np.ndarray) -> bool:
        m, d, h = self.model, self.data, self.handles
        d.ctrl[self._arm_act] = q_ref
        d.ctrl[self._hand_act] = self._hand_ref
        # Gravity + Coriolis feed-forward, as franky-sim adds to its PD torques.
        d.qfrc_applied[h.arm_dof] = d.qfrc_bias[h.arm_dof]
        mujoco.mj_step(m, d, nstep=self._substeps)
        return robot_cube_contact(m, d, h)

    def step(self, action: np.ndarray | list[float]) -> tuple[Observation, StepInfo]:
        """Execute one action (dx, dy, dz, gripper); raises ActionError on a malformed action.

        Targets outside the workspace are clipped, and the clip is reported in StepInfo.
        """
        a = validate_action(action)
        spec = self.spec
        m, d, h = self.model, self.data, self.handles
        # franky composes relative motions on its pose estimate, which follows the commanded
        # pose: the step starts from the previous target, not from the (lagging) measured TCP.
        start = self._tcp_ref
        target, clipped = clip_to_workspace(start + a[:3])
        displacement = target - start
        lim = self._limits
        period = self.config.control_period_s
        times = np.arange(1, self._ticks + 1) * period - MOTION_START_DELAY_S
        progress = profile_fraction(times, float(np.max(np.abs(displacement))), lim)
        hand_goal = (1.0 - a[3]) * GRIPPER_MAX_WIDTH_M / 2
        hand_rate = GRIPPER_SPEED_M_S / 2 * period
        contact = False
        q_ref = self._q_ref
        for k in range(self._ticks):
            waypoint = start + displacement * progress[k]
            q_ref = self._ik.track(waypoint, DOWN_ROTATION, q_ref)
            if k == self._ticks - 1:
                q_ref, _ = self._ik.solve(waypoint, DOWN_ROTATION, q_ref, iterations=5)
            self._hand_ref += float(np.clip(hand_goal - self._hand_ref, -hand_rate, hand_rate))
            contact |= self._control_tick(q_ref)
        self._q_ref = q_ref
        self._tcp_ref = target
        mujoco.mj_forward(m, d)
        gt = ground_truth(m, d, h)
        success, distance = evaluate(spec, gt)
        info = StepInfo(displacement, clipped, bool(contact), success, distance)
        return self.observe(), info

    # --- observation --------------------------------------------------------------------------

    def ground_truth(self) -> GroundTruth:
        return ground_truth(self.model, self.data, self.handles)

    def evaluate(self) -> tuple[bool, float]:
        return evaluate(self.spec, self.ground_truth())

    def _render(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        cam = self.observation_camera
        if self._renderer is None:
            self._renderer = CameraRenderer(self.model, cam, self.handles.camera,
                                            shadows=self.config.scene.shadows)
        else:
            self._renderer.calibration = cam
        return self._renderer.render(data)

    def render_state(self, goal_q: np.ndarray,
                     goal: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Render the episode's goal state in a private MjData (the live state is untouched)."""
        apply_episode_state(self.model, self._render_data, self.handles, self.spec,
                            goal_q=goal_q if goal else None)
        return self._render(self._render_data)

    def observe(self) -> Observation:
        gt = self.ground_truth()
        rgb = depth = None
        if self.config.render:
            rgb, depth = self._render(self.data)
        return Observation(rgb, depth, gt.ee_pos, gt.ee_quat_xyzw, gt.q, gt.gripper_width_m,
                           gt.time_s)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> FastEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
