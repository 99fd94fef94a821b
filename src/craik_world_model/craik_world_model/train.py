"""Training the world model: ``craik train`` (single process, or DDP under ``torchrun``).

One step takes a batch of windows of H + 1 frames and their H actions and optimises:

- **open-loop latent prediction** (V-JEPA 2-AC, DINO-WM): the first frame is encoded, rolled
  forward through all H actions without ever seeing the later frames, and each predicted latent
  is pulled (L1) towards the encoding of the true frame by a stop-gradient EMA copy of the
  encoder. Training on the model's own rollouts is what keeps errors from compounding at planning
  time; it also makes the latent distance to an encoded goal image a usable energy.
- **teacher-forced one-step prediction** from every encoded frame (the same targets).
- **proprioception**: the predicted proprioceptive part vs the measured one (MSE).
- **reconstruction** (keeps the latent informative, which prevents collapse): decode(encode(x0))
  vs x0, RGB (MSE) and depth (masked L1, RoboScape's depth branch), and decoded *predicted*
  frames at ``decode_steps`` rollout steps (always including the last) vs the true frames.
- **RGB-only goals**: encode(rgb, no depth) vs the target latent with depth, so a goal given as
  an RGB image lands where the full observation would (plus depth dropout on the context frame).
- **latent scale**: a hinge keeps the mean latent motion over a window (frame 0 to H, online
  encoder) at least ``min_latent_motion``. Without it the latent's temporal variation shrinks
  (the decoder amplifies it back; the latent losses like it small) until the energy is a
  difference of ~1e-4: badly ranked, and lost in FP16.

Checkpoints are safetensors (resumable: model, EMA encoder, optimiser, step) under
``OUT/checkpoints``; the final model is ``OUT/model.safetensors``; ``OUT/train_log.jsonl`` has
the training and validation figures. Under ``torchrun --nproc_per_node N`` each process trains on
its own share of the batch and gradients are averaged with DistributedDataParallel (gloo on CPU,
nccl on CUDA); rank 0 validates and writes checkpoints.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import copy
from dataclasses import dataclass, replace
import hashlib
import json
import math
import os
from pathlib import Path
import shlex
import sys
import time
from typing import Any

import torch
from torch import nn
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812

from craik_world_model.checkpoint import (
    load_training_state,
    save_model,
    save_training_state,
    write_manifest,
)
from craik_world_model.config import (
    POSE_DIMS,
    PRESETS,
    DataConfig,
    ModelConfig,
    Preset,
    TrainConfig,
    get_preset,
    to_json,
)
from craik_world_model.data import (
    EpisodeArrays,
    WindowBatch,
    WindowDataset,
    load_episodes,
    split_episodes,
)
from craik_world_model.model import RGBDEncoder, WorldModel, count_parameters

LOSS_NAMES = ('latent', 'teacher', 'proprio', 'recon_rgb', 'recon_depth', 'pred_rgb',
              'pred_depth', 'rgb_only', 'motion', 'probe', 'object')


def masked_depth_l1(pred: torch.Tensor, target: torch.Tensor, depth_max_m: float) -> torch.Tensor:
    """Mean |pred - target| / depth_max over pixels with a return (target > 0)."""
    valid = (target > 0).to(pred.dtype)
    return ((pred - target).abs() * valid).sum() / valid.sum().clamp_min(1.0) / depth_max_m


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [0, 1]: ``[B, C, S, S] -> [B]``."""
    mse = ((pred - target) ** 2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


class Objective(nn.Module):
    """All training losses of one batch (the module DDP wraps)."""

    def __init__(self, model: WorldModel, config: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor, proprio: torch.Tensor,
                actions: torch.Tensor, target: torch.Tensor, depth_keep: torch.Tensor,
                decode_idx: torch.Tensor, rgb_only_frame: int, objects: torch.Tensor,
                objects_known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # rgb [B, T, 3, S, S]; depth [B, T, 1, S, S]; proprio [B, T, P]; actions [B, H, A];
        # target [B, T, D] (EMA encoder, no grad); depth_keep [B]; decode_idx [K] in 0..H-1;
        # objects [B, T, 2K] normalised positions; objects_known [B] (1: positions are real).
        c, mc = self.config, self.model.config
        dv = mc.latent_dim
        b, t = rgb.shape[:2]
        h = t - 1
        # Frame 0 (the context; its depth sometimes hidden) and frame H, in one encoder pass.
        pair = self.model.encode(
            torch.cat([rgb[:, 0], rgb[:, -1]]),
            torch.cat([depth[:, 0] * depth_keep.view(b, 1, 1, 1), depth[:, -1]]),
            torch.cat([proprio[:, 0], proprio[:, -1]]))                        # [2B, D]
        z0, z_last = pair[:b], pair[b:]                                        # [B, D] each
        zs = self.model.rollout(z0, actions)                                   # [B, H, D]
        # How far the visual latent moves over a window. Reconstruction does not care about its
        # scale and the latent losses would rather it were 0, so without a floor it shrinks
        # until energies are differences of 1e-4 (useless in FP16, and poorly ranked).
        motion = (z_last[:, :dv] - z0[:, :dv]).abs().mean()
        spread = F.relu(c.min_latent_motion - motion)
        # The visual latent must show where the arm is (linear read-out of the proprioception).
        probe = ((self.model.probe(pair[:, :dv])[:, :POSE_DIMS]
                  - pair[:, dv:dv + POSE_DIMS].detach()) ** 2).mean()
        # Optionally, latent errors relative to how far the target latents move within the
        # windows (no gradient through the scale), so that shrinking the latent gains nothing.
        if c.relative_latent_loss:
            move = (target[:, 1:, :dv] - target[:, :1, :dv]).abs().mean().clamp_min(1e-6)
            step = (target[:, 1:, :dv] - target[:, :-1, :dv]).abs().mean().clamp_min(1e-6)
        else:
            move = step = torch.ones((), device=rgb.device)
        latent = (zs[..., :dv] - target[:, 1:, :dv]).abs().mean() / move
        prop = ((zs[..., dv:] - target[:, 1:, dv:]) ** 2).mean()
        z_tf = self.model.predictor(target[:, :-1].reshape(b * h, -1),
                                    actions.reshape(b * h, -1)).view(b, h, -1)  # [B, H, D]
        teacher = (z_tf[..., :dv] - target[:, 1:, :dv]).abs().mean() / step + (
            (z_tf[..., dv:] - target[:, 1:, dv:]) ** 2).mean()
        # One decoder pass for the reconstruction of x0 and the decoded rollout steps.
        k = decode_idx.numel()
        z_dec = torch.cat([z0, zs[:, decode_idx].reshape(b * k, -1)])          # [B(1+K), D]
        rgb_hat, depth_hat = self.model.decode(z_dec)
        frames = decode_idx + 1
        rgb_true_pred = rgb[:, frames].reshape(b * k, *rgb.shape[2:])
        depth_true_pred = depth[:, frames].reshape(b * k, *depth.shape[2:])
        recon_rgb = F.mse_loss(rgb_hat[:b], rgb[:, 0])
        recon_depth = masked_depth_l1(depth_hat[:b], depth[:, 0], mc.depth_max_m)
        pred_rgb = F.mse_loss(rgb_hat[b:], rgb_true_pred)
        pred_depth = masked_depth_l1(depth_hat[b:], depth_true_pred, mc.depth_max_m)
        z_rgb = self.model.encode(rgb[:, rgb_only_frame], torch.zeros_like(depth[:, 0]),
                                  proprio[:, rgb_only_frame])
        rgb_only = (z_rgb[:, :dv] - target[:, rgb_only_frame, :dv]).abs().mean() / move
        # Object slots: read from the encoded frames (the encoder must see the objects) and
        # carried by the open-loop rollout (the predictor must move them when the arm pushes).
        # Windows without ground truth (robot recordings) contribute nothing.
        obj = mc.object_slice
        if mc.object_count:
            known = objects_known.view(b, 1, 1)
            encoded = torch.stack([z0[:, obj], z_last[:, obj]], dim=1)          # [B, 2, 2K]
            truth = torch.stack([objects[:, 0], objects[:, -1]], dim=1)         # [B, 2, 2K]
            object_loss = ((((encoded - truth) ** 2) * known).sum()
                           + (((zs[..., obj] - objects[:, 1:]) ** 2) * known).sum()) / (
                (known.sum() * (2 + h) * mc.object_dims).clamp_min(1.0))
        else:
            object_loss = torch.zeros((), device=rgb.device)
        total = (c.w_latent * latent + c.w_teacher * teacher + c.w_proprio * prop
                 + c.w_recon * (recon_rgb + c.w_depth * recon_depth)
                 + c.w_pred_rgb * pred_rgb + c.w_pred_depth * c.w_depth * pred_depth
                 + c.w_rgb_only * rgb_only + c.w_motion * spread + c.w_probe * probe
                 + c.w_object * object_loss)
        parts = torch.stack([latent, teacher, prop, recon_rgb, recon_depth, pred_rgb,
                             pred_depth, rgb_only, motion, probe, object_loss]).detach()
        return total, parts


@torch.no_grad()
def encode_targets(encoder: RGBDEncoder, batch: WindowBatch) -> torch.Tensor:
    """EMA-encoder latents of every frame of the windows: ``[B, T, D]``."""
    b, t = batch.rgb.shape[:2]
    z = encoder(batch.rgb.flatten(0, 1), batch.depth.flatten(0, 1), batch.proprio.flatten(0, 1))
    return z.view(b, t, -1)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, decay: float) -> None:
    """target <- decay * target + (1 - decay) * online (parameters only)."""
    for p_t, p_o in zip(target.parameters(), online.parameters(), strict=True):
        p_t.lerp_(p_o, 1.0 - decay)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay from lr to min_lr over the remaining steps."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def random_choices(config: TrainConfig, batch_size: int, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-step randomness: depth kept per sample [B], decoded steps [K], RGB-only frame."""
    h = config.horizon
    depth_keep = (torch.rand(batch_size, generator=generator) >= config.depth_dropout).float()
    k = min(config.decode_steps, h)
    others = torch.randperm(h - 1, generator=generator)[:k - 1] if h > 1 else torch.empty(0)
    decode_idx = torch.cat([others.long(), torch.tensor([h - 1])]).sort().values
    frame = int(torch.randint(h + 1, (1,), generator=generator))
    return depth_keep, decode_idx, frame


def validation_windows(dataset: WindowDataset, count: int) -> torch.Tensor:
    """Evenly spaced window indices (the same every time)."""
    n = min(count, len(dataset))
    return torch.linspace(0, len(dataset) - 1, n).round().long().unique()


@torch.no_grad()
def validate(model: WorldModel, target_encoder: RGBDEncoder, dataset: WindowDataset,
             config: TrainConfig, count: int, device: torch.device, batch_size: int = 64
             ) -> dict[str, float]:
    """Loss parts and open-loop PSNR (dB) at the last step on fixed held-out windows."""
    objective = Objective(model, config)
    was_training = model.training
    model.eval()
    idx = validation_windows(dataset, count)
    sums = torch.zeros(len(LOSS_NAMES))
    psnr_sum, n_total = 0.0, 0
    h = dataset.horizon
    for start in range(0, idx.numel(), batch_size):
        batch = dataset.batch(idx[start:start + batch_size]).to(device)
        b = batch.rgb.shape[0]
        target = encode_targets(target_encoder, batch)
        _, parts = objective(batch.rgb, batch.depth, batch.proprio, batch.actions, target,
                             torch.ones(b, device=device), torch.tensor([h - 1], device=device),
                             0, batch.objects, batch.objects_known)
        sums += parts.cpu() * b
        z0 = model.encode(batch.rgb[:, 0], batch.depth[:, 0], batch.proprio[:, 0])
        rgb_hat, _ = model.decode(model.rollout(z0, batch.actions)[:, -1])
        psnr_sum += float(psnr(rgb_hat, batch.rgb[:, -1]).sum())
        n_total += b
    model.train(was_training)
    out = {f'val_{name}': float(v) / n_total for name, v in zip(LOSS_NAMES, sums, strict=True)}
    out[f'val_psnr_h{h}'] = psnr_sum / n_total
    return out


def parameter_checksum(module: nn.Module) -> str:
    """sha256 over the bytes of every parameter (identical models have identical sums)."""
    digest = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(p.detach().to('cpu').contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class DistInfo:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun set up (env RANK / WORLD_SIZE), if any."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo')
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get('LOCAL_RANK', 0)))


