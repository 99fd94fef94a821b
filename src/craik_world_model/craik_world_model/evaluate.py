"""Evaluation on held-out episodes: ``craik wm-eval``.

For windows of held-out episodes (start frame, the next H actions, the H true frames) it reports,
side by side for the model, an action-blind model and a copy-the-last-frame baseline:

- **open-loop PSNR (dB)** of the decoded prediction against the true frame at several horizons
  (the model sees only the start frame and the actions);
- **depth AbsRel**: mean |predicted - true| / true depth over pixels with a depth return;
- **controllability** (RoboScape): PSNR with the true actions minus PSNR with the action
  sequences shuffled between windows (of other episodes), at the longest horizon; near 0 means
  the model ignores its actions;
- **energy ranking**: with the encoded true frame H steps later as the goal, how often the true
  action sequence gets a lower energy than each of K random sequences drawn uniformly in the
  action bounds (ties count half: 0.5 is chance); ``top1`` is how often it beats all K. Also
  with the goal encoded from RGB only (no depth), as goal images usually come. The mean energies
  of the start frame, the true and the random sequences give the energy scale (for a planner's
  stop tolerance).

The copy-last-frame baseline predicts the start frame at every horizon; it has no actions, so
its controllability is 0 and its ranking is chance (0.5) by construction.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
import json
from pathlib import Path
import sys
from typing import Any

import torch

from craik_world_model.checkpoint import load_model
from craik_world_model.config import MAX_DISPLACEMENT_M, DataConfig, data_config_from_json
from craik_world_model.data import WindowBatch, WindowDataset, load_episodes, split_episodes
from craik_world_model.model import WorldModel
from craik_world_model.train import psnr

BASELINE = 'copy_last_frame'
BLIND = 'action_blind'
MODEL = 'model'


@dataclass(frozen=True)
class EvalConfig:
    """What ``wm-eval`` measures."""

    horizons: tuple[int, ...] = (1, 2, 4, 8)
    max_windows: int = 512
    random_sequences: int = 32
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.horizons or min(self.horizons) < 1:
            raise ValueError(f'horizons must be positive, got {self.horizons}')
        if self.max_windows < 2 or self.random_sequences < 1 or self.batch_size < 2:
            raise ValueError('max_windows and batch_size must be >= 2, random_sequences >= 1')


def depth_absrel(pred: torch.Tensor, target: torch.Tensor, depth_max_m: float) -> torch.Tensor:
    """Per-image mean |pred - true| / true over pixels with a return within the model's range
    (0 < true <= depth_max_m): ``[B, 1, S, S] -> [B]``."""
    valid = (target > 0) & (target <= depth_max_m)
    rel = torch.where(valid, (pred - target).abs() / target.clamp_min(1e-6),
                      torch.zeros_like(target))
    return rel.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)


def random_actions(n: int, h: int, a: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, h, a]`` uniform in the action bounds (the planner's search space)."""
    x = torch.rand(n, h, a, generator=generator)
    x[..., :3] = (x[..., :3] * 2 - 1) * MAX_DISPLACEMENT_M
    return x


def _windows(dataset: WindowDataset, count: int) -> torch.Tensor:
    n = min(count, len(dataset))
    return torch.linspace(0, len(dataset) - 1, n).round().long().unique()


class _Accumulator:
    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, key: str, values: torch.Tensor) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + float(values.double().sum())
        self.counts[key] = self.counts.get(key, 0) + int(values.numel())

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / max(1, self.counts[k]) for k in self.sums}


