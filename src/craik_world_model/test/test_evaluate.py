"""wm-eval: metrics, baselines, the table and the command."""

import json

import numpy as np
import pytest
import torch

from craik_world_model import synthetic
from craik_world_model.checkpoint import save_model
from craik_world_model.evaluate import (
    BASELINE,
    BLIND,
    MODEL,
    EvalConfig,
    depth_absrel,
    evaluate,
    format_table,
)
from craik_world_model.train import psnr

CONFIG = EvalConfig(horizons=(1, 2, 3), max_windows=12, random_sequences=5, batch_size=6)


@pytest.fixture
def episodes():
    return synthetic.episodes(3, steps=6, width=16, height=16, seed=4)


def test_metric_helpers():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.full((2, 3, 4, 4), 0.1)
    np.testing.assert_allclose(psnr(a, b).numpy(), [20.0, 20.0], rtol=1e-5)
    true = torch.tensor([[[[1.0, 2.0], [0.0, 9.0]]]])        # one hole, one beyond range
    pred = torch.tensor([[[[1.1, 1.0], [5.0, 1.0]]]])
    np.testing.assert_allclose(depth_absrel(pred, true, 6.0).numpy(), [(0.1 + 0.5) / 2],
                               rtol=1e-5)


def test_report_has_all_columns_and_sane_baselines(episodes, tiny_model, blind_model):
    report = evaluate(episodes, tiny_model, blind_model, CONFIG)
    res = report['results']
    assert set(res) == {BASELINE, BLIND, MODEL}
    for column in res.values():
        for h in (1, 2, 3):
            assert np.isfinite(column[f'psnr@{h}']) and column[f'depth_absrel@{h}'] >= 0
        assert 0.0 <= column['energy_rank'] <= 1.0
    # Copy-last-frame: the start frame at every horizon; it cannot rank actions.
    assert res[BASELINE]['energy_rank'] == 0.5 and res[BASELINE]['controllability@3'] == 0
    # The action-blind model gives every sequence the same energy: exactly chance, and
    # shuffling actions changes nothing.
    assert res[BLIND]['energy_rank'] == pytest.approx(0.5)
    assert res[BLIND]['controllability@3'] == pytest.approx(0.0, abs=1e-6)
    table = format_table(report)
    assert 'copy_last_frame' in table and 'action_blind' in table and 'PSNR@3' in table
    json.dumps(report)


def test_copy_last_frame_psnr_is_exact(episodes, tiny_model):
    report = evaluate(episodes, tiny_model, None, CONFIG)
    from craik_world_model.data import WindowDataset
    ds = WindowDataset(episodes, tiny_model.config, 3)
    idx = torch.linspace(0, len(ds) - 1, 12).round().long().unique()
    batch = ds.batch(idx)
    expected = float(psnr(batch.rgb[:, 0], batch.rgb[:, 2]).mean())
    assert report['results'][BASELINE]['psnr@2'] == pytest.approx(expected, rel=1e-5)
    assert BLIND not in report['results']


def test_blind_column_must_be_blind(episodes, tiny_model):
    with pytest.raises(ValueError, match='action-blind'):
        evaluate(episodes, tiny_model, tiny_model, CONFIG)


def test_wm_eval_command(tmp_path, tiny_model, blind_model, capsys):
    from craik_bringup.cli import main
    model = save_model(tmp_path / 'model.safetensors', tiny_model)
    blind = save_model(tmp_path / 'blind.safetensors', blind_model)
    out = tmp_path / 'eval.json'
    rc = main(['wm-eval', '--model', str(model), '--blind', str(blind), '--synthetic', '4',
               '--split', 'all', '--horizons', '1,2', '--windows', '8', '--random', '3',
               '--json', str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report['results']) == {BASELINE, BLIND, MODEL}
    assert 'energy rank' in capsys.readouterr().out
    # The held-out split of 4 episodes is empty: a clear error, not an empty table.
    assert main(['wm-eval', '--model', str(model), '--synthetic', '4']) == 1
