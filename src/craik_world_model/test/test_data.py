"""Episodes, windows, the simulation's format, and corrupt chunks."""

import json

import numpy as np
import pytest
import torch

from craik_world_model import synthetic
from craik_world_model.config import DataConfig, get_preset
from craik_world_model.data import (
    EpisodeArrays,
    EpisodeLoadError,
    WindowDataset,
    load_episodes,
    split_episodes,
    to_model_resolution,
)
from craik_world_model.episode_io import RecordedEpisode, write_episodes

CFG = get_preset('tiny').model   # 16x16


def _sim_arrays(episode: EpisodeArrays) -> dict:
    """An EpisodeArrays as the simulation's schema (what `craik collect` writes)."""
    t1 = episode.steps + 1
    depth_mm = np.round(episode.depth * 1000).astype(np.uint16)
    return {
        'rgb': episode.rgb, 'depth': depth_mm,
        'ee_pos': episode.proprio[:, :3].astype(np.float32),
        'ee_quat': np.tile(np.float32([1, 0, 0, 0]), (t1, 1)),
        'q': np.zeros((t1, 7), np.float32),
        'gripper_width': ((1 - episode.proprio[:, 3]) * 0.08).astype(np.float32),
        'actions': episode.actions, 'applied_displacement': episode.actions[:, :3].copy(),
        'contact': np.zeros(t1 - 1, bool),
        'cube_pos': np.concatenate([episode.objects, np.full((t1, 1, 1), 0.025)], axis=2
                                   ).astype(np.float32),
        'cube_quat': np.zeros((t1, 1, 4), np.float32),
        'goal_rgb': episode.rgb[-1], 'goal_depth': depth_mm[-1],
        'intrinsics': np.eye(3), 'extrinsics': np.eye(4),
    }


@pytest.fixture
def sim_dataset(tmp_path, toy_episodes):
    recorded = [RecordedEpisode(e.name, _sim_arrays(e), {'task': 'push', 'seed': i})
                for i, e in enumerate(toy_episodes)]
    write_episodes(recorded, tmp_path / 'ds', {'task': 'push'})
    return tmp_path / 'ds'


def test_windows_are_consecutive_frames(toy_episodes):
    ds = WindowDataset(toy_episodes, CFG, horizon=3)
    assert len(ds) == sum(e.steps - 3 + 1 for e in toy_episodes)
    batch = ds.batch(torch.arange(len(ds)))
    b = len(ds)
    assert batch.rgb.shape == (b, 4, 3, 16, 16)
    assert batch.depth.shape == (b, 4, 1, 16, 16)
    assert batch.proprio.shape == (b, 4, 4) and batch.actions.shape == (b, 3, 4)
    # Window 0 is episode 0, frames 0..3, and its actions 0..2.
    e0 = toy_episodes[0]
    np.testing.assert_allclose(batch.proprio[0].numpy(), e0.proprio[:4])
    np.testing.assert_allclose(batch.actions[0].numpy(), e0.actions[:3])
    # No window crosses an episode boundary: the last window of episode 0 ends at its end.
    last = e0.steps - 3
    np.testing.assert_allclose(batch.proprio[last, -1].numpy(), e0.proprio[-1])
    np.testing.assert_allclose(batch.proprio[last + 1, 0].numpy(), toy_episodes[1].proprio[0])


def test_frames_are_resized_to_the_model(toy_episodes):
    small = to_model_resolution(toy_episodes[0], CFG)
    assert small.rgb.shape[1:] == (16, 16, 3) and small.rgb.dtype == np.uint8
    assert small.depth.shape[1:] == (16, 16)


def test_augmentation_is_off_by_default_and_keeps_geometry(toy_episodes):
    plain = WindowDataset(toy_episodes, CFG, 2)
    assert plain.augment is False
    aug = WindowDataset(toy_episodes, CFG, 2, augment=True)
    b1 = plain.batch([0, 5])
    b2 = aug.batch([0, 5], torch.Generator().manual_seed(0))
    assert torch.equal(b1.depth, b2.depth) and torch.equal(b1.actions, b2.actions)
    assert not torch.equal(b1.rgb, b2.rgb)


def test_split_is_deterministic_and_disjoint():
    eps = synthetic.episodes(25, steps=4, width=16, height=16)
    train, held = split_episodes(list(reversed(eps)), 10)
    train2, held2 = split_episodes(eps, 10)
    assert [e.name for e in held] == [e.name for e in held2] and len(held) == 2
    assert not {e.name for e in train} & {e.name for e in held}
    assert len(train) + len(held) == 25 and len(train2) == 23


