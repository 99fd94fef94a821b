"""The simulated robot + camera runtime behind the `sim` node (ROS-free, testable alone).

Threads:
- the franky-sim loop (SimulationServer.run_async): 1 kHz physics + libfranka protocol. Our
  post-step callback does only O(1) work there: it copies qpos when a snapshot was requested and
  applies a pending episode reset between two physics steps.
- the render thread: at `rate_hz` it requests a snapshot, renders it from a private MjData (its
  own GL context) and hands a Frame to the `on_frame` callback; it also renders goal images.
- callers (the node's service) call reset_episode(), which blocks until the reset is applied,
  the scene has settled and the goal image is rendered.

Frames therefore always show a state between two physics steps, never a half-stepped one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
import logging
from pathlib import Path
import queue
import threading
import time
from typing import cast

from franky_sim import SimulationServer
from franky_sim.mujoco_simulator import MujocoSimulator
import mujoco
import numpy as np

from craik_sim import franky_sim_fixes
from craik_sim.calibration import CameraCalibration, default_calibration_path, load_calibration
from craik_sim.kinematics import TcpIK
from craik_sim.render import CameraRenderer
from craik_sim.scene import (
    GroundTruth,
    SceneConfig,
    SceneHandles,
    VariationConfig,
    ground_truth,
    make_simulator,
)
from craik_sim.tasks import (
    TASK_NAMES,
    EpisodeSpec,
    SceneDefaults,
    apply_episode_model,
    apply_episode_state,
    evaluate,
    goal_configuration,
    sample_episode,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimConfig:
    """Parameters of the `sim` node (see config/sim.yaml)."""

    hostname: str = '127.0.0.1'
    rate_hz: float = 15.0
    calibration_path: str = ''  # '' = config/calibration/sim_d435.yaml
    scene: SceneConfig = field(default_factory=SceneConfig)
    variation: VariationConfig = field(default_factory=VariationConfig)
    initial_task: str = 'reach'
    initial_seed: int = 0
    settle_s: float = 0.3
    realtime_factor: float = 1.0
    # MSAA samples of the node's camera; 0 at 640x480 (consumers downsample by area averaging,
    # which anti-aliases) halves the CPU render time.
    msaa_samples: int = 0

    def __post_init__(self) -> None:
        if not self.hostname:
            raise ValueError('hostname must be a loopback address such as 127.0.0.1')
        if not 0.1 <= self.rate_hz <= 60.0:
            raise ValueError(f'rate_hz must be in [0.1, 60], got {self.rate_hz}')
        if self.initial_task not in TASK_NAMES:
            raise ValueError(f'initial_task must be one of {TASK_NAMES}, got '
                             f'{self.initial_task!r}')
        if not 0.0 <= self.settle_s <= 5.0:
            raise ValueError(f'settle_s must be in [0, 5], got {self.settle_s}')
        if not 0.1 <= self.realtime_factor <= 10.0:
            raise ValueError(f'realtime_factor must be in [0.1, 10], got {self.realtime_factor}')


@dataclass(frozen=True)
class Frame:
    """One rendered camera frame with the state it shows."""

    rgb: np.ndarray  # [H, W, 3] uint8
    depth_m: np.ndarray  # [H, W] float32, metres, 0 = no return
    camera: CameraCalibration
    ground_truth: GroundTruth
    spec: EpisodeSpec
    success: bool
    distance_m: float
    wall_time: float  # time.time() when the snapshot was taken


@dataclass(frozen=True)
class Goal:
    """A reset's result: the episode and its goal images (native camera resolution)."""

    spec: EpisodeSpec
    rgb: np.ndarray
    depth_m: np.ndarray
    camera: CameraCalibration


