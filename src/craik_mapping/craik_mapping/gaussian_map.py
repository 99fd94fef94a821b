"""A streaming 3D Gaussian-splat map built from RGB-D frames.

Each Gaussian has a mean, a rotation, three scales, an opacity and a colour, stored as the 3D
Gaussian Splatting parameters (the same quantities a PLY file holds, so saving and loading is
exact): log-scales, an opacity logit and the degree-0 spherical-harmonic coefficient of the
colour. Frames are integrated by back-projecting valid depth; a Gaussian is added only for a
voxel that holds none yet (a voxel hash: revisiting a view does not duplicate the map), and
Gaussians that a new frame sees *through* (depth now reaches farther behind them: an object that
moved away) are removed. Memory is bounded by ``MapConfig.max_gaussians``: past it, the
Gaussians observed longest ago are evicted first (ties: the least opaque).

Frames are camera-optical (x right, y down, z forward, REP 103); the world frame is whatever
``world_from_camera`` maps into (fr3_link0 in craik). Units: metres, pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

from craik_world_model.object_state import ObjectStateError, checked_camera

# Degree-0 spherical harmonic: colour = 0.5 + SH_C0 * f_dc (the 3DGS convention).
SH_C0 = 0.28209479177387814
# Voxel indices are packed into one int64 key: 21 bits per axis around zero.
_KEY_BITS = 21
_KEY_OFFSET = 1 << (_KEY_BITS - 1)


# Every per-Gaussian tensor of a map, parameters first.
PARAMETERS = ('means', 'quats', 'log_scales', 'opacity_logits', 'sh_dc')
BOOKKEEPING = (*PARAMETERS, 'keys', 'last_seen', 'misses')


class MappingError(ValueError):
    """Input the map cannot use (the message names the argument and what is wrong)."""


@dataclass(frozen=True)
class MapConfig:
    """How frames become Gaussians (metres unless stated)."""

    voxel_m: float = 0.006              # one Gaussian per occupied voxel of this size
    min_depth_m: float = 0.1            # depth outside [min, max] is ignored
    max_depth_m: float = 3.0
    max_gaussians: int = 300_000        # memory bound; see the module docstring for eviction
    initial_opacity: float = 0.95
    # Gaussians are flattened along the surface normal estimated from depth: this fraction of
    # the in-plane scale across the surface (thin discs render sharp depth at oblique views).
    normal_scale_ratio: float = 0.25
    # A Gaussian is stale when the depth seen around its projection lies this far behind it
    # (the larger of the absolute and the depth-relative margin: D435 depth noise grows with
    # distance)...
    carve_margin_m: float = 0.012
    carve_margin_fraction: float = 0.01
    # ...everywhere within this many pixels of its projection (edges of objects do not carve).
    carve_window_px: int = 2
    # Closer to the surface behind (a Gaussian low over the table, where the ray reaches the
    # table only a little farther on) it is removed once this many frames in a row saw behind
    # it by more than half the margin without ever confirming it.
    miss_limit: int = 3
    # A Gaussian where the frame confirms a surface but sees a colour this different (mean
    # absolute difference over R, G, B in [0, 1]) also misses: the bottom edge of an object
    # that was pushed away lies in the table's voxels and would otherwise keep its colour.
    recolour_threshold: float = 0.25
    # A depth jump larger than this between neighbouring pixels is an edge: its normal is
    # unreliable (the Gaussian stays round).
    edge_jump_m: float = 0.03

    def __post_init__(self) -> None:
        for name in ('voxel_m', 'min_depth_m', 'max_depth_m', 'carve_margin_m', 'edge_jump_m'):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise MappingError(f'{name} must be a finite number > 0, got {value!r}')
        if not self.voxel_m <= 0.2:
            raise MappingError(f'voxel_m must be <= 0.2 m, got {self.voxel_m}')
        if self.min_depth_m >= self.max_depth_m:
            raise MappingError(f'min_depth_m ({self.min_depth_m}) must be < max_depth_m '
                               f'({self.max_depth_m})')
        if isinstance(self.max_gaussians, bool) or not isinstance(self.max_gaussians, int) or \
                not 1 <= self.max_gaussians <= 50_000_000:
            raise MappingError(f'max_gaussians must be an integer in 1..5e7, '
                               f'got {self.max_gaussians!r}')
        if not 0.0 < self.initial_opacity < 1.0:
            raise MappingError(f'initial_opacity must be in (0, 1), got {self.initial_opacity}')
        if not 0.0 < self.normal_scale_ratio <= 1.0:
            raise MappingError(f'normal_scale_ratio must be in (0, 1], '
                               f'got {self.normal_scale_ratio}')
        if not 0.0 < self.recolour_threshold <= 1.0:
            raise MappingError(f'recolour_threshold must be in (0, 1], '
                               f'got {self.recolour_threshold}')
        if not 0.0 <= self.carve_margin_fraction < 1.0:
            raise MappingError('carve_margin_fraction must be in [0, 1)')
        if isinstance(self.miss_limit, bool) or not 1 <= self.miss_limit <= 1000:
            raise MappingError(f'miss_limit must be in 1..1000, got {self.miss_limit}')
        if isinstance(self.carve_window_px, bool) or not 0 <= self.carve_window_px <= 16:
            raise MappingError(f'carve_window_px must be in 0..16, got {self.carve_window_px}')


@dataclass(frozen=True)
class Frame:
    """One checked RGB-D frame, as float tensors."""

    rgb: torch.Tensor                # [H, W, 3] in [0, 1]
    depth: torch.Tensor              # [H, W] m, 0 = no return
    valid: torch.Tensor              # [H, W] bool: depth in range and not masked
    intrinsics: torch.Tensor         # [3, 3]
    world_from_camera: torch.Tensor  # [4, 4]
    mask: torch.Tensor | None = None  # [H, W] bool: True = not scene (the robot)

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])


def check_camera(intrinsics: npt.ArrayLike, world_from_camera: npt.ArrayLike,
                 width: int | None = None, height: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(K [3, 3], T [4, 4])`` as float64 arrays: the object state's camera check
    (``checked_camera``: finite K with fx, fy > 0, finite rigid T), and further a pinhole K
    (no skew, last row 0 0 1) whose principal point lies in the ``width x height`` image and a
    proper rotation with last row 0 0 0 1; MappingError names what is wrong."""
    try:
        k, t = checked_camera(np.asarray(intrinsics), np.asarray(world_from_camera))
    except ObjectStateError as exc:
        raise MappingError(str(exc)) from None
    if abs(k[0, 1]) > 1e-9 or not np.allclose(k[2], (0.0, 0.0, 1.0)):
        raise MappingError(f'intrinsics must be a pinhole 3x3 K (no skew, last row 0 0 1), '
                           f'got {k.tolist()}')
    if width is not None and height is not None and \
            not (0 <= k[0, 2] <= width and 0 <= k[1, 2] <= height):
        raise MappingError(f'principal point ({k[0, 2]}, {k[1, 2]}) is outside the '
                           f'{width}x{height} image: intrinsics of another resolution?')
    if not np.allclose(t[3], (0.0, 0.0, 0.0, 1.0)) or np.linalg.det(t[:3, :3]) < 0:
        raise MappingError('world_from_camera must be a rigid transform (orthonormal rotation, '
                           'det +1, last row 0 0 0 1)')
    return k, t


