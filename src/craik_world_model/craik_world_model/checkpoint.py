"""Checkpoints: safetensors only, sha256 manifests, format-version and shape checks.

A model file is a ``.safetensors`` file whose metadata holds the format name and version and the
``ModelConfig`` as JSON; a training checkpoint also holds the EMA target encoder, the optimiser
state and the step, so a run can resume exactly. Pickled weights (``torch.save`` files, ``.pt``,
``.pth``, ``.ckpt``, ``.bin``, ``.pkl``) are refused: unpickling runs arbitrary code.

Every directory that holds checkpoints or exports has a ``SHA256SUMS`` manifest (the format of
``sha256sum``, so ``sha256sum -c SHA256SUMS`` checks it too; mirrored with file sizes in
``manifest.json``); loading verifies the file against ``SHA256SUMS``.
"""

from __future__ import annotations

from dataclasses import dataclass
import hashlib
import json
import os
from pathlib import Path
import struct
import tempfile
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file
import torch
from torch import nn

from craik_world_model.config import FORMAT_VERSION, ModelConfig, model_config_from_json, to_json
from craik_world_model.model import RGBDEncoder, WorldModel

FORMAT_NAME = 'craik_world_model'
MANIFEST = 'SHA256SUMS'
# The same entries as JSON (with sizes), for tools that look for a manifest.json.
MANIFEST_JSON = 'manifest.json'
PICKLE_SUFFIXES = ('.pt', '.pth', '.ckpt', '.bin', '.pkl', '.pickle', '.tar')


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and the mismatch."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, str]:
    """``{file name: sha256}`` from ``directory/SHA256SUMS`` (empty if there is none)."""
    path = Path(directory) / MANIFEST
    if not path.exists():
        return {}
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise CheckpointError(f'{path}:{number}: not a sha256sum line: {line!r}')
        entries[parts[1].lstrip('*').strip()] = parts[0].lower()
    return entries


def write_manifest(directory: str | os.PathLike[str], names: list[str] | None = None) -> Path:
    """Add/refresh the sha256 of ``names`` (default: every file but the manifest) in the manifest.

    Entries of files that no longer exist are dropped.
    """
    directory = Path(directory)
    entries = {k: v for k, v in read_manifest(directory).items() if (directory / k).is_file()}
    if names is None:
        names = sorted(p.name for p in directory.iterdir()
                       if p.is_file() and p.name not in (MANIFEST, MANIFEST_JSON)
                       and not p.name.startswith('.'))
    for name in names:
        entries[name] = sha256_file(directory / name)
    text = ''.join(f'{entries[name]}  {name}\n' for name in sorted(entries))
    _atomic_write(directory / MANIFEST, text.encode())
    as_json = {'format': 'craik_sha256_manifest', 'format_version': 1,
               'files': {name: {'sha256': entries[name],
                                'bytes': (directory / name).stat().st_size}
                         for name in sorted(entries)}}
    _atomic_write(directory / MANIFEST_JSON, (json.dumps(as_json, indent=2) + '\n').encode())
    return directory / MANIFEST


def verify_file(path: str | os.PathLike[str]) -> str:
    """Check ``path`` against the manifest of its directory; returns its sha256."""
    path = Path(path)
    entries = read_manifest(path.parent)
    if not entries:
        raise CheckpointError(f'{path}: no {MANIFEST} manifest in {path.parent} to verify it '
                              'against (pass verify=False / --no-verify to load it anyway)')
    if path.name not in entries:
        raise CheckpointError(f'{path}: not listed in {path.parent / MANIFEST}')
    actual = sha256_file(path)
    if actual != entries[path.name]:
        raise CheckpointError(f'{path}: sha256 {actual} does not match the manifest '
                              f'({entries[path.name]}); the file is corrupt or was modified')
    return actual


