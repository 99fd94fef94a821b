"""Task suite: seeded reproducibility, input validation, goals inside the workspace."""

import numpy as np
import pytest

from craik_sim.calibration import default_calibration_path, load_calibration
from craik_sim.scene import SceneConfig, SceneError, VariationConfig
from craik_sim.tasks import (
    REACH_REGION,
    SUCCESS_THRESHOLD_M,
    WORKSPACE,
    InvalidSeedError,
    UnknownTaskError,
    sample_episode,
)

CAL = load_calibration(default_calibration_path())
SCENE = SceneConfig()


@pytest.mark.parametrize('task', ['', 'Reach', 'pick_place', None, 3])
def test_unknown_tasks(task):
    with pytest.raises(UnknownTaskError, match='unknown task'):
        sample_episode(task, 0, SCENE, CAL)


@pytest.mark.parametrize('seed', [-1, 2**32, 1.5, '7', True, None])
def test_invalid_seeds(seed):
    with pytest.raises(InvalidSeedError, match='seed'):
        sample_episode('reach', seed, SCENE, CAL)


@pytest.mark.parametrize('task', ['reach', 'push'])
def test_same_seed_same_episode_and_different_seeds_differ(task):
    a = sample_episode(task, 11, SCENE, CAL)
    b = sample_episode(task, 11, SCENE, CAL)
    c = sample_episode(task, 12, SCENE, CAL)
    assert np.array_equal(a.cube_pos, b.cube_pos) and np.array_equal(a.goal_tcp_pos,
                                                                     b.goal_tcp_pos)
    assert not np.allclose(a.goal_tcp_pos, c.goal_tcp_pos)


def test_goals_lie_in_the_workspace_and_are_not_already_reached():
    for seed in range(40):
        reach = sample_episode('reach', seed, SCENE, CAL)
        for axis, (lo, hi) in enumerate(REACH_REGION):
            assert lo <= reach.goal_tcp_pos[axis] <= hi
        push = sample_episode('push', seed, SCENE, CAL)
        moved = np.linalg.norm(push.goal_cube_pos[0] - push.cube_pos[0])
        assert moved > SUCCESS_THRESHOLD_M
        for axis, (lo, hi) in enumerate(WORKSPACE):
            assert lo <= push.goal_tcp_pos[axis] <= hi
        # Cubes do not overlap.
        assert np.linalg.norm(push.cube_pos[0, :2] - push.cube_pos[1, :2]) > SCENE.cube_size_m


def test_variation_changes_the_look_not_the_layout():
    plain = sample_episode('push', 5, SCENE, CAL)
    varied = sample_episode('push', 5, SCENE, CAL, VariationConfig(
        lighting=True, cube_colours=True, camera_jitter=True))
    assert np.array_equal(plain.cube_pos, varied.cube_pos)
    assert not np.allclose(plain.appearance.cube_rgba, varied.appearance.cube_rgba)
    assert varied.appearance.camera is not None
    shift = np.linalg.norm(np.subtract(varied.appearance.camera.translation, CAL.translation))
    assert 0 < shift < 0.1
    again = sample_episode('push', 5, SCENE, CAL, VariationConfig(
        lighting=True, cube_colours=True, camera_jitter=True))
    assert np.array_equal(again.appearance.cube_rgba, varied.appearance.cube_rgba)


def test_bad_variation_options():
    with pytest.raises(SceneError, match='distractors'):
        VariationConfig(distractors=9)
    with pytest.raises(SceneError, match='max_distractors'):
        sample_episode('reach', 0, SceneConfig(max_distractors=1), CAL,
                       VariationConfig(distractors=2))
    with pytest.raises(SceneError, match='cube_count'):
        SceneConfig(cube_count=-1)


@pytest.mark.parametrize('change, message', [
    ({'camera_jitter_m': 0.5}, 'camera_jitter_m'),
    ({'cube_size_range_m': (0.07, 0.03)}, 'cube_size_range_m'),
    ({'light_scale_range': (0.5, 9.0)}, 'light_scale_range'),
    ({'ambient_range': (float('nan'), 0.1)}, 'ambient_range'),
    ({'table_tint_range': 'dark'}, 'table_tint_range'),
    ({'distractors': 1.5}, 'distractors'),
])
def test_bad_variation_ranges_are_rejected_with_the_field_named(change, message):
    with pytest.raises(SceneError, match=message):
        VariationConfig(**change)