class SimRuntime:
    """franky-sim FR3 server + scene + simulated camera."""

    def __init__(self, config: SimConfig,
                 on_frame: Callable[[Frame], None] | None = None) -> None:
        self.config = config
        self._on_frame = on_frame
        self.calibration: CameraCalibration | None = None
        self._sim: MujocoSimulator | None = None
        self._server: SimulationServer | None = None
        self.model: mujoco.MjModel | None = None
        self.handles: SceneHandles | None = None
        self._defaults: SceneDefaults | None = None
        self._ik: TcpIK | None = None
        self._lock = threading.Lock()
        self._snapshot_request = threading.Event()
        self._snapshot_lock = threading.Lock()
        self._snapshot_ready = threading.Event()
        self._snapshot: tuple[np.ndarray, float, float] | None = None
        self._pending_reset: EpisodeSpec | None = None
        self._reset_done = threading.Event()
        self._spec: EpisodeSpec | None = None
        self._jobs: queue.Queue[tuple[str, object, queue.Queue[object]]] = queue.Queue()
        self._stop = threading.Event()
        self._render_thread: threading.Thread | None = None
        self._render_ready = threading.Event()
        self._render_error: BaseException | None = None
        self.steps = 0
        self.frames_rendered = 0
        self.render_time_s = 0.0

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Build the scene, bind the robot at `hostname`, start physics and the camera."""
        c = self.config
        franky_sim_fixes.apply()  # before the server's first tick: its 1 kHz path leaks without
        self.calibration = load_calibration(
            Path(c.calibration_path) if c.calibration_path else default_calibration_path())
        spec = sample_episode(c.initial_task, c.initial_seed, c.scene, self.calibration,
                              c.variation)
        sim = make_simulator(c.scene, self.calibration,
                             initial_hand_width=spec.initial_gripper_width_m)
        sim.register_pre_step_callback(self._pre_step)
        sim.register_post_step_callback(self._post_step)
        server = SimulationServer(sim, hostname_candidates=[c.hostname])
        try:
            server.init()  # binds the sockets and compiles the model
        except OSError as err:
            raise RuntimeError(f'cannot bind the simulated FR3 at {c.hostname}: {err}') from err
        self._sim, self._server = sim, server
        self.model = sim.model
        self.handles = SceneHandles.from_model(self.model)
        self._defaults = SceneDefaults.capture(self.model)
        self._ik = TcpIK(self.model, self.handles)
        self._apply_reset(spec)
        self._spec = spec
        self._render_thread = threading.Thread(target=self._render_loop, name='sim-render',
                                               daemon=True)
        self._render_thread.start()
        if not self._render_ready.wait(30.0) or self._render_error is not None:
            self.stop()
            raise RuntimeError(f'camera renderer failed to start: {self._render_error}')
        server.run_async(realtime=c.realtime_factor)

    def stop(self) -> None:
        """Stop the camera and the physics loop, release sockets and GL (idempotent)."""
        self._stop.set()
        if self._render_thread is not None:
            self._render_thread.join(timeout=10.0)
            self._render_thread = None
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._sim is not None:
            self._sim.cleanup()
            self._sim = None

    @property
    def hostname(self) -> str:
        return self.config.hostname

    @property
    def spec(self) -> EpisodeSpec:
        assert self._spec is not None
        return self._spec

    @property
    def server(self) -> SimulationServer:
        assert self._server is not None
        return self._server

    # --- the physics thread -------------------------------------------------------------------

    def _pre_step(self, sim: object) -> None:
        # Resets happen here, after the commands of this tick were processed and before the
        # physics step, so that the step integrates the new state with the hold command and
        # franky-sim records the home pose as the desired joints (q_d) of this tick.
        if self._pending_reset is not None:
            spec = self._pending_reset
            self._pending_reset = None
            self._apply_reset(spec)
            self._reset_done.set()

    def _post_step(self, sim: object) -> None:
        self.steps += 1
        if self._snapshot_request.is_set():
            self._snapshot_request.clear()
            assert self._sim is not None
            data = self._sim.data
            self._snapshot = (data.qpos.copy(), float(data.time), time.time())
            self._snapshot_ready.set()

    def _apply_reset(self, spec: EpisodeSpec) -> None:
        """Between two physics steps: preempt any motion, put the robot home and hold it."""
        assert self.model is not None and self.handles is not None
        assert self._sim is not None and self._defaults is not None
        assert self.calibration is not None
        model, data = self.model, self._sim.data
        rs = self._server.robot_servers[0] if self._server and self._server.robot_servers \
            else None
        if rs is not None and rs.current_motion_id:
            # franky's running motion ends with a preemption (an exception in the client).
            rs.stop_motion(send_preemption_signal=True)
        apply_episode_model(model, self.handles, self._defaults, spec, self.calibration)
        apply_episode_state(model, data, self.handles, spec)
        if rs is not None:
            rs._reset_state()  # idle, holding the (new) current joints
            robot = rs.robot
            # Sets q_d (what franky-sim holds after franky's final command of the preempted
            # motion) and this tick's torques to the home pose.
            robot.joint_position_control(spec.home_q)
            robot.set_hand_goal(spec.initial_gripper_width_m, 0.05, 70.0)

    # --- snapshots, rendering -----------------------------------------------------------------

    def snapshot(self, timeout: float = 5.0) -> tuple[np.ndarray, float, float]:
        """(qpos copy, sim time, wall time) taken right after a physics step.

        One request at a time (reset, ground truth and rendering threads all ask). The timeout
        is generous: on a loaded 2-core machine the physics thread can wait for the GIL for
        over a second, which is slow, not dead.
        """
        with self._snapshot_lock:
            self._snapshot_ready.clear()
            self._snapshot_request.set()
            if not self._snapshot_ready.wait(timeout):
                raise TimeoutError('the physics loop did not produce a snapshot (is it '
                                   'running?)')
            assert self._snapshot is not None
            return self._snapshot

    def _render_loop(self) -> None:
        assert self.model is not None and self.handles is not None
        assert self.calibration is not None
        try:
            self.model.vis.quality.offsamples = self.config.msaa_samples
            renderer = CameraRenderer(self.model, self.calibration,
                                      self.handles.camera, shadows=self.config.scene.shadows)
            data = mujoco.MjData(self.model)
        except BaseException as err:  # noqa: B036 (reported to start())
            self._render_error = err
            self._render_ready.set()
            return
        self._render_ready.set()
        period = 1.0 / self.config.rate_hz
        next_time = time.monotonic()
        try:
            while not self._stop.is_set():
                self._serve_jobs(renderer, timeout=max(0.0, next_time - time.monotonic()))
                if time.monotonic() < next_time:
                    continue
                next_time += period
                if next_time < time.monotonic():  # fell behind: skip, do not burst
                    next_time = time.monotonic() + period
                if self._server is None or not self._server.running:
                    continue
                try:
                    frame = self._render_frame(renderer, data)
                except TimeoutError:
                    continue
                if self._on_frame is not None:
                    self._on_frame(frame)
        finally:
            renderer.close()

    def _render_frame(self, renderer: CameraRenderer, data: mujoco.MjData) -> Frame:
        assert self.model is not None and self.handles is not None
        qpos, sim_time, wall = self.snapshot()
        spec = self.spec
        assert self.calibration is not None
        camera = spec.appearance.camera or self.calibration
        data.qpos[:] = qpos
        data.time = sim_time
        mujoco.mj_kinematics(self.model, data)
        mujoco.mj_camlight(self.model, data)
        t0 = time.perf_counter()
        renderer.calibration = camera
        rgb, depth = renderer.render(data)
        self.render_time_s += time.perf_counter() - t0
        self.frames_rendered += 1
        gt = ground_truth(self.model, data, self.handles)
        success, distance = evaluate(spec, gt)
        return Frame(rgb, depth, camera, gt, spec, success, distance, wall)

    def _serve_jobs(self, renderer: CameraRenderer, timeout: float) -> None:
        try:
            kind, payload, reply = self._jobs.get(timeout=min(timeout, 0.05))
        except queue.Empty:
            return
        try:
            assert kind == 'goal' and self.handles is not None and self.calibration is not None
            spec, goal_q = cast(tuple[EpisodeSpec, np.ndarray], payload)
            data = mujoco.MjData(self.model)
            apply_episode_state(self.model, data, self.handles, spec, goal_q=goal_q)
            camera = spec.appearance.camera or self.calibration
            renderer.calibration = camera
            rgb, depth = renderer.render(data)
            reply.put((rgb, depth, camera))
        except BaseException as err:  # noqa: B036 (handed to the waiting caller)
            reply.put(err)

    # --- episodes -----------------------------------------------------------------------------

    def reset_episode(self, task: str, seed: int, variation: VariationConfig | None = None,
                      timeout: float = 20.0) -> Goal:
        """Reset to episode (task, seed, variation) and return its goal images.

        Raises UnknownTaskError, InvalidSeedError, SceneError/ValueError for bad input (the
        simulation is untouched then), TimeoutError when the loop does not respond.
        """
        assert self.calibration is not None and self._ik is not None
        spec = sample_episode(task, seed, self.config.scene, self.calibration,
                              variation or VariationConfig())
        goal_q = goal_configuration(self._ik, spec)
        with self._lock:
            self._reset_done.clear()
            self._pending_reset = spec
            if not self._reset_done.wait(timeout):
                self._pending_reset = None
                raise TimeoutError('the physics loop did not apply the reset')
            self._spec = spec
            # Let the cubes settle and franky-sim's velocity filters forget the jump.
            start = self.snapshot()[1]
            deadline = time.monotonic() + timeout
            while self.snapshot()[1] - start < self.config.settle_s:
                if time.monotonic() > deadline:
                    raise TimeoutError('the simulation did not advance after the reset')
                time.sleep(0.02)
            reply: queue.Queue[object] = queue.Queue()
            self._jobs.put(('goal', (spec, goal_q), reply))
            result = reply.get(timeout=timeout)
        if isinstance(result, BaseException):
            raise result
        rgb, depth, camera = cast(tuple[np.ndarray, np.ndarray, CameraCalibration], result)
        return Goal(spec, rgb, depth, camera)

    def ground_truth(self) -> GroundTruth:
        """Ground truth of a fresh snapshot (callable from any thread)."""
        assert self.model is not None and self.handles is not None
        qpos, sim_time, _ = self.snapshot()
        data = mujoco.MjData(self.model)
        data.qpos[:] = qpos
        data.time = sim_time
        mujoco.mj_kinematics(self.model, data)
        return ground_truth(self.model, data, self.handles)


def with_variation(config: SimConfig, **changes: object) -> SimConfig:
    """A copy of config with some VariationConfig fields changed."""
    variation = replace(config.variation, **changes)  # type: ignore[arg-type]
    return replace(config, variation=variation)