def _publish(tmp: str | Path, path: Path) -> None:
    """Move a finished temporary file into place, readable like any other file."""
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; weights and manifests are meant to be shared
    os.replace(tmp, path)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_safetensors(path: str | os.PathLike[str]) -> None:
    """Refuse anything that is not a safetensors file, pickles above all, before opening it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such file')
    if path.suffix in PICKLE_SUFFIXES:
        raise CheckpointError(f'{path}: refusing pickled weights ({path.suffix}); craik loads '
                              'only .safetensors files')
    with open(path, 'rb') as f:
        head = f.read(9)
    # A safetensors file: u64 little-endian header length, then the JSON header. (Its first
    # byte is arbitrary, so the pickle test below only runs when this structure is absent.)
    looks_safetensors = len(head) == 9 and head[8:9] == b'{'
    if not looks_safetensors:
        if (head[:1] == b'\x80' and head[1:2] in (b'\x02', b'\x03', b'\x04', b'\x05')) or \
                head[:4] == b'PK\x03\x04':
            raise CheckpointError(f'{path}: refusing pickled weights (the file is a pickle / '
                                  'torch.save archive); craik loads only safetensors')
        raise CheckpointError(f'{path}: not a safetensors file (bad header)')
    (header_len,) = struct.unpack('<Q', head[:8])
    if header_len > path.stat().st_size:
        raise CheckpointError(f'{path}: not a safetensors file (header length {header_len} '
                              'exceeds the file)')


def _state_dict(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f'{prefix}{k}': v.detach().to('cpu').contiguous()
            for k, v in module.state_dict().items()}


def _base_metadata(config: ModelConfig, kind: str) -> dict[str, str]:
    return {'format': FORMAT_NAME, 'format_version': str(FORMAT_VERSION), 'kind': kind,
            'model_config': to_json(config)}


def save_model(path: str | os.PathLike[str], model: WorldModel,
               metadata: dict[str, str] | None = None, update_manifest: bool = True) -> Path:
    """Write the model's weights + config to ``path`` (.safetensors) and its manifest entry."""
    path = Path(path)
    if path.suffix != '.safetensors':
        raise CheckpointError(f'{path}: model files must end in .safetensors')
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = _base_metadata(model.config, 'model')
    meta.update(metadata or {})
    tmp = path.with_name(f'.{path.name}.tmp')
    save_file(_state_dict(model, ''), str(tmp), metadata=meta)
    _publish(tmp, path)
    if update_manifest:
        write_manifest(path.parent, [path.name])
    return path


