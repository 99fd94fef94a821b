"""The simulation's episode format (:mod:`craik_sim.episodes`) as the world model reads it.

The format, its loader and its writer belong to ``craik_sim``; this module only maps an episode to
:class:`~craik_world_model.data.EpisodeArrays` and back:

- ``rgb`` [T+1, H, W, 3] uint8 -> rgb; ``depth`` [T+1, H, W] uint16 mm -> metres;
- proprioception = ``ee_pos`` [T+1, 3] (m) + gripper = ``1 - gripper_width / 0.08`` (0 open ...
  1 closed, the convention of the gripper command);
- ``actions`` [T, 4] as they are;
- objects = ``cube_pos`` [T+1, N, :2] (m, ground truth; robot recordings have N = 0).

A dataset directory holds ``index.json`` + one ``.npz`` per episode; a directory whose
subdirectories are datasets is read as all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from craik_sim.episodes import (
    INDEX_NAME,
    EpisodeDataset,
    EpisodeFormatError,
    EpisodeInfo,
    write_episode,
    write_index,
)
from craik_world_model.data import EpisodeArrays, EpisodeLoadError
from craik_world_model.observation import gripper_from_width


def find_datasets(path: str | Path) -> list[Path]:
    """``path`` if it is a dataset, else its immediate subdirectories that are."""
    p = Path(path)
    if (p / INDEX_NAME).is_file():
        return [p]
    if p.is_dir():
        found = sorted(d for d in p.iterdir() if (d / INDEX_NAME).is_file())
        if found:
            return found
    raise EpisodeLoadError(f'{p}: no episode dataset here (no {INDEX_NAME}; make one with '
                           '`craik collect` or `craik wm-convert`)')


def to_episode_arrays(arrays: dict[str, np.ndarray], name: str,
                      metadata: dict[str, Any] | None = None) -> EpisodeArrays:
    """Schema arrays (and metadata) of one episode -> the world model's view of it."""
    depth = arrays['depth']
    if depth.dtype != np.uint16:
        raise EpisodeLoadError(f'{name}: depth must be uint16 millimetres, got {depth.dtype}')
    gripper = gripper_from_width(arrays['gripper_width']).astype(np.float32)[:, None]
    proprio = np.concatenate([arrays['ee_pos'].astype(np.float32), gripper], axis=1)
    cubes = arrays['cube_pos']
    objects = cubes[:, :, :2].astype(np.float32) if cubes.shape[1] else None
    goal_rgb = arrays.get('goal_rgb')
    goal_objects = None
    goal_cubes = (metadata or {}).get('goal_cube_pos')
    if goal_rgb is not None and objects is not None and goal_cubes is not None:
        goal_objects = np.asarray(goal_cubes, dtype=np.float32).reshape(-1, 3)[:, :2]
        if goal_objects.shape[0] != objects.shape[1]:
            raise EpisodeLoadError(f'{name}: metadata goal_cube_pos has {goal_objects.shape[0]} '
                                   f'cubes, the arrays {objects.shape[1]}')
    return EpisodeArrays(name=name, rgb=arrays['rgb'],
                         depth=depth.astype(np.float32) * np.float32(0.001),
                         proprio=proprio, actions=arrays['actions'].astype(np.float32),
                         objects=objects, goal_rgb=goal_rgb, goal_objects=goal_objects)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ChunkError:
    """A dataset piece that could not be read."""

    path: Path
    message: str


def iter_episodes(root: Path, on_error: Callable[[ChunkError], None]
                  ) -> Iterator[EpisodeArrays]:
    """Episodes of one dataset; unreadable pieces (index or episode file, checksum mismatch)
    go to ``on_error`` with their path and are not yielded."""
    try:
        dataset = EpisodeDataset(root)
    except (EpisodeFormatError, OSError, TypeError, KeyError) as exc:
        on_error(ChunkError(root / INDEX_NAME, str(exc)))
        return
    for info in dataset.episodes:
        path = root / info.file
        try:
            if not path.is_file():
                raise EpisodeLoadError('file missing')
            if _sha256(path) != info.sha256:
                raise EpisodeLoadError('sha256 does not match the index (file changed or '
                                       'truncated)')
            episode = dataset.load(info.id)
            yield to_episode_arrays(episode.arrays, str(path), episode.metadata)
        except (EpisodeFormatError, EpisodeLoadError, OSError, ValueError, KeyError) as exc:
            on_error(ChunkError(path, str(exc)))


@dataclass
class RecordedEpisode:
    """An episode in the simulation's schema (arrays + metadata), e.g. from a robot bag."""

    name: str
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]

    def to_arrays(self) -> EpisodeArrays:
        """The world model's view of it."""
        return to_episode_arrays(self.arrays, self.name, self.metadata)


def write_episodes(episodes: Sequence[RecordedEpisode], out: Path,
                   config: dict[str, Any] | None = None) -> list[Path]:
    """Append episodes to the dataset at ``out`` (created if needed) with the sim's writer."""
    out.mkdir(parents=True, exist_ok=True)
    infos: list[EpisodeInfo] = []
    if (out / INDEX_NAME).is_file():
        existing = EpisodeDataset(out)
        infos = list(existing.episodes)
        config = config if config is not None else existing.config
    start = 1 + max((int(i.id.rsplit('_', 1)[-1]) for i in infos), default=-1)
    written = []
    for n, episode in enumerate(episodes):
        info = write_episode(out, start + n, episode.arrays, episode.metadata)
        infos.append(info)
        written.append(out / info.file)
    write_index(out, infos, config or {'source': 'craik wm-convert'})
    return written


def index_summary(root: Path) -> dict[str, Any]:
    """Small JSON-able description of a dataset (for model cards)."""
    data = json.loads((root / INDEX_NAME).read_text())
    return {'path': str(root), 'episodes': len(data.get('episodes', [])),
            'steps': sum(int(e.get('num_steps', 0)) for e in data.get('episodes', [])),
            'config': data.get('config', {})}