@dataclass
class TrainResult:
    """What a run produced."""

    model_path: Path
    checkpoint_path: Path
    step: int
    metrics: dict[str, float]
    parameter_checksum: str


def train(preset: Preset, train_episodes: list[EpisodeArrays],
          val_episodes: list[EpisodeArrays], out_dir: str | os.PathLike[str],
          resume: bool = False, device: str = 'cpu', progress: bool = True,
          log: Callable[[str], None] = print, metadata: dict[str, str] | None = None,
          stop_after: int | None = None) -> TrainResult:
    """Train (or resume) a model on episodes; see the module docstring for the objective.

    ``stop_after``: leave after this many steps of this session (with a checkpoint), e.g. to
    split a long run into sessions; ``resume=True`` continues it exactly.
    """
    out = Path(out_dir)
    tc, mc = preset.train, preset.model
    dev = torch.device(device)
    info = init_distributed(dev)
    if tc.batch_size % info.world_size:
        raise ValueError(f'batch_size {tc.batch_size} is not divisible by the {info.world_size} '
                         'processes')
    if dev.type == 'cuda':
        dev = torch.device('cuda', info.local_rank)
        torch.cuda.set_device(dev)
    per_rank = tc.batch_size // info.world_size
    torch.manual_seed(tc.seed)
    train_ds = WindowDataset(train_episodes, mc, tc.horizon, augment=preset.data.augment)
    val_ds = WindowDataset(val_episodes or train_episodes[:1], mc, tc.horizon)
    model = WorldModel(mc).to(dev)
    objective: nn.Module = Objective(model, tc)
    if info.enabled:
        # DDP broadcasts rank 0's initial parameters, so every rank starts identical.
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[dev.index] if dev.type == 'cuda' else None)
    target_encoder = copy.deepcopy(model.encoder).requires_grad_(False)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith('.bias') else decay).append(p)
    optimizer = torch.optim.AdamW([{'params': decay, 'weight_decay': tc.weight_decay},
                                   {'params': no_decay, 'weight_decay': 0.0}], lr=tc.lr)
    ckpt_dir = out / 'checkpoints'
    ckpt_path = ckpt_dir / 'last.safetensors'
    start = 0
    extra: dict[str, torch.Tensor] = {}
    if resume and ckpt_path.exists():
        start, _, extra = load_training_state(ckpt_path, model, target_encoder, optimizer)
        if info.is_main:
            log(f'resumed from {ckpt_path} at step {start}')
    elif resume and info.is_main:
        log(f'no checkpoint at {ckpt_path}; starting from scratch')
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        log(f'training {preset.name}: {count_parameters(model):,} parameters, '
            f'{len(train_ds)} train windows ({len(train_episodes)} episodes), {len(val_ds)} '
            f'validation windows ({len(val_episodes)} episodes), {info.world_size} process(es), '
            f'batch {tc.batch_size}, horizon {tc.horizon}, steps {start}..{tc.steps}')
    generator = torch.Generator().manual_seed(tc.seed * 1_000_003 + info.rank * 7919 + start)
    if 'data_generator' in extra and not info.enabled:
        # Single process: continue the exact sample sequence (a resumed run equals an
        # uninterrupted one). With several ranks each re-seeds from (seed, rank, step).
        generator.set_state(extra['data_generator'])
    log_file = out / 'train_log.jsonl'
    bar = None
    if info.is_main and progress:
        from tqdm import tqdm
        bar = tqdm(total=tc.steps, initial=start, desc='craik train', unit='step',
                   dynamic_ncols=True, file=sys.stderr)
    running = torch.zeros(len(LOSS_NAMES))
    running_n = 0
    metrics: dict[str, float] = {}
    t_last = time.perf_counter()
    model.train()
    end = tc.steps if stop_after is None else min(tc.steps, start + stop_after)
    for step in range(start, end):
        lr = learning_rate(step, tc)
        for group in optimizer.param_groups:
            group['lr'] = lr
        batch = train_ds.sample(per_rank, generator).to(dev)
        depth_keep, decode_idx, frame = random_choices(tc, per_rank, generator)
        target = encode_targets(target_encoder, batch)
        loss, parts = objective(batch.rgb, batch.depth, batch.proprio, batch.actions, target,
                                depth_keep.to(dev), decode_idx.to(dev), frame, batch.objects,
                                batch.objects_known)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Gradients are already averaged across ranks here, so every rank sees the same norm.
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip))
        if not math.isfinite(grad_norm):
            raise FloatingPointError(f'non-finite gradient at step {step} (loss '
                                     f'{float(loss):.4g}); lower the learning rate')
        optimizer.step()
        ema_update(target_encoder, model.encoder, tc.ema_decay)
        running += parts.cpu()
        running_n += 1
        done = step + 1
        if bar is not None:
            bar.update(1)
        if info.is_main and (done % tc.log_every == 0 or done == tc.steps):
            now = time.perf_counter()
            entry = {'step': done, 'lr': lr, 'grad_norm': grad_norm,
                     'sec_per_step': (now - t_last) / running_n,
                     **{n: float(v) / running_n for n, v in zip(LOSS_NAMES, running,
                                                                   strict=True)}}
            t_last = now
            running.zero_()
            running_n = 0
            _append_jsonl(log_file, entry)
            if bar is not None:
                bar.set_postfix(latent=f'{entry["latent"]:.3f}', rgb=f'{entry["pred_rgb"]:.4f}')
            else:
                log(f'step {done}: latent {entry["latent"]:.4f} pred_rgb '
                    f'{entry["pred_rgb"]:.5f} pred_depth {entry["pred_depth"]:.4f} object '
                    f'{entry["object"]:.4f}')
        if done % tc.val_every == 0 or done == tc.steps:
            if info.is_main:
                metrics = validate(model, target_encoder, val_ds, tc, tc.val_windows, dev)
                _append_jsonl(log_file, {'step': done, **metrics})
                msg = (f'validation @ {done}: latent {metrics["val_latent"]:.4f}, PSNR@'
                       f'{tc.horizon} {metrics[f"val_psnr_h{tc.horizon}"]:.2f} dB, depth '
                       f'{metrics["val_pred_depth"]:.4f}')
                if bar is not None:
                    bar.write(msg)
                else:
                    log(msg)
            _barrier(info)
        if done % tc.checkpoint_every == 0 or done in (tc.steps, end):
            if info.is_main:
                save_training_state(ckpt_path, model, target_encoder, optimizer, done,
                                    {'preset': preset.name, 'train_config': to_json(tc),
                                     'data_config': to_json(preset.data)},
                                    {'data_generator': generator.get_state()})
            _barrier(info)
    if bar is not None:
        bar.close()
    checksum = parameter_checksum(model)
    if end < tc.steps:
        if info.is_main:
            log(f'stopped after step {end} of {tc.steps}; continue with --resume')
        _barrier(info)
        return TrainResult(out / 'model.safetensors', ckpt_path, end, metrics, checksum)
    if info.enabled:
        rank_dir = out / 'ranks'
        rank_dir.mkdir(parents=True, exist_ok=True)
        (rank_dir / f'rank{info.rank}.json').write_text(json.dumps(
            {'rank': info.rank, 'world_size': info.world_size, 'step': tc.steps,
             'parameter_checksum': checksum,
             'target_checksum': parameter_checksum(target_encoder)}))
    model_path = out / 'model.safetensors'
    if info.is_main:
        meta = {'preset': preset.name, 'train_config': to_json(tc),
                'data_config': to_json(preset.data), 'steps': str(tc.steps),
                'train_episodes': str(len(train_episodes)),
                'val_episodes': str(len(val_episodes)),
                'metrics': json.dumps(metrics), 'parameter_checksum': checksum}
        meta.update(metadata or {})
        save_model(model_path, model, meta)
        write_manifest(out, [model_path.name])
        (out / 'train_summary.json').write_text(json.dumps(
            {'model': str(model_path), 'steps': tc.steps, 'metrics': metrics,
             'parameters': count_parameters(model), 'world_size': info.world_size},
            indent=2) + '\n')
        log(f'wrote {model_path}')
    _barrier(info)
    return TrainResult(model_path, ckpt_path, tc.steps, metrics, checksum)


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def _append_jsonl(path: Path, entry: dict[str, Any]) -> None:
    with open(path, 'a') as f:
        f.write(json.dumps(entry) + '\n')