@dataclass
class LoadedTensors:
    """The tensors and metadata of a verified safetensors file."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    config: ModelConfig
    sha256: str | None


def read_checkpoint(path: str | os.PathLike[str], verify: bool = True,
                    kinds: tuple[str, ...] = ('model', 'training')) -> LoadedTensors:
    """Open a craik safetensors file: refuse pickles, verify the sha256, check the format."""
    path = Path(path)
    check_safetensors(path)
    digest = verify_file(path) if verify else None
    try:
        with safe_open(str(path), framework='pt') as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f'{path}: cannot read safetensors file: {exc}') from exc
    if metadata.get('format') != FORMAT_NAME:
        raise CheckpointError(f'{path}: not a craik world-model file (format '
                              f'{metadata.get("format")!r}, expected {FORMAT_NAME!r})')
    version = metadata.get('format_version')
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f'{path}: format version {version} is not supported (this code '
                              f'reads version {FORMAT_VERSION})')
    if metadata.get('kind') not in kinds:
        raise CheckpointError(f'{path}: kind {metadata.get("kind")!r} where one of {kinds} is '
                              'needed')
    try:
        config = model_config_from_json(metadata['model_config'])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f'{path}: bad model_config metadata: {exc}') from exc
    return LoadedTensors(tensors, metadata, config, digest)


def load_state_checked(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str,
                       source: str) -> None:
    """Load ``prefix``-keyed tensors into ``module``; any key or shape mismatch is named."""
    expected = module.state_dict()
    given = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f'{source}: tensors do not match the model: missing '
                              f'{[prefix + k for k in missing][:8]}, unexpected '
                              f'{[prefix + k for k in unexpected][:8]}')
    for key, tensor in expected.items():
        if tuple(given[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f'{source}: tensor {prefix}{key} has shape '
                                  f'{tuple(given[key].shape)}, the model expects '
                                  f'{tuple(tensor.shape)}')
        if given[key].dtype != tensor.dtype:
            raise CheckpointError(f'{source}: tensor {prefix}{key} has dtype {given[key].dtype}, '
                                  f'the model expects {tensor.dtype}')
    module.load_state_dict(given, strict=True)


def load_model(path: str | os.PathLike[str], verify: bool = True,
               device: str | torch.device = 'cpu') -> tuple[WorldModel, dict[str, str]]:
    """Load a model (or the model inside a training checkpoint) in eval mode."""
    loaded = read_checkpoint(path, verify=verify)
    model = WorldModel(loaded.config)
    prefix = 'model.' if loaded.metadata.get('kind') == 'training' else ''
    load_state_checked(model, loaded.tensors, prefix, str(path))
    meta = dict(loaded.metadata)
    if loaded.sha256:
        meta['sha256'] = loaded.sha256
    return model.to(device).eval(), meta


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor],
                                                                  str]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, entry in state['state'].items():
        for name, value in entry.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f'optim.{index}.{name}'] = t.detach().to('cpu').contiguous()
    return tensors, json.dumps(state['param_groups'])


def save_training_state(path: str | os.PathLike[str], model: WorldModel,
                        target_encoder: RGBDEncoder, optimizer: torch.optim.Optimizer,
                        step: int, metadata: dict[str, str] | None = None,
                        extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """A resumable checkpoint: model, EMA target encoder, optimiser state, step, RNG state
    (``extra_tensors``, e.g. a data sampler's generator state, are stored as ``extra.*``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = _state_dict(model, 'model.')
    tensors.update(_state_dict(target_encoder, 'target.'))
    optim_tensors, groups = _optimizer_tensors(optimizer)
    tensors.update(optim_tensors)
    tensors['rng.torch'] = torch.get_rng_state()
    for key, value in (extra_tensors or {}).items():
        tensors[f'extra.{key}'] = value.detach().to('cpu').contiguous()
    meta = _base_metadata(model.config, 'training')
    meta.update({'step': str(step), 'optim_param_groups': groups})
    meta.update(metadata or {})
    tmp = path.with_name(f'.{path.name}.tmp')
    save_file(tensors, str(tmp), metadata=meta)
    _publish(tmp, path)
    write_manifest(path.parent, [path.name])
    return path


def load_training_state(path: str | os.PathLike[str], model: WorldModel,
                        target_encoder: RGBDEncoder, optimizer: torch.optim.Optimizer,
                        verify: bool = True
                        ) -> tuple[int, dict[str, str], dict[str, torch.Tensor]]:
    """Restore a :func:`save_training_state` checkpoint in place; returns (step, metadata,
    extra tensors)."""
    loaded = read_checkpoint(path, verify=verify, kinds=('training',))
    if loaded.config != model.config:
        raise CheckpointError(f'{path}: was trained with another model config; differing '
                              f'fields: {_config_diff(loaded.config, model.config)}')
    load_state_checked(model, loaded.tensors, 'model.', str(path))
    load_state_checked(target_encoder, loaded.tensors, 'target.', str(path))
    groups: list[dict[str, Any]] = json.loads(loaded.metadata['optim_param_groups'])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in loaded.tensors.items():
        if key.startswith('optim.'):
            _, index, name = key.split('.', 2)
            state.setdefault(int(index), {})[name] = tensor
    try:
        optimizer.load_state_dict({'state': state, 'param_groups': groups})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f'{path}: optimiser state does not fit: {exc}') from exc
    if 'rng.torch' in loaded.tensors:
        torch.set_rng_state(loaded.tensors['rng.torch'])
    extra = {k[len('extra.'):]: v for k, v in loaded.tensors.items() if k.startswith('extra.')}
    return int(loaded.metadata['step']), loaded.metadata, extra


def _config_diff(a: ModelConfig, b: ModelConfig) -> list[str]:
    da, db = json.loads(to_json(a)), json.loads(to_json(b))
    return sorted(k for k in da if da[k] != db.get(k))
