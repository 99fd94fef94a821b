"""Fast environment: rendering agrees with the calibration, steps, goals, bad input."""

import numpy as np
import pytest

from craik_sim.fast_env import FastEnv, FastEnvConfig
from craik_sim.motion import ActionError
from craik_sim.scene import VariationConfig
from craik_sim.tasks import InvalidSeedError, UnknownTaskError


@pytest.fixture(scope='module')
def env():
    with FastEnv(FastEnvConfig(image_width=64, image_height=64)) as e:
        yield e


def test_render_matches_the_calibrated_projection(env):
    env.reset('push', 4)
    obs = env.observe()
    gt = env.ground_truth()
    cam = env.observation_camera
    assert obs.rgb.shape == (64, 64, 3) and obs.rgb.dtype == np.uint8
    assert obs.depth_m.shape == (64, 64) and obs.depth_m.dtype == np.float32
    colour = env.spec.appearance.cube_rgba[0, :3]
    u, v = np.rint(cam.project(gt.cube_pos[:1])[0]).astype(int)
    pixel = obs.rgb[v, u] / 255.0
    # The cube's own colour dominates the pixel its centre projects to.
    assert np.argmax(pixel) == np.argmax(colour)
    z = cam.points_to_camera(gt.cube_pos[:1])[0, 2]
    half = env.config.scene.cube_size_m / 2
    assert z - 2 * half < obs.depth_m[v, u] < z + 1e-3


def test_a_step_moves_the_tcp_by_the_action(env):
    obs = env.reset('reach', 1)
    start = obs.ee_pos
    obs, info = env.step([0.04, -0.03, -0.05, 0.0])
    assert not info.workspace_clipped
    np.testing.assert_allclose(info.applied_displacement, [0.04, -0.03, -0.05], atol=1e-9)
    # franky-sim's overdamped PD lags: >= 85 % of the way after one step, then converges.
    moved = obs.ee_pos - start
    assert np.dot(moved, info.applied_displacement) / np.dot(info.applied_displacement,
                                                            info.applied_displacement) > 0.85
    for _ in range(2):
        obs, _ = env.step([0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(obs.ee_pos, start + info.applied_displacement, atol=1e-3)
    # Orientation held: gripper pointing down.
    assert abs(abs(obs.ee_quat_xyzw[0]) - 1.0) < 1e-2


def test_workspace_clipping_is_reported(env):
    env.reset('reach', 2)
    for _ in range(8):
        _, info = env.step([0.0, 0.0, -0.05, 1.0])
    assert info.workspace_clipped
    assert env.ground_truth().ee_pos[2] > 0.015


@pytest.mark.parametrize('action, message', [
    ([0.06, 0, 0, 0], 'exceeds 0.05'),
    ([0, 0, 0], 'shape'),
    ([0, 0, 0, 1.5], 'gripper'),
    ([np.nan, 0, 0, 0], 'non-finite'),
])
def test_bad_actions(env, action, message):
    env.reset('reach', 0)
    with pytest.raises(ActionError, match=message):
        env.step(action)


def test_bad_episodes(env):
    with pytest.raises(UnknownTaskError):
        env.reset('stack', 0)
    with pytest.raises(InvalidSeedError):
        env.reset('reach', -5)


def test_goal_images_are_reproducible_and_do_not_disturb_the_state(env):
    env.reset('push', 21)
    first = env.goal_rgb.copy()
    state = env.data.qpos.copy()
    env.render_state(env.goal_q)
    np.testing.assert_array_equal(env.data.qpos, state)
    env.reset('push', 22)
    other = env.goal_rgb.copy()
    env.reset('push', 21)
    np.testing.assert_array_equal(env.goal_rgb, first)
    assert np.abs(other.astype(int) - first).mean() > 1.0
    # The goal state is the goal: rendering it in the env scores a success.
    env.reset('reach', 3)
    success_before, dist = env.evaluate()
    assert not success_before and dist > 0.03


def test_variation_renders_differently_but_reproducibly(env):
    env.reset('reach', 9)
    plain = env.observe().rgb
    varied_cfg = VariationConfig(lighting=True, cube_colours=True, camera_jitter=True,
                                 distractors=2)
    a = env.reset('reach', 9, varied_cfg).rgb
    b = env.reset('reach', 9, varied_cfg).rgb
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - plain).mean() > 2.0
    env.reset('reach', 9)
    np.testing.assert_array_equal(env.observe().rgb, plain)


def test_pushing_moves_a_cube_and_reports_contact(env):
    env.reset('push', 4)
    gt = env.ground_truth()
    cube = gt.cube_pos[0]
    contact = False
    # Go behind the cube (in -x), descend, push along +x.
    path = [np.array([cube[0] - 0.07, cube[1], 0.12]), np.array([cube[0] - 0.07, cube[1], 0.03]),
            np.array([cube[0] + 0.06, cube[1], 0.03])]
    for target in path:
        for _ in range(6):
            d = np.clip(target - env._tcp_ref, -0.05, 0.05)
            _, info = env.step([*d, 1.0])
            contact |= info.contact
    assert contact
    assert env.ground_truth().cube_pos[0, 0] > cube[0] + 0.03
