"""`craik train-objects`: give a trained world model object slots.

Pushing needs to know where the cubes are and how the fingers move them, and a visual latent
of a 64x64 frame (a cube is ~3 pixels wide) does not hold that well enough to plan with. This
command adds the two object parts of :mod:`craik_world_model.model` to an already trained model
and trains only them, on the simulator's ground truth, leaving every other weight as it was:

1. the **object locator** (keypoints on the RGB image -> table-plane positions) on every frame
   of the episodes and on their goal images (sampled ``goal_image_weight`` times more often:
   a goal image is what the planner reads the goal's object positions from, and in a push
   goal the fingers touch the cube);
2. the **object dynamics** on ``horizon``-step windows: objects rolled open loop from the
   first frame's true positions, the TCP's recorded motion and the actions, against the
   recorded positions at every step.

Both are supervised regressions on small networks, so they train on a 2-core CPU in minutes
(the whole model in hours). Episodes without object positions (robot recordings) are skipped.
Held-out episodes (every ``holdout_every``-th, as in `craik train`) give the figures printed at
the end and written to ``object_training.json``: locator error on frames and goal images, and
the dynamics' error on moved objects after ``horizon`` steps against assuming they stay put.

    craik train-objects --model runs/wm_cpu/model.safetensors --data data/wm --out runs/wm_obj
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
import json
import math
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np
import torch

from craik_world_model.config import (
    POSE_DIMS,
    DataConfig,
    ModelConfig,
    _positive_int,
)
from craik_world_model.data import (
    EpisodeArrays,
    normalise_object_positions,
    split_episodes,
    to_model_resolution,
)
from craik_world_model.model import WorldModel, slots_metres

RESULT_FILE = 'object_training.json'
# Objects that moved less than this over a window count as still (m).
MOVED_M = 0.02


@dataclass(frozen=True)
class ObjectTrainConfig:
    """Optimisation of the object locator and dynamics."""

    object_count: int = 2
    locator_steps: int = 3000
    locator_batch: int = 64
    dynamics_steps: int = 8000
    dynamics_batch: int = 512
    horizon: int = 8             # open-loop steps of a dynamics window
    lr: float = 2e-3
    weight_decay: float = 1e-4
    goal_image_weight: float = 8.0
    log_every: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ('object_count', 'locator_steps', 'locator_batch', 'dynamics_steps',
                     'dynamics_batch', 'horizon', 'log_every'):
            _positive_int(name, getattr(self, name))
        if not 0.0 < self.lr <= 1.0:
            raise ValueError(f'lr must be in (0, 1], got {self.lr}')
        if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
            raise ValueError(f'weight_decay must be >= 0, got {self.weight_decay}')
        if not self.goal_image_weight >= 0.0:
            raise ValueError(f'goal_image_weight must be >= 0, got {self.goal_image_weight}')


def with_object_slots(base: WorldModel, count: int) -> WorldModel:
    """A new model with ``count`` object slots whose other weights are ``base``'s."""
    config = replace(base.config, object_count=count, object_weight=0.0, approach_weight=0.0)
    model = WorldModel(config)
    own = model.state_dict()
    for key, tensor in base.state_dict().items():
        if key not in own or own[key].shape != tensor.shape:
            raise ValueError(f'the base model does not fit {count} object slots at {key} '
                             '(a model trained with other object slots? give one without)')
        own[key] = tensor
    model.load_state_dict(own)
    return model


class LocatorFrames:
    """Frames and goal images with their objects' positions: uint8 RGB ``[F, 3, S, S]``,
    normalised slots ``[F, 2K]``, and which ones are goal images ``[F]``."""

    def __init__(self, episodes: Sequence[EpisodeArrays], config: ModelConfig) -> None:
        k = config.object_count
        rgb, slots, goal = [], [], []
        for e in episodes:
            assert e.objects is not None
            rgb.append(e.rgb)
            slots.append(normalise_object_positions(e.objects[:, :k], config)
                         .reshape(len(e.rgb), 2 * k))
            goal.append(np.zeros(len(e.rgb), dtype=bool))
            if e.goal_rgb is not None and e.goal_objects is not None:
                rgb.append(e.goal_rgb[None])
                slots.append(normalise_object_positions(e.goal_objects[None, :k], config)
                             .reshape(1, 2 * k))
                goal.append(np.ones(1, dtype=bool))
        self.rgb = torch.from_numpy(np.concatenate(rgb)).permute(0, 3, 1, 2).contiguous()
        self.slots = torch.from_numpy(np.concatenate(slots).astype(np.float32))
        self.is_goal = torch.from_numpy(np.concatenate(goal))

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        return self.rgb[idx].float().div_(255.0)


