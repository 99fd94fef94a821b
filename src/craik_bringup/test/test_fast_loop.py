"""`craik calibrate`: the stop-tolerance replay; one closed-loop episode with the shipped model."""

import json
from pathlib import Path

import pytest

from craik_bringup import cli
from craik_bringup.fast_loop import (
    EpisodeTrace,
    recommend_tolerance,
    replay_success,
    stop_index,
)
from craik_bringup.graph import workspace_root

MODEL_DIR = workspace_root() / 'models' / 'craik_wm_cpu'


def _trace(seed, energies, distances_cm):
    return EpisodeTrace(seed, list(energies), [d / 100 for d in distances_cm], [])


def test_stop_index_is_the_first_observation_under_the_tolerance():
    t = _trace(0, [0.5, 0.3, 0.1, 0.05], [20, 10, 4, 1])
    assert stop_index(t, 0.2) == 2
    assert stop_index(t, 0.01) == 3          # never under: the last observation
    assert stop_index(t, 1.0) == 0


def test_replay_counts_where_each_episode_would_have_stopped():
    traces = [_trace(0, [0.5, 0.1, 0.02], [20, 5, 1]),
              _trace(1, [0.4, 0.03, 0.2], [15, 2, 8])]
    # 0.05: episode 0 runs to its end (1 cm), episode 1 stops at 2 cm.
    assert replay_success(traces, 0.05, 0.03) == (1.0, 2.5)
    # 0.15: episode 0 stops at 5 cm (miss), episode 1 at 2 cm.
    assert replay_success(traces, 0.15, 0.03) == (0.5, 2.0)


def test_recommended_tolerance_is_the_largest_with_the_best_success():
    traces = [_trace(0, [0.5, 0.1, 0.02], [20, 5, 1]),
              _trace(1, [0.4, 0.03, 0.2], [15, 2, 8])]
    r = recommend_tolerance(traces, 0.03, slack=0.0, margin=1.0)
    assert r['replayed_success_rate'] == 1.0
    # Both stop at their success: between 0.03 (last needed) and 0.1 (first too early).
    assert 0.03 < r['tolerance'] < 0.1
    assert r['success_rate_without_stop'] == 0.5
    loose = recommend_tolerance(traces, 0.03, slack=0.5, margin=1.0)
    assert loose['tolerance'] > r['tolerance']
    safe = recommend_tolerance(traces, 0.03, slack=0.0, margin=0.75)
    assert safe['tolerance'] == pytest.approx(0.75 * r['tolerance'])
    assert safe['largest_tolerance'] == r['tolerance']


def test_bad_arguments_exit_2(capsys):
    assert cli.main(['calibrate', '--image-size', 'big']) == 2
    assert '--image-size' in capsys.readouterr().err
    assert cli.main(['calibrate', '--samples', '16']) == 2        # elites (32) >= samples
    assert 'num_elites' in capsys.readouterr().err


@pytest.mark.skipif(not (MODEL_DIR / 'export.json').exists(),
                    reason='no shipped world model at models/craik_wm_cpu')
def test_one_closed_loop_episode_with_the_shipped_model(tmp_path: Path, capsys):
    out = tmp_path / 'calibration.json'
    code = cli.main(['calibrate', '--episodes', '1', '--max-steps', '2', '--samples', '32',
                     '--elites', '4', '--iterations', '1', '--image-size', '64x64',
                     '--threads', '1', '--model', str(MODEL_DIR), '--json', str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    (trace,) = report['traces']
    # Observations before every step and after the last one, judged by the simulator.
    assert len(trace['energies']) == len(trace['distances_m']) == 3
    assert all(e >= 0 for e in trace['energies'])
    assert trace['distances_m'][0] > 0.05     # reach goals start >= 8 cm away
    assert report['recommended']['tolerance'] > 0
    assert 'recommended energy_tolerance' in capsys.readouterr().out