def check_frame(rgb: npt.ArrayLike, depth_m: npt.ArrayLike, intrinsics: npt.ArrayLike,
                world_from_camera: npt.ArrayLike, mask: npt.ArrayLike | None,
                config: MapConfig, device: torch.device | str = 'cpu') -> Frame:
    """Validate one frame; MappingError names what is wrong.

    ``rgb``: [H, W, 3] uint8 (or float in [0, 1]); ``depth_m``: [H, W] float metres, 0 = no
    return (NaN/inf are refused: a driver that marks holes with NaN must map them to 0);
    ``mask``: [H, W] bool, True where the pixel is *not* scene (the robot).
    """
    colour = np.asarray(rgb)
    depth = np.asarray(depth_m)
    if depth.ndim != 2 or min(depth.shape) < 2:
        raise MappingError(f'depth must be a [H, W] image, got shape {depth.shape}')
    if depth.dtype.kind != 'f':
        raise MappingError(f'depth must be float metres (got dtype {depth.dtype}); convert '
                           '16UC1 millimetres with the camera depth scale first')
    h, w = depth.shape
    if colour.shape != (h, w, 3):
        raise MappingError(f'rgb has shape {colour.shape} but depth is {h}x{w}: colour and '
                           'aligned depth must have the same size ([H, W, 3] rgb)')
    if colour.dtype == np.uint8:
        colour_f = colour.astype(np.float32) / 255.0
    elif colour.dtype.kind == 'f':
        if not np.all(np.isfinite(colour)) or colour.min() < 0.0 or colour.max() > 1.0:
            raise MappingError('float rgb must be finite and in [0, 1]')
        colour_f = colour.astype(np.float32)
    else:
        raise MappingError(f'rgb must be uint8 or float, got dtype {colour.dtype}')
    finite = np.isfinite(depth)
    if not finite.all():
        raise MappingError(f'depth has {int((~finite).sum())} non-finite values (NaN/inf); '
                           'mark missing returns with 0')
    if float(depth.min()) < 0.0:
        raise MappingError(f'depth has negative values (min {float(depth.min())} m)')
    k, t = check_camera(intrinsics, world_from_camera, w, h)
    valid = (depth >= config.min_depth_m) & (depth <= config.max_depth_m)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (h, w) or m.dtype != np.bool_:
            raise MappingError(f'mask must be a [H, W] = [{h}, {w}] bool image, got '
                               f'{m.shape} {m.dtype}')
        valid &= ~m
    dev = torch.device(device)
    return Frame(torch.from_numpy(colour_f).to(dev), torch.from_numpy(depth.astype(np.float32))
                 .to(dev), torch.from_numpy(valid).to(dev),
                 torch.from_numpy(k.astype(np.float32)).to(dev),
                 torch.from_numpy(t.astype(np.float32)).to(dev),
                 None if mask is None else torch.from_numpy(np.asarray(mask)).to(dev))


