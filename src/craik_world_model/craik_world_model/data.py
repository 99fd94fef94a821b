"""Episodes for the world model and the windows it trains on.

An episode, as the world model sees it (:class:`EpisodeArrays`), is T actions and the T + 1
observations around them: observation ``t`` is what the camera saw before action ``t``, and
observation ``t + 1`` what it saw after. Episodes come from simulation (``craik collect``; read
with the simulation package's own loader, :mod:`craik_sim.episodes`) or from robot recordings
converted by :mod:`craik_world_model.mcap_convert` into that same format.

:class:`WindowDataset` holds the episodes at the model's resolution in memory and serves random
windows of ``horizon + 1`` frames; a training step rolls the first frame forward through the
window's ``horizon`` actions open-loop. Augmentation is off by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import os
from pathlib import Path

import numpy as np
import torch

from craik_world_model.config import DataConfig, ModelConfig
from craik_world_model.observation import (
    ObservationError,
    depth_frames_to_model,
    rgb_frames_to_model,
)


class EpisodeLoadError(ValueError):
    """An episode (chunk) cannot be used; the message names its path and what is wrong."""


@dataclass
class EpisodeArrays:
    """One episode: T actions and T + 1 observations (before and after each action)."""

    name: str                 # where it came from (a path, for error messages)
    rgb: np.ndarray           # [T+1, H, W, 3] uint8
    depth: np.ndarray         # [T+1, H, W] float32 metres, 0 = no return
    proprio: np.ndarray       # [T+1, P] float32: ee_x, ee_y, ee_z (m, fr3_link0), gripper 0..1
    actions: np.ndarray       # [T, A] float32: dx, dy, dz (m), gripper command 0..1
    # [T+1, N, 2] float32: object positions in the table plane (m, fr3_link0), ground truth
    # from the simulator; None when unknown (robot recordings).
    objects: np.ndarray | None = None
    # The episode's goal image [H, W, 3] uint8 and where it shows the objects [N, 2] (m), when
    # the recording has them (simulator episodes): what `craik train-objects` learns goal
    # images' object positions from.
    goal_rgb: np.ndarray | None = None
    goal_objects: np.ndarray | None = None

    @property
    def steps(self) -> int:
        """T, the number of actions."""
        return int(self.actions.shape[0])

    def validate(self, proprio_dim: int = 4, action_dim: int = 4) -> None:
        """Raise :class:`EpisodeLoadError` (naming the episode) if arrays are inconsistent."""
        t1 = self.actions.shape[0] + 1 if self.actions.ndim == 2 else -1
        problems = []
        if self.actions.ndim != 2 or self.actions.shape[1] != action_dim:
            problems.append(f'actions must be [T, {action_dim}], got {self.actions.shape}')
        if self.rgb.ndim != 4 or self.rgb.shape[0] != t1 or self.rgb.shape[-1] != 3:
            problems.append(f'rgb must be [T+1={t1}, H, W, 3], got {self.rgb.shape}')
        elif self.rgb.dtype != np.uint8:
            problems.append(f'rgb must be uint8, got {self.rgb.dtype}')
        if self.depth.ndim != 3 or self.depth.shape[0] != t1:
            problems.append(f'depth must be [T+1={t1}, H, W], got {self.depth.shape}')
        elif self.rgb.ndim == 4 and self.depth.shape[1:] != self.rgb.shape[1:3]:
            problems.append(f'depth {self.depth.shape[1:]} is not aligned with rgb '
                            f'{self.rgb.shape[1:3]}')
        if self.proprio.shape != (t1, proprio_dim):
            problems.append(f'proprio must be [T+1={t1}, {proprio_dim}], got '
                            f'{self.proprio.shape}')
        if self.objects is not None and (self.objects.ndim != 3 or self.objects.shape[0] != t1
                                         or self.objects.shape[2] != 2):
            problems.append(f'objects must be [T+1={t1}, N, 2], got {self.objects.shape}')
        if self.goal_rgb is not None and (self.goal_rgb.ndim != 3 or self.goal_rgb.shape[-1] != 3
                                          or self.goal_rgb.dtype != np.uint8):
            problems.append(f'goal_rgb must be [H, W, 3] uint8, got {self.goal_rgb.shape} '
                            f'{self.goal_rgb.dtype}')
        if self.goal_objects is not None and (
                self.objects is None or self.goal_objects.shape != self.objects.shape[1:]):
            problems.append(f'goal_objects must be [N, 2] like each frame of objects, got '
                            f'{self.goal_objects.shape}')
        for name in ('depth', 'proprio', 'actions', 'objects', 'goal_objects'):
            arr = getattr(self, name)
            if arr is not None and arr.dtype.kind == 'f' and not np.isfinite(arr).all():
                problems.append(f'{name} contains NaN or infinite values')
        if problems:
            raise EpisodeLoadError(f'{self.name}: ' + '; '.join(problems))


def normalise_object_positions(positions: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Object positions ``[..., 2]`` (m, table plane) -> object slot values (normalised like
    the TCP's x and y), float32."""
    offset = np.asarray(config.proprio_offset[:2], dtype=np.float32)
    scale = np.asarray(config.proprio_scale[:2], dtype=np.float32)
    return ((positions - offset) / scale).astype(np.float32)