def test_inconsistent_episode_is_named():
    e = synthetic.episode(0, steps=5, width=16, height=16, name='bad/ep')
    e.actions = e.actions[:3]
    with pytest.raises(EpisodeLoadError, match='bad/ep'):
        e.validate()
    e2 = synthetic.episode(1, steps=5, width=16, height=16)
    e2.proprio[2, 1] = np.nan
    with pytest.raises(EpisodeLoadError, match='NaN'):
        e2.validate()


def test_malformed_object_positions_are_named():
    e = synthetic.episode(2, steps=5, width=16, height=16, name='bad/objects')
    e.objects = e.objects[:4]                                   # one frame short
    with pytest.raises(EpisodeLoadError, match=r'bad/objects: objects must be \[T\+1=6, N, 2\]'):
        e.validate()
    e2 = synthetic.episode(3, steps=5, width=16, height=16)
    e2.objects[1, 0, 0] = np.inf
    with pytest.raises(EpisodeLoadError, match='objects contains NaN or infinite'):
        e2.validate()


def test_sim_format_round_trip(sim_dataset, toy_episodes):
    episodes = load_episodes([sim_dataset], CFG, DataConfig())
    assert len(episodes) == len(toy_episodes)
    first = episodes[0]
    ref = to_model_resolution(toy_episodes[0], CFG)
    assert first.name.endswith('episode_000000.npz')
    np.testing.assert_allclose(first.proprio, ref.proprio, atol=1e-6)
    np.testing.assert_allclose(first.actions, ref.actions)
    np.testing.assert_allclose(first.depth, ref.depth, atol=2e-3)   # mm quantisation
    np.testing.assert_array_equal(first.rgb, ref.rgb)
    np.testing.assert_allclose(first.objects, ref.objects)


def test_object_positions_reach_the_windows_normalised(sim_dataset, toy_episodes):
    """Cube positions become normalised object slots; episodes without them are not known."""
    episodes = load_episodes([sim_dataset], CFG, DataConfig())
    blind = EpisodeArrays('lab', episodes[1].rgb, episodes[1].depth, episodes[1].proprio,
                          episodes[1].actions)                  # a robot recording: no objects
    ds = WindowDataset([episodes[0], blind], CFG, horizon=2)
    batch = ds.batch([0, len(ds) - 1])
    xy = toy_episodes[0].objects[:3, 0]                         # [H+1, 2] metres
    expected = (xy - np.array(CFG.proprio_offset[:2])) / np.array(CFG.proprio_scale[:2])
    np.testing.assert_allclose(batch.objects[0].numpy(), expected, atol=1e-6)
    assert batch.objects_known.tolist() == [1.0, 0.0]
    assert not batch.objects[1].any()


def test_a_parent_directory_reads_every_dataset(sim_dataset):
    assert len(load_episodes([sim_dataset.parent], CFG, DataConfig())) == 6


def test_corrupt_chunk_is_reported_and_skipped(sim_dataset):
    bad = sim_dataset / 'episode_000002.npz'
    bad.write_bytes(bad.read_bytes()[:200])
    messages = []
    episodes = load_episodes([sim_dataset], CFG, DataConfig(on_corrupt='skip'),
                             log=messages.append)
    assert len(episodes) == 5
    assert any(str(bad) in m and 'corrupt' in m for m in messages)


def test_corrupt_chunk_fails_the_run_when_asked(sim_dataset):
    bad = sim_dataset / 'episode_000001.npz'
    bad.write_bytes(b'garbage')
    with pytest.raises(EpisodeLoadError, match='episode_000001.npz'):
        load_episodes([sim_dataset], CFG, DataConfig(on_corrupt='fail'))


def test_corrupt_index_is_reported(sim_dataset):
    (sim_dataset / 'index.json').write_text('{not json')
    with pytest.raises(EpisodeLoadError, match='no usable episodes'):
        load_episodes([sim_dataset], CFG, DataConfig(), log=lambda m: None)
    with pytest.raises(EpisodeLoadError, match='index.json'):
        load_episodes([sim_dataset], CFG, DataConfig(on_corrupt='fail'))


def test_no_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(EpisodeLoadError, match='craik collect'):
        load_episodes([tmp_path], CFG, DataConfig())


def test_appending_continues_the_index(sim_dataset, toy_episodes):
    e = toy_episodes[0]
    write_episodes([RecordedEpisode('x', _sim_arrays(e), {'task': 'push', 'seed': 99})],
                   sim_dataset)
    index = json.loads((sim_dataset / 'index.json').read_text())
    assert [x['id'] for x in index['episodes']][-1] == 'episode_000006'
    assert index['config'] == {'task': 'push'}