def voxel_keys(points: torch.Tensor, voxel_m: float) -> torch.Tensor:
    """``[N]`` int64 keys of the voxels that points ``[N, 3]`` fall in."""
    idx = torch.floor(points / voxel_m).to(torch.int64) + _KEY_OFFSET
    idx = idx.clamp(0, (1 << _KEY_BITS) - 1)
    return (idx[:, 0] << (2 * _KEY_BITS)) | (idx[:, 1] << _KEY_BITS) | idx[:, 2]


def quaternion_z_to(normals: torch.Tensor) -> torch.Tensor:
    """``[N, 4]`` unit quaternions (w x y z) rotating +z onto unit ``normals [N, 3]``."""
    z = torch.zeros_like(normals)
    z[:, 2] = 1.0
    axis = torch.cross(z, normals, dim=1)
    w = 1.0 + normals[:, 2]
    q = torch.cat([w[:, None], axis], dim=1)
    # Opposite to +z (w ~ 0): a half turn about x.
    flip = w < 1e-6
    q[flip] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=q.dtype, device=q.device)
    return F.normalize(q, dim=1)


def camera_normals(frame: Frame, edge_jump_m: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel surface normals in the world frame ``[H, W, 3]`` (towards the camera) and
    whether each is reliable ``[H, W]`` (both neighbours valid, no depth edge)."""
    k, t, d = frame.intrinsics, frame.world_from_camera, frame.depth
    h, w = d.shape
    v, u = torch.meshgrid(torch.arange(h, dtype=d.dtype, device=d.device),
                          torch.arange(w, dtype=d.dtype, device=d.device), indexing='ij')
    cam = torch.stack([(u - k[0, 2]) / k[0, 0] * d, (v - k[1, 2]) / k[1, 1] * d, d], dim=-1)
    du = torch.zeros_like(cam)
    dv = torch.zeros_like(cam)
    du[:, 1:-1] = cam[:, 2:] - cam[:, :-2]
    dv[1:-1] = cam[2:] - cam[:-2]
    n = torch.cross(dv, du, dim=-1)  # optical frame: towards the camera for a facing surface
    norm = n.norm(dim=-1)
    ok = torch.zeros_like(frame.valid)
    val = frame.valid
    ok[1:-1, 1:-1] = (val[1:-1, 2:] & val[1:-1, :-2] & val[2:, 1:-1] & val[:-2, 1:-1]
                      & val[1:-1, 1:-1])
    jump = torch.maximum(du[..., 2].abs(), dv[..., 2].abs())
    ok &= (jump < 2 * edge_jump_m) & (norm > 0)
    n = n / norm.clamp_min(1e-12)[..., None]
    n = torch.where((n[..., 2] > 0)[..., None], -n, n)  # face the camera (camera looks at +z)
    return n @ t[:3, :3].T, ok


class GaussianMap:
    """The map's Gaussians and their bookkeeping (one thread owns a map).

    Parameters (float32, on ``device``)::

        means          [N, 3]  world frame, m
        quats          [N, 4]  unit quaternions w x y z (Gaussian frame -> world)
        log_scales     [N, 3]  log of the standard deviations along the Gaussian's axes, m
        opacity_logits [N]     logit of the opacity
        sh_dc          [N, 3]  degree-0 SH colour coefficient (colour = 0.5 + SH_C0 * sh_dc)

    Bookkeeping: ``keys [N]`` voxel of each Gaussian when it was added, ``last_seen [N]`` the
    integration count when a frame last confirmed it (for eviction), ``misses [N]`` frames in a
    row that saw (a little) behind it.
    """

    def __init__(self, config: MapConfig | None = None, device: torch.device | str = 'cpu'
                 ) -> None:
        self.config = config or MapConfig()
        self.device = torch.device(device)
        self.frames_integrated = 0
        self.evicted_total = 0
        self.clear()

    # --- parameters ---------------------------------------------------------------------------

    def clear(self) -> None:
        """Remove every Gaussian (the frame counter keeps counting)."""
        dev = self.device
        self.means = torch.zeros((0, 3), device=dev)
        self.quats = torch.zeros((0, 4), device=dev)
        self.log_scales = torch.zeros((0, 3), device=dev)
        self.opacity_logits = torch.zeros(0, device=dev)
        self.sh_dc = torch.zeros((0, 3), device=dev)
        self.keys = torch.zeros(0, dtype=torch.int64, device=dev)
        self.last_seen = torch.zeros(0, dtype=torch.int64, device=dev)
        self.misses = torch.zeros(0, dtype=torch.int64, device=dev)

    def __len__(self) -> int:
        return int(self.means.shape[0])

    def scales(self) -> torch.Tensor:
        """``[N, 3]`` standard deviations, m."""
        return self.log_scales.exp()

    def opacities(self) -> torch.Tensor:
        """``[N]`` opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits)

    def colours(self) -> torch.Tensor:
        """``[N, 3]`` RGB in [0, 1]."""
        return (0.5 + SH_C0 * self.sh_dc).clamp(0.0, 1.0)

    def memory_bytes(self) -> int:
        """Bytes held by the parameters and bookkeeping."""
        tensors = (self.means, self.quats, self.log_scales, self.opacity_logits, self.sh_dc,
                   self.keys, self.last_seen, self.misses)
        return sum(x.numel() * x.element_size() for x in tensors)

    def set_parameters(self, means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor,
                       opacity_logits: torch.Tensor, sh_dc: torch.Tensor) -> None:
        """Replace all Gaussians (loading a file, after refinement); shapes are checked."""
        n = int(means.shape[0])
        expected = {'means': (means, (n, 3)), 'quats': (quats, (n, 4)),
                    'log_scales': (log_scales, (n, 3)), 'opacity_logits': (opacity_logits, (n,)),
                    'sh_dc': (sh_dc, (n, 3))}
        for name, (value, shape) in expected.items():
            if tuple(value.shape) != shape:
                raise MappingError(f'{name} must have shape {shape}, got {tuple(value.shape)}')
            if not bool(torch.isfinite(value).all()):
                raise MappingError(f'{name} has non-finite values')
        if n and float(quats.norm(dim=1).min()) < 1e-8:
            raise MappingError('quats has zero-length quaternions')
        if n > self.config.max_gaussians:
            raise MappingError(f'{n} Gaussians exceed max_gaussians '
                               f'({self.config.max_gaussians})')
        dev = self.device
        self.means = means.detach().to(dev, torch.float32).contiguous()
        # Quaternions are kept as given (renderers normalise them), so a file round-trips.
        self.quats = quats.detach().to(dev, torch.float32).contiguous()
        self.log_scales = log_scales.detach().to(dev, torch.float32).contiguous()
        self.opacity_logits = opacity_logits.detach().to(dev, torch.float32).contiguous()
        self.sh_dc = sh_dc.detach().to(dev, torch.float32).contiguous()
        self.keys = voxel_keys(self.means, self.config.voxel_m)
        self.last_seen = torch.full((n,), self.frames_integrated, dtype=torch.int64, device=dev)
        self.misses = torch.zeros(n, dtype=torch.int64, device=dev)

    def append(self, means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor,
               opacity_logits: torch.Tensor, sh_dc: torch.Tensor,
               keys: torch.Tensor | None = None, last_seen: torch.Tensor | None = None,
               misses: torch.Tensor | None = None) -> None:
        """Add Gaussians (``[M, ...]`` parameters) with their bookkeeping: ``keys`` default to
        the voxels of ``means``, ``last_seen`` to now, ``misses`` to none."""
        m = int(means.shape[0])
        added = {'means': means, 'quats': quats, 'log_scales': log_scales,
                 'opacity_logits': opacity_logits, 'sh_dc': sh_dc,
                 'keys': voxel_keys(means, self.config.voxel_m) if keys is None else keys,
                 'last_seen': torch.full((m,), self.frames_integrated, dtype=torch.int64,
                                         device=self.device) if last_seen is None else last_seen,
                 'misses': torch.zeros(m, dtype=torch.int64, device=self.device)
                 if misses is None else misses}
        for name in BOOKKEEPING:
            setattr(self, name, torch.cat([getattr(self, name), added[name]]))

    def keep(self, selection: torch.Tensor) -> None:
        """Keep only the Gaussians where ``selection [N]`` (bool) is True."""
        for name in BOOKKEEPING:
            setattr(self, name, getattr(self, name)[selection])

    def remove(self, selection: torch.Tensor) -> int:
        """Remove the Gaussians where ``selection [N]`` (bool) is True; returns how many."""
        count = int(selection.sum())
        if count:
            self.keep(~selection)
        return count

    # --- integration --------------------------------------------------------------------------

    def integrate(self, rgb: npt.ArrayLike, depth_m: npt.ArrayLike, intrinsics: npt.ArrayLike,
                  world_from_camera: npt.ArrayLike, mask: npt.ArrayLike | None = None
                  ) -> IntegrationStats:
        """Add one RGB-D frame (see :func:`check_frame` for the inputs).

        First removes Gaussians the frame sees through (stale), then adds one Gaussian per
        voxel that the frame's valid, unmasked depth occupies and the map does not, then
        evicts past ``max_gaussians``.
        """
        return self.integrate_frame(check_frame(rgb, depth_m, intrinsics, world_from_camera,
                                                mask, self.config, self.device))

    def integrate_frame(self, frame: Frame) -> IntegrationStats:
        """:meth:`integrate` for a frame already checked by :func:`check_frame`."""
        self.frames_integrated += 1
        removed = self._carve(frame)
        added = self._add(frame)
        evicted = self._evict()
        return IntegrationStats(added=added, removed=removed, evicted=evicted, total=len(self))

    def project(self, frame: Frame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gaussian centres in ``frame``: pixel columns and rows (int64, [N]) and depth [N]."""
        t = frame.world_from_camera
        rot, pos = t[:3, :3], t[:3, 3]
        cam = (self.means - pos) @ rot  # world -> camera: R^T (p - t)
        z = cam[:, 2]
        k = frame.intrinsics
        safe_z = z.clamp_min(1e-6)
        u = torch.floor(k[0, 0] * cam[:, 0] / safe_z + k[0, 2]).to(torch.int64)
        v = torch.floor(k[1, 1] * cam[:, 1] / safe_z + k[1, 2]).to(torch.int64)
        return u, v, z

    def _carve(self, frame: Frame) -> int:
        if len(self) == 0:
            return 0
        c = self.config
        u, v, z = self.project(frame)
        inside = (u >= 0) & (u < frame.width) & (v >= 0) & (v < frame.height) & \
            (z > c.min_depth_m)
        # Any return that is not the robot is evidence of free space in front of it, also one
        # beyond max_depth_m (a far wall behind the arm's old position). The smallest depth
        # around each pixel decides; holes and masked pixels count as 0, so a Gaussian next to
        # them, or at an edge, is never carved on their account.
        evidence = frame.depth > 0
        if frame.mask is not None:
            evidence &= ~frame.mask
        observed = torch.where(evidence, frame.depth, torch.zeros_like(frame.depth))
        r = c.carve_window_px
        if r > 0:
            observed = -F.max_pool2d(-observed[None, None], 2 * r + 1, stride=1, padding=r)[0, 0]
        idx = torch.nonzero(inside).squeeze(1)
        behind = observed[v[idx], u[idx]] - z[idx]
        margin = torch.clamp_min(z[idx] * c.carve_margin_fraction, c.carve_margin_m)
        centre = torch.where(evidence, frame.depth, torch.zeros_like(frame.depth))[v[idx], u[idx]]
        at_surface = (centre > 0) & ((centre - z[idx]).abs() <= margin)
        seen_colour = frame.rgb[v[idx], u[idx]]
        recoloured = (seen_colour - self.colours()[idx]).abs().mean(dim=1) > c.recolour_threshold
        confirmed = at_surface & ~recoloured
        missed = (behind > 0.5 * margin) | (at_surface & recoloured)
        self.last_seen[idx[confirmed]] = self.frames_integrated
        misses = self.misses[idx]
        self.misses[idx] = torch.where(missed & ~confirmed, misses + 1,
                                       torch.where(confirmed, torch.zeros_like(misses), misses))
        stale = torch.zeros(len(self), dtype=torch.bool, device=self.device)
        stale[idx] = (behind > margin) | (self.misses[idx] >= c.miss_limit)
        return self.remove(stale)

    def _add(self, frame: Frame) -> int:
        c = self.config
        k, t, d = frame.intrinsics, frame.world_from_camera, frame.depth
        rows, cols = torch.nonzero(frame.valid, as_tuple=True)
        if rows.numel() == 0:
            return 0
        z = d[rows, cols]
        cam = torch.stack([(cols.to(z.dtype) + 0.5 - k[0, 2]) / k[0, 0] * z,
                           (rows.to(z.dtype) + 0.5 - k[1, 2]) / k[1, 1] * z, z], dim=1)
        points = cam @ t[:3, :3].T + t[:3, 3]
        keys = voxel_keys(points, c.voxel_m)
        new = ~torch.isin(keys, self.keys) if len(self) else \
            torch.ones_like(keys, dtype=torch.bool)
        if not bool(new.any()):
            return 0
        points, keys, z = points[new], keys[new], z[new]
        rows, cols = rows[new], cols[new]
        uniq, inverse = torch.unique(keys, return_inverse=True)
        m = int(uniq.numel())
        count = torch.zeros(m, device=self.device).index_add_(0, inverse,
                                                               torch.ones_like(z))
        mean = torch.zeros((m, 3), device=self.device).index_add_(0, inverse, points) \
            / count[:, None]
        colour = torch.zeros((m, 3), device=self.device).index_add_(
            0, inverse, frame.rgb[rows, cols]) / count[:, None]
        depth = torch.zeros(m, device=self.device).index_add_(0, inverse, z) / count
        normals, reliable = camera_normals(frame, c.edge_jump_m)
        nsum = torch.zeros((m, 3), device=self.device).index_add_(
            0, inverse, normals[rows, cols] * reliable[rows, cols, None])
        nnorm = nsum.norm(dim=1)
        flat = nnorm > 0.5 * torch.zeros(m, device=self.device).index_add_(
            0, inverse, reliable[rows, cols].to(z.dtype)).clamp_min(1.0)
        # The pixel footprint at this depth; a Gaussian must also cover its voxel.
        footprint = depth / float(min(k[0, 0], k[1, 1]))
        sigma = torch.clamp_min(footprint, 0.5 * c.voxel_m)
        log_scales = sigma.log()[:, None].repeat(1, 3)
        quats = torch.zeros((m, 4), device=self.device)
        quats[:, 0] = 1.0
        if bool(flat.any()):
            quats[flat] = quaternion_z_to(nsum[flat] / nnorm[flat, None])
            log_scales[flat, 2] += math.log(c.normal_scale_ratio)
        logit = math.log(c.initial_opacity / (1.0 - c.initial_opacity))
        self.append(mean, quats, log_scales, torch.full((m,), logit, device=self.device),
                    (colour - 0.5) / SH_C0, keys=uniq)
        return m

    def _evict(self) -> int:
        excess = len(self) - self.config.max_gaussians
        if excess <= 0:
            return 0
        # Oldest observation first; among equally old, the least opaque (a stable sort by
        # opacity, then by age, orders by age with opacity breaking ties).
        order = torch.argsort(self.opacity_logits, stable=True)
        order = order[torch.argsort(self.last_seen[order], stable=True)]
        drop = torch.zeros(len(self), dtype=torch.bool, device=self.device)
        drop[order[:excess]] = True
        self.remove(drop)
        self.evicted_total += excess
        return excess


@dataclass(frozen=True)
class IntegrationStats:
    """What one :meth:`GaussianMap.integrate` did."""

    added: int
    removed: int   # stale: seen through by this frame
    evicted: int   # over max_gaussians
    total: int
