"""The Gaussian map as a 3D Gaussian Splatting PLY file.

The layout is the one 3D Gaussian Splatting's reference code writes and splat viewers read:
binary little-endian float32 vertices with ``x y z nx ny nz f_dc_0..2 [f_rest_*] opacity
scale_0..2 rot_0..3``, where opacity is a logit, scales are logs and ``rot`` is the quaternion
w x y z. gsplat's exporter writes the same properties without the normals; :func:`load_ply`
reads both, and any ``f_rest_*`` (higher SH degrees, which craik does not use) is read past.
Saving and loading is exact: the map stores these very quantities as float32.
"""

from __future__ import annotations

import os
from pathlib import Path
import tempfile

import numpy as np
import torch

from craik_mapping.gaussian_map import GaussianMap, MapConfig, MappingError
from craik_mapping.render import quaternion_to_matrix

_REQUIRED = ('x', 'y', 'z', 'f_dc_0', 'f_dc_1', 'f_dc_2', 'opacity',
             'scale_0', 'scale_1', 'scale_2', 'rot_0', 'rot_1', 'rot_2', 'rot_3')
_WRITTEN = ('x', 'y', 'z', 'nx', 'ny', 'nz', 'f_dc_0', 'f_dc_1', 'f_dc_2', 'opacity',
            'scale_0', 'scale_1', 'scale_2', 'rot_0', 'rot_1', 'rot_2', 'rot_3')
_MAX_HEADER_BYTES = 64 * 1024


def ply_bytes(gmap: GaussianMap) -> bytes:
    """The map as PLY file contents. ``nx ny nz`` hold each Gaussian's thinnest axis (the
    surface normal of a flattened Gaussian)."""
    n = len(gmap)
    header = ['ply', 'format binary_little_endian 1.0', f'element vertex {n}']
    header += [f'property float {name}' for name in _WRITTEN]
    header.append('end_header')
    with torch.no_grad():
        if n:
            rot = quaternion_to_matrix(gmap.quats)
            thin = torch.argmin(gmap.log_scales, dim=1)
            normals = rot[torch.arange(n), :, thin]
        else:
            normals = torch.zeros((0, 3))
        data = torch.cat([gmap.means, normals.to(gmap.means), gmap.sh_dc,
                          gmap.opacity_logits[:, None], gmap.log_scales, gmap.quats], dim=1)
    body = data.cpu().numpy().astype('<f4').tobytes()
    return ('\n'.join(header) + '\n').encode('ascii') + body


def save_ply(gmap: GaussianMap, path: str | Path) -> Path:
    """Write the map to ``path`` (``.ply``; the directory must exist). Written to a temporary
    file in the same directory and renamed, so a reader never sees a partial map."""
    target = Path(path)
    if target.suffix.lower() != '.ply':
        raise MappingError(f'{target}: a Gaussian map is saved as .ply')
    if not target.parent.is_dir():
        raise MappingError(f'{target}: directory {target.parent} does not exist')
    if target.is_dir():
        raise MappingError(f'{target} is a directory')
    content = ply_bytes(gmap)
    fd, tmp = tempfile.mkstemp(prefix=f'.{target.name}.', suffix='.tmp', dir=target.parent)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(content)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target.resolve()


def _parse_header(raw: bytes, source: str) -> tuple[int, list[str], int]:
    """``(vertex count, property names, body offset)`` of a binary little-endian PLY."""
    end = raw.find(b'end_header\n', 0, _MAX_HEADER_BYTES)
    if not raw.startswith(b'ply\n') or end < 0:
        raise MappingError(f'{source}: not a PLY file (no "ply" magic or no end_header within '
                           f'{_MAX_HEADER_BYTES} bytes)')
    lines = raw[:end].decode('ascii', errors='replace').splitlines()
    if 'format binary_little_endian 1.0' not in lines:
        raise MappingError(f'{source}: only binary_little_endian 1.0 PLY files are supported')
    count: int | None = None
    names: list[str] = []
    element = None
    for line in lines[1:]:
        parts = line.split()
        if not parts or parts[0] in ('comment', 'obj_info', 'format'):
            continue
        if parts[0] == 'element':
            element = parts[1] if len(parts) > 1 else None
            if element == 'vertex':
                try:
                    count = int(parts[2])
                except (IndexError, ValueError):
                    raise MappingError(f'{source}: malformed line {line!r}') from None
            elif count is not None:
                raise MappingError(f'{source}: elements after "vertex" are not supported')
        elif parts[0] == 'property' and element == 'vertex':
            if len(parts) != 3 or parts[1] != 'float':
                raise MappingError(f'{source}: vertex property {line!r} is not a float '
                                   '(3DGS files store every property as float)')
            names.append(parts[2])
    if count is None or count < 0:
        raise MappingError(f'{source}: no vertex element')
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        raise MappingError(f'{source}: not a Gaussian splat file, missing properties {missing}')
    return count, names, end + len(b'end_header\n')


def load_ply(path: str | Path, config: MapConfig | None = None,
             device: torch.device | str = 'cpu') -> GaussianMap:
    """Read a 3DGS PLY (ours, gsplat's exporter's, or 3DGS's) into a new map."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise MappingError(f'{source}: cannot read ({exc.strerror})') from None
    count, names, offset = _parse_header(raw, source)
    expected = count * len(names) * 4
    if len(raw) - offset != expected:
        raise MappingError(f'{source}: body has {len(raw) - offset} bytes, the header promises '
                           f'{count} vertices x {len(names)} floats = {expected} '
                           '(truncated or corrupt)')
    table = np.frombuffer(raw, dtype='<f4', offset=offset).reshape(count, len(names))
    col = {name: i for i, name in enumerate(names)}

    def take(*keys: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(table[:, [col[k] for k in keys]]
                                                     .astype(np.float32)))

    gmap = GaussianMap(config, device)
    gmap.set_parameters(take('x', 'y', 'z'), take('rot_0', 'rot_1', 'rot_2', 'rot_3'),
                        take('scale_0', 'scale_1', 'scale_2'), take('opacity')[:, 0],
                        take('f_dc_0', 'f_dc_1', 'f_dc_2'))
    return gmap