class DynamicsWindows:
    """Windows of ``horizon + 1`` frames: TCP ``[W, H+1, 3]`` (m), normalised slots
    ``[W, H+1, 2K]``, actions ``[W, H, A]``."""

    def __init__(self, episodes: Sequence[EpisodeArrays], config: ModelConfig,
                 horizon: int) -> None:
        k = config.object_count
        tcp, slots, actions = [], [], []
        for e in episodes:
            assert e.objects is not None
            frames = e.steps + 1
            s = normalise_object_positions(e.objects[:, :k], config).reshape(frames, 2 * k)
            for t in range(frames - horizon):
                tcp.append(e.proprio[t:t + horizon + 1, :POSE_DIMS])
                slots.append(s[t:t + horizon + 1])
                actions.append(e.actions[t:t + horizon])
        if not tcp:
            raise ValueError(f'no episode has more than {horizon} steps')
        self.tcp = torch.from_numpy(np.stack(tcp).astype(np.float32))
        self.slots = torch.from_numpy(np.stack(slots).astype(np.float32))
        self.actions = torch.from_numpy(np.stack(actions).astype(np.float32))

    def __len__(self) -> int:
        return int(self.tcp.shape[0])


def _distance_m(a: torch.Tensor, b: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Per-object distances ``[..., K]`` (m) between normalised slots."""
    diff = slots_metres(a, config) - slots_metres(b, config)
    return torch.sqrt((diff * diff).sum(-1) + 1e-10)


def rollout_objects(model: WorldModel, w: DynamicsWindows, idx: torch.Tensor) -> torch.Tensor:
    """Objects of windows ``idx`` rolled open loop from their first frame -> ``[B, H, 2K]``."""
    dynamics = model.predictor.objects
    assert dynamics is not None
    tcp, actions = w.tcp[idx], w.actions[idx]
    objects = w.slots[idx, 0]
    out = []
    for t in range(actions.shape[1]):
        objects = dynamics(objects, tcp[:, t], tcp[:, t + 1], actions[:, t])
        out.append(objects)
    return torch.stack(out, dim=1)


def _fit(module: torch.nn.Module, steps: int, batch_loss: Callable[[torch.Generator],
                                                                   torch.Tensor],
         tc: ObjectTrainConfig, seed: int, what: str, log: Callable[[str], None]) -> None:
    """``steps`` AdamW steps (one-cycle learning rate) of ``module`` on ``batch_loss``."""
    module.train()
    opt = torch.optim.AdamW(module.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, tc.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    t0 = time.monotonic()
    for step in range(1, steps + 1):
        loss = batch_loss(generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if step % tc.log_every == 0 or step == steps:
            log(f'{what} step {step}/{steps}: mean error {loss.item() * 100:.2f} cm '
                f'({time.monotonic() - t0:.0f} s)')
    module.eval()


@torch.no_grad()
def locator_figures(model: WorldModel, frames: LocatorFrames) -> dict[str, float]:
    """Locator error (m) on ``frames``: median and 90th percentile over objects, on camera
    frames and on goal images."""
    locator = model.encoder.locator
    assert locator is not None
    errors = []
    for start in range(0, len(frames), 512):
        idx = torch.arange(start, min(start + 512, len(frames)))
        errors.append(_distance_m(locator(frames.images(idx)), frames.slots[idx], model.config))
    err = torch.cat(errors)                                                # [F, K]
    figures: dict[str, float] = {}
    for name, mask in (('frames', ~frames.is_goal), ('goal_images', frames.is_goal)):
        if mask.any():
            e = err[mask].flatten()
            figures[f'{name}_median_m'] = float(e.median())
            figures[f'{name}_p90_m'] = float(torch.quantile(e, 0.9))
    return figures


@torch.no_grad()
def dynamics_figures(model: WorldModel, w: DynamicsWindows) -> dict[str, float]:
    """After ``horizon`` open-loop steps: mean error (m) on objects that moved more than
    MOVED_M, against assuming they stay where they were; and on still objects."""
    predicted = rollout_objects(model, w, torch.arange(len(w)))[:, -1]     # [W, 2K]
    error = _distance_m(predicted, w.slots[:, -1], model.config).flatten()
    moved = _distance_m(w.slots[:, 0], w.slots[:, -1], model.config).flatten()
    mask = moved > MOVED_M
    figures = {'moved_objects': int(mask.sum()),
               'still_error_mean_m': float(error[~mask].mean()) if (~mask).any() else 0.0}
    if mask.any():
        figures.update(moved_error_mean_m=float(error[mask].mean()),
                       moved_error_median_m=float(error[mask].median()),
                       stay_put_error_mean_m=float(moved[mask].mean()))
    return figures


def train_locator(model: WorldModel, train: LocatorFrames, tc: ObjectTrainConfig,
                  log: Callable[[str], None]) -> None:
    """Fit ``model.encoder.locator`` to the frames' object positions."""
    locator = model.encoder.locator
    assert locator is not None
    weights = torch.where(train.is_goal, tc.goal_image_weight, 1.0)

    def batch_loss(generator: torch.Generator) -> torch.Tensor:
        idx = torch.multinomial(weights, tc.locator_batch, replacement=True, generator=generator)
        return _distance_m(locator(train.images(idx)), train.slots[idx], model.config).mean()

    _fit(locator, tc.locator_steps, batch_loss, tc, tc.seed, 'locator', log)


def train_dynamics(model: WorldModel, train: DynamicsWindows, tc: ObjectTrainConfig,
                   log: Callable[[str], None]) -> None:
    """Fit ``model.predictor.objects`` to the windows' object motion (error over the window)."""
    dynamics = model.predictor.objects
    assert dynamics is not None

    def batch_loss(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(train), (tc.dynamics_batch,), generator=generator)
        predicted = rollout_objects(model, train, idx)                     # [B, H, 2K]
        return _distance_m(predicted, train.slots[idx, 1:], model.config).mean()

    _fit(dynamics, tc.dynamics_steps, batch_loss, tc, tc.seed + 1, 'dynamics', log)


def train_objects(base: WorldModel, episodes: Sequence[EpisodeArrays], tc: ObjectTrainConfig,
                  holdout_every: int = 10, log: Callable[[str], None] = print
                  ) -> tuple[WorldModel, dict[str, Any]]:
    """``base`` with ``tc.object_count`` trained object slots, and the held-out figures."""
    size = base.config.image_size
    usable = [e if e.rgb.shape[1:3] == (size, size) else to_model_resolution(e, base.config)
              for e in episodes
              if e.objects is not None and e.objects.shape[1] >= tc.object_count]
    if not usable:
        raise ValueError(f'no episode has positions for {tc.object_count} object(s) '
                         '(simulator episodes from `craik collect` have them)')
    if len(usable) < len(episodes):
        log(f'{len(episodes) - len(usable)} episode(s) without {tc.object_count} object '
            'positions skipped')
    torch.manual_seed(tc.seed)
    model = with_object_slots(base, tc.object_count)
    model.requires_grad_(False)
    model.eval()
    assert model.encoder.locator is not None and model.predictor.objects is not None
    model.encoder.locator.requires_grad_(True)
    model.predictor.objects.requires_grad_(True)
    train, held = split_episodes(usable, holdout_every)
    held = held or train[:1]
    config = model.config
    too_short = [e.name for e in train if e.steps < tc.horizon]
    if len(too_short) == len(train):
        raise ValueError(f'no training episode has {tc.horizon} steps (horizon)')
    log(f'object slots: {tc.object_count}; {len(train)} training / {len(held)} held-out '
        'episodes')
    train_frames, held_frames = LocatorFrames(train, config), LocatorFrames(held, config)
    log(f'locator: {len(train_frames)} images ({int(train_frames.is_goal.sum())} goal images)')
    train_locator(model, train_frames, tc, log)
    train_windows = DynamicsWindows([e for e in train if e.steps >= tc.horizon], config,
                                    tc.horizon)
    held_long = [e for e in held if e.steps >= tc.horizon] or \
        [e for e in train if e.steps >= tc.horizon][:1]
    held_windows = DynamicsWindows(held_long, config, tc.horizon)
    log(f'dynamics: {len(train_windows)} windows of {tc.horizon} steps')
    train_dynamics(model, train_windows, tc, log)
    model.requires_grad_(False)
    figures = {'locator': locator_figures(model, held_frames),
               'dynamics': dynamics_figures(model, held_windows),
               'held_out_episodes': len(held), 'training_episodes': len(train),
               'config': asdict(tc)}
    return model, figures


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``craik train-objects``."""
    d = ObjectTrainConfig()
    parser.add_argument('--model', required=True,
                        help='trained model without object slots (.safetensors)')
    parser.add_argument('--data', nargs='+', required=True,
                        help='episode datasets (directories with index.json, or their parent)')
    parser.add_argument('--out', required=True, help='output directory (model.safetensors)')
    parser.add_argument('--object-slots', type=int, default=d.object_count, metavar='K',
                        help='objects to track: the first K cubes of the simulator episodes')
    parser.add_argument('--locator-steps', type=int, default=d.locator_steps)
    parser.add_argument('--dynamics-steps', type=int, default=d.dynamics_steps)
    parser.add_argument('--horizon', type=int, default=d.horizon,
                        help='open-loop steps of a dynamics training window')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    parser.add_argument('--seed', type=int, default=d.seed)


def run(args: argparse.Namespace) -> int:
    """``craik train-objects``."""
    from craik_world_model.checkpoint import (
        CheckpointError,
        load_model,
        save_model,
        write_manifest,
    )
    from craik_world_model.data import EpisodeLoadError, load_episodes

    try:
        tc = ObjectTrainConfig(object_count=args.object_slots, locator_steps=args.locator_steps,
                               dynamics_steps=args.dynamics_steps, horizon=args.horizon,
                               seed=args.seed)
        if args.threads < 0:
            raise ValueError(f'--threads must be >= 0, got {args.threads}')
    except ValueError as exc:
        print(f'craik train-objects: {exc}', file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        base, meta = load_model(args.model)
    except (CheckpointError, OSError) as exc:
        print(f'craik train-objects: cannot load {args.model}: {exc}', file=sys.stderr)
        return 1
    if base.config.object_count:
        print(f'craik train-objects: {args.model} already has {base.config.object_count} object '
              'slot(s); give the model without them', file=sys.stderr)
        return 2

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        episodes = load_episodes(args.data, base.config, DataConfig(), log=log)
        model, figures = train_objects(base, episodes, tc, DataConfig().holdout_every, log)
    except (EpisodeLoadError, ValueError) as exc:
        print(f'craik train-objects: {exc}', file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures['base_model'] = {'path': str(args.model), 'sha256': meta.get('sha256')}
    save_model(out / 'model.safetensors', model,
               {'object_training': json.dumps(figures, sort_keys=True)}, update_manifest=False)
    (out / RESULT_FILE).write_text(json.dumps(figures, indent=2) + '\n')
    write_manifest(out, ['model.safetensors', RESULT_FILE])
    loc, dyn = figures['locator'], figures['dynamics']
    print(f"held-out locator error: frames {loc.get('frames_median_m', float('nan')) * 100:.1f} "
          f"cm median ({loc.get('frames_p90_m', float('nan')) * 100:.1f} p90), goal images "
          f"{loc.get('goal_images_median_m', float('nan')) * 100:.1f} cm median "
          f"({loc.get('goal_images_p90_m', float('nan')) * 100:.1f} p90)")
    if 'moved_error_mean_m' in dyn:
        print(f"held-out dynamics, {tc.horizon} steps open loop: moved objects off by "
              f"{dyn['moved_error_mean_m'] * 100:.1f} cm (staying put: "
              f"{dyn['stay_put_error_mean_m'] * 100:.1f} cm, {dyn['moved_objects']} objects), "
              f"still objects {dyn['still_error_mean_m'] * 100:.2f} cm")
    print(f'wrote {out / "model.safetensors"} and {out / RESULT_FILE}')
    return 0