# ---------------------------------------------------------------------------------------------
# `craik train`


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``craik train``."""
    parser.add_argument('--data', action='append', default=[], metavar='DIR',
                        help='episode directory from `craik collect` or `craik wm-convert` '
                        '(repeatable)')
    parser.add_argument('--synthetic', type=int, default=0, metavar='N',
                        help='train on N toy episodes instead (smoke tests; not a robot model)')
    parser.add_argument('--out', required=True, help='run directory (checkpoints, logs, model)')
    parser.add_argument('--preset', default='cpu', choices=sorted(PRESETS))
    parser.add_argument('--steps', type=int, help='override the preset')
    parser.add_argument('--batch-size', type=int, help='global batch (split across processes)')
    parser.add_argument('--horizon', type=int, help='open-loop training horizon')
    parser.add_argument('--lr', type=float)
    parser.add_argument('--val-every', type=int)
    parser.add_argument('--checkpoint-every', type=int)
    parser.add_argument('--seed', type=int)
    parser.add_argument('--ema-decay', type=float, help='EMA of the target encoder (0: copy)')
    parser.add_argument('--action-blind', action='store_true',
                        help='train the action-blind control model (predictor ignores actions)')
    parser.add_argument('--object-slots', type=int, metavar='K',
                        help='object slots in the latent, trained on the first K cubes of the '
                        "simulator's episodes (default: the preset's)")
    parser.add_argument('--augment', action='store_true', help='brightness/contrast jitter')
    parser.add_argument('--on-corrupt', choices=('skip', 'fail'),
                        help='a corrupt episode chunk is reported and skipped, or fails the run')
    parser.add_argument('--resume', action='store_true',
                        help='continue from OUT/checkpoints/last.safetensors if it exists')
    parser.add_argument('--stop-after', type=int, metavar='N',
                        help='stop after N steps of this session (checkpointed; --resume later)')
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto'")
    parser.add_argument('--threads', type=int, default=0,
                        help='torch CPU threads per process (0: cores / processes)')
    parser.add_argument('--no-progress', action='store_true', help='log lines, no progress bar')


def preset_from_args(args: argparse.Namespace) -> Preset:
    """The chosen preset with the command-line overrides applied (validated)."""
    preset = get_preset(args.preset)
    tc_changes = {'steps': args.steps, 'batch_size': args.batch_size, 'horizon': args.horizon,
                  'lr': args.lr, 'val_every': args.val_every,
                  'checkpoint_every': args.checkpoint_every, 'seed': args.seed,
                  'ema_decay': args.ema_decay}
    tc = replace(preset.train, **{k: v for k, v in tc_changes.items() if v is not None})
    if tc.min_lr > tc.lr:
        tc = replace(tc, min_lr=tc.lr * 0.05)
    mc: ModelConfig = preset.model
    if args.action_blind:
        mc = replace(mc, action_conditioned=False)
    if args.object_slots is not None:
        mc = replace(mc, object_count=args.object_slots)
    dc: DataConfig = preset.data
    if args.augment:
        dc = replace(dc, augment=True)
    if args.on_corrupt:
        dc = replace(dc, on_corrupt=args.on_corrupt)
    return replace(preset, model=mc, train=tc, data=dc)


def run(args: argparse.Namespace) -> int:
    """``craik train``."""
    try:
        preset = preset_from_args(args)
    except ValueError as exc:
        print(f'craik train: {exc}', file=sys.stderr)
        return 2
    if bool(args.data) == bool(args.synthetic):
        print('craik train: give --data DIR (episodes) or --synthetic N', file=sys.stderr)
        return 2
    device = args.device
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    world = int(os.environ.get('WORLD_SIZE', '1'))
    threads = args.threads or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    rank = int(os.environ.get('RANK', '0'))
    log: Callable[[str], None] = print if rank == 0 else (lambda _msg: None)
    if args.synthetic:
        from craik_world_model import synthetic
        episodes = synthetic.episodes(args.synthetic, steps=max(24, preset.train.horizon + 4),
                                      width=preset.model.image_size,
                                      height=preset.model.image_size, seed=preset.train.seed)
        source = f'synthetic:{args.synthetic}'
    else:
        try:
            episodes = load_episodes(args.data, preset.model, preset.data, log=log)
        except (ValueError, OSError) as exc:
            print(f'craik train: {exc}', file=sys.stderr)
            return 1
        source = ','.join(str(p) for p in args.data)
    train_eps, val_eps = split_episodes(episodes, preset.data.holdout_every)
    if not train_eps:
        train_eps, val_eps = val_eps, []
    argv = sys.argv[2:] if Path(sys.argv[0]).name == 'craik' else sys.argv[1:]
    meta = {'data': source, 'command': shlex.join(['craik', 'train', *argv])}
    try:
        train(preset, train_eps, val_eps, args.out, resume=args.resume, device=device,
              progress=not args.no_progress and rank == 0, log=log, metadata=meta,
              stop_after=args.stop_after)
    except (ValueError, FloatingPointError) as exc:
        print(f'craik train: {exc}', file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m craik_world_model.train`` (what ``torchrun -m`` runs)."""
    parser = argparse.ArgumentParser(prog='craik train', description='train the world model')
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
