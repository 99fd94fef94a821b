"""`craik train-objects`: object slots added to a trained model, trained on ground truth."""

from dataclasses import replace
import json

import numpy as np
import pytest
import torch

from craik_world_model import synthetic
from craik_world_model.checkpoint import load_model, save_model
from craik_world_model.model import WorldModel
from craik_world_model.object_training import ObjectTrainConfig, train_objects


def _quiet(_msg: str) -> None:
    pass


@pytest.fixture
def base_model(tiny_config) -> WorldModel:
    """A tiny model without object slots (its weights perturbed, like a trained one)."""
    torch.manual_seed(3)
    model = WorldModel(replace(tiny_config, object_count=0))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.fixture(scope='module')
def pushes() -> list:
    # 32x32 frames of the toy world: a 10-pixel cube the "gripper" pushes at table height.
    return synthetic.episodes(40, steps=10, width=32, height=32, seed=5)


def test_locator_learns_where_the_cube_is_and_the_base_is_untouched(base_model, pushes):
    config = ObjectTrainConfig(object_count=1, locator_steps=300, dynamics_steps=300,
                               horizon=4, log_every=1000)
    model, figures = train_objects(base_model, pushes, config, holdout_every=5, log=_quiet)
    held = [e for i, e in enumerate(sorted(pushes, key=lambda e: e.name)) if i % 5 == 4]
    cubes = np.concatenate([e.objects[:, 0] for e in held])                  # [F, 2]
    guess = float(np.median(np.linalg.norm(cubes - cubes.mean(0), axis=1)))   # the mean's error
    loc = figures['locator']
    assert loc['frames_median_m'] < 0.5 * guess
    assert loc['goal_images_median_m'] < 0.5 * guess
    assert figures['dynamics']['still_error_mean_m'] < 0.02
    # Only the object parts changed; the model now has one object slot.
    assert model.config.object_count == 1
    new = model.state_dict()
    for key, tensor in base_model.state_dict().items():
        torch.testing.assert_close(new[key], tensor, msg=key)


def test_episodes_without_object_positions_are_refused(base_model, pushes):
    blind = [replace(e, objects=None, goal_objects=None) for e in pushes[:4]]
    with pytest.raises(ValueError, match='no episode has positions for 1 object'):
        train_objects(base_model, blind, ObjectTrainConfig(object_count=1), log=_quiet)
    with pytest.raises(ValueError, match='object_count must be a positive integer'):
        ObjectTrainConfig(object_count=0)


def test_craik_train_objects_command(tmp_path, base_model, pushes):
    from craik_bringup.cli import main
    from craik_world_model.episode_io import RecordedEpisode, write_episodes
    # Write the toy episodes in the simulator's dataset format (what `craik collect` writes).
    recorded = []
    for seed, e in enumerate(pushes[:12]):
        cube = np.concatenate([e.objects, np.full((len(e.rgb), 1, 1), 0.025, np.float32)], 2)
        t1 = len(e.rgb)
        arrays = {'rgb': e.rgb, 'depth': np.round(e.depth * 1000).astype(np.uint16),
                  'ee_pos': e.proprio[:, :3],
                  'ee_quat': np.tile(np.float32([1, 0, 0, 0]), (t1, 1)),
                  'q': np.zeros((t1, 7), np.float32),
                  'gripper_width': ((1 - e.proprio[:, 3]) * 0.08).astype(np.float32),
                  'actions': e.actions, 'applied_displacement': e.actions[:, :3].copy(),
                  'contact': np.zeros(len(e.actions), bool), 'cube_pos': cube,
                  'cube_quat': np.tile(np.float32([1, 0, 0, 0]), (t1, 1, 1)),
                  'goal_rgb': e.goal_rgb, 'goal_depth': np.zeros(e.goal_rgb.shape[:2], np.uint16),
                  'intrinsics': np.eye(3), 'extrinsics': np.eye(4)}
        recorded.append(RecordedEpisode(e.name, arrays, {
            'task': 'push', 'seed': seed,
            'goal_cube_pos': [[*map(float, e.goal_objects[0]), 0.025]]}))
    data = tmp_path / 'data'
    write_episodes(recorded, data)
    save_model(tmp_path / 'base' / 'model.safetensors', base_model)
    out = tmp_path / 'objects'
    args = ['train-objects', '--model', str(tmp_path / 'base' / 'model.safetensors'),
            '--data', str(data), '--out', str(out), '--object-slots', '1', '--locator-steps',
            '3', '--dynamics-steps', '3', '--horizon', '4', '--threads', '1']
    assert main(args) == 0
    model, meta = load_model(out / 'model.safetensors')              # verified against SHA256SUMS
    assert model.config.object_count == 1
    figures = json.loads((out / 'object_training.json').read_text())
    assert figures['training_episodes'] + figures['held_out_episodes'] == 12
    assert 'goal_images_median_m' in figures['locator']
    assert json.loads(meta['object_training'])['config']['locator_steps'] == 3
    # A model that already has object slots, a missing model, bad settings.
    assert main(args[:2] + [str(out / 'model.safetensors')] + args[3:]) == 2
    assert main(args[:2] + [str(tmp_path / 'missing.safetensors')] + args[3:]) == 1
    assert main(args[:-6] + ['--locator-steps', '0']) == 2