def to_model_resolution(episode: EpisodeArrays, config: ModelConfig) -> EpisodeArrays:
    """The episode with frames resized to the model's S x S (uint8 rgb, float32 depth)."""
    episode.validate(config.proprio_dim, config.action_dim)
    try:
        rgb = rgb_frames_to_model(episode.rgb, config, what=f'{episode.name}: rgb')
        depth_units = 'mm' if episode.depth.dtype == np.uint16 else 'm'
        depth = depth_frames_to_model(episode.depth, config, depth_units,
                                      what=f'{episode.name}: depth')
    except ObservationError as exc:
        raise EpisodeLoadError(str(exc)) from exc
    rgb_u8 = np.round(rgb.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)  # [T+1, S, S, 3]
    goal_rgb = episode.goal_rgb
    if goal_rgb is not None:
        try:
            goal = rgb_frames_to_model(goal_rgb[None], config, what=f'{episode.name}: goal_rgb')
        except ObservationError as exc:
            raise EpisodeLoadError(str(exc)) from exc
        goal_rgb = np.round(goal[0].transpose(1, 2, 0) * 255.0).astype(np.uint8)  # [S, S, 3]
    return EpisodeArrays(episode.name, rgb_u8, depth[:, 0], episode.proprio.astype(np.float32),
                         episode.actions.astype(np.float32), episode.objects, goal_rgb,
                         episode.goal_objects)


@dataclass
class WindowBatch:
    """A batch of windows (float tensors, model resolution)."""

    rgb: torch.Tensor         # [B, H+1, 3, S, S] in [0, 1]
    depth: torch.Tensor       # [B, H+1, 1, S, S] metres
    proprio: torch.Tensor     # [B, H+1, P]
    actions: torch.Tensor     # [B, H, A]
    objects: torch.Tensor     # [B, H+1, 2K] normalised object positions (zeros where unknown)
    objects_known: torch.Tensor  # [B] 1.0 where the window's episode has object positions

    def to(self, device: torch.device | str) -> WindowBatch:
        """The batch on ``device``."""
        return WindowBatch(self.rgb.to(device), self.depth.to(device),
                           self.proprio.to(device), self.actions.to(device),
                           self.objects.to(device), self.objects_known.to(device))


