"""Episode format for world-model training data, and its loader.

A dataset directory holds one compressed NumPy archive per episode and a JSON index::

    DIR/index.json             {"format": "craik-episodes", "format_version": 1,
                                "config": {...collection settings...},
                                "episodes": [{"id": "episode_000042", "file": "episode_000042.npz",
                                              "task", "seed", "num_steps", "sha256",
                                              "contact_fraction", "success"}, ...]}
    DIR/episode_000042.npz     arrays below (np.savez_compressed), T = num_steps

| key | shape | dtype | meaning |
|---|---|---|---|
| rgb | [T+1, H, W, 3] | uint8 | camera frames; frame t is observed before action t |
| depth | [T+1, H, W] | uint16 | aligned z-depth in millimetres, 0 = no return |
| ee_pos | [T+1, 3] | float32 | TCP position in fr3_link0 (m) |
| ee_quat | [T+1, 4] | float32 | TCP orientation, x y z w |
| q | [T+1, 7] | float32 | arm joints fr3_joint1..7 (rad) |
| gripper_width | [T+1] | float32 | finger opening (m) |
| actions | [T, 4] | float32 | dx dy dz (m, fr3_link0) + gripper (0 open..1 closed) |
| applied_displacement | [T, 3] | float32 | action after workspace clipping |
| contact | [T] | bool | robot touched a cube during step t |
| cube_pos | [T+1, N, 3] | float32 | cube centres (ground truth) |
| cube_quat | [T+1, N, 4] | float32 | cube orientations, x y z w |
| goal_rgb | [H, W, 3] | uint8 | goal image of the episode |
| goal_depth | [H, W] | uint16 | goal depth (mm) |
| intrinsics | [3, 3] | float64 | K of the stored resolution (scaled from the calibration) |
| extrinsics | [4, 4] | float64 | fr3_link0 <- camera_color_optical_frame |
| metadata | [] | str (JSON) | task, seed, variation, goal, step_duration_s, dynamics_factor |

Writes are atomic (temporary file + rename) and the index is rewritten after every episode, so
an interrupted collection resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
import json
import os
from pathlib import Path
import tempfile
from typing import Any
import zipfile

import numpy as np

FORMAT = 'craik-episodes'
FORMAT_VERSION = 1
INDEX_NAME = 'index.json'
# key -> (dtype, rank, time axis: 'T+1' | 'T' | None)
SCHEMA: dict[str, tuple[str, int, str | None]] = {
    'rgb': ('uint8', 4, 'T+1'),
    'depth': ('uint16', 3, 'T+1'),
    'ee_pos': ('float32', 2, 'T+1'),
    'ee_quat': ('float32', 2, 'T+1'),
    'q': ('float32', 2, 'T+1'),
    'gripper_width': ('float32', 1, 'T+1'),
    'actions': ('float32', 2, 'T'),
    'applied_displacement': ('float32', 2, 'T'),
    'contact': ('bool', 1, 'T'),
    'cube_pos': ('float32', 3, 'T+1'),
    'cube_quat': ('float32', 3, 'T+1'),
    'goal_rgb': ('uint8', 3, None),
    'goal_depth': ('uint16', 2, None),
    'intrinsics': ('float64', 2, None),
    'extrinsics': ('float64', 2, None),
}


class EpisodeFormatError(ValueError):
    """A dataset or episode file is missing, corrupt or does not follow the format."""


@dataclass(frozen=True)
class EpisodeInfo:
    """One index entry."""

    id: str
    file: str
    task: str
    seed: int
    num_steps: int
    sha256: str
    contact_fraction: float
    success: bool


@dataclass(frozen=True)
class Episode:
    """A loaded episode: the arrays of SCHEMA plus the decoded metadata."""

    info: EpisodeInfo
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    @property
    def num_steps(self) -> int:
        return int(self.arrays['actions'].shape[0])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def validate_arrays(arrays: dict[str, np.ndarray]) -> int:
    """Check keys, dtypes and shapes against SCHEMA; returns T (steps)."""
    missing = [k for k in SCHEMA if k not in arrays]
    if missing:
        raise EpisodeFormatError(f'missing arrays: {missing}')
    if 'actions' not in arrays or arrays['actions'].ndim != 2:
        raise EpisodeFormatError('actions must be [T, 4]')
    steps = int(arrays['actions'].shape[0])
    for key, (dtype, rank, axis) in SCHEMA.items():
        a = arrays[key]
        if a.dtype != np.dtype(dtype) or a.ndim != rank:
            raise EpisodeFormatError(f'{key}: expected {dtype} rank {rank}, got {a.dtype} '
                                     f'rank {a.ndim}')
        expected = {'T+1': steps + 1, 'T': steps, None: None}[axis]
        if expected is not None and a.shape[0] != expected:
            raise EpisodeFormatError(f'{key}: expected {expected} entries along time, got '
                                     f'{a.shape[0]}')
    if arrays['actions'].shape[1] != 4:
        raise EpisodeFormatError('actions must have 4 components (dx, dy, dz, gripper)')
    h, w = arrays['rgb'].shape[1:3]
    if arrays['depth'].shape[1:] != (h, w) or arrays['goal_rgb'].shape[:2] != (h, w):
        raise EpisodeFormatError('rgb, depth and goal images must share one resolution')
    return steps


def write_episode(root: Path, index: int, arrays: dict[str, np.ndarray],
                  metadata: dict[str, Any]) -> EpisodeInfo:
    """Write episode `index` atomically into root and return its index entry."""
    steps = validate_arrays(arrays)
    episode_id = f'episode_{index:06d}'
    path = Path(root) / f'{episode_id}.npz'
    payload = dict(arrays, metadata=np.array(json.dumps(metadata)))

    def write(tmp: str) -> None:
        with open(tmp, 'wb') as handle:
            np.savez_compressed(handle, **payload)  # type: ignore[arg-type]

    _atomic_write(path, write)
    contact = arrays['contact']
    return EpisodeInfo(episode_id, path.name, str(metadata['task']), int(metadata['seed']),
                       steps, _sha256(path), float(contact.mean()) if steps else 0.0,
                       bool(metadata.get('success', False)))


def write_index(root: Path, episodes: list[EpisodeInfo], config: dict[str, Any]) -> None:
    index = {'format': FORMAT, 'format_version': FORMAT_VERSION, 'config': config,
             'episodes': [vars(e) for e in sorted(episodes, key=lambda e: e.id)]}

    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(index, indent=1))

    _atomic_write(Path(root) / INDEX_NAME, write)


class EpisodeDataset:
    """Read access to a collected dataset: list, load and verify episodes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        index_path = self.root / INDEX_NAME
        if not index_path.is_file():
            raise EpisodeFormatError(f'{index_path}: no episode index (not a dataset?)')
        try:
            index = json.loads(index_path.read_text())
        except json.JSONDecodeError as err:
            raise EpisodeFormatError(f'{index_path}: corrupt index ({err})') from None
        if index.get('format') != FORMAT or index.get('format_version') != FORMAT_VERSION:
            raise EpisodeFormatError(
                f'{index_path}: format {index.get("format")!r} v{index.get("format_version")} '
                f'is not {FORMAT} v{FORMAT_VERSION}')
        self.config: dict[str, Any] = index.get('config', {})
        self.episodes = [EpisodeInfo(**e) for e in index['episodes']]

    def __len__(self) -> int:
        return len(self.episodes)

    def load(self, item: int | str) -> Episode:
        """Load an episode by position or id as numpy arrays (see the module table)."""
        info = self.episodes[item] if isinstance(item, int) else next(
            (e for e in self.episodes if e.id == item), None)
        if info is None:
            raise KeyError(f'no episode {item!r} in {self.root}')
        path = self.root / info.file
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
            raise EpisodeFormatError(f'{path}: cannot read ({err})') from None
        metadata = json.loads(str(arrays.pop('metadata', np.array('{}'))))
        validate_arrays(arrays)
        return Episode(info, arrays, metadata)

    def verify(self) -> list[str]:
        """Check every episode (file present, checksum, schema); returns the problems found."""
        problems = []
        for info in self.episodes:
            path = self.root / info.file
            if not path.is_file():
                problems.append(f'{info.id}: missing file {info.file}')
                continue
            if _sha256(path) != info.sha256:
                problems.append(f'{info.id}: checksum mismatch (file changed or truncated)')
                continue
            try:
                episode = self.load(info.id)
            except EpisodeFormatError as err:
                problems.append(f'{info.id}: {err}')
                continue
            if episode.num_steps != info.num_steps:
                problems.append(f'{info.id}: index says {info.num_steps} steps, file has '
                                f'{episode.num_steps}')
        return problems

    @property
    def contact_fraction(self) -> float:
        """Fraction of all steps with robot-cube contact."""
        steps = sum(e.num_steps for e in self.episodes)
        if steps == 0:
            return 0.0
        return sum(e.contact_fraction * e.num_steps for e in self.episodes) / steps
