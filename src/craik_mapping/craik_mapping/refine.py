"""Refining the Gaussian map against a window of keyframes (photometric + depth losses).

Integration places Gaussians from single frames; refinement optimises all their parameters
with Adam so that renders match the most recent keyframes, then densifies (clones Gaussians
whose mean received large gradients: under-reconstructed detail) and prunes (near-transparent
or oversized Gaussians). On CUDA it renders with gsplat; elsewhere with the differentiable CPU
renderer, which is slow (use few iterations and a small render size there).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from craik_mapping.gaussian_map import SH_C0, Frame, GaussianMap, MappingError, voxel_keys
from craik_mapping.render import quaternion_to_matrix, rasterize


@dataclass(frozen=True)
class RefineConfig:
    """Refinement settings (learning rates per parameter group follow 3DGS's defaults)."""

    window: int = 8                 # keyframes kept for refinement (most recent)
    depth_weight: float = 0.5       # depth L1 (m) weight against colour L1
    lr_means_m: float = 2e-4
    lr_log_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacity: float = 5e-2
    lr_colour: float = 2.5e-3
    prune_opacity: float = 0.05     # below this a Gaussian is removed
    max_scale_m: float = 0.05       # larger Gaussians are removed (floaters)
    densify_grad: float = 2e-4      # mean-gradient norm above which a Gaussian is cloned
    render_scale: float = 1.0       # keyframes are rendered at this fraction of their size
    backend: str = 'auto'

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not 1 <= self.window <= 256:
            raise MappingError(f'window must be in 1..256, got {self.window}')
        for name in ('depth_weight', 'lr_means_m', 'lr_log_scales', 'lr_quats', 'lr_opacity',
                     'lr_colour', 'max_scale_m', 'densify_grad'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise MappingError(f'{name} must be finite and >= 0, got {value}')
        if not 0.0 <= self.prune_opacity < 1.0:
            raise MappingError(f'prune_opacity must be in [0, 1), got {self.prune_opacity}')
        if not 0.05 <= self.render_scale <= 1.0:
            raise MappingError(f'render_scale must be in [0.05, 1], got {self.render_scale}')


@dataclass(frozen=True)
class RefineStats:
    """What one :meth:`Refiner.refine` did."""

    iterations: int
    loss_first: float
    loss_last: float
    cloned: int
    pruned: int
    total: int


def _downsample(frame: Frame, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                     torch.Tensor, int, int]:
    """``(rgb [h, w, 3], depth [h, w], valid [h, w], K [3, 3], w, h)`` at ``scale``."""
    if scale >= 1.0:
        return frame.rgb, frame.depth, frame.valid, frame.intrinsics, frame.width, frame.height
    w = max(1, int(round(frame.width * scale)))
    h = max(1, int(round(frame.height * scale)))
    rgb = F.interpolate(frame.rgb.permute(2, 0, 1)[None], size=(h, w), mode='area')[0] \
        .permute(1, 2, 0)
    # Nearest for depth and validity: averaging across an edge invents surfaces.
    depth = F.interpolate(frame.depth[None, None], size=(h, w), mode='nearest')[0, 0]
    valid = F.interpolate(frame.valid[None, None].float(), size=(h, w), mode='nearest')[0, 0] > 0
    k = frame.intrinsics.clone()
    k[0] *= w / frame.width
    k[1] *= h / frame.height
    return rgb, depth, valid, k, w, h


class Refiner:
    """Keyframe window and optimiser over one map (owned by the same thread as the map)."""

    def __init__(self, gmap: GaussianMap, config: RefineConfig | None = None) -> None:
        self.map = gmap
        self.config = config or RefineConfig()
        self.keyframes: deque[Frame] = deque(maxlen=self.config.window)

    def add_keyframe(self, frame: Frame) -> None:
        """Keep ``frame`` (a checked frame, see gaussian_map.check_frame) for refinement."""
        self.keyframes.append(frame)

    def clear(self) -> None:
        self.keyframes.clear()

    def loss(self, params: dict[str, torch.Tensor], frame: Frame) -> torch.Tensor:
        """Colour L1 + depth_weight x depth L1 over the frame's valid pixels."""
        rgb, depth, valid, k, w, h = _downsample(frame, self.config.render_scale)
        camera_from_world = torch.linalg.inv(frame.world_from_camera)
        out = rasterize(params['means'], params['quats'], params['log_scales'].exp(),
                        torch.sigmoid(params['opacity_logits']),
                        (0.5 + SH_C0 * params['sh_dc']).clamp(0, 1),
                        camera_from_world, k, w, h, self.config.backend)
        count = valid.sum().clamp_min(1)
        colour_l1 = ((out.colour - rgb).abs().sum(-1) * valid).sum() / (3 * count)
        depth_l1 = ((out.depth - depth).abs() * valid).sum() / count
        return colour_l1 + self.config.depth_weight * depth_l1

    def refine(self, iterations: int, seed: int = 0) -> RefineStats:
        """Run ``iterations`` Adam steps (one random keyframe each), then densify and prune."""
        if isinstance(iterations, bool) or not 0 <= iterations <= 100_000:
            raise MappingError(f'iterations must be in 0..100000, got {iterations}')
        gmap, c = self.map, self.config
        if not self.keyframes or len(gmap) == 0 or iterations == 0:
            return RefineStats(0, math.nan, math.nan, 0, 0, len(gmap))
        params = {name: getattr(gmap, name).clone().requires_grad_(True)
                  for name in ('means', 'quats', 'log_scales', 'opacity_logits', 'sh_dc')}
        lrs = {'means': c.lr_means_m, 'quats': c.lr_quats, 'log_scales': c.lr_log_scales,
               'opacity_logits': c.lr_opacity, 'sh_dc': c.lr_colour / SH_C0}
        optimiser = torch.optim.Adam([{'params': [p], 'lr': lrs[n]} for n, p in params.items()],
                                     eps=1e-15)
        grad_sum = torch.zeros(len(gmap), device=gmap.device)
        rng = np.random.default_rng(seed)
        losses = []
        for _ in range(iterations):
            frame = self.keyframes[int(rng.integers(len(self.keyframes)))]
            optimiser.zero_grad(set_to_none=True)
            loss = self.loss(params, frame)
            loss.backward()
            means_grad = params['means'].grad
            if means_grad is not None:
                grad_sum += means_grad.norm(dim=1)
            optimiser.step()
            losses.append(float(loss.detach()))
        with torch.no_grad():
            gmap.means, gmap.quats = params['means'].detach(), params['quats'].detach()
            gmap.log_scales = params['log_scales'].detach()
            gmap.opacity_logits = params['opacity_logits'].detach()
            gmap.sh_dc = params['sh_dc'].detach()
            gmap.keys = voxel_keys(gmap.means, gmap.config.voxel_m)
            cloned = self._densify(grad_sum / iterations)
            pruned = gmap.remove((gmap.opacities() < c.prune_opacity) |
                                 (gmap.scales().max(dim=1).values > c.max_scale_m))
        return RefineStats(iterations, losses[0], losses[-1], cloned, pruned, len(gmap))

    def _densify(self, mean_grad: torch.Tensor) -> int:
        """Clone Gaussians whose average mean-gradient exceeds ``densify_grad`` (within the
        map's capacity); each clone is nudged along its largest axis."""
        gmap, c = self.map, self.config
        room = gmap.config.max_gaussians - len(gmap)
        if c.densify_grad <= 0 or room <= 0:
            return 0
        pick = torch.nonzero(mean_grad > c.densify_grad).squeeze(1)
        if pick.numel() == 0:
            return 0
        pick = pick[torch.argsort(mean_grad[pick], descending=True)][:room]
        rot = quaternion_to_matrix(gmap.quats[pick])
        scales = gmap.scales()[pick]
        axis = torch.argmax(scales, dim=1)
        offset = rot[torch.arange(len(pick)), :, axis] * scales[torch.arange(len(pick)), axis,
                                                                None] * 0.5
        gmap.means[pick] -= offset
        gmap.append(gmap.means[pick] + 2 * offset, gmap.quats[pick], gmap.log_scales[pick],
                    gmap.opacity_logits[pick], gmap.sh_dc[pick], last_seen=gmap.last_seen[pick],
                    misses=gmap.misses[pick])
        # The moved originals may have left their voxels.
        gmap.keys = voxel_keys(gmap.means, gmap.config.voxel_m)
        return int(pick.numel())
