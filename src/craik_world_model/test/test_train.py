"""Training: losses, checkpoints, exact resume, the CLI, and DDP with gloo on CPU."""

from dataclasses import replace
import json
import os
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from craik_world_model import synthetic
from craik_world_model.checkpoint import load_model
from craik_world_model.train import (
    Objective,
    learning_rate,
    parameter_checksum,
    random_choices,
    train,
)


def _quiet(_msg: str) -> None:
    pass


@pytest.fixture
def episodes():
    return synthetic.episodes(5, steps=8, width=16, height=16, seed=11)


@pytest.fixture
def objective_inputs(tiny_preset, episodes):
    """(model, objective, positional inputs but the last two, batch) of one tiny batch."""
    from craik_world_model.data import WindowDataset
    from craik_world_model.model import WorldModel
    from craik_world_model.train import encode_targets
    model = WorldModel(tiny_preset.model)
    ds = WindowDataset(episodes, tiny_preset.model, tiny_preset.train.horizon)
    g = torch.Generator().manual_seed(0)
    batch = ds.sample(4, g)
    keep, idx, frame = random_choices(tiny_preset.train, 4, g)
    assert idx[-1] == tiny_preset.train.horizon - 1      # the last step is always decoded
    inputs = (batch.rgb, batch.depth, batch.proprio, batch.actions,
              encode_targets(model.encoder, batch), keep, idx, frame)
    return model, Objective(model, tiny_preset.train), inputs, batch


def test_objective_parts_are_finite_and_differentiable(objective_inputs):
    model, objective, inputs, batch = objective_inputs
    loss, parts = objective(*inputs, batch.objects, batch.objects_known)
    assert torch.isfinite(loss) and parts.shape == (11,) and torch.isfinite(parts).all()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_object_loss_counts_only_windows_with_object_positions(objective_inputs):
    """Robot recordings have no object positions: their windows add no object loss."""
    from craik_world_model.train import LOSS_NAMES
    _, objective, inputs, batch = objective_inputs
    _, parts = objective(*inputs, batch.objects, batch.objects_known)
    assert parts[LOSS_NAMES.index('object')] > 0
    _, parts = objective(*inputs, batch.objects, torch.zeros(4))
    assert parts[LOSS_NAMES.index('object')] == 0


def test_learning_rate_schedule(tiny_preset):
    tc = replace(tiny_preset.train, steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-5)
    assert learning_rate(0, tc) == pytest.approx(1e-4)
    assert learning_rate(9, tc) == pytest.approx(1e-3)
    assert learning_rate(99, tc) == pytest.approx(1e-5, rel=0.05)


def test_train_writes_checkpoints_logs_and_model(tmp_path, tiny_preset, episodes):
    result = train(tiny_preset, episodes[:4], episodes[4:], tmp_path, progress=False,
                   log=_quiet)
    assert result.step == tiny_preset.train.steps
    assert (tmp_path / 'checkpoints' / 'last.safetensors').exists()
    model, meta = load_model(result.model_path)
    assert meta['preset'] == 'tiny' and json.loads(meta['metrics'])
    assert parameter_checksum(model) == result.parameter_checksum
    lines = [json.loads(x) for x in (tmp_path / 'train_log.jsonl').read_text().splitlines()]
    assert any('val_psnr_h3' in x for x in lines) and any('latent' in x for x in lines)
    assert all(v == v for x in lines for v in x.values())          # no NaN


def test_resume_continues_exactly(tmp_path, tiny_preset, episodes):
    preset = replace(tiny_preset, train=replace(tiny_preset.train, steps=6, checkpoint_every=2,
                                                val_every=3))
    straight = train(preset, episodes[:4], episodes[4:], tmp_path / 'a', progress=False,
                     log=_quiet)
    first = train(preset, episodes[:4], episodes[4:], tmp_path / 'b', progress=False,
                  log=_quiet, stop_after=3)
    assert first.step == 3 and not (tmp_path / 'b' / 'model.safetensors').exists()
    resumed = train(preset, episodes[:4], episodes[4:], tmp_path / 'b', resume=True,
                    progress=False, log=_quiet)
    assert resumed.parameter_checksum == straight.parameter_checksum


def test_craik_train_command(tmp_path):
    from craik_bringup.cli import main
    out = tmp_path / 'run'
    rc = main(['train', '--synthetic', '6', '--preset', 'tiny', '--steps', '2', '--out',
               str(out), '--no-progress', '--threads', '1', '--object-slots', '0'])
    assert rc == 0 and (out / 'model.safetensors').exists()
    assert load_model(out / 'model.safetensors')[0].config.object_count == 0
    assert 'craik train' in load_model(out / 'model.safetensors')[1]['command']
    assert main(['train', '--preset', 'tiny', '--out', str(out)]) == 2      # no data given
    assert main(['train', '--synthetic', '2', '--preset', 'tiny', '--steps', '0', '--out',
                 str(out)]) == 2                                          # invalid override
    assert main(['train', '--synthetic', '2', '--preset', 'tiny', '--object-slots', '-1',
                 '--out', str(out)]) == 2


def test_ddp_two_processes_stay_in_sync(tmp_path):
    """torchrun, 2 processes, gloo on CPU: every rank ends with the same parameters."""
    out = tmp_path / 'ddp'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
           '2', '-m', 'craik_world_model.train', '--synthetic', '6', '--preset', 'tiny',
           '--steps', '3', '--batch-size', '4', '--out', str(out), '--threads', '1',
           '--no-progress']
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / 'ranks' / f'rank{r}.json').read_text()) for r in (0, 1)]
    assert all(r['world_size'] == 2 and r['step'] == 3 for r in ranks)
    assert ranks[0]['parameter_checksum'] == ranks[1]['parameter_checksum']
    assert ranks[0]['target_checksum'] == ranks[1]['target_checksum']
    model, meta = load_model(Path(out) / 'model.safetensors')
    assert meta['parameter_checksum'] == ranks[0]['parameter_checksum']
    # The parameters moved away from the (shared) initialisation.
    torch.manual_seed(0)
    from craik_world_model.model import WorldModel
    assert parameter_checksum(WorldModel(model.config)) != ranks[0]['parameter_checksum']
