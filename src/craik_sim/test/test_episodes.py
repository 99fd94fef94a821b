"""`craik collect` writes episodes the loader reads back; resume; integrity checks."""

import argparse
from pathlib import Path

import numpy as np
import pytest

from craik_sim import collect
from craik_sim.episodes import SCHEMA, EpisodeDataset, EpisodeFormatError


def _args(out: Path, **kw):
    parser = argparse.ArgumentParser()
    collect.configure_parser(parser)
    argv = ['--task', 'push', '--episodes', '2', '--steps', '6', '--out', str(out),
            '--no-progress']
    for k, v in kw.items():
        argv += [f'--{k}', str(v)]
    return parser.parse_args(argv)


@pytest.fixture(scope='module')
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp('push')
    assert collect.run(_args(out)) == 0
    return out


def test_collect_writes_episodes_the_loader_reads(dataset_dir, capsys):
    ds = EpisodeDataset(dataset_dir)
    assert len(ds) == 2 and ds.verify() == []
    ep = ds.load(0)
    assert ep.metadata['task'] == 'push' and ep.metadata['seed'] == 0
    t = ep.num_steps
    assert t == 6
    assert ep['rgb'].shape == (t + 1, 64, 64, 3) and ep['rgb'].dtype == np.uint8
    assert ep['depth'].shape == (t + 1, 64, 64) and ep['depth'].dtype == np.uint16
    assert ep['actions'].shape == (t, 4) and np.all(np.abs(ep['actions'][:, :3]) <= 0.05)
    assert set(SCHEMA) <= set(ep.arrays)
    k = ep['intrinsics']
    assert k[0, 0] == pytest.approx(61.5)
    # Frames change as the robot moves; depth is in millimetres (table ~1 m away).
    assert np.abs(ep['rgb'][-1].astype(int) - ep['rgb'][0]).mean() > 0.5
    assert 300 < np.median(ep['depth'][0][ep['depth'][0] > 0]) < 3000
    assert 0.0 <= ds.contact_fraction <= 1.0


def test_collect_resumes_and_prints_contact(dataset_dir, capsys):
    before = (dataset_dir / 'episode_000000.npz').stat().st_mtime_ns
    assert collect.run(_args(dataset_dir, episodes=3)) == 0
    out = capsys.readouterr().out
    assert 'resuming, 2 of 3' in out and 'contact in' in out
    assert (dataset_dir / 'episode_000000.npz').stat().st_mtime_ns == before
    assert len(EpisodeDataset(dataset_dir)) == 3


def test_other_settings_are_refused(dataset_dir, capsys):
    assert collect.run(_args(dataset_dir, steps=4)) == 2
    assert 'other settings' in capsys.readouterr().err


def test_corruption_is_detected(tmp_path, dataset_dir):
    import shutil
    copy = tmp_path / 'copy'
    shutil.copytree(dataset_dir, copy)
    path = copy / 'episode_000001.npz'
    path.write_bytes(path.read_bytes()[:1000])
    problems = EpisodeDataset(copy).verify()
    assert any('episode_000001' in p and 'checksum' in p for p in problems)
    with pytest.raises(EpisodeFormatError):
        EpisodeDataset(copy).load('episode_000001')
    with pytest.raises(EpisodeFormatError, match='no episode index'):
        EpisodeDataset(tmp_path)


def test_cli_is_registered():
    from craik_bringup.cli import COMMANDS
    assert COMMANDS['collect'].module == 'craik_sim.collect'


def test_collect_records_each_episodes_variation_and_reloads_it(tmp_path):
    out = tmp_path / 'varied'
    assert collect.run(_parse(out, '--vary-all')) == 0
    ds = EpisodeDataset(out)
    assert ds.config['variation'] == {'lighting': True, 'camera_pose': True,
                                      'cube_colours': True, 'cube_sizes': True,
                                      'table': True, 'distractors': 2}
    looks = []
    for i in range(2):
        meta = ds.load(i).metadata
        assert meta['variation']['lighting'] and meta['variation']['distractors'] == 2
        look = meta['appearance']
        assert 0.6 <= look['light_diffuse_scale'] <= 1.3
        assert look['camera'] is not None and look['table_tint'] is not None
        assert all(0.04 <= s <= 0.06 for s in look['cube_size_m'])
        looks.append(look)
    assert looks[0] != looks[1]    # drawn per episode from its seed
    # The episode's camera is the one its frames were rendered with.
    ep = ds.load(0)
    assert ep['extrinsics'][:3, 3] == pytest.approx(looks[0]['camera']['translation'])


def _parse(out: Path, *extra: str):
    parser = argparse.ArgumentParser()
    collect.configure_parser(parser)
    return parser.parse_args(['--task', 'reach', '--episodes', '2', '--steps', '2', '--out',
                              str(out), '--no-progress', *extra])


@pytest.mark.parametrize('extra, message', [
    (('--distractors', '7'), 'distractors'),
    (('--distractors', '4'), 'at most 3'),
])
def test_bad_variations_are_refused(tmp_path, capsys, extra, message):
    assert collect.run(_parse(tmp_path / 'bad', *extra)) == 2
    assert message in capsys.readouterr().err