@torch.no_grad()
def _evaluate_model(model: WorldModel, batches: Sequence[WindowBatch], config: EvalConfig,
                    ) -> dict[str, float]:
    acc = _Accumulator()
    h_max = max(config.horizons)
    generator = torch.Generator().manual_seed(config.seed)
    dv = model.config.latent_dim
    dmax = model.config.depth_max_m
    for batch in batches:
        b = batch.rgb.shape[0]
        z0 = model.encode(batch.rgb[:, 0], batch.depth[:, 0], batch.proprio[:, 0])
        zs = model.rollout(z0, batch.actions)                                   # [B, H, D]
        # Shuffled actions: every window gets the sequence of the window half a batch away
        # (windows are spread over the data in order, so that one is from another episode).
        zs_shuffled = model.rollout(z0, batch.actions.roll(max(1, b // 2), dims=0))
        true_lat = model.encode(batch.rgb[:, 1:].flatten(0, 1), batch.depth[:, 1:].flatten(0, 1),
                                batch.proprio[:, 1:].flatten(0, 1)).view(b, h_max, -1)
        for h in config.horizons:
            rgb_hat, depth_hat = model.decode(zs[:, h - 1])
            acc.add(f'psnr@{h}', psnr(rgb_hat, batch.rgb[:, h]))
            acc.add(f'depth_absrel@{h}', depth_absrel(depth_hat, batch.depth[:, h], dmax))
            acc.add(f'latent_l1@{h}', (zs[:, h - 1, :dv] - true_lat[:, h - 1, :dv]).abs()
                    .mean(dim=1))
        rgb_sh, _ = model.decode(zs_shuffled[:, h_max - 1])
        acc.add(f'psnr_shuffled@{h_max}', psnr(rgb_sh, batch.rgb[:, h_max]))
        # Energy ranking against K random sequences per window.
        k = config.random_sequences
        for goal_kind, goal_depth in (('', batch.depth[:, h_max]),
                                      ('_rgb_goal', torch.zeros_like(batch.depth[:, h_max]))):
            # As the planner encodes a goal image: no proprioception (pose read from the image).
            goal = model.encode_goal(batch.rgb[:, h_max], goal_depth)
            for i in range(b):
                acts = torch.cat([batch.actions[i:i + 1],
                                  random_actions(k, h_max, batch.actions.shape[-1], generator)])
                e, _ = model.rollout_energy(z0[i:i + 1], goal[i:i + 1], acts)     # [1 + K]
                wins = (e[0] < e[1:]).float() + 0.5 * (e[0] == e[1:]).float()
                acc.add(f'energy_rank{goal_kind}', wins.mean().view(1))
                acc.add(f'energy_top1{goal_kind}', (e[0] < e[1:].min()).float().view(1))
                if not goal_kind:
                    # Energy scale, for calibrating a planner's stop tolerance.
                    acc.add('energy_true', e[:1])
                    acc.add('energy_random', e[1:])
                    acc.add('energy_start', model.energy(z0[i:i + 1], goal[i:i + 1]))
    out = acc.means()
    out[f'controllability@{h_max}'] = out[f'psnr@{h_max}'] - out[f'psnr_shuffled@{h_max}']
    return out


def _evaluate_copy_last(batches: Sequence[WindowBatch], config: EvalConfig, dmax: float
                        ) -> dict[str, float]:
    acc = _Accumulator()
    h_max = max(config.horizons)
    for batch in batches:
        for h in config.horizons:
            acc.add(f'psnr@{h}', psnr(batch.rgb[:, 0], batch.rgb[:, h]))
            acc.add(f'depth_absrel@{h}', depth_absrel(batch.depth[:, 0], batch.depth[:, h], dmax))
        acc.add(f'psnr_shuffled@{h_max}', psnr(batch.rgb[:, 0], batch.rgb[:, h_max]))
    out = acc.means()
    out[f'controllability@{h_max}'] = 0.0
    for suffix in ('', '_rgb_goal'):
        out[f'energy_rank{suffix}'] = 0.5       # no actions: every sequence ties
        out[f'energy_top1{suffix}'] = 0.0
    return out


def evaluate(episodes: Sequence[Any], model: WorldModel, blind: WorldModel | None,
             config: EvalConfig | None = None) -> dict[str, Any]:
    """Metrics for the model, the action-blind model (if given) and the baseline."""
    config = config or EvalConfig()
    h_max = max(config.horizons)
    dataset = WindowDataset(episodes, model.config, h_max)
    idx = _windows(dataset, config.max_windows)
    batches = [dataset.batch(idx[i:i + config.batch_size])
               for i in range(0, idx.numel(), config.batch_size)]
    # Shuffling actions needs two windows per batch: a lone last window joins no batch.
    if batches[-1].rgb.shape[0] < 2:
        batches = batches[:-1]
    if not batches:
        raise ValueError(f'need at least 2 windows of {h_max + 1} frames to evaluate')
    results: dict[str, Any] = {
        BASELINE: _evaluate_copy_last(batches, config, model.config.depth_max_m)}
    if blind is not None:
        if blind.config.action_conditioned:
            raise ValueError('the action-blind model given is action-conditioned')
        results[BLIND] = _evaluate_model(blind.eval(), batches, config)
    results[MODEL] = _evaluate_model(model.eval(), batches, config)
    return {'windows': int(idx.numel()), 'episodes': len(episodes),
            'horizons': list(config.horizons), 'random_sequences': config.random_sequences,
            'results': results}


ROWS = (('psnr@{h}', 'PSNR@{h} (dB, higher better)', '{:.2f}'),
        ('depth_absrel@{h}', 'depth AbsRel@{h} (lower better)', '{:.4f}'))


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width table of the report, one column per model."""
    results = report['results']
    columns = [c for c in (BASELINE, BLIND, MODEL) if c in results]
    h_max = max(report['horizons'])
    rows: list[tuple[str, str, str]] = []
    for key, label, fmt in ROWS:
        for h in report['horizons']:
            rows.append((key.format(h=h), label.format(h=h), fmt))
    rows += [(f'controllability@{h_max}', f'controllability dPSNR@{h_max} (dB)', '{:.2f}'),
             ('energy_rank', 'energy rank: true < random', '{:.3f}'),
             ('energy_top1', f'energy top-1 of {report["random_sequences"] + 1}', '{:.3f}'),
             ('energy_rank_rgb_goal', 'energy rank, RGB-only goal', '{:.3f}'),
             ('energy_top1_rgb_goal', 'energy top-1, RGB-only goal', '{:.3f}'),
             ('energy_start', 'mean energy: start vs goal', '{:.4f}'),
             ('energy_true', 'mean energy: true actions', '{:.4f}'),
             ('energy_random', 'mean energy: random actions', '{:.4f}')]
    width = max(len(r[1]) for r in rows) + 2
    header = ' ' * width + ''.join(f'{c:>17}' for c in columns)
    lines = [header, '-' * len(header)]
    for key, label, fmt in rows:
        cells = ''.join(f'{fmt.format(results[c][key]) if key in results[c] else "n/a":>17}'
                        for c in columns)
        lines.append(f'{label:<{width}}{cells}')
    lines.append(f'({report["windows"]} windows from {report["episodes"]} held-out episodes)')
    return '\n'.join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``craik wm-eval``."""
    parser.add_argument('--model', required=True, help='model .safetensors (or training ckpt)')
    parser.add_argument('--blind', help='action-blind model .safetensors (craik train '
                        '--action-blind) for the side-by-side column')
    parser.add_argument('--data', action='append', default=[], metavar='DIR')
    parser.add_argument('--synthetic', type=int, default=0, metavar='N',
                        help='evaluate on N toy episodes (held-out split of the same seeds)')
    parser.add_argument('--split', choices=('heldout', 'all'), default='heldout',
                        help="episodes to use: the training run's held-out split, or all")
    parser.add_argument('--horizons', default='1,2,4,8')
    parser.add_argument('--windows', type=int, default=EvalConfig.max_windows)
    parser.add_argument('--random', type=int, default=EvalConfig.random_sequences,
                        help='random action sequences per start/goal pair')
    parser.add_argument('--json', metavar='FILE', help='write the report here as well')
    parser.add_argument('--no-verify', action='store_true')
    parser.add_argument('--threads', type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """``craik wm-eval``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = EvalConfig(tuple(int(h) for h in args.horizons.split(',')), args.windows,
                            args.random)
        model, meta = load_model(args.model, verify=not args.no_verify)
        blind = load_model(args.blind, verify=not args.no_verify)[0] if args.blind else None
    except ValueError as exc:
        print(f'craik wm-eval: {exc}', file=sys.stderr)
        return 1
    data_config = (data_config_from_json(meta['data_config']) if 'data_config' in meta
                   else DataConfig())
    if bool(args.data) == bool(args.synthetic):
        print('craik wm-eval: give --data DIR or --synthetic N', file=sys.stderr)
        return 2
    if args.synthetic:
        from craik_world_model import synthetic
        s = model.config.image_size
        episodes = synthetic.episodes(args.synthetic, steps=max(24, max(config.horizons) + 4),
                                      width=s, height=s)
    else:
        try:
            episodes = load_episodes(args.data, model.config, data_config)
        except (ValueError, OSError) as exc:
            print(f'craik wm-eval: {exc}', file=sys.stderr)
            return 1
    if args.split == 'heldout':
        episodes = split_episodes(episodes, data_config.holdout_every)[1]
        if not episodes:
            print('craik wm-eval: no held-out episodes (too few episodes); use --split all',
                  file=sys.stderr)
            return 1
    try:
        report = evaluate(episodes, model, blind, config)
    except ValueError as exc:
        print(f'craik wm-eval: {exc}', file=sys.stderr)
        return 1
    report['model'] = str(args.model)
    report['blind'] = str(args.blind) if args.blind else None
    report['split'] = args.split
    print(format_table(report))
    if not args.blind:
        print('(no --blind model given: the action-blind column is missing)')
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + '\n')
    print(text)
    return 0
