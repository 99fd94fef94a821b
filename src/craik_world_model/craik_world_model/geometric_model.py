"""`craik wm-geometry`: a world model whose object slots come from depth geometry.

    craik collect --task push --episodes 240 --seed 700000 --vary-all --out data/geo/push_all
    craik collect --task reach --episodes 160 --seed 800000 --vary-all --out data/geo/reach_all
    craik wm-geometry --checkpoint models/craik_wm_cpu/model.safetensors \\
        --data data/geo/push_all data/geo/reach_all --out models/craik_wm_geo

Takes a trained model with object slots (its predictor, decoder, pose read-out and learned
object dynamics) and makes its slots geometric: ``max_objects`` class-agnostic slots with a
presence flag each, filled at run time by :mod:`craik_world_model.object_state` from the aligned
depth and the calibrated camera. The colour-keyed locator is dropped. The object dynamics MLP is
shared by the slots and sees only where the TCP is relative to an object and how it moves, so it
carries over to any number of slots and to objects of any colour. Then the model is exported
like ``craik wm-export`` does (ONNX graphs, weights, manifest).

With ``--data``, the arm's dynamics are learned again without the image: a small MLP of the
proprioception and the action (``ModelConfig.proprio_dynamics``), trained on open-loop windows of
the recorded episodes (8 steps, a held-out split of every 5th episode). The inherited predictor
rolls the TCP forward from the visual latent too, so under lighting or a camera the training set
never showed, the imagined arm drifted; the held-out figures (8-step TCP error of the new
dynamics, of the inherited predictor on the recorded frames and of adding up the commanded
displacements) go to ``dynamics.json`` in the export and to its metadata.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import Any

import numpy as np
import torch

from craik_world_model.checkpoint import load_model, sha256_file
from craik_world_model.config import override
from craik_world_model.data import EpisodeArrays
from craik_world_model.model import WorldModel


def geometric_model(model: WorldModel, slots: int, **energy: float) -> WorldModel:
    """A copy of ``model`` (which must have learned object dynamics) with ``slots`` geometric
    object slots; ``energy``: ModelConfig weights to set (pose_weight, visual_weight, ...)."""
    c = model.config
    if c.object_count == 0 or model.predictor.objects is None:
        raise ValueError('the model has no object dynamics to carry over; add object slots '
                         'first (`craik train-objects`)')
    config = override(c, object_source='geometry', object_count=slots, **energy)
    out = WorldModel(config)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith('encoder.locator.')}
    out.load_state_dict(state, strict=True)
    return out.eval()


def _episodes(dirs: list[Path], horizon: int) -> tuple[list[EpisodeArrays], int]:
    """The episodes of ``dirs`` with at least ``horizon`` steps (checksums verified; an
    unreadable one is an error) and their number of steps."""
    from craik_world_model.episode_io import ChunkError, iter_episodes

    def fail(error: ChunkError) -> None:
        raise ValueError(f'{error.path}: {error.message}')

    out = [e for d in dirs for e in iter_episodes(Path(d), fail)
           if len(e.actions) >= horizon]
    return out, sum(len(e.actions) for e in out)


def _windows(episodes: list[EpisodeArrays], horizon: int
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    """All ``horizon``-step windows: start proprioception ``[W, P]``, actions ``[W, H, A]``,
    target proprioception ``[W, H, P]`` (SI units) and (episode, start) of each."""
    starts, acts, targets, where = [], [], [], []
    for e_i, ep in enumerate(episodes):
        for t in range(len(ep.actions) - horizon + 1):
            starts.append(ep.proprio[t])
            acts.append(ep.actions[t:t + horizon])
            targets.append(ep.proprio[t + 1:t + horizon + 1])
            where.append((e_i, t))
    return (torch.from_numpy(np.stack(starts)), torch.from_numpy(np.stack(acts)),
            torch.from_numpy(np.stack(targets)), where)


def train_proprio_dynamics(model: WorldModel, dirs: list[Path], steps: int = 3000,
                           horizon: int = 8, seed: int = 0, say: Any = print
                           ) -> dict[str, Any]:
    """Train ``model.predictor.proprio`` on the episodes in ``dirs``; returns held-out figures
    (8-step open-loop TCP error, m) of it, of the inherited visual predictor and of summing the
    commanded displacements."""
    from craik_world_model.model import ProprioDynamics
    from craik_world_model.observation import depth_frames_to_model, rgb_frames_to_model

    c = model.config
    normalise = model.encoder.normalise_proprio
    episodes, transitions = _episodes(dirs, horizon)
    if len(episodes) < 5:
        raise ValueError(f'need at least 5 episodes of >= {horizon} steps in {dirs}, '
                         f'found {len(episodes)}')
    held_out = [e for i, e in enumerate(episodes) if i % 5 == 4]
    train = [e for i, e in enumerate(episodes) if i % 5 != 4]
    p0_si, actions, targets_si, _ = _windows(train, horizon)
    p0, targets = normalise(p0_si), normalise(targets_si)
    torch.manual_seed(seed)
    dynamics = ProprioDynamics(c)
    optimiser = torch.optim.Adam(dynamics.parameters(), lr=3e-4)
    # The TCP is what the energy compares; the gripper (held by the planner) counts little.
    weight = torch.full((c.proprio_dim,), 0.05)
    weight[:3] = 1.0
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    scale = model.predictor.action_scale
    generator = torch.Generator().manual_seed(seed)
    say(f'[wm-geometry] proprio dynamics: {len(train)} training / {len(held_out)} held-out '
        f'episodes ({transitions} steps), {steps} steps of {horizon}-step windows')
    for step in range(steps):
        batch = torch.randint(0, len(p0), (256,), generator=generator)
        p = p0[batch]
        loss = torch.zeros(())
        for t in range(horizon):
            p = dynamics(p, actions[batch, t] / scale)
            loss = loss + (weight * (p - targets[batch, t]) ** 2).mean()
        optimiser.zero_grad()
        (loss / horizon).backward()
        optimiser.step()
        schedule.step()
        if step % 500 == 0 or step == steps - 1:
            say(f'[wm-geometry]   step {step}: loss {float(loss.detach()) / horizon:.2e}')
    dynamics.eval()

    # Held-out: 8-step open-loop TCP error in metres.
    hp0_si, hacts, htargets_si, where = _windows(held_out, horizon)
    hp0, htargets = normalise(hp0_si), normalise(htargets_si)
    tcp_scale = torch.tensor(c.proprio_scale[:3])

    def tcp_error(predicted: torch.Tensor) -> np.ndarray:           # [W, H, P] normalised
        return ((predicted[..., :3] - htargets[..., :3]) * tcp_scale).norm(dim=-1).numpy()

    with torch.no_grad():
        p, rolled = hp0, []
        for t in range(horizon):
            p = dynamics(p, hacts[:, t] / scale)
            rolled.append(p)
        learned = tcp_error(torch.stack(rolled, 1))
        summed = hp0[:, None, :3] + torch.cumsum(hacts[..., :3], 1) / tcp_scale
        naive = tcp_error(torch.cat([summed, htargets[..., 3:]], -1))
        # The inherited predictor, from the recorded frames (64x64, the model's input).
        rgb = np.stack([held_out[e].rgb[t] for e, t in where])
        depth = np.stack([held_out[e].depth[t] for e, t in where])
        r = torch.from_numpy(rgb_frames_to_model(rgb, c))
        d = torch.from_numpy(depth_frames_to_model(depth, c, units='m'))
        z = model.encode(r, d, hp0_si)
        visual = []
        for t in range(horizon):
            z = model.predictor(z, hacts[:, t])
            visual.append(z[:, c.latent_dim:c.latent_dim + c.proprio_dim])
        inherited = tcp_error(torch.stack(visual, 1))
    kept = bool(np.median(learned[:, -1]) < np.median(naive[:, -1]))
    if not kept:
        # The correction did not beat the commanded displacement on the held-out episodes
        # (the step's unfinished motion is not in the proprioception): keep it at zero.
        last = dynamics.mlp[-1]
        assert isinstance(last, torch.nn.Linear)
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
        say('[wm-geometry] the learned correction is worse than the commanded displacement on '
            'the held-out episodes: it is kept at zero')
    model.predictor.proprio = dynamics
    model.config = override(c, proprio_dynamics=True)
    for part in (model.encoder, model.predictor, model.decoder):
        part.config = model.config

    def figures(errors: np.ndarray) -> dict[str, float]:
        final = errors[:, -1]
        return {'median_m': float(np.median(final)), 'p90_m': float(np.percentile(final, 90)),
                'mean_over_steps_m': float(errors.mean())}

    errors_m = {'proprio_dynamics': figures(learned),
                'inherited_visual_predictor': figures(inherited),
                'summed_commands': figures(naive),
                'shipped': figures(learned if kept else naive)}
    report: dict[str, Any] = {'horizon': horizon, 'held_out_windows': len(hp0),
              'train_episodes': len(train), 'held_out_episodes': len(held_out),
              'data': [str(d) for d in dirs], 'steps': steps,
              'learned_correction_kept': kept,
              'tcp_error_after_horizon': errors_m}
    e = errors_m
    say(f"[wm-geometry] held-out TCP error after {horizon} steps (median): proprio dynamics "
        f"{e['proprio_dynamics']['median_m'] * 100:.2f} cm, inherited visual predictor "
        f"{e['inherited_visual_predictor']['median_m'] * 100:.2f} cm, summed commands "
        f"{e['summed_commands']['median_m'] * 100:.2f} cm; shipped "
        f"{e['shipped']['median_m'] * 100:.2f} cm")
    return report


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``craik wm-geometry``."""
    parser.add_argument('--checkpoint', required=True, type=Path,
                        help='trained model with object slots (model.safetensors)')
    parser.add_argument('--out', required=True, type=Path, help='export directory')
    parser.add_argument('--slots', type=int, default=6, help='object slots (1..8)')
    parser.add_argument('--visual-weight', type=float, default=0.0)
    parser.add_argument('--pose-weight', type=float, default=1.0)
    parser.add_argument('--object-weight', type=float, default=2.0)
    parser.add_argument('--approach-weight', type=float, default=1.0)
    parser.add_argument('--horizons', default='4,8,12')
    parser.add_argument('--data', nargs='*', type=Path, default=[],
                        help='episode directories (craik collect) to learn the arm dynamics '
                        'from without the image (recommended; see the module docstring)')
    parser.add_argument('--dynamics-steps', type=int, default=3000)
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')


