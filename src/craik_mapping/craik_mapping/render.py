"""Rendering the Gaussian map: gsplat on CUDA, a pure-PyTorch splatting renderer on the CPU.

Both follow the same model (3D Gaussian Splatting's EWA splatting as gsplat implements it):
each Gaussian's covariance ``R S S^T R^T`` is projected with the pinhole Jacobian (its
view-space position clamped to 1.3 x the field of view, as gsplat does), blurred by
``eps2d = 0.3`` px^2, and composited front to back by depth with
``alpha = min(0.999, opacity * exp(-d^T conic d / 2))`` at pixel centres (``+0.5``); alphas
below 1/255 are skipped. Colour is the alpha-weighted sum, depth the alpha-normalised expected
depth (gsplat's ``RGB+ED``), alpha the accumulated opacity. gsplat stops a pixel once its
transmittance falls below 1e-4, the CPU renderer does not: the difference is below 1e-4 of the
pixel value. The CPU renderer is differentiable (refinement runs on it without CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

from craik_mapping.gaussian_map import GaussianMap, MappingError, check_camera

EPS2D = 0.3            # px^2 added to every projected covariance (anti-aliasing blur)
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
RADIUS_SIGMAS = 3.33   # bounding box half-size in standard deviations (gsplat's choice)
NEAR_PLANE_M = 0.01
BACKENDS = ('auto', 'torch', 'gsplat')


@dataclass(frozen=True)
class Rendering:
    """A rendered view: ``colour [H, W, 3]`` in [0, 1], ``depth [H, W]`` m (expected depth,
    0 where nothing was rendered), ``alpha [H, W]`` accumulated opacity."""

    colour: torch.Tensor
    depth: torch.Tensor
    alpha: torch.Tensor

    def colour_uint8(self) -> npt.NDArray[np.uint8]:
        """``[H, W, 3]`` uint8 (for an rgb8 image)."""
        return (self.colour.detach().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()

    def depth_m(self, min_alpha: float = 0.5) -> npt.NDArray[np.float32]:
        """``[H, W]`` float32 metres, 0 (no return, like a camera) where alpha < ``min_alpha``."""
        d = torch.where(self.alpha >= min_alpha, self.depth, torch.zeros_like(self.depth))
        return d.detach().cpu().numpy().astype(np.float32)


def quaternion_to_matrix(quats: torch.Tensor) -> torch.Tensor:
    """``[N, 3, 3]`` rotations from quaternions ``[N, 4]`` (w x y z, normalised here)."""
    q = F.normalize(quats, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


@dataclass(frozen=True)
class Projection:
    """Gaussians projected into one camera (only those in view)."""

    ids: torch.Tensor      # [M] int64 index into the map
    means2d: torch.Tensor  # [M, 2] pixel coordinates (u, v)
    conics: torch.Tensor   # [M, 3] inverse 2D covariance (a, b, c): [[a, b], [b, c]]
    depths: torch.Tensor   # [M] z in the camera, m
    radii: torch.Tensor    # [M, 2] int64 bounding-box half size, px


def project_gaussians(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                      camera_from_world: torch.Tensor, intrinsics: torch.Tensor,
                      width: int, height: int) -> Projection:
    """EWA projection of Gaussians ``means [N, 3], quats [N, 4], scales [N, 3]`` (world)."""
    rot, trans = camera_from_world[:3, :3], camera_from_world[:3, 3]
    mc = means @ rot.T + trans                                   # [N, 3]
    rg = quaternion_to_matrix(quats) * scales[:, None, :]        # [N, 3, 3] R S
    cov = rot @ (rg @ rg.transpose(1, 2)) @ rot.T                # [N, 3, 3] camera frame
    fx, fy = intrinsics[0, 0], intrinsics[1, 1]
    cx, cy = intrinsics[0, 2], intrinsics[1, 2]
    tz = mc[:, 2]
    safe_z = torch.where(tz > NEAR_PLANE_M, tz, torch.ones_like(tz))
    # The Jacobian is evaluated at the position clamped to the widened field of view, so
    # Gaussians far outside the image do not get huge footprints (gsplat does the same).
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    tx = safe_z * torch.clamp(mc[:, 0] / safe_z, min=-lim_x_neg, max=lim_x_pos)
    ty = safe_z * torch.clamp(mc[:, 1] / safe_z, min=-lim_y_neg, max=lim_y_pos)
    zero = torch.zeros_like(tz)
    jac = torch.stack([fx / safe_z, zero, -fx * tx / safe_z ** 2,
                       zero, fy / safe_z, -fy * ty / safe_z ** 2], dim=-1).reshape(-1, 2, 3)
    cov2d = jac @ cov @ jac.transpose(1, 2) + EPS2D * torch.eye(2, dtype=means.dtype,
                                                                 device=means.device)
    a, b, c = cov2d[:, 0, 0], 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]), cov2d[:, 1, 1]
    det = (a * c - b * b).clamp_min(1e-10)
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    u = fx * mc[:, 0] / safe_z + cx
    v = fy * mc[:, 1] / safe_z + cy
    rx = torch.ceil(RADIUS_SIGMAS * a.sqrt())
    ry = torch.ceil(RADIUS_SIGMAS * c.sqrt())
    keep = (tz > NEAR_PLANE_M) & (u + rx > 0) & (u - rx < width) & (v + ry > 0) & \
        (v - ry < height) & (a * c - b * b > 0)
    ids = torch.nonzero(keep).squeeze(1)
    radii = torch.stack([rx[ids], ry[ids]], dim=-1).detach().to(torch.int64)
    return Projection(ids, torch.stack([u[ids], v[ids]], dim=-1), conics[ids], tz[ids], radii)


def rasterize_torch(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                    opacities: torch.Tensor, colours: torch.Tensor,
                    camera_from_world: torch.Tensor, intrinsics: torch.Tensor, width: int,
                    height: int, max_pairs: int = 6_000_000) -> Rendering:
    """Splat Gaussians into a ``height x width`` view with PyTorch alone (CPU or any device).

    Every (Gaussian, pixel) pair inside a Gaussian's bounding box is evaluated, pairs are sorted
    by pixel then depth, and each pixel's transmittance is an exclusive cumulative product
    (a cumulative sum of ``log(1 - alpha)`` per pixel segment). Rows are processed in bands so
    that at most ``max_pairs`` pairs are held at once.
    """
    dev, dtype = means.device, means.dtype
    colour = torch.zeros((height * width, 3), dtype=dtype, device=dev)
    depth = torch.zeros(height * width, dtype=dtype, device=dev)
    alpha = torch.zeros(height * width, dtype=dtype, device=dev)
    proj = project_gaussians(means, quats, scales, camera_from_world, intrinsics, width, height)
    n = int(proj.ids.numel())
    if n:
        # Front-to-back rank of each projected Gaussian (pairs sort by pixel, then by rank).
        rank = torch.empty(n, dtype=torch.int64, device=dev)
        rank[torch.argsort(proj.depths.detach())] = torch.arange(n, device=dev)
        mx, my = proj.means2d[:, 0].detach(), proj.means2d[:, 1].detach()
        x0 = torch.clamp(torch.floor(mx - proj.radii[:, 0]), 0, width - 1).to(torch.int64)
        x1 = torch.clamp(torch.ceil(mx + proj.radii[:, 0]), 0, width).to(torch.int64)
        y0 = torch.clamp(torch.floor(my - proj.radii[:, 1]), 0, height - 1).to(torch.int64)
        y1 = torch.clamp(torch.ceil(my + proj.radii[:, 1]), 0, height).to(torch.int64)
        total = int(((x1 - x0).clamp_min(0) * (y1 - y0).clamp_min(0)).sum())
        bands = max(1, math.ceil(total / max_pairs))
        band_h = max(1, math.ceil(height / bands))
        opac = opacities[proj.ids]
        col = colours[proj.ids]
        for top in range(0, height, band_h):
            bottom = min(height, top + band_h)
            by0, by1 = y0.clamp(top, bottom), y1.clamp(top, bottom)
            _composite(proj, rank, opac, col, x0, x1, by0, by1, width, colour, depth, alpha)
    colour = colour.reshape(height, width, 3)
    depth = depth.reshape(height, width)
    alpha = alpha.reshape(height, width)
    expected = torch.where(alpha > 1e-6, depth / alpha.clamp_min(1e-6), torch.zeros_like(depth))
    return Rendering(colour, expected, alpha)


def _composite(proj: Projection, rank: torch.Tensor, opac: torch.Tensor, col: torch.Tensor,
               x0: torch.Tensor, x1: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor,
               width: int, colour: torch.Tensor, depth: torch.Tensor, alpha: torch.Tensor
               ) -> None:
    """Accumulate the pairs of one band of rows into ``colour, depth, alpha`` (flat pixels)."""
    bw = (x1 - x0).clamp_min(0)
    counts = bw * (y1 - y0).clamp_min(0)
    active = torch.nonzero(counts > 0).squeeze(1)
    if active.numel() == 0:
        return
    counts = counts[active]
    g = torch.repeat_interleave(active, counts)                       # [P] projected Gaussian
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(int(counts.sum()), device=g.device) - \
        torch.repeat_interleave(starts, counts)
    px = x0[g] + local % bw[g]
    py = y0[g] + local // bw[g]
    dx = px.to(col.dtype) + 0.5 - proj.means2d[g, 0]
    dy = py.to(col.dtype) + 0.5 - proj.means2d[g, 1]
    con = proj.conics[g]
    power = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
    a = torch.clamp_max(opac[g] * torch.exp(-power), ALPHA_MAX)
    keep = (a.detach() >= ALPHA_MIN) & (power.detach() >= 0)
    g, a = g[keep], a[keep]
    pix = (py * width + px)[keep]
    if pix.numel() == 0:
        return
    order = torch.argsort(pix * rank.numel() + rank[g])
    g, a, pix = g[order], a[order], pix[order]
    log_t = torch.log1p(-a)
    cum = torch.cumsum(log_t, 0)
    # Exclusive per-pixel cumulative sum: subtract the running sum before each segment.
    _, seg_counts = torch.unique_consecutive(pix, return_counts=True)
    seg_start = torch.cumsum(seg_counts, 0) - seg_counts
    before = torch.where(seg_start > 0, cum[(seg_start - 1).clamp_min(0)],
                         torch.zeros_like(cum[seg_start]))
    excl = cum - log_t - torch.repeat_interleave(before, seg_counts)
    weight = a * torch.exp(excl)                                        # [P]
    colour.index_add_(0, pix, weight[:, None] * col[g])
    depth.index_add_(0, pix, weight * proj.depths[g])
    alpha.index_add_(0, pix, weight)


def gsplat_available() -> bool:
    """Whether gsplat's CUDA rasterizer can run here (gsplat installed and a CUDA device)."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """``torch`` or ``gsplat`` for a requested backend (``auto``: gsplat when the map is on a
    CUDA device and gsplat can run)."""
    if backend not in BACKENDS:
        raise MappingError(f'render backend must be one of {BACKENDS}, got {backend!r}')
    if backend == 'gsplat':
        if device.type != 'cuda' or not gsplat_available():
            raise MappingError('the gsplat backend needs CUDA and the map on a CUDA device; '
                               'use backend="torch" (the CPU renderer)')
        return 'gsplat'
    if backend == 'auto':
        return 'gsplat' if device.type == 'cuda' and gsplat_available() else 'torch'
    return 'torch'


def rasterize(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
              opacities: torch.Tensor, colours: torch.Tensor, camera_from_world: torch.Tensor,
              intrinsics: torch.Tensor, width: int, height: int, backend: str = 'auto'
              ) -> Rendering:
    """Render Gaussian parameters (differentiable with either backend)."""
    which = resolve_backend(backend, means.device)
    if which == 'torch':
        return rasterize_torch(means, quats, scales, opacities, colours, camera_from_world,
                               intrinsics, width, height)
    import gsplat

    out, alphas, _ = gsplat.rasterization(
        means, F.normalize(quats, dim=-1), scales, opacities, colours,
        camera_from_world[None], intrinsics[None], width, height, render_mode='RGB+ED',
        near_plane=NEAR_PLANE_M, eps2d=EPS2D)
    return Rendering(out[0, ..., :3], out[0, ..., 3], alphas[0, ..., 0])


def render(gmap: GaussianMap, intrinsics: npt.ArrayLike, world_from_camera: npt.ArrayLike,
           width: int, height: int, backend: str = 'auto') -> Rendering:
    """Render the map from a camera (``intrinsics`` of the ``width x height`` image)."""
    if isinstance(width, bool) or isinstance(height, bool) or not isinstance(width, int) or \
            not isinstance(height, int) or not (1 <= width <= 8192 and 1 <= height <= 8192):
        raise MappingError(f'render size must be integers in 1..8192, got {width}x{height}')
    k, t = check_camera(intrinsics, world_from_camera, width, height)
    camera_from_world = np.linalg.inv(t)
    dev = gmap.device
    with torch.no_grad():
        return rasterize(gmap.means, gmap.quats, gmap.scales(), gmap.opacities(), gmap.colours(),
                         torch.as_tensor(camera_from_world, dtype=torch.float32, device=dev),
                         torch.as_tensor(k, dtype=torch.float32, device=dev), width, height,
                         backend)