class WindowDataset:
    """All windows of ``horizon + 1`` consecutive frames of the given episodes.

    Frames are stored once, concatenated: uint8 RGB ``[F, 3, S, S]``, depth ``[F, 1, S, S]``
    (float16 metres, ~1 mm resolution at 2 m), proprio ``[F, P]``, actions ``[F, A]``
    (the row after an episode's last action is padding that no window reaches), and the first
    ``object_count`` object positions ``[F, 2K]``, normalised like the TCP's x and y (zeros and
    not known for episodes with fewer objects).
    """

    def __init__(self, episodes: Sequence[EpisodeArrays], config: ModelConfig, horizon: int,
                 augment: bool = False) -> None:
        if horizon < 1:
            raise ValueError(f'horizon must be >= 1, got {horizon}')
        self.config = config
        self.horizon = horizon
        self.augment = augment
        self.names: list[str] = []
        rgb, depth, proprio, actions, objects, known = [], [], [], [], [], []
        k = config.object_count
        starts: list[int] = []
        offset = 0
        size = config.image_size
        for episode in episodes:
            if episode.rgb.shape[1:3] != (size, size):
                episode = to_model_resolution(episode, config)
            else:
                episode.validate(config.proprio_dim, config.action_dim)
            frames = episode.steps + 1
            self.names.append(episode.name)
            rgb.append(torch.from_numpy(np.ascontiguousarray(episode.rgb)).permute(0, 3, 1, 2))
            depth.append(torch.from_numpy(episode.depth.astype(np.float16))[:, None])
            proprio.append(torch.from_numpy(episode.proprio.astype(np.float32)))
            pad = np.zeros((1, config.action_dim), dtype=np.float32)
            actions.append(torch.from_numpy(np.concatenate([episode.actions, pad])))
            positions = episode.objects                                  # [T+1, N, 2] or None
            if k and positions is not None and positions.shape[1] >= k:
                slots, is_known = normalise_object_positions(positions[:, :k], config), 1.0
            else:
                slots, is_known = np.zeros((frames, k, 2), dtype=np.float32), 0.0
            objects.append(torch.from_numpy(slots.reshape(frames, 2 * k).astype(np.float32)))
            known.append(torch.full((frames,), is_known))
            starts.extend(range(offset, offset + frames - horizon))
            offset += frames
        if not starts:
            raise ValueError(f'no episode has more than {horizon} steps (a window needs '
                             f'horizon + 1 = {horizon + 1} frames)')
        self.rgb = torch.cat(rgb).contiguous()            # [F, 3, S, S] uint8
        self.depth = torch.cat(depth).contiguous()        # [F, 1, S, S] float16
        self.proprio = torch.cat(proprio).contiguous()    # [F, P]
        self.actions = torch.cat(actions).contiguous()    # [F, A]
        self.objects = torch.cat(objects).contiguous()    # [F, 2K]
        self.objects_known = torch.cat(known)             # [F]
        self.starts = torch.tensor(starts, dtype=torch.long)  # [W]
        self._offsets = torch.arange(horizon + 1)

    def __len__(self) -> int:
        return int(self.starts.numel())

    @property
    def frame_count(self) -> int:
        """F, frames held."""
        return int(self.rgb.shape[0])

    def batch(self, window_indices: torch.Tensor | np.ndarray | Sequence[int],
              generator: torch.Generator | None = None) -> WindowBatch:
        """The windows with these indices (into ``0 .. len(self) - 1``)."""
        idx = torch.as_tensor(window_indices, dtype=torch.long)
        frames = self.starts[idx][:, None] + self._offsets[None]     # [B, H+1]
        rgb = self.rgb[frames].float().div_(255.0)                   # [B, H+1, 3, S, S]
        if self.augment:
            rgb = self._jitter(rgb, generator)
        return WindowBatch(rgb=rgb,
                           depth=self.depth[frames].float(),         # [B, H+1, 1, S, S]
                           proprio=self.proprio[frames],             # [B, H+1, P]
                           actions=self.actions[frames[:, :-1]],     # [B, H, A]
                           objects=self.objects[frames],             # [B, H+1, 2K]
                           objects_known=self.objects_known[frames[:, 0]])  # [B]

    def sample(self, batch_size: int, generator: torch.Generator) -> WindowBatch:
        """``batch_size`` windows drawn uniformly with ``generator``."""
        idx = torch.randint(len(self), (batch_size,), generator=generator)
        return self.batch(idx, generator)

    @staticmethod
    def _jitter(rgb: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # One brightness/contrast change per window (the same for all its frames), so the
        # dynamics are untouched; geometry is never changed (a pixel's place is its meaning).
        b = rgb.shape[0]
        gain = 1.0 + (torch.rand(b, 1, 1, 1, 1, generator=generator) - 0.5) * 0.2
        bias = (torch.rand(b, 1, 1, 1, 1, generator=generator) - 0.5) * 0.1
        return (rgb * gain + bias).clamp_(0.0, 1.0)


def split_episodes(episodes: Sequence[EpisodeArrays], holdout_every: int
                   ) -> tuple[list[EpisodeArrays], list[EpisodeArrays]]:
    """(train, held out): every ``holdout_every``-th episode by sorted name is held out.

    Deterministic in the set of names, so training and ``wm-eval`` agree on the split.
    """
    ordered = sorted(episodes, key=lambda e: e.name)
    held = [e for i, e in enumerate(ordered) if i % holdout_every == holdout_every - 1]
    train = [e for i, e in enumerate(ordered) if i % holdout_every != holdout_every - 1]
    return train, held


def load_episodes(paths: Sequence[str | os.PathLike[str]], config: ModelConfig,
                  data_config: DataConfig, log: Callable[[str], None] = print
                  ) -> list[EpisodeArrays]:
    """Load every episode of the datasets under ``paths``, at model resolution.

    A chunk (episode file, or a dataset's index) that cannot be read, fails its checksum or
    holds inconsistent arrays is reported with its path and skipped (``on_corrupt='skip'``) or
    ends the run with :class:`EpisodeLoadError` (``'fail'``).
    """
    from craik_world_model import episode_io  # imports craik_sim's format on use

    skipped: list[str] = []

    def on_error(error: episode_io.ChunkError) -> None:
        message = f'corrupt episode chunk {error.path}: {error.message}'
        if data_config.on_corrupt == 'fail':
            raise EpisodeLoadError(message)
        log(f'warning: {message} (skipped)')
        skipped.append(str(error.path))

    episodes: list[EpisodeArrays] = []
    for p in paths:
        for root in episode_io.find_datasets(Path(p)):
            for episode in episode_io.iter_episodes(root, on_error):
                try:
                    episodes.append(to_model_resolution(episode, config))
                except EpisodeLoadError as exc:
                    on_error(episode_io.ChunkError(Path(episode.name), str(exc)))
    if not episodes:
        raise EpisodeLoadError(f'no usable episodes under {", ".join(map(str, paths))} '
                               f'({len(skipped)} corrupt chunk(s) skipped)')
    if skipped:
        log(f'{len(skipped)} corrupt chunk(s) skipped; {len(episodes)} episodes loaded')
    return episodes
