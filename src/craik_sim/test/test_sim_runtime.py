"""franky on the simulated FR3: motion in the camera, resets, and the fast-env mismatch."""

from collections import deque
import threading

import numpy as np
import pytest

from craik_sim import franky_sim_fixes
from craik_sim.fast_env import FastEnv, FastEnvConfig
from craik_sim.mismatch import random_sequences, run_fast, run_franky
from craik_sim.scene import HOME_TCP
from craik_sim.sim_runtime import SimConfig, SimRuntime
from craik_sim.tasks import InvalidSeedError, UnknownTaskError

franky = pytest.importorskip('franky')


@pytest.fixture(scope='module')
def runtime():
    frames = deque(maxlen=20)  # a couple of seconds; the module's would be ~1 GB
    rt = SimRuntime(SimConfig(rate_hz=10.0), on_frame=frames.append)
    rt.start()
    rt.frames = frames
    yield rt
    rt.stop()


def _robot(rt):
    robot = franky.Robot(rt.hostname, realtime_config=franky.RealtimeConfig.Ignore)
    robot.relative_dynamics_factor = 0.1
    return robot


def test_franky_sim_runs_with_the_quaternion_leak_fixed(runtime):
    # Unfixed, every Cartesian-motion tick leaks ~55 bytes (bench/results/soak.json's sim growth).
    assert franky_sim_fixes.is_applied()


def test_reset_goal_images_are_seeded(runtime):
    a = runtime.reset_episode('reach', 3)
    b = runtime.reset_episode('reach', 3)
    c = runtime.reset_episode('reach', 4)
    assert a.rgb.shape == (480, 640, 3)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth_m, b.depth_m)
    assert not np.allclose(a.spec.goal_tcp_pos, c.spec.goal_tcp_pos)
    assert np.abs(a.rgb.astype(int) - c.rgb).mean() > 0.5


def test_bad_resets_leave_the_simulation_alone(runtime):
    before = runtime.spec
    with pytest.raises(UnknownTaskError):
        runtime.reset_episode('juggle', 1)
    with pytest.raises(InvalidSeedError):
        runtime.reset_episode('reach', -1)
    assert runtime.spec is before


def test_franky_moves_the_gripper_in_the_image(runtime):
    runtime.reset_episode('reach', 0)
    robot = _robot(runtime)
    frame0 = runtime.frames[-1]
    robot.move(franky.CartesianMotion(franky.Affine(np.array([0.0, 0.0, 0.1])),
                                      franky.ReferenceType.Relative))  # EE z = base -z: down
    import time
    time.sleep(0.6)
    frame1 = runtime.frames[-1]
    assert frame1.ground_truth.ee_pos[2] < frame0.ground_truth.ee_pos[2] - 0.08
    cam = frame0.camera
    (u0, v0), (u1, v1) = cam.project(np.stack([frame0.ground_truth.ee_pos,
                                               frame1.ground_truth.ee_pos]))
    assert v1 > v0 + 20  # the gripper went down in the image
    # The image changed where the gripper was and where it is now.
    for u, v in ((u0, v0), (u1, v1)):
        u, v = int(u), int(v)
        patch = np.s_[max(v - 30, 0):v + 30, max(u - 30, 0):u + 30]
        assert np.abs(frame1.rgb[patch].astype(int) - frame0.rgb[patch]).mean() > 5


def test_reset_while_moving_preempts_and_homes(runtime):
    runtime.reset_episode('reach', 0)
    robot = _robot(runtime)
    errors = []

    def move():
        try:
            robot.move(franky.CartesianMotion(franky.Affine(np.array([0.0, 0.2, 0.0])),
                                              franky.ReferenceType.Relative))
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    mover = threading.Thread(target=move)
    mover.start()
    import time
    time.sleep(0.3)
    runtime.reset_episode('push', 1)
    mover.join(5.0)
    assert errors and 'preempted' in str(errors[0])
    time.sleep(0.5)
    gt = runtime.ground_truth()
    np.testing.assert_allclose(gt.ee_pos, HOME_TCP, atol=2e-3)
    # The robot accepts commands again after recovering.
    robot.recover_from_errors()
    robot.move(franky.CartesianMotion(franky.Affine(np.array([0.0, 0.0, -0.03])),
                                      franky.ReferenceType.Relative))
    time.sleep(0.5)
    assert runtime.ground_truth().ee_pos[2] > HOME_TCP[2] + 0.02


@pytest.mark.slow
def test_fast_env_ends_where_franky_does(runtime):
    env = FastEnv(FastEnvConfig(render=False))
    errors = []
    for i, actions in enumerate(random_sequences(seed=1, count=5, length=6)):
        on_franky = run_franky(runtime, 'reach', i, actions)
        fast = run_fast(env, 'reach', i, actions)
        errors.append(np.linalg.norm(on_franky - fast))
        # Both actually moved (not two robots standing still).
        assert np.linalg.norm(fast - HOME_TCP) > 0.02
    assert np.median(errors) < 0.01