def run(args: argparse.Namespace) -> int:
    """``craik wm-geometry``."""
    from craik_world_model.export import export_model

    if args.threads:
        torch.set_num_threads(args.threads)
    dynamics: dict[str, Any] | None = None
    try:
        horizons = tuple(int(h) for h in str(args.horizons).split(',') if h.strip())
        base, meta = load_model(args.checkpoint)
        model = geometric_model(base, args.slots, visual_weight=args.visual_weight,
                                pose_weight=args.pose_weight, object_weight=args.object_weight,
                                approach_weight=args.approach_weight)
        if args.data:
            dynamics = train_proprio_dynamics(model, list(args.data), steps=args.dynamics_steps)
    except (OSError, ValueError) as exc:
        print(f'craik wm-geometry: {exc}', file=sys.stderr)
        return 1
    source = {'checkpoint': str(args.checkpoint),
              'checkpoint_sha256': meta.get('sha256') or sha256_file(args.checkpoint),
              'command': ' '.join(['craik', 'wm-geometry', *sys.argv[2:]])}
    for key in ('preset', 'train_config', 'data_config', 'steps', 'data', 'metrics',
                'train_episodes', 'val_episodes', 'object_training'):
        if key in meta:
            source[f'base_{key}'] = meta[key]
    if dynamics is not None:
        source['proprio_dynamics'] = json.dumps(dynamics)
    export_model(model, args.out, horizons, source)
    if dynamics is not None:
        (Path(args.out) / 'dynamics.json').write_text(json.dumps(dynamics, indent=2) + '\n')
    print(f'craik wm-geometry: wrote {args.out} ({args.slots} geometric slots, energy: '
          f'visual {args.visual_weight}, pose {args.pose_weight}, object {args.object_weight}, '
          f'approach {args.approach_weight})')
    return 0
